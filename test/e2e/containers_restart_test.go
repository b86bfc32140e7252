package e2e

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const tickerCmd = `i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.1; done`

// ticks reads a ticker container's log and checks no line is lost: the
// numbers run 0, 1, 2, … without a gap.
func ticks(t *testing.T, path string) int {
	t.Helper()
	lines := fullLines(readCRILog(t, path))["stdout"]
	for i, l := range lines {
		if l != "tick "+strconv.Itoa(i) {
			t.Fatalf("%s: line %d is %q: lost or garbled lines", path, i, l)
		}
	}
	return len(lines)
}

func waitTicks(t *testing.T, path string, atLeast int, bound time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		if c := ticks(t, path); c >= atLeast {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: fewer than %d lines after %s", path, atLeast, bound)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Running containers survive a kill -9 of the daemon with the same
// processes and logs without loss; one that exits while the daemon is down
// has its exit code recorded; they also survive a kill -9 of the monitor
// and keep logging.
func TestContainersSurviveDaemonAndMonitorKill(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	pod := n.logPod("survive")
	podID := n.run(t, pod)
	var ids, logs []string
	pids := map[string]int{}
	for i := 0; i < 3; i++ {
		cfg := ctrConfig(fmt.Sprintf("ticker%d", i), "sh", "-c", tickerCmd)
		id := n.create(t, podID, pod, cfg, true)
		ids = append(ids, id)
		logs = append(logs, filepath.Join(pod.LogDirectory, cfg.LogPath))
		pids[id] = initPid(t, id)
	}
	exiter := n.create(t, podID, pod, ctrConfig("exiter", "sh", "-c", `trap "exit 7" TERM; echo ready; while true; do sleep 0.1; done`), true)
	waitLog(t, filepath.Join(pod.LogDirectory, "exiter.log"), "ready", 10*time.Second)
	exiterPid := initPid(t, exiter)
	for _, l := range logs {
		waitTicks(t, l, 5, 10*time.Second)
	}

	n.daemon.stop(syscall.SIGKILL, 5*time.Second)
	killedAt := time.Now()
	if err := syscall.Kill(exiterPid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i := 0; alive(exiterPid); i++ {
		if i > 100 {
			t.Fatalf("exiter %d did not exit on SIGTERM", exiterPid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := make([]int, len(logs))
	for i, l := range logs {
		before[i] = ticks(t, l)
	}
	time.Sleep(500 * time.Millisecond) // the containers log while the daemon is down
	restartAt := time.Now()
	n.daemon = startDaemon(t, n.dir, n.args()...)
	t.Logf("daemon answered %s after its restart", time.Since(restartAt).Round(time.Millisecond))

	for i, id := range ids {
		st := n.ctrStatus(t, id)
		if st.State != runtime.ContainerState_CONTAINER_RUNNING {
			t.Errorf("%s after daemon kill: %v", id, st.State)
		}
		if p := initPid(t, id); p != pids[id] {
			t.Errorf("%s init pid %d, was %d", id, p, pids[id])
		}
		waitTicks(t, logs[i], before[i]+10, 10*time.Second)
	}
	st := n.waitExited(t, exiter, 10*time.Second)
	if st.ExitCode != 7 || st.Reason != "Error" || time.Unix(0, st.FinishedAt).Before(killedAt.Add(-time.Second)) {
		t.Errorf("exiter after restart: exit %d reason %q finished %s (killed daemon at %s)", st.ExitCode, st.Reason, time.Unix(0, st.FinishedAt), killedAt)
	}

	t.Logf("containers checked %s after the daemon restart", time.Since(restartAt).Round(time.Millisecond))
	mons := n.monitorPids()
	if len(mons) != 1 {
		t.Fatalf("monitors for this node: %v", mons)
	}
	if err := syscall.Kill(mons[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i, l := range logs {
		before[i] = ticks(t, l)
	}
	time.Sleep(1500 * time.Millisecond)
	for i, id := range ids {
		if !alive(pids[id]) {
			t.Errorf("%s died with the monitor", id)
		}
		if st := n.ctrStatus(t, id); st.State != runtime.ContainerState_CONTAINER_RUNNING {
			t.Errorf("%s after monitor kill: %v", id, st.State)
		}
		if after := waitTicks(t, logs[i], before[i]+10, 10*time.Second); after < before[i]+10 {
			t.Errorf("%s: %d log lines before the monitor kill, %d after", id, before[i], after)
		}
	}
	if ps := n.exec(t, ids[0], "echo", "still-here"); !strings.Contains(ps, "still-here") {
		t.Errorf("exec after monitor kill: %q", ps)
	}
	removeAt := time.Now()
	n.removePod(t, podID)
	t.Logf("pod with 4 containers removed in %s", time.Since(removeAt).Round(time.Millisecond))
}
