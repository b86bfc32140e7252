package cri

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criuUnusable is why crid does not checkpoint. Checked on this kind of
// machine (Debian 12, kernel 6.18, criu 3.17.1): `criu check` fails before
// testing any feature — "vdso: Unexpected rt vDSO area bounds", "Could not
// initialize kernel features detection" — because criu 3.17 does not know
// the vDSO layout of kernels this new, so neither libcontainer's
// Checkpoint nor a restore could work.
const criuUnusable = "checkpoint/restore needs CRIU, and Debian's criu 3.17.1 cannot run on this kernel: " +
	"`criu check` fails with \"vdso: Unexpected rt vDSO area bounds\" (kernel feature detection cannot start)"

// CheckpointContainer is refused with the reason (see criuUnusable).
func (s *runtimeService) CheckpointContainer(ctx context.Context, req *runtime.CheckpointContainerRequest) (*runtime.CheckpointContainerResponse, error) {
	if _, err := s.opts.Containers.Get(ctx, req.ContainerId); err != nil {
		return nil, toStatus(err)
	}
	return nil, status.Error(codes.FailedPrecondition, criuUnusable)
}

// CheckpointPod is refused with the reason (see criuUnusable).
func (s *runtimeService) CheckpointPod(_ context.Context, req *runtime.CheckpointPodRequest) (*runtime.CheckpointPodResponse, error) {
	if _, err := s.opts.Sandboxes.Get(req.PodSandboxId); err != nil {
		return nil, toStatus(err)
	}
	return nil, status.Error(codes.FailedPrecondition, criuUnusable)
}

// RestorePod is refused with the reason (see criuUnusable).
func (s *runtimeService) RestorePod(context.Context, *runtime.RestorePodRequest) (*runtime.RestorePodResponse, error) {
	return nil, status.Error(codes.FailedPrecondition, criuUnusable)
}
