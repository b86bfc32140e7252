package oci

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/failpoint"
	"github.com/crid-dev/crid/metrics"
	"github.com/crid-dev/crid/oci/protocol"
	"github.com/crid-dev/crid/panicguard"
)

// Options configure a Runtime.
type Options struct {
	// MonitorBinary is the crid-monitor executable, started when no
	// monitor serves RunDir. Empty: only connect to a running one.
	MonitorBinary string
	// RunDir holds the monitor's socket, lock, log and libcontainer
	// state; StateDir its per-container records and exit files. Both
	// absolute and private to crid.
	RunDir   string
	StateDir string
	// MaxLogLine is the monitor's default CRI log line size (0: 16 KiB).
	MaxLogLine int
	// StartTimeout bounds a monitor's start (0: 10 s).
	StartTimeout time.Duration

	// beforeRestart, a test hook, runs before reconnecting after a loss.
	beforeRestart func()
}

// Runtime is the daemon's handle on the monitor. It is safe for concurrent
// use. Calls wait while the monitor is being restarted; calls that can be
// repeated safely (everything but Create, Start and Exec) are repeated on
// the new monitor, the others fail with ErrMonitorLost. Short calls share
// one connection; calls that wait as long as a process lives each get a
// session (see session.go).
type Runtime struct {
	opts   Options
	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // supervisor and SIGCHLD handler

	mu         sync.Mutex
	client     *protocol.Client // nil while the monitor is down
	up         chan struct{}    // closed while client is set
	gen        int              // bumped on every new monitor connection
	monitorPid int
	tracked    map[string]*tracked
}

// tracked is what the daemon keeps per container: the init's identity, for
// reaping it when the monitor is gone, and duplicates of its stdio, to hand
// to a new monitor.
type tracked struct {
	pid    int
	start  uint64
	stdio  map[string]*os.File
	exited bool
}

// New connects to the monitor serving opts.RunDir, starting one if none
// runs, and learns the containers it manages. It makes the calling process
// a child subreaper (the design needs the daemon to be one) and reaps
// container inits on SIGCHLD: the daemon must not wait4(-1) itself.
func New(ctx context.Context, opts Options) (*Runtime, error) {
	if !filepath.IsAbs(opts.RunDir) || !filepath.IsAbs(opts.StateDir) {
		return nil, fmt.Errorf("oci: run dir %q and state dir %q must be absolute", opts.RunDir, opts.StateDir)
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 10 * time.Second
	}
	for _, d := range []string{opts.RunDir, opts.StateDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("oci: create %s: %w", d, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("oci: become child subreaper: %w", err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	r := &Runtime{opts: opts, ctx: rctx, cancel: cancel, up: make(chan struct{}), tracked: map[string]*tracked{}}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGCHLD)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer signal.Stop(sigs)
		for {
			select {
			case <-rctx.Done():
				return
			case <-sigs:
				r.Reap()
			}
		}
	}()
	c, err := r.connect(ctx)
	if err != nil {
		r.Close()
		return nil, err
	}
	if err := r.online(ctx, c, false); err != nil {
		c.Close()
		r.Close()
		return nil, err
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.supervise()
	}()
	return r, nil
}

// Close ends the Runtime's goroutines and its connection; the monitor and
// the containers keep running. A monitor this Runtime started stays its
// child: the goroutine waiting for it ends when it exits.
func (r *Runtime) Close() error {
	r.cancel()
	r.mu.Lock()
	c := r.client
	r.mu.Unlock()
	var err error
	if c != nil {
		err = c.Close()
	}
	r.wg.Wait()
	r.mu.Lock()
	for _, t := range r.tracked {
		t.release()
	}
	r.mu.Unlock()
	return err
}

// MonitorPid is the pid of the monitor currently served.
func (r *Runtime) MonitorPid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.monitorPid
}

