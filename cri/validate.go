package cri

import (
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// requiredFields lists, per request, the fields that must be set: a message
// present, a string or list non-empty. Paths use the proto field names, so an
// error names the field exactly as the CRI defines it. The table is checked
// against the descriptors by a unit test.
var requiredFields = map[protoreflect.FullName][]string{
	"runtime.v1.RunPodSandboxRequest":             {"config", "config.metadata", "config.metadata.name", "config.metadata.namespace", "config.metadata.uid"},
	"runtime.v1.StopPodSandboxRequest":            {"pod_sandbox_id"},
	"runtime.v1.RemovePodSandboxRequest":          {"pod_sandbox_id"},
	"runtime.v1.PodSandboxStatusRequest":          {"pod_sandbox_id"},
	"runtime.v1.PodSandboxStatsRequest":           {"pod_sandbox_id"},
	"runtime.v1.PortForwardRequest":               {"pod_sandbox_id"},
	"runtime.v1.UpdatePodSandboxResourcesRequest": {"pod_sandbox_id"},
	"runtime.v1.CheckpointPodRequest":             {"pod_sandbox_id"},
	"runtime.v1.RestorePodRequest":                {"checkpoint_path"},
	"runtime.v1.CreateContainerRequest":           {"pod_sandbox_id", "config", "config.metadata", "config.metadata.name", "config.image", "config.image.image"},
	"runtime.v1.StartContainerRequest":            {"container_id"},
	"runtime.v1.StopContainerRequest":             {"container_id"},
	"runtime.v1.RemoveContainerRequest":           {"container_id"},
	"runtime.v1.ContainerStatusRequest":           {"container_id"},
	"runtime.v1.ContainerStatsRequest":            {"container_id"},
	"runtime.v1.UpdateContainerResourcesRequest":  {"container_id"},
	"runtime.v1.ReopenContainerLogRequest":        {"container_id"},
	"runtime.v1.ExecSyncRequest":                  {"container_id", "cmd"},
	"runtime.v1.ExecRequest":                      {"container_id", "cmd"},
	"runtime.v1.AttachRequest":                    {"container_id"},
	"runtime.v1.CheckpointContainerRequest":       {"container_id"},
	"runtime.v1.PullImageRequest":                 {"image", "image.image"},
	"runtime.v1.ImageStatusRequest":               {"image", "image.image"},
	"runtime.v1.RemoveImageRequest":               {"image", "image.image"},
}

// validateRequest checks the generic rules of a request before any handler
// runs, so every RPC — built or not — rejects malformed input the same way.
func validateRequest(req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	msg := m.ProtoReflect()
	for _, path := range requiredFields[msg.Descriptor().FullName()] {
		if !fieldSet(msg, path) {
			return invalidArgument("%s is required", path)
		}
	}
	switch r := req.(type) {
	case *runtime.RunPodSandboxRequest:
		return validatePortMappings(r.GetConfig().GetPortMappings())
	case *runtime.StopContainerRequest:
		if r.Timeout < 0 {
			return invalidArgument("timeout must not be negative, got %d", r.Timeout)
		}
	case *runtime.ExecSyncRequest:
		if r.Timeout < 0 {
			return invalidArgument("timeout must not be negative, got %d", r.Timeout)
		}
	case *runtime.ExecRequest:
		if !r.Stdin && !r.Stdout && !r.Stderr {
			return invalidArgument("one of stdin, stdout and stderr must be set")
		}
	case *runtime.AttachRequest:
		if !r.Stdin && !r.Stdout && !r.Stderr {
			return invalidArgument("one of stdin, stdout and stderr must be set")
		}
	}
	return nil
}

func validatePortMappings(pms []*runtime.PortMapping) error {
	for i, pm := range pms {
		field := fmt.Sprintf("config.port_mappings[%d]", i)
		if pm == nil {
			return invalidArgument("%s is null", field)
		}
		if pm.ContainerPort <= 0 || pm.ContainerPort > 65535 {
			return invalidArgument("%s.container_port %d is not a port number (1-65535)", field, pm.ContainerPort)
		}
		if pm.HostPort < 0 || pm.HostPort > 65535 {
			return invalidArgument("%s.host_port %d is not a port number (0-65535)", field, pm.HostPort)
		}
		if _, ok := runtime.Protocol_name[int32(pm.Protocol)]; !ok {
			return invalidArgument("%s.protocol %d is not a known protocol", field, pm.Protocol)
		}
	}
	return nil
}

// fieldSet reports whether the dotted path is populated in msg.
func fieldSet(msg protoreflect.Message, path string) bool {
	parts := strings.Split(path, ".")
	for i, name := range parts {
		fd := msg.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil || !msg.Has(fd) {
			return false
		}
		v := msg.Get(fd)
		switch {
		case fd.IsList():
			if v.List().Len() == 0 {
				return false
			}
		case fd.Kind() == protoreflect.StringKind:
			if strings.TrimSpace(v.String()) == "" {
				return false
			}
		case fd.Kind() == protoreflect.MessageKind && i < len(parts)-1:
			msg = v.Message()
		}
	}
	return true
}

func invalidArgument(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}
