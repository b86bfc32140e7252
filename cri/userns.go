package cri

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/podsandbox"
)

// usernsField names a container's user namespace options in errors.
const usernsField = "config.linux.security_context.namespace_options.userns_options"

// checkContainerUserns checks a container's user namespace options: a
// container lives in its pod's user namespace, so what it asks for, when
// it asks, must be what the pod has (kubelet sends the pod's options).
func checkContainerUserns(pod *runtime.PodSandboxConfig, cfg *runtime.ContainerConfig) error {
	u := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions()
	if u == nil {
		return nil
	}
	if err := podsandbox.ValidateUserns(usernsField, u); err != nil {
		return toStatus(err)
	}
	podU := pod.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions()
	if podsandbox.UsernsMode(u) != podsandbox.UsernsMode(podU) || (podsandbox.UsernsMode(u) == runtime.NamespaceMode_POD && !proto.Equal(u, podU)) {
		return status.Errorf(codes.InvalidArgument, "%s: a container shares its pod's user namespace: mode %s with uids %v and gids %v, not mode %s with uids %v and gids %v",
			usernsField, podsandbox.UsernsMode(podU), podU.GetUids(), podU.GetGids(), podsandbox.UsernsMode(u), u.GetUids(), u.GetGids())
	}
	return nil
}
