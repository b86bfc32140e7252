package cri

import (
	"context"
	"errors"
	"maps"
	"regexp"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/cgroupmgr"
	"github.com/crid-dev/crid/oci/specgen"
)

// UpdateContainerResources applies new limits to a created or running
// container's cgroup and records them for ContainerStatus. Fields left
// zero keep their value, as containerd merges them; a negative or
// out-of-range value is refused naming the field, before anything changes.
func (s *runtimeService) UpdateContainerResources(ctx context.Context, req *runtime.UpdateContainerResourcesRequest) (*runtime.UpdateContainerResourcesResponse, error) {
	if req.Linux == nil {
		if req.Windows != nil {
			return nil, invalidArgument("windows resources do not apply to a Linux runtime")
		}
		return &runtime.UpdateContainerResourcesResponse{}, nil
	}
	if err := validateResources("linux", req.Linux); err != nil {
		return nil, err
	}
	linux, err := s.nri.updateContainer(ctx, req.ContainerId, req.Linux)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := s.applyContainerResources(ctx, req.ContainerId, linux); err != nil {
		return nil, toStatus(err)
	}
	s.nri.postUpdateContainer(ctx, req.ContainerId)
	return &runtime.UpdateContainerResourcesResponse{}, nil
}

// applyContainerResources applies validated resources to a container and
// records them merged over its current ones.
func (s *Server) applyContainerResources(ctx context.Context, idOrPrefix string, linux *runtime.LinuxContainerResources) error {
	return s.opts.Containers.Update(ctx, idOrPrefix, func(current *runtime.LinuxContainerResources) (*runtime.LinuxContainerResources, *specs.LinuxResources, error) {
		res, err := specgen.Resources(linux)
		if err != nil {
			return nil, nil, err
		}
		return mergeResources(current, linux), res, nil
	})
}

// UpdatePodSandboxResources applies the pod's new total resources to its
// cgroup (the pod cgroup parent its containers sit under).
func (s *runtimeService) UpdatePodSandboxResources(ctx context.Context, req *runtime.UpdatePodSandboxResourcesRequest) (*runtime.UpdatePodSandboxResourcesResponse, error) {
	if req.Overhead != nil {
		if err := validateResources("overhead", req.Overhead); err != nil {
			return nil, err
		}
	}
	if req.Resources == nil {
		return &runtime.UpdatePodSandboxResourcesResponse{}, nil
	}
	if err := validateResources("resources", req.Resources); err != nil {
		return nil, err
	}
	sb, err := s.opts.Sandboxes.Get(req.PodSandboxId)
	if err != nil {
		return nil, toStatus(err)
	}
	res, err := specgen.Resources(req.Resources)
	if err != nil {
		return nil, toStatus(err)
	}
	if !s.opts.Cgroups.Exists(sb.CgroupParent) {
		return nil, status.Errorf(codes.FailedPrecondition, "pod sandbox %s: its cgroup %s does not exist", sb.ID, sb.CgroupParent)
	}
	updated, err := s.nri.updatePod(ctx, sb, req.Overhead, req.Resources)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := s.opts.Cgroups.Update(sb.CgroupParent, res); err != nil {
		if errors.Is(err, cgroupmgr.ErrInvalidResources) {
			return nil, invalidArgument("resources: pod sandbox %s: %v", sb.ID, err)
		}
		return nil, status.Errorf(codes.Internal, "pod sandbox %s: %v", sb.ID, err)
	}
	updated()
	return &runtime.UpdatePodSandboxResourcesResponse{}, nil
}

// cpusetList is the kernel's list format: "0-3,5,7-8".
var cpusetList = regexp.MustCompile(`^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$`)

// hugepageSize is a page size as kubelet names it: "2MB", "1GB", "64KB".
var hugepageSize = regexp.MustCompile(`^[0-9]+(KB|MB|GB|TB|PB)$`)

