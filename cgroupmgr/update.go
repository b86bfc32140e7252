package cgroupmgr

import (
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Update writes new limits to an existing cgroup (a pod's); nil fields are
// left alone. Device rules are never touched, and hugepage limits are
// dropped where the host has no hugetlb controller crid can reach.
func (m *Manager) Update(cgroupPath string, r *specs.LinuxResources) error {
	res := &cgroups.Resources{SkipDevices: true} // an update must not reset device access
	if _, err := ApplyResources(res, r, HugetlbAvailable()); err != nil {
		return fmt.Errorf("update cgroup %s: %w", cgroupPath, err)
	}
	mgr, err := m.manager(cgroupPath)
	if err != nil {
		return err
	}
	if err := mgr.Set(res); err != nil {
		return fmt.Errorf("update cgroup %s: %w", cgroupPath, err)
	}
	return nil
}

// ErrInvalidResources marks limits this host cannot apply.
var ErrInvalidResources = errors.New("invalid cgroup resources")

// ApplyResources copies the limits set in r onto res, as runc update does;
// fields r leaves nil keep their value. Raising a memory limit above the
// memory+swap limit would be refused by the kernel, so a swap limit that
// was equal to the memory limit (no swap) follows it.
func ApplyResources(res *cgroups.Resources, r *specs.LinuxResources, hugetlb bool) (droppedHugetlb bool, err error) {
	if mem := r.Memory; mem != nil {
		if mem.Limit != nil {
			old := res.Memory
			res.Memory = *mem.Limit
			if mem.Swap == nil && res.MemorySwap > 0 && (res.MemorySwap == old || res.MemorySwap < res.Memory) {
				res.MemorySwap = res.Memory
			}
		}
		if mem.Reservation != nil {
			res.MemoryReservation = *mem.Reservation
		}
		if mem.Swap != nil {
			res.MemorySwap = *mem.Swap
		}
	}
	if cpu := r.CPU; cpu != nil {
		if cpu.Shares != nil {
			res.CpuShares = *cpu.Shares
		}
		if cpu.Quota != nil {
			res.CpuQuota = *cpu.Quota
		}
		if cpu.Period != nil {
			res.CpuPeriod = *cpu.Period
		}
		if cpu.Cpus != "" {
			res.CpusetCpus = cpu.Cpus
		}
		if cpu.Mems != "" {
			res.CpusetMems = cpu.Mems
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		l := *r.Pids.Limit
		res.PidsLimit = &l
	}
	if len(r.HugepageLimits) > 0 {
		if !hugetlb {
			droppedHugetlb = true
		} else {
			res.HugetlbLimit = nil
			for _, h := range r.HugepageLimits {
				res.HugetlbLimit = append(res.HugetlbLimit, &cgroups.HugepageLimit{Pagesize: h.Pagesize, Limit: h.Limit})
			}
		}
	}
	if len(r.Unified) > 0 {
		if !cgroups.IsCgroup2UnifiedMode() {
			return droppedHugetlb, fmt.Errorf("%w: unified cgroup settings need a cgroup v2 host", ErrInvalidResources)
		}
		if res.Unified == nil {
			res.Unified = map[string]string{}
		}
		maps.Copy(res.Unified, r.Unified)
	}
	return droppedHugetlb, nil
}

// HugetlbAvailable reports whether cgroups can get hugetlb limits: on v2
// when the controller is there, on v1 when it has a hierarchy (on hybrid
// hosts it may sit alone on the v2 mount, out of reach of v1 managers).
var HugetlbAvailable = sync.OnceValue(func() bool {
	if cgroups.IsCgroup2UnifiedMode() {
		return true
	}
	_, err := cgroups.FindCgroupMountpoint("", "hugetlb")
	return err == nil
})
