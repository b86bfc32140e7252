package cgroupmgr

import (
	"errors"
	"testing"

	"github.com/opencontainers/cgroups"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestApplyResourcesOntoNothing(t *testing.T) {
	limit, quota, period, shares := int64(64<<20), int64(50000), uint64(100000), uint64(256)
	r := &specs.LinuxResources{
		Memory:         &specs.LinuxMemory{Limit: &limit},
		CPU:            &specs.LinuxCPU{Quota: &quota, Period: &period, Shares: &shares, Cpus: "0"},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 0}},
	}
	res := &cgroups.Resources{SkipDevices: true}
	dropped, err := ApplyResources(res, r, false)
	if err != nil || !dropped || !res.SkipDevices || res.Memory != limit || res.CpuQuota != quota || res.CpuPeriod != period || res.CpuShares != shares ||
		res.CpusetCpus != "0" || res.MemorySwap != 0 || res.HugetlbLimit != nil || res.PidsLimit != nil {
		t.Fatalf("resources: %+v (dropped %v, %v)", res, dropped, err)
	}
	res = &cgroups.Resources{}
	if _, err := ApplyResources(res, r, true); err != nil || len(res.HugetlbLimit) != 1 || res.HugetlbLimit[0].Pagesize != "2MB" {
		t.Fatalf("hugetlb kept: %+v %v", res.HugetlbLimit, err)
	}
	if !cgroups.IsCgroup2UnifiedMode() {
		_, err := ApplyResources(&cgroups.Resources{}, &specs.LinuxResources{Unified: map[string]string{"memory.high": "1"}}, true)
		if !errors.Is(err, ErrInvalidResources) {
			t.Fatalf("unified on a v1 host: %v", err)
		}
	}
}

func TestApplyResources(t *testing.T) {
	res := &cgroups.Resources{Memory: 100 << 20, MemorySwap: 100 << 20, CpuShares: 1024, CpusetCpus: "0"}
	limit, quota := int64(200<<20), int64(30000)
	dropped, err := ApplyResources(res, &specs.LinuxResources{
		Memory:         &specs.LinuxMemory{Limit: &limit},
		CPU:            &specs.LinuxCPU{Quota: &quota},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB"}},
	}, false)
	if err != nil || !dropped {
		t.Fatalf("apply: dropped=%v err=%v", dropped, err)
	}
	// Swap equal to the memory limit (no swap) follows it up; the rest stays.
	if res.Memory != limit || res.MemorySwap != limit || res.CpuQuota != quota || res.CpuShares != 1024 || res.CpusetCpus != "0" || res.HugetlbLimit != nil {
		t.Fatalf("resources: %+v", res)
	}
	swap := int64(-1)
	if _, err := ApplyResources(res, &specs.LinuxResources{Memory: &specs.LinuxMemory{Swap: &swap}}, true); err != nil || res.MemorySwap != -1 {
		t.Fatalf("explicit swap: %+v %v", res, err)
	}
}