// connect dials the monitor, starting one when none is alive.
func (r *Runtime) connect(ctx context.Context) (*protocol.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.StartTimeout)
	defer cancel()
	sock := protocol.SocketPath(r.opts.RunDir)
	for {
		c, err := protocol.Dial(ctx, sock)
		if err == nil {
			return c, nil
		}
		alive, lerr := monitorAlive(r.opts.RunDir)
		if lerr != nil {
			return nil, fmt.Errorf("oci: %w", lerr)
		}
		if !alive {
			if r.opts.MonitorBinary == "" {
				return nil, fmt.Errorf("oci: no monitor serves %s and no monitor binary is configured: %w", sock, err)
			}
			if err := r.spawn(ctx); err != nil {
				return nil, err
			}
			continue
		}
		// Alive but not serving yet (starting, or busy reloading).
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("oci: monitor on %s is alive but does not answer: %w", sock, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// online says hello on a new connection, learns the monitor's containers,
// collects stdio duplicates for those it lacks and, after a monitor
// restart, hands back the ones it has.
func (r *Runtime) online(ctx context.Context, c *protocol.Client, restarted bool) error {
	var hello protocol.HelloReply
	if _, err := c.Call(ctx, protocol.MethodHello, struct{}{}, nil, &hello); err != nil {
		return fmt.Errorf("oci: monitor hello: %w", err)
	}
	if hello.Version != protocol.Version {
		return fmt.Errorf("oci: monitor pid %d speaks protocol %d, want %d", hello.Pid, hello.Version, protocol.Version)
	}
	var list protocol.ListReply
	if _, err := c.Call(ctx, protocol.MethodList, struct{}{}, nil, &list); err != nil {
		return fmt.Errorf("oci: list containers: %w", err)
	}
	listed := map[string]bool{}
	for _, s := range list.Containers {
		listed[s.ID] = true
	}
	r.mu.Lock()
	for id, t := range r.tracked {
		if !listed[id] {
			t.release()
			delete(r.tracked, id)
		}
	}
	r.mu.Unlock()
	for _, s := range list.Containers {
		r.mu.Lock()
		t := r.tracked[s.ID]
		if t == nil {
			t = &tracked{stdio: map[string]*os.File{}}
			r.tracked[s.ID] = t
		}
		t.pid, t.start = s.Pid, s.InitStartTime
		stopped := s.Status == protocol.StatusStopped
		if stopped {
			t.exited = true
		}
		// A restarted monitor gets the pipes back even of a stopped
		// container: their last output may still be in them.
		give := restarted && len(t.stdio) > 0
		need := !restarted && !stopped && len(t.stdio) == 0
		if stopped && !give {
			t.release()
		}
		r.mu.Unlock()
		switch {
		case need:
			r.collectStdio(ctx, c, s.ID)
		case give:
			r.adopt(ctx, c, s.ID)
		}
	}
	// Nothing more comes: reloaded containers whose pipes nobody handed
	// back stop waiting for them (their status then says so, or their
	// exit is recorded, at once rather than after the monitor's grace).
	if _, err := c.Call(ctx, protocol.MethodAdoptDone, struct{}{}, nil, nil); err != nil {
		klog.V(2).InfoS("The monitor did not take adopt_done (an older monitor waits out its grace instead)", "err", err)
	}
	// Inits that exited while no Runtime listened for SIGCHLD.
	r.Reap()
	r.mu.Lock()
	r.client = c
	r.gen++
	r.monitorPid = hello.Pid
	close(r.up)
	r.mu.Unlock()
	klog.InfoS("Connected to crid-monitor", "pid", hello.Pid, "containers", len(list.Containers), "restarted", restarted)
	return nil
}

func (r *Runtime) collectStdio(ctx context.Context, c *protocol.Client, id string) {
	var reply protocol.StdioReply
	fds, err := c.Call(ctx, protocol.MethodStdio, protocol.IDRequest{ID: id}, nil, &reply)
	if err != nil {
		klog.ErrorS(err, "Collecting stdio duplicates failed; a monitor crash would lose this container's output", "id", id)
		return
	}
	r.keepStdio(id, reply.Stdio, fds)
}

// adopt hands the container's stdio to the monitor. It sends duplicates,
// taken under the lock, so a concurrent release cannot close them mid-send.
func (r *Runtime) adopt(ctx context.Context, c *protocol.Client, id string) {
	r.mu.Lock()
	t := r.tracked[id]
	var roles []string
	var fds []*os.File
	if t != nil {
		for role, f := range t.stdio {
			d, err := protocol.Dup(f, false)
			if err != nil {
				klog.ErrorS(err, "Duplicating stdio to hand back failed", "id", id, "role", role)
				continue
			}
			roles = append(roles, role)
			fds = append(fds, d)
		}
	}
	r.mu.Unlock()
	defer protocol.CloseFiles(fds)
	if len(fds) == 0 {
		return
	}
	if _, err := c.Call(ctx, protocol.MethodAdopt, protocol.AdoptRequest{ID: id, Stdio: roles}, fds, nil); err != nil {
		klog.ErrorS(err, "Handing stdio back to the monitor failed", "id", id)
	}
}

// keepStdio stores duplicates received from the monitor.
func (r *Runtime) keepStdio(id string, roles []string, fds []*os.File) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.tracked[id]
	if t == nil || len(roles) != len(fds) {
		protocol.CloseFiles(fds)
		return
	}
	t.release()
	for i, role := range roles {
		t.stdio[role] = fds[i]
	}
}

func (t *tracked) release() {
	for role, f := range t.stdio {
		f.Close()
		delete(t.stdio, role)
	}
}

// supervise restarts the connection (and the monitor, when it died) each
// time it drops, until Close.
func (r *Runtime) supervise() {
	for {
		r.mu.Lock()
		c := r.client
		r.mu.Unlock()
		select {
		case <-r.ctx.Done():
			return
		case <-c.Done():
		}
		r.mu.Lock()
		r.client = nil
		r.up = make(chan struct{})
		lostPid := r.monitorPid
		r.mu.Unlock()
		klog.InfoS("Lost the crid-monitor connection; reconnecting")
		r.Reap() // inits that exited with the monitor gone are ours now
		if r.opts.beforeRestart != nil {
			r.opts.beforeRestart()
		}
		for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
			nc, err := r.connect(r.ctx)
			if err == nil {
				if err = r.online(r.ctx, nc, true); err == nil {
					if r.MonitorPid() != lostPid {
						// Another process took over: a restart, not
						// a reconnection to the same monitor.
						metrics.MonitorRestart()
					}
					break
				}
				nc.Close()
			}
			if r.ctx.Err() != nil {
				return
			}
			klog.ErrorS(err, "Reconnecting to crid-monitor failed", "retryIn", backoff)
			select {
			case <-r.ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
	}
}

// conn waits for a live connection.
func (r *Runtime) conn(ctx context.Context) (*protocol.Client, int, error) {
	for {
		r.mu.Lock()
		c, up, gen := r.client, r.up, r.gen
		r.mu.Unlock()
		if c != nil {
			return c, gen, nil
		}
		select {
		case <-up:
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("oci: waiting for the monitor: %w", ctx.Err())
		case <-r.ctx.Done():
			return nil, 0, errors.New("oci: runtime closed")
		}
	}
}

// call runs one request; with retry it is repeated on a new monitor after
// a lost connection.
func (r *Runtime) call(ctx context.Context, method string, req any, fds []*os.File, resp any, retry bool) ([]*os.File, int, error) {
	for {
		c, gen, err := r.conn(ctx)
		if err != nil {
			return nil, 0, err
		}
		rfds, err := c.Call(ctx, method, req, fds, resp)
		if err != nil && errors.Is(err, protocol.ErrConnLost) && retry && ctx.Err() == nil {
			continue
		}
		if err != nil {
			return nil, gen, mapError(err)
		}
		return rfds, gen, nil
	}
}

// monitorAlive tries the monitor's lock: held means a monitor lives.
func monitorAlive(runDir string) (bool, error) {
	f, err := os.OpenFile(protocol.LockPath(runDir), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return false, fmt.Errorf("open monitor lock: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return true, nil
		}
		return false, fmt.Errorf("try monitor lock: %w", err)
	}
	return false, nil // closing releases it
}

// spawn starts a monitor as our child in its own session and waits until
// it serves its socket. A goroutine waits for its exit so it never lingers
// as a zombie.
func (r *Runtime) spawn(ctx context.Context) error {
	logf, err := os.OpenFile(protocol.LogPath(r.opts.RunDir), os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("oci: open monitor log: %w", err)
	}
	defer logf.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("oci: start monitor: %w", err)
	}
	defer readyR.Close()
	args := []string{"--run-dir", r.opts.RunDir, "--state-dir", r.opts.StateDir, "--ready-fd", "3"}
	if r.opts.MaxLogLine > 0 {
		args = append(args, "--max-log-line", fmt.Sprint(r.opts.MaxLogLine))
	}
	cmd := exec.Command(r.opts.MonitorBinary, args...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	// Diagnostics only, and the test fault points, which a monitor reads
	// from its own environment like the daemon does.
	for _, k := range []string{"GORACE", "GOTRACEBACK", "GODEBUG", failpoint.EnvVar, failpoint.OnceEnvVar} {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{readyW}
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true}
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		return fmt.Errorf("oci: start monitor %s: %w", r.opts.MonitorBinary, err)
	}
	panicguard.Go("monitor reaper", func() { _ = cmd.Wait() }) // ends when the monitor exits
	msg := make(chan string, 1)
	panicguard.Go("monitor start", func() { // ends when the monitor writes its verdict or dies
		b := make([]byte, 4096)
		n, _ := readyR.Read(b)
		msg <- string(b[:max(n, 0)])
	})
	select {
	case m := <-msg:
		if m != "ok\n" {
			if m == "" {
				m = "exited before serving; see " + protocol.LogPath(r.opts.RunDir)
			}
			return fmt.Errorf("oci: monitor %s: %s", r.opts.MonitorBinary, m)
		}
		klog.InfoS("Started crid-monitor", "pid", cmd.Process.Pid, "binary", r.opts.MonitorBinary)
		return nil
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		return fmt.Errorf("oci: monitor did not get ready: %w", ctx.Err())
	}
}
