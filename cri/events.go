package cri

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/events"
	"github.com/crid-dev/crid/oci"
)

// eventBuffer is how many events a GetContainerEvents client may lag
// behind before it is dropped (containerd keeps 1000).
const eventBuffer = 1000

var eventTypes = map[events.Type]runtime.ContainerEventType{
	events.ContainerCreated: runtime.ContainerEventType_CONTAINER_CREATED_EVENT,
	events.ContainerStarted: runtime.ContainerEventType_CONTAINER_STARTED_EVENT,
	events.ContainerStopped: runtime.ContainerEventType_CONTAINER_STOPPED_EVENT,
	events.ContainerDeleted: runtime.ContainerEventType_CONTAINER_DELETED_EVENT,
}

var eventClients atomic.Int64

// GetContainerEvents streams the lifecycle events of containers and pod
// sandboxes, in the order they happened, until the client leaves. Each
// event carries the pod's status and the statuses of its containers as
// they are when it is sent (a deleted pod's status is absent). The response
// header is sent once the client is subscribed: an event after it is never
// missed. A client that falls eventBuffer events behind is dropped with
// ResourceExhausted.
func (s *runtimeService) GetContainerEvents(_ *runtime.GetEventsRequest, stream grpc.ServerStreamingServer[runtime.ContainerEventResponse]) error {
	if s.opts.Events == nil {
		return status.Error(codes.Unimplemented, "container events are not wired in this daemon")
	}
	ctx := stream.Context()
	sub := s.opts.Events.Subscribe(fmt.Sprintf("GetContainerEvents#%d", eventClients.Add(1)), eventBuffer)
	defer sub.Close()
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-sub.Events():
			if !ok {
				if err := sub.Err(); errors.Is(err, events.ErrDropped) {
					return status.Error(codes.ResourceExhausted, err.Error())
				}
				return status.Error(codes.Unavailable, "crid is shutting down")
			}
			if err := stream.Send(s.containerEvent(ctx, e)); err != nil {
				return err
			}
		}
	}
}

// containerEvent builds the CRI event as containerd does: the pod's status
// and the statuses of all its containers.
func (s *runtimeService) containerEvent(ctx context.Context, e events.Event) *runtime.ContainerEventResponse {
	resp := &runtime.ContainerEventResponse{
		ContainerId:        e.ContainerID,
		ContainerEventType: eventTypes[e.Type],
		CreatedAt:          e.At.UnixNano(),
	}
	if sb, err := s.opts.Sandboxes.Get(e.SandboxID); err == nil {
		resp.PodSandboxStatus = sandboxStatus(sb)
	}
	for _, c := range s.opts.Containers.List(ctx, oci.Filter{SandboxID: e.SandboxID}) {
		if c.SandboxID == e.SandboxID {
			resp.ContainersStatuses = append(resp.ContainersStatuses, containerStatus(c))
		}
	}
	return resp
}
