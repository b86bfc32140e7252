package cri

import (
	"context"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StopContainer stops a container within the timeout, then kills it.
func (s *runtimeService) StopContainer(ctx context.Context, req *runtime.StopContainerRequest) (*runtime.StopContainerResponse, error) {
	if err := s.nri.stopContainer(ctx, req.ContainerId, time.Duration(req.Timeout)*time.Second); err != nil {
		return nil, toStatus(err)
	}
	return &runtime.StopContainerResponse{}, nil
}

// RemoveContainer removes a container, killing it first if it runs.
func (s *runtimeService) RemoveContainer(ctx context.Context, req *runtime.RemoveContainerRequest) (*runtime.RemoveContainerResponse, error) {
	if err := s.nri.removeContainer(ctx, req.ContainerId); err != nil {
		return nil, toStatus(err)
	}
	return &runtime.RemoveContainerResponse{}, nil
}
