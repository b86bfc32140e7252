package specgen

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// setResources translates CRI resources into cgroup settings. Limits of a
// controller the host lacks are dropped later, by the monitor, which knows
// the host's cgroups.
func setResources(s *specs.Spec, r *runtime.LinuxContainerResources) error {
	if r == nil {
		return nil
	}
	res, err := Resources(r)
	if err != nil {
		return err
	}
	res.Devices = s.Linux.Resources.Devices
	s.Linux.Resources = res
	adj := int(r.OomScoreAdj)
	s.Process.OOMScoreAdj = &adj
	return nil
}

// Resources converts CRI resources to runtime-spec ones; also used by
// UpdateContainerResources.
func Resources(r *runtime.LinuxContainerResources) (*specs.LinuxResources, error) {
	for _, v := range []struct {
		name string
		val  int64
	}{
		{"cpu_period", r.CpuPeriod}, {"cpu_quota", r.CpuQuota}, {"cpu_shares", r.CpuShares},
		{"memory_limit_in_bytes", r.MemoryLimitInBytes}, {"memory_swap_limit_in_bytes", r.MemorySwapLimitInBytes},
	} {
		if v.val < 0 && !(v.name == "cpu_quota" && v.val == -1) {
			return nil, fmt.Errorf("%w: linux.resources.%s must not be negative, got %d", ErrInvalid, v.name, v.val)
		}
	}
	if r.OomScoreAdj < -1000 || r.OomScoreAdj > 1000 {
		return nil, fmt.Errorf("%w: linux.resources.oom_score_adj %d is outside -1000..1000", ErrInvalid, r.OomScoreAdj)
	}
	out := &specs.LinuxResources{CPU: &specs.LinuxCPU{}, Memory: &specs.LinuxMemory{}}
	if r.CpuPeriod != 0 {
		p := uint64(r.CpuPeriod)
		out.CPU.Period = &p
	}
	if r.CpuQuota != 0 {
		q := r.CpuQuota
		out.CPU.Quota = &q
	}
	if r.CpuShares != 0 {
		sh := uint64(r.CpuShares)
		out.CPU.Shares = &sh
	}
	out.CPU.Cpus, out.CPU.Mems = r.CpusetCpus, r.CpusetMems
	if r.MemoryLimitInBytes != 0 {
		l := r.MemoryLimitInBytes
		out.Memory.Limit = &l
	}
	if r.MemorySwapLimitInBytes != 0 {
		sw := r.MemorySwapLimitInBytes
		out.Memory.Swap = &sw
	}
	for _, h := range r.HugepageLimits {
		out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.PageSize, Limit: h.Limit})
	}
	if len(r.Unified) > 0 {
		out.Unified = map[string]string{}
		for _, k := range sortedKeys(r.Unified) {
			out.Unified[k] = r.Unified[k]
		}
	}
	return out, nil
}
