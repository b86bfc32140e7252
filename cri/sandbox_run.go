package cri

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/oci/specgen"
)

// RunPodSandbox creates and starts a pod sandbox.
func (s *runtimeService) RunPodSandbox(ctx context.Context, req *runtime.RunPodSandboxRequest) (*runtime.RunPodSandboxResponse, error) {
	id, err := s.opts.Sandboxes.Run(ctx, req.Config, req.RuntimeHandler)
	if err != nil {
		return nil, toStatus(err)
	}
	if msg := selinuxNotApplied(req.Config.GetLinux().GetSecurityContext().GetSelinuxOptions()); msg != "" {
		klog.InfoS("SELinux options not applied", "podSandboxID", id, "pod", req.Config.GetMetadata().GetName(),
			"namespace", req.Config.GetMetadata().GetNamespace(), "detail", msg)
	}
	return &runtime.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// selinuxNotApplied reports a pod's or a container's SELinux options
// (the field has the same path in both requests), which crid takes and
// does not apply (specgen.SELinuxNotApplied says why).
func selinuxNotApplied(o *runtime.SELinuxOption) string {
	return specgen.SELinuxNotApplied("config.linux.security_context.selinux_options", o)
}
