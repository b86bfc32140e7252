package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
)

// spdySession is one exec or attach session through crid's streaming
// server, opened as kubelet's proxy and crictl open them (SPDY, remote
// command protocol v4), without a client process per session.
type spdySession struct {
	conn                 httpstream.Connection
	stdin, stdout, errs  httpstream.Stream
	resize               httpstream.Stream // nil without a terminal
	stdoutBuf, statusBuf syncBuffer
	stdoutDone, errsDone chan struct{}
}

// openSession connects to a streaming URL with stdout, and stdin and a
// terminal's resize stream when asked (the streams the URL's request
// named), and starts reading stdout and the status stream.
func openSession(ctx context.Context, rawURL string, stdin, tty bool) (*spdySession, error) {
	rt, err := spdy.NewRoundTripper(nil)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Add(httpstream.HeaderProtocolVersion, "v4.channel.k8s.io")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("upgrade %s: %w", rawURL, err)
	}
	conn, err := rt.NewConnection(resp)
	if err != nil {
		return nil, fmt.Errorf("upgrade %s: %w", rawURL, err)
	}
	s := &spdySession{conn: conn, stdoutDone: make(chan struct{}), errsDone: make(chan struct{})}
	stream := func(typ string) httpstream.Stream {
		if err != nil {
			return nil
		}
		h := http.Header{}
		h.Set("streamType", typ)
		var st httpstream.Stream
		st, err = conn.CreateStream(h)
		return st
	}
	s.errs = stream("error")
	if stdin {
		s.stdin = stream("stdin")
	}
	s.stdout = stream("stdout")
	if tty {
		s.resize = stream("resize")
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("streams of %s: %w", rawURL, err)
	}
	go func() { // ends when the session does
		defer close(s.stdoutDone)
		_, _ = io.Copy(&s.stdoutBuf, s.stdout)
	}()
	go func() { // ends when the session does
		defer close(s.errsDone)
		_, _ = io.Copy(&s.statusBuf, s.errs)
	}()
	return s, nil
}

// sendSize sends a terminal size, as a client does at the start. A
// session that failed at once may have been closed by then.
func (s *spdySession) sendSize(w, h uint16) error {
	b, _ := json.Marshal(map[string]uint16{"Width": w, "Height": h})
	_, err := s.resize.Write(b)
	return err
}

