package cri

import (
	"fmt"
	"path/filepath"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/hostcheck"
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

// checkIdmapSources tries each idmapped bind mount of a user-namespaced
// container's spec before the runtime does, so that a source the kernel
// cannot idmap (a tmpfs such as a memory-backed emptyDir before 6.3, or
// sysfs/procfs) fails CreateContainer naming the mount, not with the
// runtime's bare EINVAL from mount_setattr.
func checkIdmapSources(cfg *runtime.ContainerConfig, spec *specs.Spec, userns string) error {
	for _, m := range spec.Mounts {
		if m.Type != "bind" || !slices.Contains(m.Options, "idmap") {
			continue
		}
		if err := hostcheck.CanIdmap(m.Source, userns, slices.Contains(m.Options, "rbind")); err != nil {
			return status.Errorf(codes.FailedPrecondition, "%s: cannot be idmapped into the pod's user namespace (userns_options mode POD): %v", mountName(cfg, m), err)
		}
	}
	return nil
}

// mountName names a spec mount by the config mount it comes from, when
// one does.
func mountName(cfg *runtime.ContainerConfig, m specs.Mount) string {
	for i, cm := range cfg.GetMounts() {
		if filepath.Clean(cm.ContainerPath) == filepath.Clean(m.Destination) {
			return fmt.Sprintf("config.mounts[%d] (host_path %q, container_path %q)", i, cm.HostPath, cm.ContainerPath)
		}
	}
	return fmt.Sprintf("the mount of %s on %s", m.Source, m.Destination)
}
