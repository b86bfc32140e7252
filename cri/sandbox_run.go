package cri

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RunPodSandbox creates and starts a pod sandbox.
func (s *runtimeService) RunPodSandbox(ctx context.Context, req *runtime.RunPodSandboxRequest) (*runtime.RunPodSandboxResponse, error) {
	id, err := s.opts.Sandboxes.Run(ctx, req.Config, req.RuntimeHandler)
	if err != nil {
		return nil, toStatus(err)
	}
	return &runtime.RunPodSandboxResponse{PodSandboxId: id}, nil
}
