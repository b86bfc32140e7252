// Package monitor is crid-monitor's engine: the one process per node that
// creates containers with libcontainer, is the parent (and child subreaper)
// of their inits, owns their stdio, writes their CRI logs, records their
// exits durably, and serves the daemon over the protocol of oci/protocol.
// Only cmd/crid-monitor imports it; the daemon talks to it through oci.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/oci/crilog"
	"github.com/crid-dev/crid/oci/protocol"
)

// Config locates the monitor's files.
type Config struct {
	// RunDir holds the socket, the lock, the monitor's log and
	// libcontainer's state.
	RunDir string
	// StateDir holds the per-container records and exit files.
	StateDir string
	// MaxLogLine is the default CRI log line split size.
	MaxLogLine int
	Log        *slog.Logger
	// HolderBinary runs the stdio holder as "<HolderBinary> hold" (the
	// crid-monitor binary itself); empty runs none.
	HolderBinary string
}

// maxInFlight bounds concurrent requests per connection. The daemon's main
// connection carries short calls only; each request that waits as long as
// a process lives comes on a connection of its own (see oci/protocol), so
// no number of those can take these slots.
const maxInFlight = 256

// Monitor is the running monitor.
type Monitor struct {
	cfg       Config
	log       *slog.Logger
	root      string // libcontainer root
	limits    limits
	reaper    *reaper
	holder    *holderLink // nil without a holder binary
	oom       *oomWatcher // cgroup v2 only
	trim      *trimmer
	startedAt time.Time
	ctx       context.Context // ends at shutdown

	mu         sync.Mutex
	containers map[string]*container
	execs      map[string]*streamExec // streamed execs by exec ID, until waited for

	bg sync.WaitGroup // watchers of reloaded inits

	// adoptedAll is closed when the daemon says it handed back every pipe
	// it kept (adopt_done): reloaded containers stop waiting for theirs.
	adoptedAll     chan struct{}
	adoptedAllOnce sync.Once

	exits exitLog // numbered exits, for the daemon's exit watcher
}

// Run runs the monitor until ctx ends. ready, when not nil, receives "ok\n"
// once the socket is served (or the error that stopped the start) and is
// closed: the daemon that started the monitor waits on it. Containers are
// never touched by the monitor's exit: a new monitor reloads them.
func Run(ctx context.Context, cfg Config, ready io.WriteCloser) (err error) {
	defer func() {
		if ready != nil {
			if err != nil {
				fmt.Fprintf(ready, "%v\n", err)
			}
			ready.Close()
		}
	}()
	if cfg.MaxLogLine <= 0 {
		cfg.MaxLogLine = crilog.DefaultMaxLine
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if !filepath.IsAbs(cfg.RunDir) || !filepath.IsAbs(cfg.StateDir) {
		return fmt.Errorf("run dir %q and state dir %q must be absolute", cfg.RunDir, cfg.StateDir)
	}
	m := &Monitor{
		cfg:        cfg,
		log:        cfg.Log,
		root:       filepath.Join(cfg.RunDir, protocol.LibcontainerDir),
		startedAt:  time.Now(),
		ctx:        ctx,
		containers: map[string]*container{},
		adoptedAll: make(chan struct{}),
	}
	for _, d := range []string{cfg.RunDir, cfg.StateDir, m.root} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	lock, err := takeLock(protocol.LockPath(cfg.RunDir))
	if err != nil {
		return err
	}
	defer lock.Close()
	// A monitor run by hand still gets its own session, so a terminal's
	// hangup never reaches it; one started by the daemon already has it.
	if _, err := unix.Setsid(); err != nil && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("setsid: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}
	if m.limits, err = detectLimits(); err != nil {
		return err
	}
	if !m.limits.sysResource {
		m.log.Info("No CAP_SYS_RESOURCE: oom_score_adj is clamped to the monitor's own, hard rlimits to its own",
			"oomScoreAdj", m.limits.oomScoreAdj)
	}
	if cgroups.IsCgroup2UnifiedMode() {
		if m.oom, err = newOOMWatcher(); err != nil {
			return err
		}
	}
	m.reaper = newReaper()
	m.trim = newTrimmer()
	rctx, stopBackground := context.WithCancel(context.Background())
	var background sync.WaitGroup
	if m.oom != nil {
		background.Add(1)
		go func() { defer background.Done(); m.oom.run(rctx) }()
	}
	background.Add(2)
	go func() { defer background.Done(); m.reaper.run(rctx) }()
	go func() {
		defer background.Done()
		m.trim.run(rctx, m.log, func() int { m.mu.Lock(); defer m.mu.Unlock(); return len(m.containers) })
	}()
	defer func() { stopBackground(); background.Wait() }()

	// The holder first: a reload takes back from it what a dead
	// predecessor left there.
	if cfg.HolderBinary != "" {
		m.holder = &holderLink{binary: cfg.HolderBinary}
		m.connectHolder(ctx)
		background.Add(1)
		go func() { defer background.Done(); m.superviseHolder(rctx) }()
	}
	if err := m.reload(); err != nil {
		return err
	}
	l, err := listen(protocol.SocketPath(cfg.RunDir))
	if err != nil {
		return err
	}
	if ready != nil {
		fmt.Fprintln(ready, "ok")
		ready.Close()
		ready = nil
	}
	m.log.Info("crid-monitor serving", "pid", os.Getpid(), "socket", l.Addr().String(), "containers", len(m.containers))
	err = m.serve(ctx, l)
	m.bg.Wait()
	m.log.Info("crid-monitor stopped; containers keep running")
	return err
}

// takeLock holds the monitor lock for the process's life: a second monitor
// on the same run dir refuses to start, and the daemon can tell whether a
// monitor is alive by trying the lock.
func takeLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open monitor lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another crid-monitor holds %s", path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

func listen(path string) (*net.UnixListener, error) {
	// We hold the lock, so a socket file left here is a dead monitor's.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	old := unix.Umask(0o177)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	l.SetUnlinkOnClose(false) // a successor replaces it; never remove another's
	return l, nil
}

// serve accepts connections until ctx ends, then waits for their handlers.
func (m *Monitor) serve(ctx context.Context, l *net.UnixListener) error {
	return protocol.Listener{Handle: m.handle, MaxInFlight: maxInFlight, Log: m.log}.Serve(ctx, l)
}
