package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StopContainer on a process that ignores SIGTERM waits the timeout, then
// kills it; a config stop_signal is the signal sent; Stop and Remove are
// idempotent; Remove of a running container kills it.
func TestContainerStop(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	ctx := context.Background()
	pod := n.logPod("stop")
	podID := n.run(t, pod)

	stubborn := n.create(t, podID, pod, ctrConfig("stubborn", "sh", "-c", `trap "" TERM; sleep 100`), true)
	pids := ctrPids(t, stubborn)
	time.Sleep(300 * time.Millisecond) // let the trap be set
	start := time.Now()
	if _, err := n.runtime().StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: stubborn, Timeout: 2}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if d := time.Since(start); d < 1900*time.Millisecond || d > 4*time.Second {
		t.Errorf("StopContainer with timeout 2 on a TERM-ignoring process took %s", d)
	}
	st := n.ctrStatus(t, stubborn)
	if st.State != runtime.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 {
		t.Errorf("after stop: %v exit %d, want EXITED 137", st.State, st.ExitCode)
	}
	for _, p := range pids {
		if alive(p) {
			t.Errorf("process %d of the stopped container still alive", p)
		}
	}
	for i := 0; i < 2; i++ {
		if _, err := n.runtime().StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: stubborn, Timeout: 2}); err != nil {
			t.Fatalf("second StopContainer: %v", err)
		}
	}

	cfg := ctrConfig("sigint", "sh", "-c", `trap "echo got-int; exit 0" INT; trap "echo got-term; exit 5" TERM; echo ready; while true; do sleep 0.1; done`)
	cfg.StopSignal = runtime.Signal_SIGNAL_SIGINT
	sigint := n.create(t, podID, pod, cfg, true)
	logPath := filepath.Join(pod.LogDirectory, cfg.LogPath)
	waitLog(t, logPath, "ready", 10*time.Second)
	start = time.Now()
	if _, err := n.runtime().StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: sigint, Timeout: 10}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stop with a trapped stop signal took %s", d)
	}
	st = n.ctrStatus(t, sigint)
	b, _ := os.ReadFile(logPath)
	if st.ExitCode != 0 || !strings.Contains(string(b), "got-int") || strings.Contains(string(b), "got-term") {
		t.Errorf("stop_signal SIGINT: exit %d, log:\n%s", st.ExitCode, b)
	}

	running := n.create(t, podID, pod, ctrConfig("running", "sleep", "3600"), true)
	pid := initPid(t, running)
	for i := 0; i < 2; i++ {
		if _, err := n.runtime().RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: running}); err != nil {
			t.Fatalf("RemoveContainer #%d of a running container: %v", i, err)
		}
	}
	if alive(pid) {
		t.Errorf("RemoveContainer left the container's process %d running", pid)
	}
	if _, err := n.runtime().ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: running}); status.Code(err) != codes.NotFound {
		t.Errorf("status of a removed container: %v, want NotFound", err)
	}
	for _, id := range []string{stubborn, sigint, stubborn} {
		if _, err := n.runtime().RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("RemoveContainer %s: %v", id, err)
		}
	}
	if _, err := n.runtime().StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: stubborn, Timeout: 2}); err != nil && status.Code(err) != codes.NotFound {
		t.Errorf("StopContainer of a removed container: %v", err)
	}
	if c := n.ctrRecords(); c != 0 {
		t.Errorf("%d container records after removing all", c)
	}
	n.removePod(t, podID)
}