// waitOutput waits until stdout holds want.
func (s *spdySession) waitOutput(want string, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for !strings.Contains(s.stdoutBuf.String(), want) {
		if time.Now().After(deadline) {
			return fmt.Errorf("no %q in the session's output after %s (got %q, status %q)", want, bound, s.stdoutBuf.String(), s.statusBuf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// status waits for the end of the session and returns its status (the
// JSON the server writes on the error stream).
func (s *spdySession) status(bound time.Duration) (string, error) {
	select {
	case <-s.errsDone:
		return s.statusBuf.String(), nil
	case <-time.After(bound):
		return "", fmt.Errorf("session did not end within %s (status so far %q)", bound, s.statusBuf.String())
	}
}

// close ends the session from the client's side, as a closed terminal does.
func (s *spdySession) close() {
	s.conn.Close()
	<-s.stdoutDone
	<-s.errsDone
}

// goroutines is the daemon's goroutine count (Status verbose).
func (d *daemon) goroutines(t *testing.T) int {
	t.Helper()
	resp, err := d.runtime().Status(context.Background(), &runtime.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	g, err := strconv.Atoi(resp.Info["goroutines"])
	if err != nil {
		t.Fatalf("Status verbose goroutines %q: %v", resp.Info["goroutines"], err)
	}
	return g
}

// fds counts the descriptors a process holds.
func fds(pid int) int {
	e, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(e)
}

// rssKB is a process's resident set (VmRSS) in kB.
func rssKB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kb
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

// theMonitor is the pid of the node's one monitor.
func (n *podNode) theMonitor(t *testing.T) int {
	t.Helper()
	pids := n.monitorPids()
	if len(pids) != 1 {
		t.Fatalf("monitors serving the node: %v, want one", pids)
	}
	return pids[0]
}

// usage is what a daemon and its monitor hold, to compare before and after.
type usage struct{ goroutines, daemonFDs, monitorFDs int }

func (n *podNode) usage(t *testing.T) usage {
	t.Helper()
	return usage{n.goroutines(t), fds(n.cmd.Process.Pid), fds(n.theMonitor(t))}
}

// waitBackTo waits until the daemon and monitor hold no more than before.
func (n *podNode) waitBackTo(t *testing.T, what string, before usage) usage {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		now := n.usage(t)
		if now.goroutines <= before.goroutines && now.daemonFDs <= before.daemonFDs && now.monitorFDs <= before.monitorFDs {
			return now
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %+v, before %+v", what, now, before)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// lifecycle runs a pod through its whole life (run, create, start, stop,
// remove its container, stop and remove the pod) within bound, and
// returns each step's duration.
func (n *podNode) lifecycle(t *testing.T, name string, bound time.Duration) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	var took []string
	last := time.Now()
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, what, err, n.log)
		}
		took = append(took, fmt.Sprintf("%s %s", what, time.Since(last).Round(time.Millisecond)))
		last = time.Now()
	}
	rt := n.runtime()
	pod := n.logPod(name)
	run, err := rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
	step("run", err)
	// A process that ends at SIGTERM once it says so, like a server: the
	// stop then takes its real time, not the grace period.
	cfg := ctrConfig("c", "sh", "-c", "trap 'exit 0' TERM; echo ready; while true; do sleep 0.1; done")
	created, err := rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: run.GetPodSandboxId(), SandboxConfig: pod, Config: cfg})
	step("create", err)
	_, err = rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: created.GetContainerId()})
	step("start", err)
	waitLog(t, filepath.Join(pod.LogDirectory, "c.log"), "ready", bound)
	last = time.Now()
	_, err = rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: created.GetContainerId(), Timeout: 10})
	step("stop", err)
	_, err = rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: created.GetContainerId()})
	step("remove", err)
	_, err = rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: run.GetPodSandboxId()})
	step("stopp", err)
	_, err = rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: run.GetPodSandboxId()})
	step("rmp", err)
	return took
}

