package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// eventStream is one GetContainerEvents client collecting what it gets.
type eventStream struct {
	events chan *runtime.ContainerEventResponse
	cancel context.CancelFunc
	done   chan error
}

// watchEvents subscribes and returns once crid has registered the
// subscription (it sends the response header then), so no later event is
// missed.
func (n *podNode) watchEvents(t *testing.T) *eventStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := n.runtime().GetContainerEvents(ctx, &runtime.GetEventsRequest{})
	if err != nil {
		cancel()
		t.Fatalf("GetContainerEvents: %v", err)
	}
	if _, err := stream.Header(); err != nil {
		cancel()
		t.Fatalf("GetContainerEvents header: %v", err)
	}
	es := &eventStream{events: make(chan *runtime.ContainerEventResponse, 1000), cancel: cancel, done: make(chan error, 1)}
	go func() { // ends when the stream does (cancel or daemon exit)
		for {
			e, err := stream.Recv()
			if err != nil {
				close(es.events)
				es.done <- err
				return
			}
			es.events <- e
		}
	}()
	t.Cleanup(cancel)
	return es
}

// next waits for the next event.
func (es *eventStream) next(t *testing.T, bound time.Duration) *runtime.ContainerEventResponse {
	t.Helper()
	select {
	case e, ok := <-es.events:
		if !ok {
			t.Fatalf("event stream ended: %v", <-es.done)
		}
		return e
	case <-time.After(bound):
		t.Fatalf("no event within %s", bound)
	}
	return nil
}

// expect checks that the next events are exactly want, in order: each
// "<type> <id>".
func (es *eventStream) expect(t *testing.T, names map[string]string, want ...string) []*runtime.ContainerEventResponse {
	t.Helper()
	var got []*runtime.ContainerEventResponse
	for i, w := range want {
		e := es.next(t, 30*time.Second)
		s := fmt.Sprintf("%s %s", strings.TrimSuffix(strings.TrimPrefix(e.ContainerEventType.String(), "CONTAINER_"), "_EVENT"), names[e.ContainerId])
		if s != w {
			t.Fatalf("event %d = %q (%s), want %q", i, s, e.ContainerId, w)
		}
		if e.CreatedAt == 0 {
			t.Fatalf("event %q without a time", s)
		}
		got = append(got, e)
	}
	return got
}

func statusOf(e *runtime.ContainerEventResponse, id string) *runtime.ContainerStatus {
	for _, s := range e.ContainersStatuses {
		if s.Id == id {
			return s
		}
	}
	return nil
}

