package cri

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/config"
)

func TestValidateResources(t *testing.T) {
	for _, tc := range []struct {
		r     *runtime.LinuxContainerResources
		field string // "" means valid
	}{
		{&runtime.LinuxContainerResources{}, ""},
		{&runtime.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuQuota: 50000, CpuPeriod: 100000, CpuShares: 512, CpusetCpus: "0-1,3"}, ""},
		{&runtime.LinuxContainerResources{CpuQuota: -1, MemorySwapLimitInBytes: -1}, ""},
		{&runtime.LinuxContainerResources{HugepageLimits: []*runtime.HugepageLimit{{PageSize: "2MB"}}}, ""},
		{&runtime.LinuxContainerResources{MemoryLimitInBytes: -1}, "linux.memory_limit_in_bytes"},
		{&runtime.LinuxContainerResources{CpuShares: -2}, "linux.cpu_shares"},
		{&runtime.LinuxContainerResources{CpuPeriod: -5}, "linux.cpu_period"},
		{&runtime.LinuxContainerResources{CpuPeriod: 10}, "linux.cpu_period"},
		{&runtime.LinuxContainerResources{CpuQuota: -2}, "linux.cpu_quota"},
		{&runtime.LinuxContainerResources{CpuQuota: 10}, "linux.cpu_quota"},
		{&runtime.LinuxContainerResources{MemorySwapLimitInBytes: -3}, "linux.memory_swap_limit_in_bytes"},
		{&runtime.LinuxContainerResources{MemoryLimitInBytes: 2 << 20, MemorySwapLimitInBytes: 1 << 20}, "linux.memory_swap_limit_in_bytes"},
		{&runtime.LinuxContainerResources{OomScoreAdj: 1001}, "linux.oom_score_adj"},
		{&runtime.LinuxContainerResources{CpusetCpus: "0-a"}, "linux.cpuset_cpus"},
		{&runtime.LinuxContainerResources{CpusetMems: "x"}, "linux.cpuset_mems"},
		{&runtime.LinuxContainerResources{HugepageLimits: []*runtime.HugepageLimit{{PageSize: "huge"}}}, "linux.hugepage_limits[0].page_size"},
	} {
		err := validateResources("linux", tc.r)
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%v: %v", tc.r, err)
		case tc.field != "" && (status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.field)):
			t.Errorf("%v: want InvalidArgument naming %s, got %v", tc.r, tc.field, err)
		}
	}
}

// linux.resources.unified: v2 interface files on a v2 host, refused
// naming the field on v1 and hybrid hosts.
func TestValidateUnified(t *testing.T) {
	ok := map[string]string{"memory.high": "1000000", "memory.oom.group": "1", "cpu.weight": "100"}
	if err := validateUnified("linux", ok, "v2"); err != nil {
		t.Fatalf("v2: %v", err)
	}
	if err := validateUnified("linux", nil, "v1"); err != nil {
		t.Fatalf("none on v1: %v", err)
	}
	for _, tc := range []struct {
		unified map[string]string
		mode    string
	}{
		{ok, "v1"},
		{ok, "hybrid"},
		{map[string]string{"../memory.max": "1"}, "v2"},
		{map[string]string{"memory": "1"}, "v2"},
		{map[string]string{"memory.max": "1\n2"}, "v2"},
	} {
		err := validateUnified("config.linux.resources", tc.unified, tc.mode)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "config.linux.resources.unified") {
			t.Errorf("%v on %s: want InvalidArgument naming the field, got %v", tc.unified, tc.mode, err)
		}
	}
}

func TestMergeResources(t *testing.T) {
	cur := &runtime.LinuxContainerResources{CpuShares: 1024, MemoryLimitInBytes: 100 << 20, CpusetCpus: "0", Unified: map[string]string{"a": "1"}}
	got := mergeResources(cur, &runtime.LinuxContainerResources{MemoryLimitInBytes: 200 << 20, CpuQuota: 50000, Unified: map[string]string{"b": "2"}})
	want := &runtime.LinuxContainerResources{CpuShares: 1024, MemoryLimitInBytes: 200 << 20, CpuQuota: 50000, CpusetCpus: "0", Unified: map[string]string{"a": "1", "b": "2"}}
	if !proto.Equal(got, want) {
		t.Fatalf("merged %v, want %v", got, want)
	}
	if cur.MemoryLimitInBytes != 100<<20 || len(cur.Unified) != 1 {
		t.Fatalf("current changed: %v", cur)
	}
	if got := mergeResources(nil, &runtime.LinuxContainerResources{CpuShares: 2}); got.CpuShares != 2 {
		t.Fatalf("merge onto nothing: %v", got)
	}
}

