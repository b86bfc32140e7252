package monitor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/cgroupmgr"
	"github.com/crid-dev/crid/oci/crilog"
	"github.com/crid-dev/crid/oci/protocol"
	"github.com/crid-dev/crid/panicguard"
)

// exitFileWait bounds how long a reloaded container whose init was gone
// before the monitor could look at it waits for its reaper to record the
// exit before it is recorded as unknown. Only the daemon records what it
// reaps, within milliseconds of its SIGCHLD, and it reaps before it starts
// a new monitor; PID 1 (the inits' parent once the daemon was restarted)
// records nothing.
const exitFileWait = 2 * time.Second

// adoptGrace bounds how long a reloaded container's exit waits for the
// daemon to hand its stdio back (it does so as soon as it connects).
const adoptGrace = 5 * time.Second

// reload rebuilds the container table from the state dir when the monitor
// starts, so a restarted monitor manages what its predecessor did. Inits
// still running are no longer our children: their exits are watched
// through pidfds and their status read from the file their reaper writes.
// Their stdio comes back when the daemon adopts it.
func (m *Monitor) reload() error {
	entries, err := os.ReadDir(m.cfg.StateDir)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	var ended []*container
	for _, e := range entries {
		id := e.Name()
		if !e.IsDir() || protocol.ValidID(id) != nil {
			continue
		}
		rec, err := protocol.ReadRecord(m.cfg.StateDir, id)
		if err != nil || rec == nil || rec.ID != id {
			m.log.Warn("Skipping unreadable container record", "id", id, "err", err)
			continue
		}
		if !rec.Complete {
			m.log.Info("Cleaning up a container whose creation was interrupted", "id", id)
			if err := m.cleanupIncomplete(*rec); err != nil {
				m.log.Warn("Cleanup of interrupted creation failed", "id", id, "err", err)
			}
			continue
		}
		c, settled := m.reloadOne(*rec)
		m.containers[id] = c
		if settled != nil {
			ended = append(ended, settled)
		}
	}
	// A container whose init ended while no monitor ran, and whose output
	// came back from the holder, has its exit recorded and its output
	// drained in moments: the first answer must not call it running.
	deadline := time.NewTimer(exitFileWait + drainGrace)
	defer deadline.Stop()
	for _, c := range ended {
		select {
		case <-c.exited:
		case <-deadline.C:
			m.log.Warn("Exits of containers that ended while the monitor was down are still being recorded", "id", c.id)
			return nil
		}
	}
	return nil
}

// reloadOne rebuilds one container. settled is the container again when
// its init is gone and its exit is about to be recorded without anyone
// else's help (its output came back from the holder): reload waits for it.
func (m *Monitor) reloadOne(rec protocol.Record) (c *container, settled *container) {
	c = newContainer(rec)
	lc, err := m.load(rec.ID)
	if err != nil {
		m.log.Warn("Loading libcontainer state failed", "id", rec.ID, "err", err)
	}
	exit, err := protocol.ReadExit(m.cfg.StateDir, rec.ID)
	if err != nil {
		m.log.Warn("Reading exit record failed", "id", rec.ID, "err", err)
	}
	if exit != nil && rec.Finished {
		c.exit, c.status = exit, protocol.StatusStopped
		c.stdioWired()
		close(c.exited)
		return c, nil
	}
	c.status = protocol.StatusCreated
	if !rec.StartedAt.IsZero() {
		c.status = protocol.StatusRunning
	} else if lc != nil {
		// A start in flight when the monitor died may have released it.
		if st, err := lc.Status(); err == nil && st == libcontainer.Running {
			c.status = protocol.StatusRunning
			c.rec.StartedAt = time.Now().UTC()
		}
	}
	if rec.LogPath != "" {
		if c.log, err = crilog.Open(rec.LogPath); err != nil {
			m.log.Warn("Reopening log failed; output is discarded", "id", rec.ID, "err", err)
		}
	}
	// The holder kept the output ends when the monitor and the daemon
	// died together: copying resumes from them at once.
	if files := m.takeHeld(rec.ID); len(files) > 0 {
		pollable := map[string]*os.File{}
		for role, f := range files {
			if d, err := protocol.Dup(f, true); err == nil {
				pollable[role] = d
			} else {
				m.log.Warn("Duplicating output taken from the holder failed", "id", rec.ID, "role", role, "err", err)
			}
		}
		protocol.CloseFiles(mapValues(files))
		m.attachOutput(c, pollable)
		c.stdioWired()
		m.log.Info("Took output back from the stdio holder", "id", rec.ID, "roles", len(pollable))
		if !initAlive(rec.Pid, rec.InitStartTime) {
			settled = c
		}
	}
	// Else the exit waits for the daemon to hand the pipes back, so the
	// output still in them reaches the log first; not forever.
	m.bg.Add(2)
	go func() {
		defer m.bg.Done()
		defer panicguard.Recover("adopt grace of container "+c.id, nil)
		t := time.NewTimer(adoptGrace)
		defer t.Stop()
		select {
		case <-t.C:
			c.outputGone(m)
		case <-m.adoptedAll:
			c.outputGone(m)
		case <-c.ioReady:
		case <-m.ctx.Done():
		}
	}()
	go func() {
		defer m.bg.Done()
		defer panicguard.Recover("watch of reloaded container "+c.id, nil)
		m.watchReloaded(c)
	}()
	return c, settled
}

// outputGone ends a reloaded container's wait for its pipes: nobody will
// hand them back. A container with no output left to copy says so.
func (c *container) outputGone(m *Monitor) {
	c.mu.Lock()
	c.outputLost = c.outDone == nil && len(c.stdio) == 0
	lost := c.outputLost
	c.mu.Unlock()
	if lost {
		m.log.Warn(OutputLostMessage, "id", c.id)
	}
	c.stdioWired()
}

