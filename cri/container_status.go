package cri

import (
	"context"
	"encoding/json"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/oci"
	"github.com/crid-dev/crid/podsandbox"
)

var containerStates = map[string]runtime.ContainerState{
	oci.StateCreated: runtime.ContainerState_CONTAINER_CREATED,
	oci.StateRunning: runtime.ContainerState_CONTAINER_RUNNING,
	oci.StateExited:  runtime.ContainerState_CONTAINER_EXITED,
}

// ContainerStatus reports a container's state, exit, image and user.
func (s *runtimeService) ContainerStatus(ctx context.Context, req *runtime.ContainerStatusRequest) (*runtime.ContainerStatusResponse, error) {
	c, err := s.opts.Containers.Get(ctx, req.ContainerId)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &runtime.ContainerStatusResponse{Status: containerStatus(c)}
	if req.Verbose {
		info, err := json.Marshal(c)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encode container info: %v", err)
		}
		resp.Info = map[string]string{"info": string(info)}
		if msg := selinuxNotApplied(c.Config.GetLinux().GetSecurityContext().GetSelinuxOptions()); msg != "" {
			resp.Info["selinux"] = msg
		}
		// The CRI has no field for a container's ID mappings: they are
		// its pod's (KEP-127), shown here as kubelet sent them.
		if sb, err := s.opts.Sandboxes.Get(c.SandboxID); err == nil {
			if u := sb.Config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions(); podsandbox.UsernsMode(u) == runtime.NamespaceMode_POD {
				b, err := protojson.Marshal(u)
				if err != nil {
					return nil, status.Errorf(codes.Internal, "encode user namespace: %v", err)
				}
				resp.Info["userNamespace"] = string(b)
			}
		}
	}
	return resp, nil
}

// containerStatus is the CRI view of a container record.
func containerStatus(c *oci.Container) *runtime.ContainerStatus {
	groups := make([]int64, 0, len(c.Process.User.AdditionalGids))
	for _, g := range c.Process.User.AdditionalGids {
		groups = append(groups, int64(g))
	}
	st := &runtime.ContainerStatus{
		Id:          c.ID,
		Metadata:    c.Config.Metadata,
		State:       containerStates[c.State],
		CreatedAt:   c.CreatedAt,
		StartedAt:   c.StartedAt,
		FinishedAt:  c.FinishedAt,
		ExitCode:    c.ExitCode,
		Image:       &runtime.ImageSpec{Image: c.ImageName},
		ImageRef:    c.ImageRef,
		ImageId:     c.ImageID,
		Reason:      c.Reason,
		Message:     c.Message,
		Labels:      c.Config.Labels,
		Annotations: c.Config.Annotations,
		Mounts:      c.Config.Mounts,
		LogPath:     c.LogPath,
		StopSignal:  c.Config.StopSignal,
		User: &runtime.ContainerUser{Linux: &runtime.LinuxContainerUser{
			Uid: int64(c.Process.User.UID), Gid: int64(c.Process.User.GID), SupplementalGroups: groups,
		}},
	}
	if c.Resources != nil {
		st.Resources = &runtime.ContainerResources{Linux: c.Resources}
	}
	return st
}

// ListContainers lists containers by ID (or prefix), pod, state and labels.
func (s *runtimeService) ListContainers(ctx context.Context, req *runtime.ListContainersRequest) (*runtime.ListContainersResponse, error) {
	f := oci.Filter{ID: req.GetFilter().GetId(), SandboxID: req.GetFilter().GetPodSandboxId(), Selector: req.GetFilter().GetLabelSelector()}
	if sv := req.GetFilter().GetState(); sv != nil {
		for name, st := range containerStates {
			if st == sv.State {
				f.State = name
			}
		}
		if f.State == "" {
			return &runtime.ListContainersResponse{}, nil
		}
	}
	resp := &runtime.ListContainersResponse{}
	for _, c := range s.opts.Containers.List(ctx, f) {
		resp.Containers = append(resp.Containers, &runtime.Container{
			Id:           c.ID,
			PodSandboxId: c.SandboxID,
			Metadata:     c.Config.Metadata,
			Image:        &runtime.ImageSpec{Image: c.ImageName},
			ImageRef:     c.ImageRef,
			ImageId:      c.ImageID,
			State:        containerStates[c.State],
			CreatedAt:    c.CreatedAt,
			Labels:       c.Config.Labels,
			Annotations:  c.Config.Annotations,
		})
	}
	return resp, nil
}
