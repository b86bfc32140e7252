package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ppid is the parent pid of pid, from /proc.
func ppid(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndex(s, ")")+1:])
	p, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	return p
}

// After a daemon restart the monitor is no longer the daemon's child, so
// when the monitor is then killed its container inits go to PID 1 (or
// whatever subreaper sits above), not to the daemon: nobody the new monitor
// can ask reaps them or records their status. Stop and Remove of such a
// container still return at once, and the exit code the process really
// had is recorded.
func TestStopOrphanedContainerAfterDaemonRestartAndMonitorKill(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	ctx := context.Background()
	pod := n.logPod("orphan")
	podID := n.run(t, pod)
	trapper := n.create(t, podID, pod, ctrConfig("trapper", "sh", "-c", `trap "echo got-term; exit 3" TERM; echo ready; while true; do sleep 0.1; done`), true)
	sleeper := n.create(t, podID, pod, ctrConfig("sleeper", "sleep", "3600"), true)
	logPath := filepath.Join(pod.LogDirectory, "trapper.log")
	waitLog(t, logPath, "ready", 10*time.Second)
	trapperPid, sleeperPid := initPid(t, trapper), initPid(t, sleeper)

	n.daemon.stop(syscall.SIGKILL, 5*time.Second)
	n.daemon = startDaemon(t, n.dir, n.args()...)
	mons := n.monitorPids()
	if len(mons) != 1 {
		t.Fatalf("monitors for this node: %v", mons)
	}
	if err := syscall.Kill(mons[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := n.monitorPids(); len(m) == 1 && m[0] != mons[0] && ppid(t, trapperPid) != mons[0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new monitor after killing %d: %v\n%s", mons[0], n.monitorPids(), n.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	daemonPid := n.daemon.cmd.Process.Pid
	for _, pid := range []int{trapperPid, sleeperPid} {
		if p := ppid(t, pid); p == daemonPid || p == n.monitorPids()[0] {
			t.Fatalf("init %d is a child of %d: the daemon (%d) or the new monitor can reap it, not the case under test", pid, p, daemonPid)
		}
	}
	t.Logf("inits %d and %d now belong to pid %d (daemon %d, monitor %d)", trapperPid, sleeperPid, ppid(t, trapperPid), daemonPid, n.monitorPids()[0])
	// The new monitor has reloaded the container: it answers as running.
	waitRunning := func(id string) {
		for i := 0; n.ctrStatus(t, id).State != runtime.ContainerState_CONTAINER_RUNNING; i++ {
			if i > 200 {
				t.Fatalf("%s not running after the monitor kill: %v", id, n.ctrStatus(t, id).State)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitRunning(trapper)
	waitRunning(sleeper)

	stopAt := time.Now()
	if _, err := n.runtime().StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: trapper, Timeout: 10}); err != nil {
		t.Fatalf("StopContainer: %v\n%s", err, n.log)
	}
	took := time.Since(stopAt)
	t.Logf("StopContainer of an orphaned init (SIGTERM, trapped, exit 3) took %s", took.Round(time.Millisecond))
	st := n.ctrStatus(t, trapper)
	if st.State != runtime.ContainerState_CONTAINER_EXITED || st.ExitCode != 3 || st.Reason != "Error" {
		t.Errorf("after stop: %v exit %d reason %q message %q; want EXITED, the process's own exit 3, Error", st.State, st.ExitCode, st.Reason, st.Message)
	}
	if fin := time.Unix(0, st.FinishedAt); fin.Before(stopAt.Add(-time.Second)) || fin.After(time.Now().Add(time.Second)) {
		t.Errorf("finished at %s, stop ran from %s", fin, stopAt)
	}
	if alive(trapperPid) {
		t.Errorf("init %d still alive after StopContainer", trapperPid)
	}
	waitLog(t, logPath, "got-term", 5*time.Second)
	if took > time.Second {
		t.Errorf("StopContainer of an orphaned init took %s: it should not wait for a reaper that never comes", took)
	}

	removeAt := time.Now()
	if _, err := n.runtime().RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: sleeper}); err != nil {
		t.Fatalf("RemoveContainer: %v\n%s", err, n.log)
	}
	took = time.Since(removeAt)
	t.Logf("RemoveContainer of a running orphaned init (SIGKILL) took %s", took.Round(time.Millisecond))
	if alive(sleeperPid) {
		t.Errorf("RemoveContainer left init %d running", sleeperPid)
	}
	if _, err := n.runtime().ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: sleeper}); status.Code(err) != codes.NotFound {
		t.Errorf("status of the removed container: %v, want NotFound", err)
	}
	if took > time.Second {
		t.Errorf("RemoveContainer of a running orphaned init took %s", took)
	}
	n.removePod(t, podID)
}
