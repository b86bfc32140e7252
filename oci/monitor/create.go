package monitor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/cgroupmgr"
	"github.com/crid-dev/crid/failpoint"
	"github.com/crid-dev/crid/oci/crilog"
	"github.com/crid-dev/crid/oci/protocol"
	"github.com/crid-dev/crid/panicguard"
)

// create makes the container and runs its init up to the exec fifo, where
// it waits for start (CRI CreateContainer). The record is written before
// anything else exists, marked incomplete, so that a monitor killed half-way
// leaves a trace its successor cleans up.
func (m *Monitor) create(req protocol.CreateRequest) (_ *protocol.CreateReply, _ []*os.File, retErr error) {
	if err := protocol.ValidID(req.ID); err != nil {
		return nil, nil, invalid("%v", err)
	}
	spec := req.Spec
	switch {
	case spec == nil:
		return nil, nil, invalid("create %s: no spec", req.ID)
	case spec.Root == nil || !filepath.IsAbs(spec.Root.Path):
		return nil, nil, invalid("create %s: spec root path must be absolute", req.ID)
	case spec.Linux == nil || !filepath.IsAbs(spec.Linux.CgroupsPath) && !cgroupmgr.IsSystemdPath(spec.Linux.CgroupsPath):
		// An empty path would put the container in the monitor's own cgroup.
		return nil, nil, invalid("create %s: spec linux.cgroupsPath must be absolute (cgroupfs) or slice:prefix:name (systemd)", req.ID)
	case spec.Process == nil:
		return nil, nil, invalid("create %s: spec has no process", req.ID)
	case req.LogPath != "" && !filepath.IsAbs(req.LogPath):
		return nil, nil, invalid("create %s: log path %q is not absolute", req.ID, req.LogPath)
	}
	tty := req.TTY || spec.Process.Terminal
	spec.Process.Terminal = tty
	maxLine := req.MaxLogLine
	if maxLine <= 0 {
		maxLine = m.cfg.MaxLogLine
	}
	c := newContainer(protocol.Record{
		ID:          req.ID,
		CgroupsPath: spec.Linux.CgroupsPath,
		LogPath:     req.LogPath,
		MaxLogLine:  maxLine,
		Stdin:       req.Stdin,
		StdinOnce:   req.StdinOnce,
		TTY:         tty,
		CreatedAt:   time.Now().UTC(),
	})
	m.mu.Lock()
	if m.containers[req.ID] != nil {
		m.mu.Unlock()
		return nil, nil, protocol.Errorf(protocol.CodeAlreadyExists, "container %q already exists", req.ID)
	}
	m.containers[req.ID] = c
	m.mu.Unlock()

	var (
		lc      *libcontainer.Container
		stdio   *stdioSet
		started bool
	)
	defer func() {
		if retErr == nil {
			return
		}
		if started {
			// The init runs but the container is unusable: kill it
			// and let the reaper see it go before removing its cgroup.
			_ = lc.Signal(unix.SIGKILL)
			c.stdioWired()
			select {
			case <-c.exited:
			case <-time.After(10 * time.Second):
			}
		} else {
			c.stdioWired()
		}
		if lc != nil {
			if err := m.destroy(lc); err != nil {
				m.log.Warn("Destroy after failed create", "id", req.ID, "err", err)
			}
		}
		if stdio != nil {
			stdio.closeAll()
		}
		c.release()
		os.RemoveAll(m.containerDir(req.ID))
		m.mu.Lock()
		delete(m.containers, req.ID)
		m.mu.Unlock()
	}()

	// A directory without a known container is a stale leftover.
	dir := m.containerDir(req.ID)
	if err := os.RemoveAll(dir); err != nil {
		return nil, nil, fmt.Errorf("create %s: remove stale state: %w", req.ID, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create %s: %w", req.ID, err)
	}
	if err := m.saveRecord(c); err != nil {
		return nil, nil, fmt.Errorf("create %s: %w", req.ID, err)
	}
	if err := failpoint.Inject("monitor.create.after-record"); err != nil {
		return nil, nil, err
	}

	// With a user namespace to join, specconv reads its mappings through
	// a helper process it waits for by pid: no reaping meanwhile.
	m.reaper.starting.RLock()
	config, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:       req.ID,
		UseSystemdCgroup: cgroupmgr.IsSystemdPath(spec.Linux.CgroupsPath),
		Spec:             spec,
	})
	m.reaper.starting.RUnlock()
	if err != nil {
		return nil, nil, invalid("create %s: convert spec: %v", req.ID, err)
	}
	if config.Cgroups.Systemd && config.Cgroups.Resources.PidsLimit == nil {
		// A scope left without a limit gets systemd's DefaultTasksMax
		// (15% of the pid space); CRI has no per-container pids limit,
		// so the container's is unlimited, as under cgroupfs.
		unlimited := int64(-1)
		config.Cgroups.Resources.PidsLimit = &unlimited
	}
	var clamped []string
	if adj, changed := m.limits.clampOOMScoreAdj(config.OomScoreAdj); changed {
		clamped = append(clamped, fmt.Sprintf("oom_score_adj %d to %d", *config.OomScoreAdj, *adj))
		config.OomScoreAdj = adj
	}
	m.limits.filterCaps(config.Capabilities)
	if len(config.Cgroups.Resources.HugetlbLimit) > 0 && !cgroupmgr.HugetlbAvailable() {
		// kubelet sends a 0 limit per page size; without a hugetlb
		// controller libcontainer would refuse them all.
		clamped = append(clamped, "hugepage limits dropped: no hugetlb cgroup controller")
		config.Cgroups.Resources.HugetlbLimit = nil
	}
	process, more, err := m.limits.newProcess(spec.Process)
	if err != nil {
		return nil, nil, fmt.Errorf("create %s: %w", req.ID, err)
	}
	if clamped = append(clamped, more...); len(clamped) > 0 {
		m.log.Info("Clamped container settings to what the monitor may grant", "id", req.ID, "changes", clamped)
	}
	process.Init = true

	if req.LogPath != "" {
		if c.log, err = crilog.Open(req.LogPath); err != nil {
			return nil, nil, invalid("create %s: log path %s: %v", req.ID, req.LogPath, err)
		}
	}
	stdio, in, out, errw, console, err := newStdio(req.Stdin, tty)
	if err != nil {
		return nil, nil, fmt.Errorf("create %s: %w", req.ID, err)
	}
	// Assigned only when set: a nil *os.File in an io.Reader is not nil.
	if in != nil {
		process.Stdin = in
	}
	if out != nil {
		process.Stdout = out
	}
	if errw != nil {
		process.Stderr = errw
	}
	if console != nil {
		process.ConsoleSocket = console
	}
	if !tty {
		// Copiers start before the init so nothing it writes waits.
		m.attachOutput(c, stdio.mine)
	}

	lc, err = libcontainer.Create(m.root, req.ID, config)
	if err != nil {
		if errors.Is(err, libcontainer.ErrExist) {
			return nil, nil, protocol.Errorf(protocol.CodeAlreadyExists, "create %s: libcontainer state already exists", req.ID)
		}
		return nil, nil, fmt.Errorf("create %s: %w", req.ID, err)
	}
	if err := failpoint.Inject("monitor.create.after-libcontainer"); err != nil {
		return nil, nil, err
	}
	pid, err := m.startInit(c, lc, process)
	if err != nil {
		return nil, nil, fmt.Errorf("create %s: start init: %w", req.ID, err)
	}
	started = true
	if err := failpoint.Inject("monitor.create.after-init"); err != nil {
		return nil, nil, err
	}
	if tty {
		if err := stdio.receiveConsole(true); err != nil {
			return nil, nil, fmt.Errorf("create %s: %w", req.ID, err)
		}
		m.attachOutput(c, stdio.mine)
	}
	stdio.closeChild()

	st, err := lc.State()
	if err != nil {
		return nil, nil, fmt.Errorf("create %s: state: %w", req.ID, err)
	}
	c.mu.Lock()
	c.rec.Pid = pid
	c.rec.InitStartTime = st.InitProcessStartTime
	c.rec.MemoryCgroup = memoryCgroup(st.CgroupPaths)
	c.rec.Complete = true
	mem := c.rec.MemoryCgroup
	c.mu.Unlock()
	m.watchOOM(req.ID, mem)
	if err := m.saveRecord(c); err != nil {
		return nil, nil, fmt.Errorf("create %s: %w", req.ID, err)
	}
	if err := failpoint.Inject("monitor.create.after-complete"); err != nil {
		return nil, nil, err
	}
	roles, dups, err := dupAll(stdio.mine)
	if err != nil {
		return nil, nil, fmt.Errorf("create %s: %w", req.ID, err)
	}
	c.mu.Lock()
	if c.status == "" { // an init that died at once is already stopped
		c.status = protocol.StatusCreated
	}
	c.mu.Unlock()
	c.stdioWired()
	m.hold(c) // so its output outlives the monitor and the daemon both
	m.log.Info("Container created", "id", req.ID, "pid", pid)
	return &protocol.CreateReply{Pid: pid, InitStartTime: st.InitProcessStartTime, Stdio: roles}, dups, nil
}

