// Package holder is crid's stdio holder: a tiny per-node process
// (`crid-monitor hold`) that keeps a duplicate of each container's output
// pipes and watches each container's init through a pidfd. It exists for
// the moment when both the daemon and crid-monitor are dead at once (the
// daemon keeps duplicates too, but only while it lives):
//
//   - A pipe whose every reader is gone kills its writer with SIGPIPE. While
//     the holder keeps a read end, a container's writes fill the pipe (64 KiB)
//     instead, and the next monitor takes the read ends back from the holder
//     and copies what waited in them to the log.
//   - An init whose monitor and daemon are dead is reaped by PID 1 (or a
//     subreaper above), which records nothing. A pidfd becomes readable for
//     any holder when its process ends, and the exit status can be read
//     from /proc while it is a zombie (with CAP_SYS_PTRACE) or from the
//     pidfd after the reap (PIDFD_INFO_EXIT, Linux 6.15+). The holder
//     writes what it saw, with the time it saw it, to the container's
//     "seen exit" file, which a monitor reads when it could not observe
//     the exit itself.
//
// The holder never reads the pipes, never reaps and never writes the
// container's own exit file: the monitor (or the daemon) stays the owner of
// every container; the holder only keeps what would otherwise be lost. It
// imports nothing of libcontainer's and holds a few descriptors per
// container.
package holder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/oci/protocol"
	"github.com/crid-dev/crid/panicguard"
)

// Files of the holder under the monitor's run directory.
const (
	SocketName = "holder.sock"
	LockName   = "holder.lock"
	LogName    = "holder.log"
)

// Methods of the holder's protocol (framed JSON with descriptors, as the
// monitor's, see oci/protocol).
const (
	MethodHello   = "hello"   // {} → HelloReply
	MethodHold    = "hold"    // HoldRequest + fds → {}: keep (replacing) a container's output ends, watch its init
	MethodTake    = "take"    // IDRequest → TakeReply + duplicates of the held ends
	MethodRelease = "release" // IDRequest → {}: forget a container
)

// HelloReply identifies the holder.
type HelloReply struct {
	Pid  int `json:"pid"`
	Held int `json:"held"`
}

// HoldRequest hands the holder a container's output ends (one descriptor
// per role, in order) and names its init, to watch.
type HoldRequest struct {
	ID            string   `json:"id"`
	Stdio         []string `json:"stdio"`
	Pid           int      `json:"pid"`
	InitStartTime uint64   `json:"init_start_time"`
	MemoryCgroup  string   `json:"memory_cgroup,omitempty"`
}

// IDRequest names a container.
type IDRequest struct {
	ID string `json:"id"`
}

// TakeReply lists the roles of the descriptors sent with it. Held is false
// when the holder keeps nothing for the container.
type TakeReply struct {
	Held  bool     `json:"held"`
	Stdio []string `json:"stdio"`
}

// SocketPath, LockPath and LogPath are the holder's files under runDir.
func SocketPath(runDir string) string { return filepath.Join(runDir, SocketName) }
func LockPath(runDir string) string   { return filepath.Join(runDir, LockName) }
func LogPath(runDir string) string    { return filepath.Join(runDir, LogName) }

// Config locates the holder's files.
type Config struct {
	RunDir, StateDir string
	Log              *slog.Logger
}

// held is what the holder keeps for one container.
type held struct {
	roles []string
	files []*os.File
	stop  context.CancelFunc // ends the init's watcher; nil when none
	done  chan struct{}      // closed when the watcher has ended
}

// close ends the watcher and waits for it, so that once a release is
// answered the holder writes nothing more under the container's directory
// (the monitor removes it next), then closes the descriptors.
func (h *held) close() {
	if h.stop != nil {
		h.stop()
		<-h.done
	}
	protocol.CloseFiles(h.files)
}

