package oci

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crid-dev/crid/metrics/metricstest"
	"github.com/crid-dev/crid/oci/holder"
	"github.com/crid-dev/crid/oci/protocol"
	"github.com/crid-dev/crid/oci/specgen"
)

// These tests run real containers through a real crid-monitor: they need
// root and the busybox tree hack/test-images.sh stages. Set
// CRID_MONITOR_BIN to use a prebuilt monitor instead of building one.

var (
	buildOnce  sync.Once
	monitorBin string
	buildErr   error
)

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

func monitorBinary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("CRID_MONITOR_BIN"); b != "" {
		return b
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "crid-monitor-bin-")
		if err != nil {
			buildErr = err
			return
		}
		monitorBin = filepath.Join(dir, "crid-monitor")
		cmd := exec.Command("go", "build", "-tags", "containers_image_openpgp seccomp", "-o", monitorBin, "./cmd/crid-monitor")
		cmd.Dir = repoRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build crid-monitor: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return monitorBin
}

func TestMain(m *testing.M) {
	if os.Getenv("CRID_TEST_HELPER_DAEMON") != "" {
		os.Exit(helperDaemon())
	}
	code := m.Run()
	if monitorBin != "" {
		os.RemoveAll(filepath.Dir(monitorBin))
	}
	os.Exit(code)
}