// Long-lived execs cannot stall the node: with 300 idle interactive
// sessions (terminal, stdin, a shell waiting for input) and 100 ExecSync
// calls sleeping 60 s held open, another pod still goes through its whole
// life; afterwards the daemon and monitor are back to what they held.
func TestMonitorNoStallUnderExecLoad(t *testing.T) {
	n := newPodNode(t)
	_, id := streamPod(t, n, "load", ctrConfig("sleeper", "sleep", "100000"))
	const sessions, syncs = 300, 100
	// Bounds every call: a stalled monitor fails the test, not hangs it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Warm the paths up (monitor connection, streaming listener, CNI) and
	// take the unloaded lifecycle's time.
	n.exec(t, id, "true")
	open := func() (*spdySession, error) {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		resp, err := n.runtime().Exec(rctx, &runtime.ExecRequest{ContainerId: id, Cmd: []string{"sh"}, Tty: true, Stdin: true, Stdout: true})
		if err != nil {
			return nil, err
		}
		s, err := openSession(ctx, resp.Url, true, true)
		if err != nil {
			return nil, err
		}
		if err := s.sendSize(100, 30); err != nil {
			s.close()
			return nil, err
		}
		// The shell's prompt: the session's process runs.
		if err := s.waitOutput("# ", 30*time.Second); err != nil {
			s.close()
			return nil, err
		}
		return s, nil
	}
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	s.close()
	t.Logf("lifecycle unloaded: %s", strings.Join(n.lifecycle(t, "calm", 30*time.Second), ", "))
	const procsBefore = 1 // the container's sleep
	for deadline := time.Now().Add(10 * time.Second); len(ctrPids(t, id)) != procsBefore; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the warm-up session's shell outlived it: %d processes in the container", len(ctrPids(t, id)))
		}
	}
	before := n.usage(t)
	monitor := n.theMonitor(t)
	rssBefore := rssKB(t, monitor)

	// The sessions, 20 opening at a time.
	var (
		mu   sync.Mutex
		held []*spdySession
		wg   sync.WaitGroup
	)
	defer func() {
		for _, s := range held {
			s.close()
		}
	}()
	errs := make(chan error, sessions)
	gate := make(chan struct{}, 20)
	start := time.Now()
	for range sessions {
		gate <- struct{}{}
		if len(errs) > 0 {
			<-gate
			break
		}
		wg.Go(func() {
			defer func() { <-gate }()
			s, err := open()
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			held = append(held, s)
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("opening %d terminal sessions: %v", sessions, err)
	}
	t.Logf("%d idle terminal sessions open in %s", sessions, time.Since(start).Round(time.Millisecond))

	// The ExecSync calls, all at once.
	type result struct {
		resp *runtime.ExecSyncResponse
		err  error
	}
	results := make(chan result, syncs)
	for range syncs {
		go func() { // ends with its call, after 60 s
			resp, err := n.runtime().ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"sleep", "60"}, Timeout: 120})
			results <- result{resp, err}
		}()
	}
	for deadline := time.Now().Add(60 * time.Second); len(ctrPids(t, id)) < procsBefore+sessions+syncs; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d processes in the container, want %d", len(ctrPids(t, id)), procsBefore+sessions+syncs)
		}
	}
	loaded := n.usage(t)
	t.Logf("under load (%d sessions, %d ExecSync): daemon %d goroutines, %d fds; monitor %d fds, VmRSS %d kB (before: %d goroutines, %d fds; monitor %d fds, VmRSS %d kB)",
		sessions, syncs, loaded.goroutines, loaded.daemonFDs, loaded.monitorFDs, rssKB(t, monitor), before.goroutines, before.daemonFDs, before.monitorFDs, rssBefore)

	// Another pod's whole life, while every session and ExecSync is held.
	t.Logf("lifecycle under load: %s", strings.Join(n.lifecycle(t, "busy", 30*time.Second), ", "))
	if got := len(ctrPids(t, id)); got != procsBefore+sessions+syncs {
		t.Fatalf("the load did not hold through the lifecycle: %d processes in the container, want %d", got, procsBefore+sessions+syncs)
	}

	// Clients hang up: the shells go. The ExecSync calls end with their
	// sleeps, each with exit 0.
	for _, s := range held {
		s.close()
	}
	held = nil
	for range syncs {
		r := <-results
		if r.err != nil || r.resp.ExitCode != 0 {
			t.Fatalf("ExecSync sleep 60 under load: %v, %v", r.resp, r.err)
		}
	}
	for deadline := time.Now().Add(20 * time.Second); len(ctrPids(t, id)) != procsBefore; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after the load: %d processes in the container, want %d", len(ctrPids(t, id)), procsBefore)
		}
	}
	after := n.waitBackTo(t, "the load", before)
	t.Logf("after the load: %+v (before %+v)", after, before)
}

