package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// shortCmd writes 40 numbered lines over about 4 s, then exits with code.
func shortCmd(code int) string {
	return fmt.Sprintf(`i=0; while [ $i -lt 40 ]; do echo "line $i"; i=$((i+1)); sleep 0.1; done; exit %d`, code)
}

// dkCtr is one container of the double-kill scenario.
type dkCtr struct {
	id, log   string
	pid       int
	code      int // the exit code of a short container; -1 for a ticker
	startedAt time.Time
}

// Issue 15 item 1: 10 pods (7 tickers that log every 100 ms, 3 that write
// 40 lines and exit 3/4/5 after about 4 s); kill -9 of the daemon and of
// crid-monitor, in both orders, so both are down at once; wait until the
// short containers have ended; start the daemon again. From the first
// answer after the restart every status is the truth: the short ones
// EXITED with their own exit code, reason Error, a finish time from before
// the restart and their whole log; the tickers RUNNING, the same
// processes, their logs growing again without a lost line.
func TestDoubleKillStatusNeverLies(t *testing.T) {
	for _, order := range []string{"daemon-then-monitor", "monitor-then-daemon"} {
		for _, network := range []string{"pod", "host"} {
			t.Run(order+"/"+network+"-network", func(t *testing.T) {
				doubleKill(t, order == "daemon-then-monitor", network == "host")
			})
		}
	}
}