// Holder is the running holder.
type Holder struct {
	cfg Config
	log *slog.Logger
	ctx context.Context
	wg  sync.WaitGroup // init watchers

	ptrace bool // CAP_SYS_PTRACE: zombies' exit codes are readable in /proc

	mu    sync.Mutex
	held  map[string]*held
	conns int                // open connections
	idle  context.CancelFunc // ends serve: no connection and nothing held
}

// Run serves the holder until ctx ends. ready, when not nil, receives "ok\n"
// once the socket is served (or the error that stopped the start).
func Run(ctx context.Context, cfg Config, ready io.WriteCloser) (err error) {
	defer func() {
		if ready != nil {
			if err != nil {
				fmt.Fprintf(ready, "%v\n", err)
			}
			ready.Close()
		}
	}()
	if !filepath.IsAbs(cfg.RunDir) || !filepath.IsAbs(cfg.StateDir) {
		return fmt.Errorf("run dir %q and state dir %q must be absolute", cfg.RunDir, cfg.StateDir)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if err := os.MkdirAll(cfg.RunDir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", cfg.RunDir, err)
	}
	lock, err := os.OpenFile(LockPath(cfg.RunDir), os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("open holder lock: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("another holder holds %s", LockPath(cfg.RunDir))
		}
		return fmt.Errorf("lock %s: %w", LockPath(cfg.RunDir), err)
	}
	if _, err := unix.Setsid(); err != nil && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("setsid: %w", err)
	}
	path := SocketPath(cfg.RunDir)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	old := unix.Umask(0o177)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	l.SetUnlinkOnClose(false)
	h := &Holder{cfg: cfg, log: cfg.Log, ctx: ctx, held: map[string]*held{}, ptrace: hasCap(unix.CAP_SYS_PTRACE)}
	sctx, idle := context.WithCancel(ctx)
	defer idle()
	h.idle = idle
	if ready != nil {
		fmt.Fprintln(ready, "ok")
		ready.Close()
		ready = nil
	}
	h.log.Info("crid stdio holder serving", "pid", os.Getpid(), "socket", path)
	err = h.serve(sctx, l)
	h.mu.Lock()
	for id, e := range h.held {
		e.close()
		delete(h.held, id)
	}
	h.mu.Unlock()
	h.wg.Wait()
	return err
}

func (h *Holder) serve(ctx context.Context, l *net.UnixListener) error {
	return protocol.Listener{
		Handle: h.handle, MaxInFlight: 64, Log: h.log,
		Accepted: func() { h.mu.Lock(); h.conns++; h.mu.Unlock() },
		Ended:    h.connEnded,
	}.Serve(ctx, l)
}

// connEnded ends the holder once no monitor is connected and nothing is
// held: it has nothing to keep, and the next monitor starts another.
func (h *Holder) connEnded() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.conns--
	if h.conns == 0 && len(h.held) == 0 {
		h.log.Info("Nothing held and no monitor connected: exiting")
		h.idle()
	}
}

// handle serves one request; only hold keeps the descriptors it is sent.
func (h *Holder) handle(_ context.Context, method string, body json.RawMessage, fds []*os.File) (any, []*os.File, error) {
	if method == MethodHold {
		var req HoldRequest
		if err := protocol.Decode(body, &req); err != nil {
			protocol.CloseFiles(fds)
			return nil, nil, err
		}
		return struct{}{}, nil, h.hold(req, fds)
	}
	protocol.CloseFiles(fds)
	switch method {
	case MethodHello:
		h.mu.Lock()
		n := len(h.held)
		h.mu.Unlock()
		return HelloReply{Pid: os.Getpid(), Held: n}, nil, nil
	case MethodTake, MethodRelease:
		var req IDRequest
		if err := protocol.Decode(body, &req); err != nil {
			return nil, nil, err
		}
		if err := protocol.ValidID(req.ID); err != nil {
			return nil, nil, protocol.Errorf(protocol.CodeInvalidArgument, "%s: %v", method, err)
		}
		if method == MethodRelease {
			h.release(req.ID)
			return struct{}{}, nil, nil
		}
		return h.take(req.ID)
	}
	return nil, nil, protocol.Errorf(protocol.CodeInvalidArgument, "unknown method %q", method)
}

