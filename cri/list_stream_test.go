package cri

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// kubeletContainer is a list entry as kubelet labels and annotates one
// (about 1 KB), with extra bytes of annotation.
func kubeletContainer(i, extra int) *runtime.Container {
	id := fmt.Sprintf("%064x", i)
	return &runtime.Container{Id: id, PodSandboxId: strings.Repeat("b", 64),
		Metadata: &runtime.ContainerMetadata{Name: "web", Attempt: 3}, Image: &runtime.ImageSpec{Image: "registry.example.com/team/web:v1.2.3"},
		ImageRef: "registry.example.com/team/web@sha256:" + strings.Repeat("c", 64), ImageId: "sha256:" + strings.Repeat("d", 64),
		State: runtime.ContainerState_CONTAINER_EXITED, CreatedAt: 1764096303123456789,
		Labels: map[string]string{"io.kubernetes.pod.name": "web-7d9f8b6c5d-x2x9z", "io.kubernetes.pod.namespace": "default",
			"io.kubernetes.pod.uid": "0c4d0f4e-3a1b-4c2d-9e8f-123456789abc", "io.kubernetes.container.name": "web", "app": "web", "pod-template-hash": "7d9f8b6c5d"},
		Annotations: map[string]string{"io.kubernetes.container.hash": "4f2a9b1c", "io.kubernetes.container.restartCount": "3",
			"io.kubernetes.container.terminationMessagePath": "/dev/termination-log", "io.kubernetes.container.terminationMessagePolicy": "File", "io.kubernetes.pod.terminationGracePeriod": "30",
			"kubernetes.io/config.seen": "2026-11-25T18:45:03.123456789Z", "kubernetes.io/config.source": "api", "big": strings.Repeat("x", extra)}}
}

// batches streams items through sendBatches and returns each message as
// StreamContainers would send it.
func batches(t *testing.T, items []*runtime.Container) []*runtime.StreamContainersResponse {
	t.Helper()
	var out []*runtime.StreamContainersResponse
	if err := sendBatches(items, func(b []*runtime.Container) error {
		out = append(out, &runtime.StreamContainersResponse{Containers: b})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// Every item comes out once, in order, in messages of at most streamBatch
// items.
func TestSendBatches(t *testing.T) {
	for _, n := range []int{0, 1, 100, 101, 2500} {
		items := make([]*runtime.Container, n)
		for i := range items {
			items[i] = &runtime.Container{Id: fmt.Sprint(i)}
		}
		msgs := batches(t, items)
		next := 0
		for _, m := range msgs {
			if len(m.Containers) == 0 || len(m.Containers) > streamBatch {
				t.Errorf("%d items: a message of %d", n, len(m.Containers))
			}
			for _, c := range m.Containers {
				if c.Id != fmt.Sprint(next) {
					t.Fatalf("%d items: item %s where %d was due", n, c.Id, next)
				}
				next++
			}
		}
		if next != n || len(msgs) != (n+streamBatch-1)/streamBatch {
			t.Errorf("%d items: %d sent in %d messages", n, next, len(msgs))
		}
	}
}

// Large items (annotations near kubelet's 256 KiB per object) are cut by
// size, not count: no message passes streamBatchBytes, so none reaches
// MaxMsgSize; an item larger than the bound goes alone.
func TestSendBatchesBoundedBySize(t *testing.T) {
	items := make([]*runtime.Container, 60)
	for i := range items {
		items[i] = kubeletContainer(i, 250<<10)
	}
	items[30] = kubeletContainer(30, 3<<20)
	msgs := batches(t, items)
	next := 0
	for _, m := range msgs {
		size := proto.Size(m)
		for _, c := range m.Containers {
			if c.Id != items[next].Id {
				t.Fatalf("item %s where %s was due", c.Id, items[next].Id)
			}
			next++
		}
		if size > streamBatchBytes && len(m.Containers) > 1 {
			t.Errorf("a message of %d items and %d bytes, over %d", len(m.Containers), size, streamBatchBytes)
		}
	}
	if next != len(items) {
		t.Fatalf("%d of %d items sent", next, len(items))
	}
	// 60 × 250 KiB is 15 MiB: a single message of them would be far over
	// the bound.
	if len(msgs) < 8 {
		t.Fatalf("%d messages for 15 MiB of items", len(msgs))
	}
}

// A list over MaxMsgSize fails with ResourceExhausted naming its Stream*
// RPC, through the interceptor every RPC passes; one under it is answered
// whole; only the lists are measured.
func TestListOverTheLimitSaysStream(t *testing.T) {
	big := &runtime.ListContainersResponse{}
	for i := range 20000 { // kubelet's GC at 20,000 exited containers
		big.Containers = append(big.Containers, kubeletContainer(i, 0))
	}
	if n := proto.Size(big); n <= MaxMsgSize {
		t.Fatalf("the list is %d bytes, not over %d: the test proves nothing", n, MaxMsgSize)
	}
	call := func(method string, resp any) (any, error) {
		return unaryInterceptor(context.Background(), &runtime.ListContainersRequest{}, &grpc.UnaryServerInfo{FullMethod: method},
			func(context.Context, any) (any, error) { return resp, nil })
	}
	resp, err := call("/runtime.v1.RuntimeService/ListContainers", big)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "StreamContainers") || resp != nil {
		t.Fatalf("ListContainers of %d bytes: %v", proto.Size(big), err)
	}
	t.Logf("%d containers: %v", len(big.Containers), err)

	pods := &runtime.ListPodSandboxResponse{}
	for i := range 40 {
		pods.Items = append(pods.Items, &runtime.PodSandbox{Id: fmt.Sprint(i), Annotations: map[string]string{"big": strings.Repeat("x", 500<<10)}})
	}
	if _, err := call("/runtime.v1.RuntimeService/ListPodSandbox", pods); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "StreamPodSandboxes") {
		t.Fatalf("ListPodSandbox of %d bytes: %v", proto.Size(pods), err)
	}

	small := &runtime.ListContainersResponse{Containers: big.Containers[:10000]}
	if resp, err := call("/runtime.v1.RuntimeService/ListContainers", small); err != nil || resp != small {
		t.Fatalf("ListContainers of %d bytes: %v", proto.Size(small), err)
	}
	// Not a list: left to gRPC's own check.
	if _, err := call("/runtime.v1.RuntimeService/ContainerStatus", big); err != nil {
		t.Fatalf("not a list: %v", err)
	}
}