func doubleKill(t *testing.T, daemonFirst, hostNet bool) {
	n := newPodNode(t)
	n.pullBusybox(t)
	var ctrs []*dkCtr
	var pods []string
	for i := range 10 {
		name := fmt.Sprintf("dk%d", i)
		pod := n.logPod(name)
		if hostNet {
			pod.Linux.SecurityContext.NamespaceOptions.Network = runtime.NamespaceMode_NODE
		}
		podID := n.run(t, pod)
		pods = append(pods, podID)
		c := &dkCtr{code: -1}
		cmd := tickerCmd
		if i >= 7 {
			c.code = i - 4 // 3, 4, 5
			cmd = shortCmd(c.code)
		}
		cfg := ctrConfig(name, "sh", "-c", cmd)
		c.id = n.create(t, podID, pod, cfg, true)
		c.startedAt = time.Now()
		c.log = filepath.Join(pod.LogDirectory, cfg.LogPath)
		c.pid = initPid(t, c.id)
		ctrs = append(ctrs, c)
	}
	for _, c := range ctrs {
		waitLog(t, c.log, "F ", 10*time.Second) // each has logged
	}

	mons := n.monitorPids()
	if len(mons) != 1 {
		t.Fatalf("monitors for this node: %v", mons)
	}
	holders := n.holderPids()
	if len(holders) != 1 {
		t.Fatalf("stdio holders for this node: %v, want one", holders)
	}
	waitGone := func(pid int) {
		t.Helper()
		for i := 0; alive(pid); i++ {
			if i > 200 {
				t.Fatalf("monitor %d still alive after SIGKILL", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	killMonitor := func(pid int) {
		t.Helper()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill monitor %d: %v", pid, err)
		}
		waitGone(pid)
	}
	if daemonFirst {
		n.daemon.stop(syscall.SIGKILL, 5*time.Second)
		killMonitor(mons[0])
	} else {
		if err := syscall.Kill(mons[0], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		n.daemon.stop(syscall.SIGKILL, 5*time.Second)
		waitGone(mons[0])
		// The daemon may have started a successor between the two kills:
		// that one goes too, so that nothing of crid but what is meant
		// to survive both is left.
		for _, pid := range n.monitorPids() {
			t.Logf("the daemon had started monitor %d before its kill; killing it too", pid)
			killMonitor(pid)
		}
	}
	bothDown := time.Now()
	t.Logf("both down %s after the last container's start", bothDown.Sub(ctrs[len(ctrs)-1].startedAt).Round(time.Millisecond))
	if m := n.monitorPids(); len(m) != 0 {
		t.Fatalf("monitors still alive after the kills: %v", m)
	}

	// Wait until the short ones have ended (their inits gone: reaped by
	// whoever is their parent now).
	for _, c := range ctrs {
		if c.code < 0 {
			continue
		}
		deadline := c.startedAt.Add(15 * time.Second)
		for alive(c.pid) {
			if time.Now().After(deadline) {
				t.Fatalf("short container %s (pid %d) still running 15 s after its start", c.id, c.pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(500 * time.Millisecond)
	before := map[string]int{}
	for _, c := range ctrs {
		if c.code < 0 {
			if !alive(c.pid) {
				t.Errorf("ticker %s (pid %d) died while crid was down: nothing held its stdio", c.id, c.pid)
			}
			before[c.id] = ticks(t, c.log)
		}
	}
	if h := n.holderPids(); len(h) != 1 || h[0] != holders[0] {
		t.Fatalf("stdio holder %d did not outlive the kills alone: holders now %v", holders[0], h)
	}
	t.Logf("crid down for %s", time.Since(bothDown).Round(time.Millisecond))

	// The very first answer after the restart, asked for as soon as the
	// socket takes connections (startDaemon's own client waits out gRPC's
	// 1 s reconnect backoff), must already be the truth.
	var short *dkCtr
	for _, c := range ctrs {
		if c.code >= 0 {
			short = c
		}
	}
	first := make(chan firstAnswer, 1)
	restartAt := time.Now()
	go func() { first <- pollFirstStatus(filepath.Join(n.dir, "crid.sock"), short.id, restartAt) }()
	n.daemon = startDaemon(t, n.dir, n.args()...)
	fa := <-first
	if fa.err != nil {
		t.Fatalf("no answer after the restart: %v", fa.err)
	}
	checkShortExited(t, short, fa.st, restartAt)

	// Every answer from the restart on must be the truth; the tickers'
	// logs must grow again.
	ctx := context.Background()
	grown := map[string]bool{}
	var allRight time.Duration
	for deadline := time.Now().Add(15 * time.Second); ; {
		for _, c := range ctrs {
			resp, err := n.runtime().ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: c.id})
			if err != nil {
				t.Fatalf("ContainerStatus %s after the restart: %v\n%s", c.id, err, n.log)
			}
			st := resp.Status
			if c.code >= 0 {
				checkShortExited(t, c, st, restartAt)
				continue
			}
			if st.State != runtime.ContainerState_CONTAINER_RUNNING {
				t.Fatalf("ticker %s after the restart: %v exit %d reason %q message %q; its init %d alive: %v",
					c.id, st.State, st.ExitCode, st.Reason, st.Message, c.pid, alive(c.pid))
			}
			if !grown[c.id] && ticks(t, c.log) >= before[c.id]+10 {
				grown[c.id] = true
			}
		}
		if len(grown) == 7 {
			allRight = time.Since(restartAt)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 15 s only %d of 7 tickers' logs grew again (status message of one: %q)\n%s",
				len(grown), n.ctrStatus(t, ctrs[0].id).Message, n.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, c := range ctrs {
		if c.code < 0 {
			if p := initPid(t, c.id); p != c.pid {
				t.Errorf("ticker %s: init pid %d, was %d", c.id, p, c.pid)
			}
		}
	}
	t.Logf("first answer %s after the restart, already the truth; every status checked right and every ticker's log growing %s after it",
		fa.after.Round(time.Millisecond), allRight.Round(time.Millisecond))

	for _, id := range pods {
		if _, err := n.runtime().RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("RemovePodSandbox %s: %v", id, err)
		}
	}
	if s := n.hostState(t); s != (hostState{}) {
		t.Fatalf("left behind: %+v", s)
	}
}

// checkShortExited checks a short container's status after the restart:
// EXITED with its own code, reason Error, finished after its 40 lines and
// before the restart, and its log whole.
func checkShortExited(t *testing.T, c *dkCtr, st *runtime.ContainerStatus, restartAt time.Time) {
	t.Helper()
	fin := time.Unix(0, st.FinishedAt)
	if st.State != runtime.ContainerState_CONTAINER_EXITED || int(st.ExitCode) != c.code || st.Reason != "Error" {
		t.Fatalf("short container %s after the restart: %v exit %d reason %q message %q; want EXITED, exit %d, Error",
			c.id, st.State, st.ExitCode, st.Reason, st.Message, c.code)
	}
	if fin.Before(c.startedAt.Add(3*time.Second)) || fin.After(restartAt) {
		t.Fatalf("short container %s finished at %s: started %s, daemon restarted %s", c.id, fin, c.startedAt, restartAt)
	}
	entries := readCRILog(t, c.log)
	lines := fullLines(entries)["stdout"]
	if len(lines) != 40 {
		// Every entry, stderr included, with its time: a write error of
		// the container shows on stderr, a lost read does not.
		var all strings.Builder
		for _, e := range entries {
			fmt.Fprintf(&all, "\n  %s %s %s %q", e.time.Format(time.RFC3339Nano), e.stream, e.tag, e.text)
		}
		t.Fatalf("short container %s: %d log lines, want 40: %q; the log:%s", c.id, len(lines), strings.Join(lines, "|"), all.String())
	}
	for i, l := range lines {
		if l != fmt.Sprintf("line %d", i) {
			t.Fatalf("short container %s: log line %d is %q", c.id, i, l)
		}
	}
}

// When the stdio holder is killed too, nothing of crid kept the running
// containers' output: they are still RUNNING (the same processes), and
// their status message says their output no longer reaches their log —
// never silently. One that ended meanwhile is EXITED with code 255, reason
// Unknown: nobody could see its exit.
func TestTripleKillSaysOutputIsLost(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	pod := n.logPod("triple")
	podID := n.run(t, pod)
	quietCfg := ctrConfig("quiet", "sh", "-c", "echo hello; exec sleep 3600")
	quiet := n.create(t, podID, pod, quietCfg, true)
	shortCfg := ctrConfig("short", "sh", "-c", "echo hello; read x; exit 3")
	shortCfg.Stdin = true
	short := n.create(t, podID, pod, shortCfg, true)
	waitLog(t, filepath.Join(pod.LogDirectory, quietCfg.LogPath), "hello", 10*time.Second)
	waitLog(t, filepath.Join(pod.LogDirectory, shortCfg.LogPath), "hello", 10*time.Second)
	quietPid, shortPid := initPid(t, quiet), initPid(t, short)

	mons, holders := n.monitorPids(), n.holderPids()
	if len(mons) != 1 || len(holders) != 1 {
		t.Fatalf("monitors %v, holders %v: want one of each", mons, holders)
	}
	n.daemon.stop(syscall.SIGKILL, 5*time.Second)
	for _, pid := range []int{mons[0], holders[0]} {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; alive(mons[0]) || alive(holders[0]); i++ {
		if i > 200 {
			t.Fatal("monitor or holder still alive after SIGKILL")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The short one's stdin was the monitor's and the daemon's: it reads
	// EOF and exits 3, seen by nobody of crid; PID 1 reaps it (late).
	for i := 0; ; i++ {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", shortPid)); os.IsNotExist(err) {
			break
		}
		if i > 1000 {
			t.Fatalf("short container %d did not end on EOF and get reaped", shortPid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	restartAt := time.Now()
	n.daemon = startDaemon(t, n.dir, n.args()...)
	var qs *runtime.ContainerStatus
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		qs = n.ctrStatus(t, quiet)
		if qs.State != runtime.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("quiet container %d (alive: %v) after the restart: %v", quietPid, alive(quietPid), qs.State)
		}
		if strings.Contains(qs.Message, "no holder") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("quiet container's status message %q: it should say its output is lost", qs.Message)
		}
	}
	t.Logf("quiet container's message %s after the restart: %q", time.Since(restartAt).Round(time.Millisecond), qs.Message)
	// It may read RUNNING until the monitor stops waiting for a record of
	// its exit (exitFileWait, 2 s): nothing of crid saw it end.
	st := n.waitExited(t, short, 15*time.Second)
	if st.ExitCode != 255 || st.Reason != "Unknown" || st.Message == "" {
		t.Errorf("short container whose exit nobody saw: exit %d reason %q message %q; want 255, Unknown, a message", st.ExitCode, st.Reason, st.Message)
	}
	if p := initPid(t, quiet); p != quietPid {
		t.Errorf("quiet container: init pid %d, was %d", p, quietPid)
	}
	n.removePod(t, podID)
}

// firstAnswer is the first ContainerStatus answer after a restart.
type firstAnswer struct {
	after time.Duration
	st    *runtime.ContainerStatus
	err   error
}

// pollFirstStatus asks for a container's status every 10 ms, on a client
// of its own that retries its connection every 10 ms, until crid answers
// (at most 20 s).
func pollFirstStatus(sock, id string, since time.Time) firstAnswer {
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1, MaxDelay: 10 * time.Millisecond},
			MinConnectTimeout: 100 * time.Millisecond,
		}))
	if err != nil {
		return firstAnswer{err: err}
	}
	defer conn.Close()
	rt := runtime.NewRuntimeServiceClient(conn)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		resp, err := rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id})
		cancel()
		if err == nil {
			return firstAnswer{after: time.Since(since), st: resp.Status}
		}
		if time.Now().After(deadline) {
			return firstAnswer{err: err}
		}
	}
}