// adoptDone is the daemon's word that it handed back every pipe it kept.
func (m *Monitor) adoptDone() {
	m.adoptedAllOnce.Do(func() { close(m.adoptedAll) })
}

// initAlive reports whether the process (pid, start) still runs (a zombie
// has ended).
func initAlive(pid int, start uint64) bool {
	st, state, err := protocol.ProcStartTime(pid)
	return err == nil && st == start && state != 'Z' && state != 'X'
}

// watchReloaded waits for a reloaded init to end and records its exit:
// the status it observed itself, else the one its reaper recorded, else
// (when nobody could see it) an unknown one.
func (m *Monitor) watchReloaded(c *container) {
	c.mu.Lock()
	pid, start, mem := c.rec.Pid, c.rec.InitStartTime, c.rec.MemoryCgroup
	c.mu.Unlock()
	m.watchOOM(c.id, mem)
	ws, observed, err := m.waitPidExit(m.ctx, pid, start)
	if err != nil {
		return // shutting down
	}
	if observed {
		// The init may have ended long before this monitor looked (a
		// zombie that PID 1 had not reaped yet): the holder saw when.
		if e, err := protocol.ReadSeenExit(m.cfg.StateDir, c.id); err == nil && e != nil && e.Code == exitCode(ws) {
			m.finish(c, m.oomChecked(c.id, *e))
			return
		}
		m.finish(c, m.oomChecked(c.id, protocol.ExitFromStatus(ws, time.Now(), mem, "monitor")))
		return
	}
	deadline := time.Now().Add(exitFileWait)
	for {
		e, err := protocol.ReadExit(m.cfg.StateDir, c.id)
		if err == nil && e != nil {
			m.finish(c, *e)
			return
		}
		// What the holder saw when neither the daemon nor a monitor
		// could reap (their record, when one comes, is the same exit).
		if e, err := protocol.ReadSeenExit(m.cfg.StateDir, c.id); err == nil && e != nil {
			m.finish(c, *e)
			return
		}
		if time.Now().After(deadline) {
			m.log.Warn("Init exited while the monitor was down and no reaper recorded its status", "id", c.id, "pid", pid)
			m.finish(c, protocol.Exit{
				Code: 255, Unknown: true, At: time.Now().UTC(), ReapedBy: "monitor",
				OOMKilled: mem != "" && protocol.OOMKills(mem) > 0,
			})
			return
		}
		select {
		case <-m.ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// exitCode is the code an Exit records for a wait status.
func exitCode(ws syscall.WaitStatus) int {
	return protocol.ExitFromStatus(ws, time.Time{}, "", "").Code
}

// waitPidExit returns when the process (pid, start) has ended, with its
// wait status when that could be observed. A reloaded init is no longer
// the monitor's child, so wait4 cannot give its status; its parent reaps
// it: the daemon, which records what it reaps, or — once the daemon that
// started the monitor's predecessor was itself restarted — PID 1 (or
// another subreaper above), which records nothing and on these machines
// reaps late. The status is read while the process is a zombie, from
// /proc (exit_code, for a reader with CAP_SYS_PTRACE), or after its reap
// from the pidfd (PIDFD_INFO_EXIT, Linux 6.15+), which keeps it for any
// holder that opened it before the exit. observed is false when the
// process was gone before the monitor could look.
//
// A pidfd becomes readable when its process exits, for any waiter, not
// only the parent; Go's poller waits on it without a thread.
func (m *Monitor) waitPidExit(ctx context.Context, pid int, start uint64) (ws syscall.WaitStatus, observed bool, err error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return 0, false, nil // gone already
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	// Checked after opening: the pidfd pins the process we verify.
	st, state, err := protocol.ProcStartTime(pid)
	switch {
	case err == nil && st != start:
		return 0, false, nil // another process: ours was reaped before we looked
	case err != nil || state == 'Z' || state == 'X':
		// Ended (and maybe reaped since the open): look below.
	default:
		if err := protocol.WaitEnded(ctx, f, pid, start); err != nil {
			return 0, false, err
		}
	}
	ws, observed = protocol.EndedStatus(f, pid, start, m.limits.caps["CAP_SYS_PTRACE"]) // without it the kernel shows exit_code 0
	return ws, observed, nil
}

// cleanupIncomplete removes what an interrupted create left: libcontainer
// state (possibly without state.json), the cgroup and its processes, files.
func (m *Monitor) cleanupIncomplete(rec protocol.Record) error {
	var errs []error
	if lc, err := libcontainer.Load(m.root, rec.ID); err == nil {
		_ = lc.Signal(unix.SIGKILL)
		if err := m.destroyWhenGone(lc); err != nil {
			errs = append(errs, err)
		}
	} else {
		if err := os.RemoveAll(filepath.Join(m.root, rec.ID)); err != nil {
			errs = append(errs, err)
		}
		if rec.CgroupsPath != "" {
			if err := destroyCgroup(rec.CgroupsPath); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err // keep the record: the daemon's delete retries
	}
	return os.RemoveAll(m.containerDir(rec.ID))
}

// destroyCgroup kills what runs in a cgroup and removes it.
func destroyCgroup(path string) error {
	cg, err := cgroupmgr.Config(path)
	if err != nil {
		return err
	}
	mgr, err := manager.New(cg)
	if err != nil {
		return fmt.Errorf("cgroup %s: %w", path, err)
	}
	if pids, err := mgr.GetAllPids(); err == nil {
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
	if err := mgr.Destroy(); err != nil {
		return fmt.Errorf("remove cgroup %s: %w", path, err)
	}
	return nil
}