// validateResources checks what the kernel would refuse or misread, naming
// the field under prefix.
func validateResources(prefix string, r *runtime.LinuxContainerResources) error {
	field := func(name string) string { return prefix + "." + name }
	for _, v := range []struct {
		name string
		val  int64
	}{
		{"cpu_period", r.CpuPeriod}, {"cpu_shares", r.CpuShares}, {"memory_limit_in_bytes", r.MemoryLimitInBytes},
	} {
		if v.val < 0 {
			return invalidArgument("%s must not be negative, got %d", field(v.name), v.val)
		}
	}
	switch {
	case r.CpuQuota < -1:
		return invalidArgument("%s must be -1 (no limit), 0 (unchanged) or positive, got %d", field("cpu_quota"), r.CpuQuota)
	case r.CpuQuota > 0 && r.CpuQuota < 1000:
		return invalidArgument("%s %d is below the kernel's minimum of 1000 µs", field("cpu_quota"), r.CpuQuota)
	case r.CpuPeriod != 0 && (r.CpuPeriod < 1000 || r.CpuPeriod > 1000000):
		return invalidArgument("%s %d is outside the kernel's 1000..1000000 µs", field("cpu_period"), r.CpuPeriod)
	case r.CpuShares > 262144:
		return invalidArgument("%s %d is above the kernel's maximum of 262144", field("cpu_shares"), r.CpuShares)
	case r.MemorySwapLimitInBytes < -1:
		return invalidArgument("%s must be -1 (unlimited), 0 (unchanged) or positive, got %d", field("memory_swap_limit_in_bytes"), r.MemorySwapLimitInBytes)
	case r.MemorySwapLimitInBytes > 0 && r.MemoryLimitInBytes > 0 && r.MemorySwapLimitInBytes < r.MemoryLimitInBytes:
		return invalidArgument("%s %d is below %s %d", field("memory_swap_limit_in_bytes"), r.MemorySwapLimitInBytes, field("memory_limit_in_bytes"), r.MemoryLimitInBytes)
	case r.OomScoreAdj < -1000 || r.OomScoreAdj > 1000:
		return invalidArgument("%s %d is outside -1000..1000", field("oom_score_adj"), r.OomScoreAdj)
	case r.CpusetCpus != "" && !cpusetList.MatchString(r.CpusetCpus):
		return invalidArgument("%s %q is not a CPU list like \"0-3,5\"", field("cpuset_cpus"), r.CpusetCpus)
	case r.CpusetMems != "" && !cpusetList.MatchString(r.CpusetMems):
		return invalidArgument("%s %q is not a memory node list like \"0-1\"", field("cpuset_mems"), r.CpusetMems)
	}
	for i, h := range r.HugepageLimits {
		if h == nil || !hugepageSize.MatchString(h.PageSize) {
			return invalidArgument("%s[%d].page_size %q is not a page size like \"2MB\"", field("hugepage_limits"), i, h.GetPageSize())
		}
	}
	return validateUnified(prefix, r.Unified, cgroupmgr.Mode())
}

// unifiedKey is a cgroup v2 interface file: controller.name, no path.
var unifiedKey = regexp.MustCompile(`^[a-z]+\.[a-z0-9_.]+$`)

// validateUnified checks linux.resources.unified: cgroup v2 files, which a
// v1 or hybrid host (mode) does not have, as containerd and CRI-O refuse
// them there.
func validateUnified(prefix string, unified map[string]string, mode string) error {
	if len(unified) == 0 {
		return nil
	}
	if mode != "v2" {
		return invalidArgument("%s.unified: cgroup v2 settings need a cgroup v2 host; this one is cgroup %s", prefix, mode)
	}
	for _, k := range slices.Sorted(maps.Keys(unified)) {
		if !unifiedKey.MatchString(k) {
			return invalidArgument("%s.unified: %q is not a controller's interface file (like \"memory.high\")", prefix, k)
		}
		if strings.ContainsAny(unified[k], "\n\x00") {
			return invalidArgument("%s.unified[%q]: the value must be one line", prefix, k)
		}
	}
	return nil
}

// mergeResources is current with every field update sets replaced: zero
// fields keep the current value; hugepage limits, when given, replace the
// list; unified keys are merged.
func mergeResources(current, update *runtime.LinuxContainerResources) *runtime.LinuxContainerResources {
	out := &runtime.LinuxContainerResources{}
	if current != nil {
		out = proto.Clone(current).(*runtime.LinuxContainerResources)
	}
	set := func(dst *int64, v int64) {
		if v != 0 {
			*dst = v
		}
	}
	set(&out.CpuPeriod, update.CpuPeriod)
	set(&out.CpuQuota, update.CpuQuota)
	set(&out.CpuShares, update.CpuShares)
	set(&out.MemoryLimitInBytes, update.MemoryLimitInBytes)
	set(&out.MemorySwapLimitInBytes, update.MemorySwapLimitInBytes)
	if update.CpusetCpus != "" {
		out.CpusetCpus = update.CpusetCpus
	}
	if update.CpusetMems != "" {
		out.CpusetMems = update.CpusetMems
	}
	if len(update.HugepageLimits) > 0 {
		out.HugepageLimits = nil
		for _, h := range update.HugepageLimits {
			out.HugepageLimits = append(out.HugepageLimits, proto.Clone(h).(*runtime.HugepageLimit))
		}
	}
	if len(update.Unified) > 0 {
		if out.Unified == nil {
			out.Unified = map[string]string{}
		}
		maps.Copy(out.Unified, update.Unified)
	}
	return out
}