func (h *Holder) hold(req HoldRequest, fds []*os.File) error {
	if err := protocol.ValidID(req.ID); err != nil {
		protocol.CloseFiles(fds)
		return protocol.Errorf(protocol.CodeInvalidArgument, "hold: %v", err)
	}
	if len(req.Stdio) != len(fds) {
		protocol.CloseFiles(fds)
		return protocol.Errorf(protocol.CodeInvalidArgument, "hold %s: %d roles for %d descriptors", req.ID, len(req.Stdio), len(fds))
	}
	e := &held{roles: req.Stdio, files: fds}
	if req.Pid > 0 {
		wctx, cancel := context.WithCancel(h.ctx)
		e.stop, e.done = cancel, make(chan struct{})
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			defer close(e.done)
			defer panicguard.Recover("holder watch of container "+req.ID, nil)
			h.watch(wctx, req)
		}()
	}
	h.mu.Lock()
	prev := h.held[req.ID]
	h.held[req.ID] = e
	h.mu.Unlock()
	if prev != nil {
		prev.close()
	}
	return nil
}

func (h *Holder) take(id string) (*TakeReply, []*os.File, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.held[id]
	if e == nil {
		return &TakeReply{Stdio: []string{}}, nil, nil
	}
	var dups []*os.File
	for _, f := range e.files {
		d, err := protocol.Dup(f, false)
		if err != nil {
			protocol.CloseFiles(dups)
			return nil, nil, fmt.Errorf("take %s: %w", id, err)
		}
		dups = append(dups, d)
	}
	return &TakeReply{Held: true, Stdio: e.roles}, dups, nil
}

func (h *Holder) release(id string) {
	h.mu.Lock()
	e := h.held[id]
	delete(h.held, id)
	h.mu.Unlock()
	if e != nil {
		e.close()
	}
}

// watch waits for the init (pid, start) to end and records what it saw as
// the container's seen exit. It records nothing when the process is not
// that init any more or its status cannot be read.
func (h *Holder) watch(ctx context.Context, req HoldRequest) {
	fd, err := unix.PidfdOpen(req.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		h.log.Warn("Cannot watch the container's init: gone before it was handed over", "id", req.ID, "pid", req.Pid, "err", err)
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	if st, _, err := protocol.ProcStartTime(req.Pid); err != nil || st != req.InitStartTime {
		h.log.Warn("Cannot watch the container's init: pid reused before it was handed over", "id", req.ID, "pid", req.Pid)
		return
	}
	if err := protocol.WaitEnded(ctx, f, req.Pid, req.InitStartTime); err != nil {
		return // released, or the holder stops
	}
	at := time.Now()
	ws, ok := protocol.EndedStatus(f, req.Pid, req.InitStartTime, h.ptrace)
	if !ok {
		h.log.Warn("Init ended but its status could not be read", "id", req.ID, "pid", req.Pid)
		return
	}
	e := protocol.ExitFromStatus(ws, at, req.MemoryCgroup, "holder")
	if ctx.Err() != nil {
		return // released meanwhile: its directory may be going
	}
	if err := protocol.WriteSeenExit(h.cfg.StateDir, req.ID, e); err != nil {
		// The container was removed meanwhile: nothing to record.
		h.log.Warn("Recording a seen exit failed", "id", req.ID, "err", err)
		return
	}
	h.log.Info("Saw a container's init end", "id", req.ID, "pid", req.Pid, "code", e.Code)
}

// hasCap reports whether the process has capability c in its effective set.
func hasCap(c int) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && n&(1<<uint(c)) != 0
		}
	}
	return false
}
