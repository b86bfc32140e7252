package cgroupmgr

import (
	"fmt"
	"maps"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Update writes new limits to an existing cgroup (a pod's); nil fields are
// left alone. Device rules are never touched, and hugepage limits are
// dropped where the host has no hugetlb controller crid can reach.
func (m *Manager) Update(cgroupPath string, r *specs.LinuxResources) error {
	res := resourcesFrom(r, hugetlbReachable())
	mgr, err := m.manager(cgroupPath)
	if err != nil {
		return err
	}
	if err := mgr.Set(res); err != nil {
		return fmt.Errorf("update cgroup %s: %w", cgroupPath, err)
	}
	return nil
}

// resourcesFrom translates spec limits to the cgroup library's, leaving
// devices out (SkipDevices): an update must not reset device access.
func resourcesFrom(r *specs.LinuxResources, hugetlb bool) *cgroups.Resources {
	res := &cgroups.Resources{SkipDevices: true}
	if mem := r.Memory; mem != nil {
		if mem.Limit != nil {
			res.Memory = *mem.Limit
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
		res.CpusetCpus, res.CpusetMems = cpu.Cpus, cpu.Mems
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		l := *r.Pids.Limit
		res.PidsLimit = &l
	}
	if hugetlb {
		for _, h := range r.HugepageLimits {
			res.HugetlbLimit = append(res.HugetlbLimit, &cgroups.HugepageLimit{Pagesize: h.Pagesize, Limit: h.Limit})
		}
	}
	if len(r.Unified) > 0 {
		res.Unified = maps.Clone(r.Unified)
	}
	return res
}

// hugetlbReachable: on v2 the controller is there; on v1 it needs its own
// hierarchy (on hybrid hosts it may sit alone on the v2 mount).
func hugetlbReachable() bool {
	if cgroups.IsCgroup2UnifiedMode() {
		return true
	}
	_, err := cgroups.FindCgroupMountpoint("", "hugetlb")
	return err == nil
}
