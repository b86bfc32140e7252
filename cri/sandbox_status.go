package cri

import (
	"context"
	"encoding/json"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/podsandbox"
)

// PodSandboxStatus reports a pod's state, IPs and namespaces.
func (s *runtimeService) PodSandboxStatus(_ context.Context, req *runtime.PodSandboxStatusRequest) (*runtime.PodSandboxStatusResponse, error) {
	sb, err := s.opts.Sandboxes.Get(req.PodSandboxId)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &runtime.PodSandboxStatusResponse{Status: sandboxStatus(sb), Timestamp: time.Now().UnixNano()}
	if req.Verbose {
		info, err := json.Marshal(sb)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encode sandbox info: %v", err)
		}
		resp.Info = map[string]string{"info": string(info)}
		if msg := selinuxNotApplied(sb.Config.GetLinux().GetSecurityContext().GetSelinuxOptions()); msg != "" {
			resp.Info["selinux"] = msg
		}
	}
	return resp, nil
}

// sandboxStatus is the CRI view of a sandbox record.
func sandboxStatus(sb *podsandbox.Sandbox) *runtime.PodSandboxStatus {
	st := &runtime.PodSandboxStatus{
		Id:             sb.ID,
		Metadata:       sb.Config.Metadata,
		State:          sandboxState(sb.State),
		CreatedAt:      sb.CreatedAt,
		Network:        &runtime.PodSandboxNetworkStatus{},
		Linux:          &runtime.LinuxPodSandboxStatus{Namespaces: &runtime.Namespace{Options: sb.Config.GetLinux().GetSecurityContext().GetNamespaceOptions()}},
		Labels:         sb.Config.Labels,
		Annotations:    sb.Config.Annotations,
		RuntimeHandler: sb.RuntimeHandler,
	}
	if len(sb.IPs) > 0 {
		st.Network.Ip = sb.IPs[0]
		for _, ip := range sb.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtime.PodIP{Ip: ip})
		}
	}
	return st
}

// ListPodSandbox lists pods, filtered by ID (or prefix), state and labels.
func (s *runtimeService) ListPodSandbox(_ context.Context, req *runtime.ListPodSandboxRequest) (*runtime.ListPodSandboxResponse, error) {
	f := podsandbox.Filter{ID: req.GetFilter().GetId(), Selector: req.GetFilter().GetLabelSelector()}
	if sv := req.GetFilter().GetState(); sv != nil {
		st := podsandbox.StateNotReady
		if sv.State == runtime.PodSandboxState_SANDBOX_READY {
			st = podsandbox.StateReady
		}
		f.State = &st
	}
	resp := &runtime.ListPodSandboxResponse{}
	for _, sb := range s.opts.Sandboxes.List(f) {
		resp.Items = append(resp.Items, &runtime.PodSandbox{
			Id:             sb.ID,
			Metadata:       sb.Config.Metadata,
			State:          sandboxState(sb.State),
			CreatedAt:      sb.CreatedAt,
			Labels:         sb.Config.Labels,
			Annotations:    sb.Config.Annotations,
			RuntimeHandler: sb.RuntimeHandler,
		})
	}
	return resp, nil
}

func sandboxState(s podsandbox.State) runtime.PodSandboxState {
	if s == podsandbox.StateReady {
		return runtime.PodSandboxState_SANDBOX_READY
	}
	return runtime.PodSandboxState_SANDBOX_NOTREADY
}
