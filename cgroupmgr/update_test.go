package cgroupmgr

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestResourcesFrom(t *testing.T) {
	limit, quota, period, shares := int64(64<<20), int64(50000), uint64(100000), uint64(256)
	r := &specs.LinuxResources{
		Memory:         &specs.LinuxMemory{Limit: &limit},
		CPU:            &specs.LinuxCPU{Quota: &quota, Period: &period, Shares: &shares, Cpus: "0"},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 0}},
	}
	res := resourcesFrom(r, false)
	if !res.SkipDevices || res.Memory != limit || res.CpuQuota != quota || res.CpuPeriod != period || res.CpuShares != shares ||
		res.CpusetCpus != "0" || res.MemorySwap != 0 || res.HugetlbLimit != nil || res.PidsLimit != nil {
		t.Fatalf("resources: %+v", res)
	}
	if res := resourcesFrom(r, true); len(res.HugetlbLimit) != 1 || res.HugetlbLimit[0].Pagesize != "2MB" {
		t.Fatalf("hugetlb kept: %+v", res.HugetlbLimit)
	}
	if res := resourcesFrom(&specs.LinuxResources{}, true); res.Memory != 0 || res.CpuQuota != 0 || !res.SkipDevices {
		t.Fatalf("empty: %+v", res)
	}
}