// A pod's whole life comes out as events, in order, with the pod's status
// and its containers' statuses — including the exit of a container that
// ends on its own, which nobody asks crid about.
func TestEventsPodLifecycle(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	es := n.watchEvents(t)
	ctx := context.Background()
	names := map[string]string{}

	pod := n.logPod("events")
	podID := n.run(t, pod)
	names[podID] = "pod"
	evs := es.expect(t, names, "CREATED pod", "STARTED pod")
	if st := evs[1].PodSandboxStatus; st == nil || st.Id != podID || st.State != runtime.PodSandboxState_SANDBOX_READY || st.Network.GetIp() == "" {
		t.Fatalf("pod status in STARTED: %v", st)
	}

	long := n.create(t, podID, pod, ctrConfig("long", "sleep", "3600"), false)
	names[long] = "long"
	evs = es.expect(t, names, "CREATED long")
	if s := statusOf(evs[0], long); s == nil || s.State != runtime.ContainerState_CONTAINER_CREATED || evs[0].PodSandboxStatus.GetId() != podID {
		t.Fatalf("CREATED carries %v", evs[0])
	}
	if _, err := n.runtime().StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: long}); err != nil {
		t.Fatal(err)
	}
	es.expect(t, names, "STARTED long")

	// Exits by itself after a second: no RPC is made until the event.
	quick := n.create(t, podID, pod, ctrConfig("quick", "sh", "-c", "sleep 1; exit 3"), true)
	names[quick] = "quick"
	start := time.Now()
	es.expect(t, names, "CREATED quick", "STARTED quick")
	evs = es.expect(t, names, "STOPPED quick")
	t.Logf("STOPPED of a container exiting on its own came %s after its start", time.Since(start).Round(time.Millisecond))
	if s := statusOf(evs[0], quick); s == nil || s.State != runtime.ContainerState_CONTAINER_EXITED || s.ExitCode != 3 || s.Reason != "Error" {
		t.Fatalf("quick's status in its STOPPED event: %v", s)
	}
	if s := statusOf(evs[0], long); s == nil || s.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("long's status in quick's STOPPED event: %v", s)
	}

	// A container that exits before anyone could look: STARTED still
	// comes before STOPPED.
	instant := n.create(t, podID, pod, ctrConfig("instant", "true"), true)
	names[instant] = "instant"
	es.expect(t, names, "CREATED instant", "STARTED instant", "STOPPED instant")

	if _, err := n.runtime().StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: long, Timeout: 5}); err != nil {
		t.Fatal(err)
	}
	es.expect(t, names, "STOPPED long")
	for _, id := range []string{quick, long, instant} {
		if _, err := n.runtime().RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
		evs = es.expect(t, names, "DELETED "+names[id])
		if statusOf(evs[0], id) != nil {
			t.Fatalf("a deleted container's status is still in its DELETED event")
		}
	}
	if _, err := n.runtime().StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	evs = es.expect(t, names, "STOPPED pod")
	if st := evs[0].PodSandboxStatus; st.GetState() != runtime.PodSandboxState_SANDBOX_NOTREADY {
		t.Fatalf("pod status in STOPPED: %v", st)
	}
	n.removePod(t, podID)
	evs = es.expect(t, names, "DELETED pod")
	if evs[0].PodSandboxStatus != nil {
		t.Fatalf("a deleted pod's status in its DELETED event: %v", evs[0].PodSandboxStatus)
	}
	select {
	case e := <-es.events:
		t.Fatalf("unexpected event %v", e)
	case <-time.After(200 * time.Millisecond):
	}
}

// Exits that happen while the daemon is down, and exits after it came
// back, are both seen: the exit watcher starts at reconcile.
func TestEventsExitWatcherAfterRestart(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	pod := n.logPod("restart")
	podID := n.run(t, pod)
	gone := n.create(t, podID, pod, ctrConfig("gone", "true"), true)
	later := n.create(t, podID, pod, ctrConfig("later", "sh", "-c", "sleep 3; exit 7"), true)
	n.waitExited(t, gone, 10*time.Second)
	n.restart(t)
	es := n.watchEvents(t)
	evs := es.expect(t, map[string]string{later: "later"}, "STOPPED later")
	if s := statusOf(evs[0], later); s.GetExitCode() != 7 {
		t.Fatalf("later's status: %v", s)
	}
	n.removePod(t, podID)
}

// syncBuffer is a buffer a command writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// crictl events prints the events.
func TestEventsCrictl(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	ep := "unix://" + n.socket
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot, "_output", "bin", "crictl"), "--runtime-endpoint", ep, "events")
	var out syncBuffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	// crictl subscribes a little after it starts: run throw-away pods
	// until their events show, then the pod under test.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; !strings.Contains(out.String(), "CONTAINER_"); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("crictl events printed nothing: %q", out.String())
		}
		probe := n.run(t, podConfig(fmt.Sprint("probe", i)))
		n.removePod(t, probe)
	}
	pod := n.logPod("crictl-events")
	podID := n.run(t, pod)
	id := n.create(t, podID, pod, ctrConfig("c", "true"), true)
	n.waitExited(t, id, 10*time.Second)
	for time.Now().Before(deadline) && !strings.Contains(out.String(), "CONTAINER_STOPPED_EVENT") {
		time.Sleep(100 * time.Millisecond)
	}
	mustContain(t, "crictl events", out.String(), podID, id, "CONTAINER_CREATED_EVENT", "CONTAINER_STARTED_EVENT", "CONTAINER_STOPPED_EVENT")
	n.removePod(t, podID)
}