// ExecSync output past kubelet's 16 MiB per stream is cut there, for both
// streams at once (20 MiB each), not lost with the whole call.
func TestExecSyncLargeOutputIsTruncated(t *testing.T) {
	n := newPodNode(t)
	_, id := streamPod(t, n, "bigout", ctrConfig("sleeper", "sleep", "100000"))
	conn, err := grpc.NewClient("unix://"+n.socket, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := runtime.NewRuntimeServiceClient(conn).ExecSync(context.Background(), &runtime.ExecSyncRequest{
		ContainerId: id, Timeout: 60,
		Cmd: []string{"sh", "-c", "head -c 20971520 /dev/zero; head -c 20971520 /dev/zero >&2; echo after >&2; exit 7"},
	})
	if err != nil {
		t.Fatalf("ExecSync of 20 MiB on each stream: %v", err)
	}
	const limit = 16 << 20
	if len(resp.Stdout) != limit || len(resp.Stderr) != limit || resp.ExitCode != 7 {
		t.Fatalf("stdout %d bytes, stderr %d bytes, exit %d; want %d, %d, 7", len(resp.Stdout), len(resp.Stderr), resp.ExitCode, limit, limit)
	}
	if bytes.IndexFunc(resp.Stdout, func(r rune) bool { return r != 0 }) >= 0 {
		t.Fatal("stdout holds something else than the zeros written")
	}
	// The daemon serves on, and a small exec is whole.
	if out := n.exec(t, id, "echo", "small"); strings.TrimSpace(out) != "small" {
		t.Fatalf("exec after a large one: %q", out)
	}
}

// Failing terminal sessions leave nothing behind: 100 `exec -it
// /nonexistent` (with the client's window size sent, as crictl does) and
// 20 attaches to a container stopped after the URL was handed out, each
// failing with its reason, then the daemon's goroutines and descriptors
// and the monitor's descriptors are what they were.
func TestFailedTerminalSessionsLeakNothing(t *testing.T) {
	n := newPodNode(t)
	podID, id := streamPod(t, n, "failtty", ctrConfig("sleeper", "sleep", "100000"))
	tty := ctrConfig("tty", "sh")
	tty.Tty, tty.Stdin = true, true
	ttyID := n.create(t, podID, n.logPod("failtty"), tty, true)
	ctx := context.Background()
	fail := func() (string, error) {
		resp, err := n.runtime().Exec(ctx, &runtime.ExecRequest{ContainerId: id, Cmd: []string{"/nonexistent"}, Tty: true, Stdin: true, Stdout: true})
		if err != nil {
			return "", err
		}
		s, err := openSession(ctx, resp.Url, true, true)
		if err != nil {
			return "", err
		}
		defer s.close()
		_ = s.sendSize(100, 30)
		return s.status(30 * time.Second)
	}
	if _, err := fail(); err != nil { // warm-up
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	before := n.usage(t)
	for i := range 100 {
		st, err := fail()
		if err != nil {
			t.Fatalf("failing exec %d: %v", i, err)
		}
		if !strings.Contains(st, "Failure") || !strings.Contains(st, "nonexistent") {
			t.Fatalf("failing exec %d: status %q does not say why", i, st)
		}
	}
	after := n.waitBackTo(t, "100 failed terminal execs", before)
	t.Logf("100 failed terminal execs: %+v (before %+v)", after, before)

	var urls []string
	for range 20 {
		resp, err := n.runtime().Attach(ctx, &runtime.AttachRequest{ContainerId: ttyID, Tty: true, Stdin: true, Stdout: true})
		if err != nil {
			t.Fatal(err)
		}
		urls = append(urls, resp.Url)
	}
	if _, err := n.runtime().StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: ttyID, Timeout: 1}); err != nil {
		t.Fatal(err)
	}
	for i, u := range urls {
		s, err := openSession(ctx, u, true, true)
		if err != nil {
			t.Fatalf("attach %d: %v", i, err)
		}
		_ = s.sendSize(100, 30)
		st, err := s.status(30 * time.Second)
		s.close()
		if err != nil {
			t.Fatalf("attach %d: %v", i, err)
		}
		if !strings.Contains(st, "Failure") || !strings.Contains(st, "not running") {
			t.Fatalf("attach %d to a stopped container: status %q does not say why", i, st)
		}
	}
	after = n.waitBackTo(t, "20 failed terminal attaches", before)
	t.Logf("20 failed terminal attaches: %+v (before %+v)", after, before)
}

