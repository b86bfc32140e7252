package monitor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/failpoint"
	"github.com/crid-dev/crid/oci/crilog"
	"github.com/crid-dev/crid/oci/protocol"
)

// deleteWait bounds how long delete waits for a killed container's exit.
const deleteWait = 15 * time.Second

// start releases the init into the user process (CRI StartContainer).
func (m *Monitor) start(id string) (*protocol.StartReply, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	status := c.status
	c.mu.Unlock()
	switch status {
	case "":
		return nil, precondition("start %s: container is being created", id)
	case protocol.StatusRunning:
		return nil, precondition("start %s: container is already running", id)
	case protocol.StatusStopped:
		return nil, precondition("start %s: container has exited", id)
	}
	lc, err := m.load(id)
	if err != nil {
		return nil, err
	}
	if lc == nil {
		return nil, precondition("start %s: container has exited", id)
	}
	// Taken before the release: a process that exits at once is reaped
	// (and its finish time taken) before Exec returns, and a start time
	// after its finish would be a lie.
	now := time.Now().UTC()
	if err := lc.Exec(); err != nil {
		return nil, precondition("start %s: %v", id, err)
	}
	if err := failpoint.Inject("monitor.start.after-exec"); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.status == protocol.StatusCreated { // a quick init may have exited already
		c.status = protocol.StatusRunning
	}
	c.rec.StartedAt = now
	c.mu.Unlock()
	if err := m.saveRecord(c); err != nil {
		m.log.Warn("Saving start time failed", "id", id, "err", err)
	}
	if err := failpoint.Inject("monitor.start.after-record"); err != nil {
		return nil, err
	}
	return &protocol.StartReply{StartedAt: now}, nil
}

// kill signals the init (or all the container's processes). Signalling a
// stopped container succeeds: there is nothing left to signal, which is
// what a stop wants.
func (m *Monitor) kill(req protocol.KillRequest) error {
	c, err := m.get(req.ID)
	if err != nil {
		return err
	}
	if req.Signal <= 0 || req.Signal > 64 {
		return invalid("kill %s: invalid signal %d", req.ID, req.Signal)
	}
	c.mu.Lock()
	status := c.status
	c.mu.Unlock()
	if status == protocol.StatusStopped {
		return nil
	}
	lc, err := m.load(req.ID)
	if err != nil || lc == nil {
		return err
	}
	sig := unix.Signal(req.Signal)
	if req.All {
		pids, err := lc.Processes()
		if err != nil {
			return fmt.Errorf("kill %s: list processes: %w", req.ID, err)
		}
		for _, pid := range pids {
			if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("kill %s: pid %d: %w", req.ID, pid, err)
			}
		}
		return failpoint.Inject("monitor.kill.after-signal")
	}
	if err := lc.Signal(sig); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
		return fmt.Errorf("kill %s: %w", req.ID, err)
	}
	return failpoint.Inject("monitor.kill.after-signal")
}

// wait returns the exit once the container has stopped and its output is
// drained, or fails when the caller's connection ends.
func (m *Monitor) wait(ctx context.Context, id string) (*protocol.Exit, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, err
	}
	select {
	case <-c.exited:
		return c.state().Exit, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait %s: %w", id, ctx.Err())
	}
}

// delete kills a live container, destroys its cgroups and libcontainer
// state, and removes its files. Deleting an unknown container succeeds (and
// clears any leftover under that ID), so retries are harmless.
func (m *Monitor) delete(ctx context.Context, id string) error {
	if err := protocol.ValidID(id); err != nil {
		return invalid("%v", err)
	}
	m.mu.Lock()
	c := m.containers[id]
	m.mu.Unlock()
	if c == nil {
		return m.removeLeftover(id)
	}
	c.mu.Lock()
	status := c.status
	c.mu.Unlock()
	if status == "" {
		return precondition("delete %s: container is being created", id)
	}
	lc, err := m.load(id)
	if err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	if status != protocol.StatusStopped && lc != nil {
		if err := lc.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
			m.log.Warn("Kill before delete failed", "id", id, "err", err)
		}
	}
	t := time.NewTimer(deleteWait)
	defer t.Stop()
	select {
	case <-c.exited:
	case <-t.C:
		return fmt.Errorf("delete %s: container did not exit within %v of SIGKILL", id, deleteWait)
	case <-ctx.Done():
		return fmt.Errorf("delete %s: %w", id, ctx.Err())
	}
	if lc != nil {
		if err := m.destroy(lc); err != nil {
			return fmt.Errorf("delete %s: %w", id, err)
		}
	}
	c.release()
	m.unhold(id)
	if err := os.RemoveAll(m.containerDir(id)); err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	m.mu.Lock()
	if m.containers[id] == c {
		delete(m.containers, id)
	}
	m.mu.Unlock()
	if m.oom != nil {
		m.oom.remove(id)
	}
	m.log.Info("Container deleted", "id", id)
	return nil
}

// removeLeftover clears libcontainer state and files of an ID the monitor
// does not manage (a crash between steps can leave them).
func (m *Monitor) removeLeftover(id string) error {
	if rec, err := protocol.ReadRecord(m.cfg.StateDir, id); err == nil && rec != nil && rec.ID == id {
		if err := m.cleanupIncomplete(*rec); err != nil {
			return fmt.Errorf("delete %s: %w", id, err)
		}
		return nil
	}
	if lc, err := libcontainer.Load(m.root, id); err == nil {
		_ = lc.Signal(unix.SIGKILL)
		if err := m.destroyWhenGone(lc); err != nil {
			return fmt.Errorf("delete %s: %w", id, err)
		}
	} else if err := os.RemoveAll(filepath.Join(m.root, id)); err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	if err := os.RemoveAll(m.containerDir(id)); err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	return nil
}

