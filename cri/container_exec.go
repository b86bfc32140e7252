package cri

import (
	"context"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ExecSync runs a command in a container and returns its output; a command
// that outlives the timeout is killed.
func (s *runtimeService) ExecSync(ctx context.Context, req *runtime.ExecSyncRequest) (*runtime.ExecSyncResponse, error) {
	res, err := s.opts.Containers.ExecSync(ctx, req.ContainerId, req.Cmd, time.Duration(req.Timeout)*time.Second)
	if err != nil {
		return nil, toStatus(err)
	}
	return &runtime.ExecSyncResponse{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: int32(res.Exit.Code)}, nil
}

// ReopenContainerLog reopens a container's log file after kubelet rotated it.
func (s *runtimeService) ReopenContainerLog(ctx context.Context, req *runtime.ReopenContainerLogRequest) (*runtime.ReopenContainerLogResponse, error) {
	if err := s.opts.Containers.ReopenLog(ctx, req.ContainerId); err != nil {
		return nil, toStatus(err)
	}
	return &runtime.ReopenContainerLogResponse{}, nil
}