// A panic in a monitor handler fails that request only: with the
// monitor's exec_start panicking (a fault point armed in the environment
// the daemon passes on), ExecSync and a streamed exec fail with an
// internal error, again and again, while the same monitor and daemon go on
// creating, starting, stopping and removing containers.
func TestMonitorPanicFailsOnlyItsRequest(t *testing.T) {
	n := newPodNode(t, "CRID_FAILPOINTS=monitor.exec_start=panic")
	podID, id := streamPod(t, n, "panic", ctrConfig("sleeper", "sleep", "100000"))
	monitor := n.theMonitor(t)
	ctx := context.Background()
	for i := range 3 {
		_, err := n.runtime().ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"true"}, Timeout: 10})
		if err == nil || !strings.Contains(err.Error(), "panic") {
			t.Fatalf("ExecSync %d with a panicking monitor handler: %v, want the panic as its error", i, err)
		}
		if c := status.Code(err); c == codes.OK || c == codes.InvalidArgument || c == codes.NotFound {
			t.Fatalf("ExecSync %d: code %v", i, c)
		}
	}
	resp, err := n.runtime().Exec(ctx, &runtime.ExecRequest{ContainerId: id, Cmd: []string{"true"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := openSession(ctx, resp.Url, false, false)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.status(30 * time.Second)
	s.close()
	if err != nil || !strings.Contains(st, "panic") {
		t.Fatalf("streamed exec with a panicking monitor handler: status %q, %v", st, err)
	}

	// Everything else goes on, on the same monitor.
	other := n.create(t, podID, n.logPod("panic"), ctrConfig("other", "sh", "-c", "echo alive; sleep 1000"), true)
	waitLog(t, filepath.Join(n.logPod("panic").LogDirectory, "other.log"), "alive", 10*time.Second)
	if _, err := n.runtime().StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: other, Timeout: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.runtime().RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: other}); err != nil {
		t.Fatal(err)
	}
	if st := n.ctrStatus(t, id); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("the exec'd container is %v", st.State)
	}
	if got := n.monitorPids(); !slices.Equal(got, []int{monitor}) {
		t.Fatalf("monitors after the panics: %v, want the same one (%d)", got, monitor)
	}
	select {
	case <-n.exited:
		t.Fatalf("the daemon exited: %v", n.cmd.ProcessState)
	default:
	}
	// Each panic is logged once, with its stack, in the monitor's log.
	b, err := os.ReadFile(filepath.Join(n.dir, "run", "monitor", "monitor.log"))
	if err != nil {
		t.Fatal(err)
	}
	if c := strings.Count(string(b), "Recovered from a panic"); c != 4 || !strings.Contains(string(b), "goroutine ") {
		t.Fatalf("monitor log: %d recovered panics logged (want 4), with a stack: %v\n%s", c, strings.Contains(string(b), "goroutine "), b)
	}
}

// ExecSync leaves nothing behind: 50 of `true` in a row each exit 0, then
// the daemon and monitor hold what they held. The log shows the latency.
func TestExecSyncLeavesNothing(t *testing.T) {
	n := newPodNode(t)
	_, id := streamPod(t, n, "execsync", ctrConfig("sleeper", "sleep", "100000"))
	n.exec(t, id, "true")
	time.Sleep(500 * time.Millisecond)
	before := n.usage(t)
	var took []time.Duration
	for i := range 50 {
		start := time.Now()
		resp, err := n.runtime().ExecSync(context.Background(), &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"true"}, Timeout: 10})
		took = append(took, time.Since(start))
		if err != nil || resp.ExitCode != 0 || len(resp.Stdout)+len(resp.Stderr) != 0 {
			t.Fatalf("ExecSync %d of true: %v, %v", i, resp, err)
		}
	}
	slices.Sort(took)
	after := n.waitBackTo(t, "50 ExecSync", before)
	t.Logf("50 ExecSync of true: p50 %s, p90 %s, max %s; %+v (before %+v)", took[25].Round(100*time.Microsecond), took[45].Round(100*time.Microsecond), took[49].Round(100*time.Microsecond), after, before)
}