// destroy runs libcontainer's Destroy under the reaper's start lock: its
// poststop hooks are child processes it waits for itself.
func (m *Monitor) destroy(lc *libcontainer.Container) error {
	m.reaper.starting.RLock()
	defer m.reaper.starting.RUnlock()
	return lc.Destroy()
}

// destroyWhenGone destroys a loaded container once its init has gone.
func (m *Monitor) destroyWhenGone(lc *libcontainer.Container) error {
	for i := 0; ; i++ {
		err := m.destroy(lc)
		if !errors.Is(err, libcontainer.ErrRunning) || i == 100 {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (m *Monitor) list() *protocol.ListReply {
	m.mu.Lock()
	cs := make([]*container, 0, len(m.containers))
	for _, c := range m.containers {
		cs = append(cs, c)
	}
	m.mu.Unlock()
	r := &protocol.ListReply{Containers: []protocol.State{}}
	for _, c := range cs {
		if s := c.state(); s.Status != "" {
			r.Containers = append(r.Containers, s)
		}
	}
	slices.SortFunc(r.Containers, func(a, b protocol.State) int { return strings.Compare(a.ID, b.ID) })
	return r
}

func (m *Monitor) reopenLog(id string) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	log, exited := c.log, c.exit != nil
	c.mu.Unlock()
	if log == nil {
		return precondition("reopen log of %s: container has no log path", id)
	}
	if exited {
		// Its log is closed for good (finish): reopening would open a
		// file nothing writes to, held until the delete.
		return precondition("reopen log of %s: container has exited", id)
	}
	if err := log.Reopen(); err != nil {
		return fmt.Errorf("reopen log of %s: %w", id, err)
	}
	return nil
}

// adopt takes back stdio descriptors the daemon kept while this monitor's
// predecessor died, and resumes copying output into the log. Adopting twice
// is harmless: the second set is closed.
func (m *Monitor) adopt(req protocol.AdoptRequest, fds []*os.File) (err error) {
	defer func() {
		if err != nil {
			protocol.CloseFiles(fds)
		}
	}()
	c, err := m.get(req.ID)
	if err != nil {
		return err
	}
	if len(req.Stdio) != len(fds) {
		return invalid("adopt %s: %d roles for %d descriptors", req.ID, len(req.Stdio), len(fds))
	}
	files := map[string]*os.File{}
	for i, role := range req.Stdio {
		switch role {
		case protocol.StdioStdin, protocol.StdioStdout, protocol.StdioStderr, protocol.StdioPTY:
		default:
			return invalid("adopt %s: unknown stdio role %q", req.ID, role)
		}
		if files[role] != nil {
			return invalid("adopt %s: stdio role %q twice", req.ID, role)
		}
		files[role] = fds[i]
	}
	c.mu.Lock()
	// Output taken back from the holder may have reached EOF already:
	// a copier was attached all the same.
	has := len(c.stdio) > 0 || c.outDone != nil
	if !has && c.log == nil && c.rec.LogPath != "" {
		if c.log, err = crilog.Open(c.rec.LogPath); err != nil {
			m.log.Warn("Reopening log for adopted output failed; output is discarded", "id", req.ID, "err", err)
			c.log, err = nil, nil
		}
	}
	c.mu.Unlock()
	if has {
		protocol.CloseFiles(fds)
		return nil
	}
	// Our own nonblocking duplicates, so Delete can interrupt reads.
	pollable := map[string]*os.File{}
	for role, f := range files {
		d, err := protocol.Dup(f, true)
		if err != nil {
			protocol.CloseFiles(mapValues(pollable))
			return fmt.Errorf("adopt %s: %w", req.ID, err)
		}
		pollable[role] = d
	}
	protocol.CloseFiles(fds)
	fds = nil
	m.attachOutput(c, pollable)
	c.mu.Lock()
	c.outputLost = false
	c.mu.Unlock()
	c.stdioWired()
	m.hold(c) // a holder started after its predecessor died has nothing of it
	m.log.Info("Adopted stdio", "id", req.ID, "roles", req.Stdio)
	return nil
}

func mapValues(m map[string]*os.File) []*os.File {
	out := make([]*os.File, 0, len(m))
	for _, f := range m {
		out = append(out, f)
	}
	return out
}

// stdioDups hands a (restarted) daemon duplicates of the stdio the monitor
// holds, so it can hand them back should the monitor die.
func (m *Monitor) stdioDups(id string) (*protocol.StdioReply, []*os.File, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	roles, dups, err := dupAll(c.stdio)
	if err != nil {
		return nil, nil, fmt.Errorf("stdio of %s: %w", id, err)
	}
	return &protocol.StdioReply{Stdio: roles}, dups, nil
}

// closeStdin closes the container's stdin so it reads EOF (the daemon
// closes its duplicate too).
func (m *Monitor) closeStdin(id string) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.stdio[protocol.StdioStdin]; f != nil {
		f.Close()
		delete(c.stdio, protocol.StdioStdin)
	}
	return nil
}