// The unary lists must carry thousands of entries: crid's server has no
// send limit of its own (gRPC's default is 2 GiB; only the receiving side
// defaults to 4 MiB, and kubelet raises it to 16 MiB; the lists are
// checked against that in checkReplySize). A 6 MiB reply reaches a client
// that accepts 16 MiB. It also reports how many pods and
// containers, as kubelet labels and annotates them, fit in 16 MiB.
func TestLargeRepliesAreSent(t *testing.T) {
	cfg := config.Default()
	cfg.Image.SandboxImage = strings.Repeat("x", 6<<20) // echoed by Status verbose
	c := startServerWith(t, cfg, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	resp, err := c.Status(context.Background(), &runtime.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatalf("a 6 MiB reply: %v", err)
	}
	if n := proto.Size(resp); n < 6<<20 {
		t.Fatalf("reply of %d bytes", n)
	}

	labels := map[string]string{"io.kubernetes.pod.name": "web-7d9f8b6c5d-x2x9z", "io.kubernetes.pod.namespace": "default",
		"io.kubernetes.pod.uid": "0c4d0f4e-3a1b-4c2d-9e8f-123456789abc", "io.kubernetes.container.name": "web", "app": "web", "pod-template-hash": "7d9f8b6c5d"}
	ann := map[string]string{"io.kubernetes.container.hash": "4f2a9b1c", "io.kubernetes.container.restartCount": "0",
		"io.kubernetes.container.terminationMessagePath": "/dev/termination-log", "io.kubernetes.container.terminationMessagePolicy": "File",
		"io.kubernetes.pod.terminationGracePeriod": "30", "kubernetes.io/config.seen": "2026-11-25T18:45:03.123456789Z", "kubernetes.io/config.source": "api"}
	ctr := &runtime.Container{Id: strings.Repeat("a", 64), PodSandboxId: strings.Repeat("b", 64),
		Metadata: &runtime.ContainerMetadata{Name: "web", Attempt: 3}, Image: &runtime.ImageSpec{Image: "registry.example.com/team/web:v1.2.3"},
		ImageRef: "registry.example.com/team/web@sha256:" + strings.Repeat("c", 64), ImageId: "sha256:" + strings.Repeat("d", 64),
		State: runtime.ContainerState_CONTAINER_RUNNING, CreatedAt: 1764096303123456789, Labels: labels, Annotations: ann}
	per := proto.Size(&runtime.ListContainersResponse{Containers: []*runtime.Container{ctr}})
	t.Logf("one kubelet-style container entry: %d bytes; 16 MiB holds %d, 4 MiB %d", per, (16<<20)/per, (4<<20)/per)
}

func TestUpdateRuntimeConfig(t *testing.T) {
	c := startServer(t)
	ctx := context.Background()
	update := func(cidr string) error {
		_, err := c.UpdateRuntimeConfig(ctx, &runtime.UpdateRuntimeConfigRequest{RuntimeConfig: &runtime.RuntimeConfig{
			NetworkConfig: &runtime.NetworkConfig{PodCidr: cidr}}})
		return err
	}
	for _, bad := range []string{"10.0.0.0", "10.0.0.0/33", "nonsense", "10.0.0.0/24,10.1.0.0/24", "10.0.0.0/24,fd00::/64,fd01::/64"} {
		if err := update(bad); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "pod_cidr") {
			t.Errorf("CIDR %q: %v", bad, err)
		}
	}
	if err := update("10.244.1.7/24,fd00:10:244:1::/64"); err != nil {
		t.Fatal(err)
	}
	if err := update(""); err != nil { // empty: unchanged
		t.Fatal(err)
	}
	st, err := c.Status(ctx, &runtime.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Info["runtimeConfig"]; got != `{"podCIDR":"10.244.1.0/24,fd00:10:244:1::/64"}` {
		t.Fatalf("Status info runtimeConfig = %q", got)
	}
}

func TestRestorePodRefusedWithReason(t *testing.T) {
	c := startServer(t)
	_, err := c.RestorePod(context.Background(), &runtime.RestorePodRequest{CheckpointPath: "/tmp/x.tar"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "criu check") {
		t.Fatalf("RestorePod: %v", err)
	}
}