// startInit starts the init under the reaper's start lock and registers its
// exit before the lock is released.
func (m *Monitor) startInit(c *container, lc *libcontainer.Container, p *libcontainer.Process) (int, error) {
	m.reaper.starting.RLock()
	defer m.reaper.starting.RUnlock()
	if err := lc.Start(p); err != nil {
		return 0, err
	}
	pid, err := p.Pid()
	if err != nil {
		return 0, err
	}
	m.reaper.watch(pid, func(ws unix.WaitStatus, at time.Time) {
		panicguard.Go("exit of container "+c.id, func() { m.onExit(c, ws, at) })
	})
	return pid, nil
}

func (m *Monitor) onExit(c *container, ws unix.WaitStatus, at time.Time) {
	<-c.ioReady // the record names the memory cgroup once create is done
	c.mu.Lock()
	mem := c.rec.MemoryCgroup
	c.mu.Unlock()
	m.finish(c, m.oomChecked(c.id, protocol.ExitFromStatus(syscall.WaitStatus(ws), at, mem, "monitor")))
}

// watchOOM starts counting a container's OOM kills as they happen (v2).
func (m *Monitor) watchOOM(id, memoryDir string) {
	if m.oom == nil || memoryDir == "" {
		return
	}
	if err := m.oom.add(id, memoryDir); err != nil {
		m.log.Warn("Cannot watch the container's OOM kills", "id", id, "err", err)
	}
}

// oomChecked marks an exit OOMKilled when the watcher saw a kill that
// the counter read at the exit could not (a cgroup already removed).
func (m *Monitor) oomChecked(id string, e protocol.Exit) protocol.Exit {
	if !e.OOMKilled && m.oom != nil && m.oom.killed(id, e.Signal == int(unix.SIGKILL)) {
		e.OOMKilled = true
	}
	return e
}

// memoryCgroup picks the directory holding the OOM-kill counter: the v1
// memory hierarchy, else the unified one.
func memoryCgroup(paths map[string]string) string {
	if p := paths["memory"]; p != "" {
		return p
	}
	if cgroups.IsCgroup2UnifiedMode() {
		return paths[""]
	}
	return ""
}
