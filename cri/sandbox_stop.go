package cri

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StopPodSandbox stops a pod's processes and network; it is idempotent.
func (s *runtimeService) StopPodSandbox(ctx context.Context, req *runtime.StopPodSandboxRequest) (*runtime.StopPodSandboxResponse, error) {
	if err := s.opts.Sandboxes.Stop(ctx, req.PodSandboxId); err != nil {
		return nil, toStatus(err)
	}
	return &runtime.StopPodSandboxResponse{}, nil
}

// RemovePodSandbox removes a pod and all it owns; an unknown pod is no error.
func (s *runtimeService) RemovePodSandbox(ctx context.Context, req *runtime.RemovePodSandboxRequest) (*runtime.RemovePodSandboxResponse, error) {
	if err := s.nri.removePodContainers(ctx, req.PodSandboxId); err != nil {
		return nil, toStatus(err)
	}
	if err := s.opts.Sandboxes.Remove(ctx, req.PodSandboxId); err != nil {
		return nil, toStatus(err)
	}
	return &runtime.RemovePodSandboxResponse{}, nil
}
