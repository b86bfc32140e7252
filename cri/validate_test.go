package cri

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Every path in the table must name real fields, or a typo would silently
// disable a check.
func TestRequiredFieldsTableMatchesDescriptors(t *testing.T) {
	for name, paths := range requiredFields {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for _, path := range paths {
			md := d.(protoreflect.MessageDescriptor)
			for _, part := range strings.Split(path, ".") {
				fd := md.Fields().ByName(protoreflect.Name(part))
				if fd == nil {
					t.Errorf("%s: no field %q in path %s", name, part, path)
					break
				}
				md = fd.Message()
			}
		}
	}
}

func TestValidateRequest(t *testing.T) {
	meta := &runtime.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"}
	tests := []struct {
		name    string
		req     any
		wantErr string
	}{
		{"status without id", &runtime.PodSandboxStatusRequest{}, "pod_sandbox_id is required"},
		{"status blank id", &runtime.PodSandboxStatusRequest{PodSandboxId: "  "}, "pod_sandbox_id is required"},
		{"status ok", &runtime.PodSandboxStatusRequest{PodSandboxId: "abc"}, ""},
		{"run without config", &runtime.RunPodSandboxRequest{}, "config is required"},
		{"run without metadata", &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{}}, "config.metadata is required"},
		{"run without uid", &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "p", Namespace: "n"}}}, "config.metadata.uid is required"},
		{"run bad port", &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{Metadata: meta,
			PortMappings: []*runtime.PortMapping{{ContainerPort: 80}, {ContainerPort: 70000}}}}, "config.port_mappings[1].container_port"},
		{"run bad host port", &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{Metadata: meta,
			PortMappings: []*runtime.PortMapping{{ContainerPort: 80, HostPort: -1}}}}, "config.port_mappings[0].host_port"},
		{"run bad protocol", &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{Metadata: meta,
			PortMappings: []*runtime.PortMapping{{ContainerPort: 80, Protocol: 9}}}}, "config.port_mappings[0].protocol"},
		{"run ok", &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{Metadata: meta}}, ""},
		{"create without image", &runtime.CreateContainerRequest{PodSandboxId: "p", Config: &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: "c"}}}, "config.image is required"},
		{"exec sync without cmd", &runtime.ExecSyncRequest{ContainerId: "c"}, "cmd is required"},
		{"exec sync negative timeout", &runtime.ExecSyncRequest{ContainerId: "c", Cmd: []string{"true"}, Timeout: -1}, "timeout"},
		{"exec without streams", &runtime.ExecRequest{ContainerId: "c", Cmd: []string{"sh"}}, "stdin, stdout and stderr"},
		{"stop negative timeout", &runtime.StopContainerRequest{ContainerId: "c", Timeout: -5}, "timeout"},
		{"pull without image", &runtime.PullImageRequest{Image: &runtime.ImageSpec{}}, "image.image is required"},
		{"list has nothing required", &runtime.ListPodSandboxRequest{}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := validateRequest(tc.req)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want InvalidArgument mentioning %q", err, tc.wantErr)
			}
		})
	}
}
