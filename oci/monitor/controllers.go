package monitor

import (
	"sync"

	"github.com/opencontainers/cgroups"
)

// hugetlbAvailable reports whether containers can get a hugetlb cgroup:
// on v2 when the controller is enabled, on v1 when it has a hierarchy (on
// hybrid hosts it may sit alone on the v2 mount, out of libcontainer's
// reach).
var hugetlbAvailable = sync.OnceValue(func() bool {
	if cgroups.IsCgroup2UnifiedMode() {
		return true
	}
	_, err := cgroups.FindCgroupMountpoint("", "hugetlb")
	return err == nil
})
