package oci

import (
	"context"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/oci/protocol"
)

// Update applies new cgroup limits to a created or running container; nil
// fields keep their value.
func (r *Runtime) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	if _, _, err := r.call(ctx, protocol.MethodUpdate, protocol.UpdateRequest{ID: id, Resources: res}, nil, nil, true); err != nil {
		return fmt.Errorf("update resources of container %s: %w", id, err)
	}
	return nil
}

// ExitBatch is the answer of WaitExits: the containers that exited since
// the caller's position, or Reset when that position means nothing to the
// monitor serving now (it was restarted, or the caller fell too far behind)
// and every container must be looked at.
type ExitBatch struct {
	Epoch string
	Seq   uint64
	IDs   []string
	Reset bool
}

// WaitExits blocks until a container exits after position (epoch, after),
// which a previous batch returned; the zero position gets a Reset at once.
// A monitor restart is waited out and answered with a Reset.
func (r *Runtime) WaitExits(ctx context.Context, epoch string, after uint64) (ExitBatch, error) {
	var reply protocol.ExitsReply
	if _, _, err := r.call(ctx, protocol.MethodExits, protocol.ExitsRequest{Epoch: epoch, After: after}, nil, &reply, true); err != nil {
		return ExitBatch{}, fmt.Errorf("wait for container exits: %w", err)
	}
	return ExitBatch{Epoch: reply.Epoch, Seq: reply.Seq, IDs: reply.IDs, Reset: reply.Reset}, nil
}

// ResourceUpdate turns a container's current CRI resources (nil when it
// has none recorded) into the ones to record and the limits to apply.
type ResourceUpdate func(current *runtime.LinuxContainerResources) (*runtime.LinuxContainerResources, *specs.LinuxResources, error)

// Update applies new limits to a created or running container's cgroup and
// records them, so ContainerStatus shows them and they survive a restart.
func (c *Containers) Update(ctx context.Context, idOrPrefix string, update ResourceUpdate) error {
	ctr, err := c.Get(ctx, idOrPrefix)
	if err != nil {
		return err
	}
	if ctr.State == StateExited {
		return fmt.Errorf("%w: container %s has exited", ErrFailedPrecondition, ctr.ID)
	}
	merged, res, err := update(ctr.Resources)
	if err != nil {
		return err
	}
	if err := c.rt.Update(ctx, ctr.ID, res); err != nil {
		return err
	}
	live, err := c.resolve(ctr.ID)
	if err != nil {
		return err
	}
	c.mu.Lock()
	live.Resources = merged
	c.mu.Unlock()
	if err := c.persist(live); err != nil {
		return fmt.Errorf("record resources of container %s: %w", ctr.ID, err)
	}
	return nil
}
