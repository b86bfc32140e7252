package cri

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/oci"
)

// A TARGET PID namespace must name a container of the same pod: unknown is
// NotFound, another pod's is InvalidArgument, both naming target_id.
func TestCheckTarget(t *testing.T) {
	mine := &oci.Container{ID: "c1", SandboxID: "pod-a"}
	other := &oci.Container{ID: "c2", SandboxID: "pod-b"}
	for _, tc := range []struct {
		name, target string
		ctr          *oci.Container
		err          error
		code         codes.Code
	}{
		{"same pod", "c1", mine, nil, codes.OK},
		{"no target", "", nil, fmt.Errorf("%w: empty", oci.ErrNotFound), codes.InvalidArgument},
		{"unknown", "c9", nil, fmt.Errorf("container c9: %w", oci.ErrNotFound), codes.NotFound},
		{"ambiguous", "c", nil, fmt.Errorf("%w: c", oci.ErrAmbiguous), codes.InvalidArgument},
		{"other pod", "c2", other, nil, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkTarget("pod-a", tc.target, tc.ctr, tc.err)
			if status.Code(err) != tc.code {
				t.Fatalf("code %v (%v), want %v", status.Code(err), err, tc.code)
			}
			if err != nil && !strings.Contains(err.Error(), "config.linux.security_context.namespace_options.target_id") {
				t.Fatalf("error does not name the field: %v", err)
			}
		})
	}
}

// A privileged container needs a privileged pod.
func TestCheckPrivileged(t *testing.T) {
	pod := func(priv bool) *runtime.PodSandboxConfig {
		return &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{Privileged: priv}}}
	}
	ctr := func(priv bool) *runtime.ContainerConfig {
		return &runtime.ContainerConfig{Linux: &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{Privileged: priv}}}
	}
	for _, tc := range []struct {
		pod, ctr bool
		code     codes.Code
	}{{false, false, codes.OK}, {true, false, codes.OK}, {true, true, codes.OK}, {false, true, codes.InvalidArgument}} {
		err := checkPrivileged(pod(tc.pod), ctr(tc.ctr))
		if status.Code(err) != tc.code || (err != nil && !strings.Contains(err.Error(), "config.linux.security_context.privileged")) {
			t.Errorf("pod privileged %v, container privileged %v: %v, want %v naming the field", tc.pod, tc.ctr, err, tc.code)
		}
	}
	if err := checkPrivileged(&runtime.PodSandboxConfig{}, ctr(true)); status.Code(err) != codes.InvalidArgument {
		t.Errorf("pod without a security context: %v", err)
	}
}

// A container's status names the image as the pod spec does (kubelet
// passes the image's ID as image and the spec's name as
// user_specified_image), or the image's tag when only its ID was given.
func TestStatusImageName(t *testing.T) {
	const id = "sha256:3c5fb9dddc2a71c9532f1bed3fa0b5a2ca45e1ed05ee36f3813fa07baa593fc4"
	tags := []string{"registry.k8s.io/e2e-test-images/busybox:1.37.0-2"}
	for _, tc := range []struct {
		name string
		spec *runtime.ImageSpec
		want string
	}{
		{"kubelet", &runtime.ImageSpec{Image: id, UserSpecifiedImage: "busybox:1.37"}, "busybox:1.37"},
		{"crictl by name", &runtime.ImageSpec{Image: "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"}, "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"},
		{"ID only", &runtime.ImageSpec{Image: id}, tags[0]},
		{"bare ID only", &runtime.ImageSpec{Image: strings.TrimPrefix(id, "sha256:")}, tags[0]},
	} {
		if got := statusImageName(tc.spec, id, tags); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := statusImageName(&runtime.ImageSpec{Image: id}, id, nil); got != id {
		t.Errorf("untagged image: %q, want its ID", got)
	}
}