type env struct {
	t        *testing.T
	r        *Runtime
	opts     Options
	rootfs   string
	cgParent string
	logDir   string
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newEnv starts a private monitor with private run and state dirs, a
// busybox rootfs and a cgroup parent, and undoes all of it at the end.
func newEnv(t *testing.T, tweak ...func(*Options)) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates real containers")
	}
	src := filepath.Join(repoRoot(t), "_output", "testbed", "stage", "busybox-root")
	if _, err := os.Stat(filepath.Join(src, "bin", "busybox")); err != nil {
		t.Fatalf("busybox rootfs missing (%v): run hack/test-images.sh once", err)
	}
	dir := t.TempDir()
	e := &env{t: t, rootfs: filepath.Join(dir, "rootfs"), cgParent: "/crid-test-" + randHex(4), logDir: filepath.Join(dir, "logs")}
	if out, err := exec.Command("cp", "-a", src, e.rootfs).CombinedOutput(); err != nil {
		t.Fatalf("copy rootfs: %v %s", err, out)
	}
	// Applet links, so "sh", "sleep", "yes"… resolve.
	out, err := exec.Command(filepath.Join(e.rootfs, "bin", "busybox"), "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" {
			os.Symlink("busybox", filepath.Join(e.rootfs, "bin", applet))
		}
	}
	e.opts = Options{
		MonitorBinary: monitorBinary(t),
		RunDir:        filepath.Join(dir, "run"),
		StateDir:      filepath.Join(dir, "state"),
	}
	for _, f := range tweak {
		f(&e.opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e.r, err = New(ctx, e.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.cleanup)
	return e
}

func (e *env) cleanup() {
	t := e.t
	if t.Failed() {
		if b, err := os.ReadFile(protocol.LogPath(e.opts.RunDir)); err == nil {
			t.Logf("monitor log:\n%s", b)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pid := e.r.MonitorPid()
	if cs, err := e.r.List(ctx); err == nil {
		for _, c := range cs {
			if err := e.r.Delete(ctx, c.ID); err != nil {
				t.Errorf("cleanup: delete %s: %v", c.ID, err)
			}
		}
	} else {
		t.Errorf("cleanup: list: %v", err)
	}
	e.r.Close()
	// Stop only the monitor this test started, and wait for it.
	if pid > 0 {
		syscall.Kill(pid, syscall.SIGTERM)
		for i := 0; i < 200; i++ {
			if alive, _ := monitorAlive(e.opts.RunDir); !alive {
				break
			}
			time.Sleep(25 * time.Millisecond)
		}
		if alive, _ := monitorAlive(e.opts.RunDir); alive {
			t.Errorf("monitor %d survived SIGTERM", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	// A monitor that outlived its starter may have become our child
	// (we are a child subreaper): reap it.
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil &&
		bytes.Contains(b, []byte(fmt.Sprintf("\nPPid:\t%d\n", os.Getpid()))) {
		syscall.Wait4(pid, nil, 0, nil)
	}
	removeCgroupTree(t, e.cgParent)
}

// removeCgroupTree removes parent (and anything left under it) from every
// cgroup hierarchy; a leftover is a test failure.
func removeCgroupTree(t *testing.T, parent string) {
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Error(err)
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(mounts))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i, v := range f {
			if v == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(f) || (f[sep+1] != "cgroup" && f[sep+1] != "cgroup2") {
			continue
		}
		root := filepath.Join(f[4], parent)
		var dirs []string
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
		for _, d := range dirs {
			if d != root {
				t.Errorf("leftover cgroup %s", d)
			}
			if err := os.Remove(d); err != nil {
				t.Errorf("remove cgroup %s: %v", d, err)
			}
		}
	}
}

// spec is a default container spec for args on the test rootfs.
func (e *env) spec(id string, args ...string) *specs.Spec {
	s := specgen.Base()
	s.Root.Path = e.rootfs
	s.Process.Args = args
	s.Hostname = "crid-test"
	s.Linux.CgroupsPath = e.cgParent + "/" + id
	return s
}

func (e *env) create(id string, s *specs.Spec, mut ...func(*CreateRequest)) int {
	e.t.Helper()
	req := CreateRequest{ID: id, Spec: s, LogPath: filepath.Join(e.logDir, id+".log")}
	for _, f := range mut {
		f(&req)
	}
	pid, err := e.r.Create(ctx(e.t), req)
	if err != nil {
		e.t.Fatalf("create %s: %v", id, err)
	}
	return pid
}

func (e *env) run(id string, s *specs.Spec, mut ...func(*CreateRequest)) Exit {
	e.t.Helper()
	e.create(id, s, mut...)
	if err := e.r.Start(ctx(e.t), id); err != nil {
		e.t.Fatalf("start %s: %v", id, err)
	}
	x, err := e.r.Wait(ctx(e.t), id)
	if err != nil {
		e.t.Fatalf("wait %s: %v", id, err)
	}
	return x
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

type logEntry struct {
	stream, tag, line string
}

func readLog(t *testing.T, path string) []logEntry {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var es []logEntry
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if l == "" {
			continue
		}
		if !strings.HasSuffix(l, "\n") {
			t.Fatalf("unterminated log entry %q", l)
		}
		p := strings.SplitN(strings.TrimSuffix(l, "\n"), " ", 4)
		if len(p) != 4 {
			t.Fatalf("malformed log entry %q", l)
		}
		if _, err := time.Parse(time.RFC3339Nano, p[0]); err != nil {
			t.Fatalf("log timestamp %q: %v", p[0], err)
		}
		es = append(es, logEntry{p[1], p[2], p[3]})
	}
	return es
}

func (e *env) logPath(id string) string { return filepath.Join(e.logDir, id+".log") }

func TestRunExitCodeAndLogs(t *testing.T) {
	e := newEnv(t)
	x := e.run("exit3", e.spec("exit3", "sh", "-c", "echo out; echo err >&2; exit 3"))
	if x.Code != 3 || x.Signal != 0 || x.OOMKilled || x.Unknown || x.FinishedAt.IsZero() {
		t.Fatalf("exit %+v", x)
	}
	es := readLog(t, e.logPath("exit3"))
	want := map[logEntry]bool{{"stdout", "F", "out"}: true, {"stderr", "F", "err"}: true}
	if len(es) != 2 || !want[es[0]] || !want[es[1]] {
		t.Fatalf("log %+v", es)
	}
	st, err := e.r.State(ctx(t), "exit3")
	if err != nil || st.Status != Stopped || st.Exit == nil || st.Exit.Code != 3 || st.StartedAt.IsZero() ||
		st.CreatedAt.After(st.StartedAt) || st.StartedAt.After(st.Exit.FinishedAt) {
		t.Fatalf("state %+v exit %+v err %v", st, st.Exit, err)
	}
	rec, err := protocol.ReadExit(e.opts.StateDir, "exit3")
	if err != nil || rec == nil || rec.Code != 3 || rec.ReapedBy != "monitor" {
		t.Fatalf("durable exit %+v %v", rec, err)
	}
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(string(b), "\x00", " ")
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestCreateStopsBeforeUserProcess(t *testing.T) {
	e := newEnv(t)
	pid := e.create("c1", e.spec("c1", "sh", "-c", "echo started; exec sleep 100"))
	time.Sleep(200 * time.Millisecond)
	st, err := e.r.State(ctx(t), "c1")
	if err != nil || st.Status != Created || st.Pid != pid || !st.StartedAt.IsZero() {
		t.Fatalf("state after create %+v %v", st, err)
	}
	if cl := cmdline(pid); !strings.HasSuffix(strings.TrimSpace(cl), " init") {
		t.Fatalf("created container already runs %q", cl)
	}
	if es := readLog(t, e.logPath("c1")); len(es) != 0 {
		t.Fatalf("output before start: %+v", es)
	}
	if err := e.r.Start(ctx(t), "c1"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "sleep to run", func() bool { return strings.HasPrefix(cmdline(pid), "sleep 100") })
	if st, _ := e.r.State(ctx(t), "c1"); st.Status != Running || st.StartedAt.IsZero() {
		t.Fatalf("state after start %+v", st)
	}
	if err := e.r.Start(ctx(t), "c1"); !errors.Is(err, ErrFailedPrecondition) {
		t.Fatalf("second start: %v", err)
	}
	if err := e.r.Kill(ctx(t), "c1", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	x, err := e.r.Wait(ctx(t), "c1")
	if err != nil || x.Code != 137 || x.Signal != syscall.SIGKILL {
		t.Fatalf("exit %+v %v", x, err)
	}
	if es := readLog(t, e.logPath("c1")); len(es) != 1 || es[0] != (logEntry{"stdout", "F", "started"}) {
		t.Fatalf("log %+v", es)
	}
	if err := e.r.Kill(ctx(t), "c1", syscall.SIGTERM); err != nil {
		t.Fatalf("kill of a stopped container: %v", err)
	}
}

// SIGTERM kills a process that has no handler, unless it is a PID
// namespace's init (the kernel drops it then): run in the host PID
// namespace to see the signal exit.
func TestKillSIGTERMIsExit143(t *testing.T) {
	e := newEnv(t)
	s := e.spec("term", "sleep", "100")
	specgen.SetNamespace(s, specs.PIDNamespace, "host")
	e.create("term", s)
	if err := e.r.Start(ctx(t), "term"); err != nil {
		t.Fatal(err)
	}
	if err := e.r.Kill(ctx(t), "term", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	x, err := e.r.Wait(ctx(t), "term")
	if err != nil || x.Code != 143 || x.Signal != syscall.SIGTERM {
		t.Fatalf("exit %+v %v", x, err)
	}
	st, err := e.r.State(ctx(t), "term")
	if err != nil || st.Status != Stopped || st.Exit.Code != 143 {
		t.Fatalf("state %+v %v", st, err)
	}
}

func TestFastWriterLosesNothingAndLongLinesSplit(t *testing.T) {
	e := newEnv(t)
	const maxLine = 16384
	x := e.run("fast", e.spec("fast", "sh", "-c",
		`yes | head -c 5000000; head -c 40000 /dev/zero | tr '\0' a; echo; echo tail`),
		func(r *CreateRequest) { r.MaxLogLine = maxLine })
	if x.Code != 0 {
		t.Fatalf("exit %+v", x)
	}
	var got strings.Builder
	var partial []int
	for _, en := range readLog(t, e.logPath("fast")) {
		if en.stream != "stdout" {
			t.Fatalf("entry on %s: %+v", en.stream, en)
		}
		got.WriteString(en.line)
		if en.tag == "F" {
			got.WriteByte('\n')
		} else {
			partial = append(partial, len(en.line))
		}
	}
	want := strings.Repeat("y\n", 2500000) + strings.Repeat("a", 40000) + "\ntail\n"
	if got.String() != want {
		t.Fatalf("reassembled %d bytes, want %d", got.Len(), len(want))
	}
	if len(partial) != 2 || partial[0] != maxLine || partial[1] != maxLine {
		t.Fatalf("partial entries %v, want two of %d", partial, maxLine)
	}
}

func TestTTYOutput(t *testing.T) {
	e := newEnv(t)
	s := e.spec("tty", "sh", "-c", "echo tty-out; tty")
	s.Process.Terminal = true
	x := e.run("tty", s, func(r *CreateRequest) { r.TTY = true })
	if x.Code != 0 {
		t.Fatalf("exit %+v", x)
	}
	es := readLog(t, e.logPath("tty"))
	if len(es) != 2 || es[0] != (logEntry{"stdout", "F", "tty-out"}) || !strings.HasPrefix(es[1].line, "/dev/pts/") {
		t.Fatalf("log %+v", es)
	}
}

func TestOOMKilled(t *testing.T) {
	e := newEnv(t)
	s := e.spec("oom", "sh", "-c", `x=$(head -c 200000000 /dev/zero | tr '\0' a); echo survived`)
	limit := int64(32 << 20)
	s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit}
	x := e.run("oom", s)
	if !x.OOMKilled || x.Code == 0 {
		t.Fatalf("exit %+v", x)
	}
}

// The monitor is killed while a container runs: the daemon side restarts
// it and hands the pipes back; the exit code and the last line arrive.
func TestMonitorCrashWhileContainerRuns(t *testing.T) {
	e := newEnv(t)
	e.create("survivor", e.spec("survivor", "sh", "-c", "echo before; sleep 3; echo done; exit 4"))
	if err := e.r.Start(ctx(t), "survivor"); err != nil {
		t.Fatal(err)
	}
	old := e.r.MonitorPid()
	restarts := metricstest.Value(t, "crid_monitor_restarts_total", map[string]string{})
	waitUntil(t, "first line", func() bool { b, _ := os.ReadFile(e.logPath("survivor")); return bytes.Contains(b, []byte("before")) })
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a new monitor", func() bool { return e.r.MonitorPid() != old && e.r.MonitorPid() != 0 })
	waitUntil(t, "the restart counted", func() bool {
		return metricstest.Value(t, "crid_monitor_restarts_total", map[string]string{}) == restarts+1
	})
	// The reloaded container serves execs from the new monitor.
	p := *e.spec("survivor", "x").Process
	p.Args = []string{"echo", "alive"}
	res, err := e.r.Exec(ctx(t), ExecRequest{ID: "survivor", Process: &p})
	if err != nil || string(res.Stdout) != "alive\n" {
		t.Fatalf("exec after monitor restart: %+v %v", res, err)
	}
	x, err := e.r.Wait(ctx(t), "survivor")
	if err != nil || x.Code != 4 || x.Unknown {
		t.Fatalf("exit %+v %v", x, err)
	}
	if e.r.MonitorPid() == old {
		t.Fatal("monitor was not restarted")
	}
	var lines []string
	for _, en := range readLog(t, e.logPath("survivor")) {
		lines = append(lines, en.line)
	}
	if strings.Join(lines, ",") != "before,done" {
		t.Fatalf("log lines %q", lines)
	}
}

// The container ends while no monitor runs: the daemon side reaps it and
// records the exit; its last output waits in the pipe until the new monitor
// gets the pipe back.
func TestContainerExitsWhileMonitorIsDown(t *testing.T) {
	hold := make(chan struct{})
	e := newEnv(t, func(o *Options) { o.beforeRestart = func() { <-hold } })
	e.create("orphan", e.spec("orphan", "sh", "-c", "echo before; sleep 1; echo done; exit 7"))
	if err := e.r.Start(ctx(t), "orphan"); err != nil {
		t.Fatal(err)
	}
	old := e.r.MonitorPid()
	waitUntil(t, "first line", func() bool { b, _ := os.ReadFile(e.logPath("orphan")); return bytes.Contains(b, []byte("before")) })
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var rec *protocol.Exit
	waitUntil(t, "the daemon to record the exit", func() bool {
		rec, _ = protocol.ReadExit(e.opts.StateDir, "orphan")
		return rec != nil
	})
	if rec.Code != 7 || rec.ReapedBy != "daemon" {
		t.Fatalf("recorded exit %+v", rec)
	}
	close(hold)
	x, err := e.r.Wait(ctx(t), "orphan")
	if err != nil || x.Code != 7 {
		t.Fatalf("exit %+v %v", x, err)
	}
	var lines []string
	for _, en := range readLog(t, e.logPath("orphan")) {
		lines = append(lines, en.line)
	}
	if strings.Join(lines, ",") != "before,done" {
		t.Fatalf("log lines %q", lines)
	}
}

// A new daemon-side Runtime finds the running monitor, its containers and
// their pipes.
func TestReconnectToRunningMonitor(t *testing.T) {
	e := newEnv(t)
	e.create("long", e.spec("long", "sh", "-c", "echo hello; exec sleep 100"))
	if err := e.r.Start(ctx(t), "long"); err != nil {
		t.Fatal(err)
	}
	pid := e.r.MonitorPid()
	restarts := metricstest.Value(t, "crid_monitor_restarts_total", map[string]string{})
	e.r.Close()
	r2, err := New(ctx(t), e.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.r = r2
	if r2.MonitorPid() != pid {
		t.Fatalf("new client started monitor %d; %d runs", r2.MonitorPid(), pid)
	}
	if got := metricstest.Value(t, "crid_monitor_restarts_total", map[string]string{}); got != restarts {
		t.Errorf("a reconnection to the running monitor counted as a restart: %v, was %v", got, restarts)
	}
	cs, err := r2.List(ctx(t))
	if err != nil || len(cs) != 1 || cs[0].ID != "long" || cs[0].Status != Running {
		t.Fatalf("list %+v %v", cs, err)
	}
	r2.mu.Lock()
	dups := len(r2.tracked["long"].stdio)
	r2.mu.Unlock()
	if dups != 2 {
		t.Fatalf("new client holds %d stdio duplicates, want 2", dups)
	}
	if err := r2.Kill(ctx(t), "long", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if x, err := r2.Wait(ctx(t), "long"); err != nil || x.Code != 137 {
		t.Fatalf("exit %+v %v", x, err)
	}
}

func TestExecSync(t *testing.T) {
	e := newEnv(t)
	s := e.spec("ex", "sleep", "100")
	e.create("ex", s)
	if err := e.r.Start(ctx(t), "ex"); err != nil {
		t.Fatal(err)
	}
	proc := func(args ...string) *specs.Process {
		p := *s.Process
		p.Args = args
		return &p
	}
	res, err := e.r.Exec(ctx(t), ExecRequest{ID: "ex", Process: proc("sh", "-c", "echo hi; echo err >&2; exit 5")})
	if err != nil || res.Exit.Code != 5 || string(res.Stdout) != "hi\n" || string(res.Stderr) != "err\n" || res.TimedOut {
		t.Fatalf("exec %+v %v", res, err)
	}
	res, err = e.r.Exec(ctx(t), ExecRequest{ID: "ex", Process: proc("cat"), Stdin: []byte("from stdin")})
	if err != nil || string(res.Stdout) != "from stdin" || res.Exit.Code != 0 {
		t.Fatalf("exec with stdin %+v %v", res, err)
	}
	start := time.Now()
	res, err = e.r.Exec(ctx(t), ExecRequest{ID: "ex", Process: proc("sleep", "30"), Timeout: 300 * time.Millisecond})
	if err != nil || !res.TimedOut || res.Exit.Code != 137 || time.Since(start) > 10*time.Second {
		t.Fatalf("timed-out exec %+v %v after %v", res, err, time.Since(start))
	}
	if _, err := e.r.Exec(ctx(t), ExecRequest{ID: "nope", Process: proc("true")}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("exec in unknown container: %v", err)
	}
}

func TestDeleteCleansUpAndIsIdempotent(t *testing.T) {
	e := newEnv(t)
	e.create("del", e.spec("del", "sleep", "100"))
	if err := e.r.Start(ctx(t), "del"); err != nil {
		t.Fatal(err)
	}
	if err := e.r.Delete(ctx(t), "del"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		filepath.Join(e.opts.RunDir, protocol.LibcontainerDir, "del"),
		filepath.Join(e.opts.StateDir, "del"),
		filepath.Join("/sys/fs/cgroup/memory", e.cgParent, "del"),
		filepath.Join("/sys/fs/cgroup/pids", e.cgParent, "del"),
	} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after delete (%v)", p, err)
		}
	}
	if err := e.r.Delete(ctx(t), "del"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := e.r.State(ctx(t), "del"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("state after delete: %v", err)
	}
	// The ID can be used again.
	if x := e.run("del", e.spec("del", "true")); x.Code != 0 {
		t.Fatalf("reuse: %+v", x)
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	rel := e.spec("rel", "true")
	rel.Root.Path = "rootfs"
	nocg := e.spec("nocg", "true")
	nocg.Linux.CgroupsPath = ""
	noproc := e.spec("noproc", "true")
	noproc.Process = nil
	noargs := e.spec("noargs")
	badns := e.spec("badns", "true")
	badns.Linux.Namespaces = append(badns.Linux.Namespaces, specs.LinuxNamespace{Type: "bogus"})
	for _, tc := range []struct {
		id   string
		spec *specs.Spec
	}{{"rel", rel}, {"nocg", nocg}, {"noproc", noproc}, {"noargs", noargs}, {"badns", badns}, {"../escape", e.spec("x", "true")}, {"nospec", nil}} {
		if _, err := e.r.Create(c, CreateRequest{ID: tc.id, Spec: tc.spec}); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("create %s: %v, want invalid argument", tc.id, err)
		}
	}
	if cs, _ := e.r.List(c); len(cs) != 0 {
		t.Fatalf("failed creates left %+v", cs)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/pids", e.cgParent)); !errors.Is(err, os.ErrNotExist) {
		// Nothing got far enough to create a cgroup, except badns maybe.
		entries, _ := os.ReadDir(filepath.Join("/sys/fs/cgroup/pids", e.cgParent))
		for _, en := range entries {
			if en.IsDir() {
				t.Errorf("failed create left cgroup %s", en.Name())
			}
		}
	}
	e.create("dup", e.spec("dup", "true"))
	if _, err := e.r.Create(c, CreateRequest{ID: "dup", Spec: e.spec("dup", "true")}); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	if err := e.r.Start(c, "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("start missing: %v", err)
	}
	if err := e.r.Kill(c, "dup", syscall.Signal(0)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("kill with signal 0: %v", err)
	}
}

func TestReopenLogAfterRotation(t *testing.T) {
	e := newEnv(t)
	e.create("rot", e.spec("rot", "sh", "-c", "echo one; sleep 1; echo two"))
	if err := e.r.Start(ctx(t), "rot"); err != nil {
		t.Fatal(err)
	}
	path := e.logPath("rot")
	waitUntil(t, "first line", func() bool { b, _ := os.ReadFile(path); return bytes.Contains(b, []byte("one")) })
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := e.r.ReopenLog(ctx(t), "rot"); err != nil {
		t.Fatal(err)
	}
	if x, err := e.r.Wait(ctx(t), "rot"); err != nil || x.Code != 0 {
		t.Fatalf("exit %+v %v", x, err)
	}
	old, cur := readLog(t, path+".1"), readLog(t, path)
	if len(old) != 1 || old[0].line != "one" || len(cur) != 1 || cur[0].line != "two" {
		t.Fatalf("rotated %+v current %+v", old, cur)
	}
}

// Stdin stays open (for attach) until closed; then the container reads EOF.
func TestStdinOpenUntilClosed(t *testing.T) {
	e := newEnv(t)
	e.create("in", e.spec("in", "sh", "-c", "cat; echo closed"), func(r *CreateRequest) { r.Stdin = true })
	if err := e.r.Start(ctx(t), "in"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if st, _ := e.r.State(ctx(t), "in"); st.Status != Running {
		t.Fatalf("container with open stdin stopped: %+v", st)
	}
	if err := e.r.CloseStdin(ctx(t), "in"); err != nil {
		t.Fatal(err)
	}
	if x, err := e.r.Wait(ctx(t), "in"); err != nil || x.Code != 0 {
		t.Fatalf("exit %+v %v", x, err)
	}
	if es := readLog(t, e.logPath("in")); len(es) != 1 || es[0].line != "closed" {
		t.Fatalf("log %+v", es)
	}
}

// A monitor killed in the middle of a create leaves an incomplete record,
// libcontainer state without state.json and a cgroup; its successor
// removes them.
func TestInterruptedCreateIsCleanedUp(t *testing.T) {
	e := newEnv(t)
	id := "half"
	cg := filepath.Join("/sys/fs/cgroup/pids", e.cgParent, id)
	if err := os.MkdirAll(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	lcDir := filepath.Join(e.opts.RunDir, protocol.LibcontainerDir, id)
	if err := os.MkdirAll(lcDir, 0o711); err != nil {
		t.Fatal(err)
	}
	dir := protocol.ContainerDir(e.opts.StateDir, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	rec := protocol.Record{ID: id, CgroupsPath: e.cgParent + "/" + id, CreatedAt: time.Now()}
	if err := protocol.WriteJSON(filepath.Join(dir, protocol.RecordFile), rec, false); err != nil {
		t.Fatal(err)
	}
	old := e.r.MonitorPid()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a new monitor", func() bool { return e.r.MonitorPid() != old && e.r.MonitorPid() != 0 })
	for _, p := range []string{cg, lcDir, dir} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived the cleanup (%v)", p, err)
		}
	}
	if _, err := e.r.State(ctx(t), id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("state of the interrupted container: %v", err)
	}
}

// helperDaemon plays a daemon that starts a monitor, creates a container
// and exits without any cleanup.
func helperDaemon() int {
	var in struct {
		Opts Options
		Spec *specs.Spec
		Log  string
		// More containers to create and start, by ID.
		More map[string]struct {
			Spec *specs.Spec
			Log  string
		}
	}
	if err := json.Unmarshal([]byte(os.Getenv("CRID_TEST_HELPER_DAEMON")), &in); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c := context.Background()
	r, err := New(c, in.Opts)
	if err == nil {
		_, err = r.Create(c, CreateRequest{ID: "outlives", Spec: in.Spec, LogPath: in.Log})
	}
	if err == nil {
		err = r.Start(c, "outlives")
	}
	for id, m := range in.More {
		if err == nil {
			_, err = r.Create(c, CreateRequest{ID: id, Spec: m.Spec, LogPath: m.Log})
		}
		if err == nil {
			err = r.Start(c, id)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(r.MonitorPid())
	return 0
}

// The monitor started by a daemon outlives it, with its containers, and
// serves the next daemon.
func TestMonitorSurvivesDaemonExit(t *testing.T) {
	e := newEnv(t)
	// This test's own monitor goes; the helper daemon starts another.
	pid := e.r.MonitorPid()
	e.r.Close()
	syscall.Kill(pid, syscall.SIGTERM)
	waitUntil(t, "the first monitor to stop", func() bool { alive, _ := monitorAlive(e.opts.RunDir); return !alive })
	syscall.Wait4(pid, nil, 0, nil)

	in, _ := json.Marshal(map[string]any{
		"Opts": e.opts,
		"Spec": e.spec("outlives", "sh", "-c", "echo hello; exec sleep 100"),
		"Log":  e.logPath("outlives"),
	})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CRID_TEST_HELPER_DAEMON="+string(in))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper daemon: %v", err)
	}
	var mon int
	fmt.Sscan(string(out), &mon)
	if mon <= 0 || syscall.Kill(mon, 0) != nil {
		t.Fatalf("monitor %q did not outlive the daemon", out)
	}
	r, err := New(ctx(t), e.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	if r.MonitorPid() != mon {
		t.Fatalf("second daemon serves monitor %d, want %d", r.MonitorPid(), mon)
	}
	st, err := r.State(ctx(t), "outlives")
	if err != nil || st.Status != Running {
		t.Fatalf("state %+v %v", st, err)
	}
	// Running says the process started, not that its echo ran yet.
	waitUntil(t, "the container's first line", func() bool { return len(readLog(t, e.logPath("outlives"))) == 1 })
	if err := r.Kill(ctx(t), "outlives", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if x, err := r.Wait(ctx(t), "outlives"); err != nil || x.Code != 137 {
		t.Fatalf("exit %+v %v", x, err)
	}
	if es := readLog(t, e.logPath("outlives")); len(es) != 1 || es[0].line != "hello" {
		t.Fatalf("log %+v", es)
	}
}

// ExecSync output beyond the cap is dropped, not a failed call: both
// streams at once well past it come back capped and marked truncated.
func TestExecSyncOutputIsCapped(t *testing.T) {
	e := newEnv(t)
	s := e.spec("big", "sleep", "100")
	e.create("big", s)
	if err := e.r.Start(ctx(t), "big"); err != nil {
		t.Fatal(err)
	}
	p := *s.Process
	p.Args = []string{"sh", "-c", "head -c 3000000 /dev/zero; head -c 3000000 /dev/zero >&2; echo done >&2"}
	res, err := e.r.Exec(ctx(t), ExecRequest{ID: "big", Process: &p, MaxOutput: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Stdout) != 1<<20 || len(res.Stderr) != 1<<20 || !res.Truncated || res.Exit.Code != 0 || res.TimedOut {
		t.Fatalf("stdout %d bytes, stderr %d bytes, truncated %v, exit %+v, timed out %v", len(res.Stdout), len(res.Stderr), res.Truncated, res.Exit, res.TimedOut)
	}
}

// Waits and execs that last as long as their process hold no request slot
// of the main connection: with more of them outstanding than the monitor
// serves at once on one connection, lifecycle calls still get through.
func TestLongWaitsLeaveLifecycleCallsRoom(t *testing.T) {
	e := newEnv(t)
	s := e.spec("held", "sleep", "1000")
	e.create("held", s)
	if err := e.r.Start(ctx(t), "held"); err != nil {
		t.Fatal(err)
	}
	// One container run to its end first: its log copier leaves its
	// staging pipes idle in crilog's pool, as "other" below will, so the
	// count after the load compares like with like.
	e.create("warmup", e.spec("warmup", "true"))
	if err := e.r.Start(ctx(t), "warmup"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Wait(ctx(t), "warmup"); err != nil {
		t.Fatal(err)
	}
	if err := e.r.Delete(ctx(t), "warmup"); err != nil {
		t.Fatal(err)
	}
	mon := e.r.MonitorPid()
	fdsBefore := monitorFDs(mon)
	hold, release := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { release(); wg.Wait() }()
	const waits, execs = 300, 20
	for range waits {
		wg.Go(func() { _, _ = e.r.Wait(hold, "held") })
	}
	p := *s.Process
	p.Args = []string{"sleep", "1000"}
	for range execs {
		wg.Go(func() { _, _ = e.r.Exec(hold, ExecRequest{ID: "held", Process: &p}) })
	}
	waitUntil(t, "the execs to run", func() bool {
		b, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup/pids", e.cgParent, "held", "cgroup.procs"))
		return strings.Count(string(b), "\n") == execs+1
	})
	// Each wait and exec holds a connection of its own while it waits.
	waitUntil(t, "the waits to be outstanding", func() bool { return monitorSockets(t, e.r.MonitorPid()) > waits+execs })
	lctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := e.r.Create(lctx, CreateRequest{ID: "other", Spec: e.spec("other", "true"), LogPath: e.logPath("other")}); err != nil {
		t.Fatalf("create under %d waits and %d execs: %v", waits, execs, err)
	}
	if err := e.r.Start(lctx, "other"); err != nil {
		t.Fatal(err)
	}
	if x, err := e.r.Wait(lctx, "other"); err != nil || x.Code != 0 {
		t.Fatalf("wait under load: %+v %v", x, err)
	}
	if err := e.r.Delete(lctx, "other"); err != nil {
		t.Fatal(err)
	}
	t.Logf("create, start, wait and delete under %d waits and %d execs: %v", waits, execs, time.Since(start).Round(time.Millisecond))
	// Ending the requests ends their execs in the container.
	release()
	wg.Wait()
	waitUntil(t, "the execs to end", func() bool {
		b, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup/pids", e.cgParent, "held", "cgroup.procs"))
		return strings.Count(string(b), "\n") == 1
	})
	// Their connections, pipes and pidfds are gone from the monitor.
	waitUntil(t, "the monitor to let go of the execs' descriptors", func() bool { return monitorFDs(mon) <= fdsBefore })
}

func monitorFDs(pid int) int {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(fds)
}

// An exec belongs to the connection that started it: when that ends (a
// daemon that died mid-exec), the monitor kills the process.
func TestExecDiesWithItsSession(t *testing.T) {
	e := newEnv(t)
	s := e.spec("own", "sleep", "1000")
	e.create("own", s)
	if err := e.r.Start(ctx(t), "own"); err != nil {
		t.Fatal(err)
	}
	c, err := protocol.Dial(ctx(t), protocol.SocketPath(e.opts.RunDir))
	if err != nil {
		t.Fatal(err)
	}
	p := *s.Process
	p.Args = []string{"sleep", "1000"}
	var reply protocol.ExecStartReply
	fds, err := c.Call(ctx(t), protocol.MethodExecStart, protocol.ExecStartRequest{ID: "own", Process: &p}, nil, &reply)
	if err != nil {
		t.Fatal(err)
	}
	protocol.CloseFiles(fds)
	if !alive(reply.Pid) {
		t.Fatalf("exec pid %d not running", reply.Pid)
	}
	c.Close()
	waitUntil(t, "the exec to be killed", func() bool { return !alive(reply.Pid) })
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// monitorSockets counts the sockets the monitor holds open.
func monitorSockets(t *testing.T, pid int) int {
	t.Helper()
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// Issue 15 item 1 at the Runtime's level: the daemon side exits and the
// monitor is killed, so nothing of crid but the stdio holder is left. A
// container that ends meanwhile is reported with its own exit code by the
// first answer of the next monitor, with its whole log; one that keeps
// running is the same process and its output (written while nobody read
// it) reaches the log again, without a gap.
func TestDaemonAndMonitorBothDown(t *testing.T) {
	e := newEnv(t)
	pid := e.r.MonitorPid()
	e.r.Close()
	syscall.Kill(pid, syscall.SIGTERM)
	waitUntil(t, "the first monitor to stop", func() bool { alive, _ := monitorAlive(e.opts.RunDir); return !alive })
	syscall.Wait4(pid, nil, 0, nil)

	type more struct {
		Spec *specs.Spec
		Log  string
	}
	in, _ := json.Marshal(map[string]any{
		"Opts": e.opts,
		"Spec": e.spec("outlives", "sh", "-c", `i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.05; done`),
		"Log":  e.logPath("outlives"),
		"More": map[string]more{"short": {
			Spec: e.spec("short", "sh", "-c", `i=0; while [ $i -lt 20 ]; do echo "line $i"; i=$((i+1)); sleep 0.05; done; exit 5`),
			Log:  e.logPath("short"),
		}},
	})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CRID_TEST_HELPER_DAEMON="+string(in))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper daemon: %v", err)
	}
	var mon int
	fmt.Sscan(string(out), &mon)
	recs := map[string]*protocol.Record{}
	for _, id := range []string{"outlives", "short"} {
		rec, err := protocol.ReadRecord(e.opts.StateDir, id)
		if err != nil || rec == nil || rec.Pid <= 0 {
			t.Fatalf("record of %s: %+v %v", id, rec, err)
		}
		recs[id] = rec
	}
	if err := syscall.Kill(mon, syscall.SIGKILL); err != nil {
		t.Fatalf("kill monitor %q: %v", out, err)
	}
	waitUntil(t, "the monitor to die", func() bool { alive, _ := monitorAlive(e.opts.RunDir); return !alive })
	syscall.Wait4(mon, nil, 0, nil) // it became our child when the helper exited
	downAt := time.Now()
	// The short one ends while nothing of crid but the holder runs. Its
	// init is now a child of this process (a child subreaper), which does
	// not reap it: as PID 1 would, late.
	short := recs["short"]
	waitUntil(t, "the short container to end", func() bool {
		st, state, err := protocol.ProcStartTime(short.Pid)
		return err != nil || st != short.InitStartTime || state == 'Z'
	})
	ticker := recs["outlives"]
	if st, state, err := protocol.ProcStartTime(ticker.Pid); err != nil || st != ticker.InitStartTime || state == 'Z' {
		t.Fatalf("the ticker died while crid was down (%c %v): nobody kept its stdout", state, err)
	}
	before := len(readLog(t, e.logPath("outlives")))
	time.Sleep(300 * time.Millisecond) // it writes into a pipe nobody reads

	restartAt := time.Now()
	r, err := New(ctx(t), e.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	st, err := r.State(ctx(t), "short")
	if err != nil || st.Status != Stopped || st.Exit == nil || st.Exit.Code != 5 || st.Exit.Unknown {
		t.Fatalf("first state of the short container after the restart: %+v %v; want stopped with exit 5", st, err)
	}
	// Its init is still an unreaped zombie: the new monitor could read
	// its code itself, but only the holder knows when it ended.
	if st.Exit.FinishedAt.Before(downAt.Add(-time.Second)) || st.Exit.FinishedAt.After(restartAt) {
		t.Errorf("short container finished at %s; crid went down at %s and came back at %s", st.Exit.FinishedAt, downAt, restartAt)
	}
	var lines []string
	for _, en := range readLog(t, e.logPath("short")) {
		lines = append(lines, en.line)
	}
	if len(lines) != 20 || lines[0] != "line 0" || lines[19] != "line 19" {
		t.Fatalf("short container's log: %q", lines)
	}
	if st, err := r.State(ctx(t), "outlives"); err != nil || st.Status != Running || st.Pid != ticker.Pid || st.Message != "" {
		t.Fatalf("state of the ticker after the restart: %+v %v", st, err)
	}
	waitUntil(t, "the ticker's log to grow again", func() bool { return len(readLog(t, e.logPath("outlives"))) > before+20 })
	for i, en := range readLog(t, e.logPath("outlives")) {
		if en.line != fmt.Sprintf("tick %d", i) {
			t.Fatalf("ticker's log line %d is %q: lines lost", i, en.line)
		}
	}
}

// When the holder dies with the monitor and the daemon, nothing kept a
// running container's output: it stays running, and its state says that
// its output no longer reaches its log, instead of saying nothing.
func TestOutputLostIsStated(t *testing.T) {
	e := newEnv(t)
	pid := e.r.MonitorPid()
	e.r.Close()
	syscall.Kill(pid, syscall.SIGTERM)
	waitUntil(t, "the first monitor to stop", func() bool { alive, _ := monitorAlive(e.opts.RunDir); return !alive })
	syscall.Wait4(pid, nil, 0, nil)
	in, _ := json.Marshal(map[string]any{
		"Opts": e.opts,
		"Spec": e.spec("outlives", "sleep", "100"), // writes nothing: no SIGPIPE ends it
		"Log":  e.logPath("outlives"),
	})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CRID_TEST_HELPER_DAEMON="+string(in))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper daemon: %v", err)
	}
	var mon int
	fmt.Sscan(string(out), &mon)
	hc, err := holder.Connect(ctx(t), "", e.opts.RunDir, e.opts.StateDir)
	if err != nil {
		t.Fatalf("no holder serves the monitor's run dir: %v", err)
	}
	hpid := hc.Pid
	hc.Close()
	for _, p := range []int{mon, hpid} {
		if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	// Both became our children (a child subreaper) as their parents died:
	// reap them, so they are gone, not zombies.
	waitUntil(t, "the monitor and the holder to die", func() bool {
		for _, p := range []int{mon, hpid} {
			syscall.Wait4(p, nil, syscall.WNOHANG, nil)
		}
		return syscall.Kill(mon, 0) != nil && syscall.Kill(hpid, 0) != nil
	})
	r, err := New(ctx(t), e.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	var st State
	waitUntil(t, "the state to say the output is lost", func() bool {
		st, err = r.State(ctx(t), "outlives")
		if err != nil || st.Status != Running {
			t.Fatalf("state %+v %v: want running", st, err)
		}
		return strings.Contains(st.Message, "no holder")
	})
	t.Logf("status message: %q", st.Message)
}

// A holder killed on its own is replaced by the monitor, which hands the
// new one every running container's output.
func TestHolderKilledIsReplaced(t *testing.T) {
	e := newEnv(t)
	e.create("c", e.spec("c", "sh", "-c", "echo hi; exec sleep 100"))
	if err := e.r.Start(ctx(t), "c"); err != nil {
		t.Fatal(err)
	}
	hc, err := holder.Connect(ctx(t), "", e.opts.RunDir, e.opts.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	old := hc.Pid
	hc.Close()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a new holder that holds the container", func() bool {
		hc, err := holder.Connect(ctx(t), "", e.opts.RunDir, e.opts.StateDir)
		if err != nil {
			return false
		}
		defer hc.Close()
		files, err := hc.Take(ctx(t), "c")
		protocol.CloseFiles(mapValues(files))
		return err == nil && hc.Pid != old && files[protocol.StdioStdout] != nil && files[protocol.StdioStderr] != nil
	})
}

func mapValues(m map[string]*os.File) []*os.File {
	out := make([]*os.File, 0, len(m))
	for _, f := range m {
		out = append(out, f)
	}
	return out
}
