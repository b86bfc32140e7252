package e2e

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Bad CreateContainer requests get the right code naming what is wrong,
// and leave no rootfs and no record.
func TestCreateContainerBadInput(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	ctx := context.Background()
	pod := n.logPod("bad")
	podID := n.run(t, pod)
	n.create(t, podID, pod, ctrConfig("dup", "sleep", "3600"), false)
	rootfs, records := n.rootfsDirs(), n.ctrRecords()
	if records != 1 {
		t.Fatalf("%d container records after one create", records)
	}
	for _, tc := range []struct {
		what   string
		code   codes.Code
		naming string
		pod    string
		mutate func(c *runtime.ContainerConfig)
	}{
		{"unknown pod", codes.NotFound, "0123456789abcdef", "0123456789abcdef0123", func(c *runtime.ContainerConfig) {}},
		{"unknown image", codes.NotFound, "example.invalid/nope:1", podID, func(c *runtime.ContainerConfig) {
			c.Image.Image = "example.invalid/nope:1"
		}},
		{"run_as_group alone", codes.InvalidArgument, "run_as_group", podID, func(c *runtime.ContainerConfig) {
			c.Linux.SecurityContext.RunAsGroup = &runtime.Int64Value{Value: 100}
		}},
		{"relative container_path", codes.InvalidArgument, "container_path", podID, func(c *runtime.ContainerConfig) {
			c.Mounts = []*runtime.Mount{{ContainerPath: "relative/dir", HostPath: "/tmp"}}
		}},
		{"negative memory limit", codes.InvalidArgument, "memory_limit_in_bytes", podID, func(c *runtime.ContainerConfig) {
			c.Linux.Resources.MemoryLimitInBytes = -1
		}},
		{"duplicate name", codes.AlreadyExists, "dup", podID, func(c *runtime.ContainerConfig) {
			c.Metadata.Name = "dup"
		}},
	} {
		cfg := ctrConfig("bad", "sleep", "3600")
		tc.mutate(cfg)
		_, err := n.runtime().CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: tc.pod, SandboxConfig: pod, Config: cfg})
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.naming) {
			t.Errorf("%s: %v, want %v naming %q", tc.what, err, tc.code, tc.naming)
		}
		if r, c := n.rootfsDirs(), n.ctrRecords(); r != rootfs || c != records {
			t.Errorf("%s left %d rootfs dirs (was %d), %d records (was %d)", tc.what, r, rootfs, c, records)
		}
	}
	resp, err := n.runtime().ListContainers(ctx, &runtime.ListContainersRequest{})
	if err != nil || len(resp.Containers) != 1 {
		t.Errorf("containers after bad input: %v, %v", resp, err)
	}
	n.removePod(t, podID)
}
