package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A pod list larger than the 16 MiB kubelet accepts (here four pods with a
// 5 MiB annotation each, where kubelet's GC meets 20,000 exited ones) is
// refused with ResourceExhausted naming StreamPodSandboxes, and that RPC
// returns every pod in messages a kubelet-shaped client reads. It also
// shows crid takes a 5 MiB request (gRPC's server default is 4 MiB) and
// answers a 5 MiB PodSandboxStatus.
func TestListOverTheMessageLimit(t *testing.T) {
	n := newPodNode(t)
	ctx := context.Background()
	conn, err := grpc.NewClient("unix://"+n.socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20))) // kubelet's, k8s.io/cri-client
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kubelet := runtime.NewRuntimeServiceClient(conn)

	var ids []string
	for i := range 4 {
		cfg := podConfig(fmt.Sprintf("big-%d", i))
		cfg.Linux.SecurityContext.NamespaceOptions.Network = runtime.NamespaceMode_NODE
		cfg.Annotations = map[string]string{"example.com/blob": strings.Repeat(fmt.Sprint(i), 5<<20)}
		resp, err := kubelet.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
		if err != nil {
			t.Fatalf("RunPodSandbox of a 5 MiB config: %v\n%s", err, n.log)
		}
		ids = append(ids, resp.PodSandboxId)
	}
	defer func() {
		for _, id := range ids {
			if _, err := kubelet.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
				t.Errorf("RemovePodSandbox: %v", err)
			}
		}
		if s := n.hostState(t); s != (hostState{}) {
			t.Errorf("left behind: %+v", s)
		}
	}()

	_, err = kubelet.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "StreamPodSandboxes") {
		t.Fatalf("ListPodSandbox of 20 MiB: %v", err)
	}
	t.Logf("ListPodSandbox: %v", err)

	one, err := kubelet.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{Id: ids[2]}})
	if err != nil || len(one.Items) != 1 || one.Items[0].Id != ids[2] {
		t.Fatalf("ListPodSandbox of one pod: %v %v", one, err)
	}
	st, err := kubelet.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: ids[1]})
	if err != nil || len(st.Status.Annotations["example.com/blob"]) != 5<<20 {
		t.Fatalf("PodSandboxStatus of a 5 MiB pod: %v", err)
	}

	stream, err := kubelet.StreamPodSandboxes(ctx, &runtime.StreamPodSandboxesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	msgs := 0
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("StreamPodSandboxes after %d messages: %v", msgs, err)
		}
		msgs++
		for _, p := range m.PodSandboxes {
			if len(p.Annotations["example.com/blob"]) != 5<<20 {
				t.Fatalf("pod %s streamed without its annotation", p.Id)
			}
			got = append(got, p.Id)
		}
	}
	sort.Strings(got)
	want := append([]string(nil), ids...)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("streamed %v, want %v", got, want)
	}
	t.Logf("StreamPodSandboxes: %d pods in %d messages", len(got), msgs)
}
