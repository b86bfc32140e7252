package monitor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/failpoint"
	"github.com/crid-dev/crid/oci/protocol"
	"github.com/crid-dev/crid/panicguard"
)

// streamExec is a process started for an exec (CRI Exec or ExecSync): the
// daemon holds its stdio and copies to the client; the monitor reaps it
// and keeps its exit until the daemon's exec_wait collects it, or until the
// connection that started it ends, which kills it.
//
// It keeps a pidfd of its own, not libcontainer's Process, which retains
// the whole start-time state (tens of kB per exec, held as long as a
// terminal session stays open).
type streamExec struct {
	id    string        // container
	pidfd *os.File      // closed once forgotten; signals never reach a reused pid
	done  chan struct{} // closed once exit is set
	exit  protocol.Exit
	// unbind stops the kill-on-disconnect of the starting connection.
	unbind func() bool
}

// signal sends sig through the pidfd; a process that is gone (or an exec
// already forgotten) gives os.ErrProcessDone.
func (e *streamExec) signal(sig unix.Signal) error {
	rc, err := e.pidfd.SyscallConn()
	if err != nil {
		return os.ErrProcessDone
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.PidfdSendSignal(int(fd), sig, nil, 0) }); err != nil {
		return os.ErrProcessDone
	}
	if errors.Is(serr, unix.ESRCH) {
		return os.ErrProcessDone
	}
	return serr
}

// execStart starts a process in a running container and returns its stdio
// (pipes, or the pty master with a terminal) for the daemon to keep. The
// process belongs to the connection of ctx: when it ends before exec_wait
// collected the exit, nobody can any more, so the process is killed and
// forgotten.
func (m *Monitor) execStart(ctx context.Context, req protocol.ExecStartRequest) (*protocol.ExecStartReply, []*os.File, error) {
	if req.Process == nil {
		return nil, nil, invalid("exec in %s: no process", req.ID)
	}
	lc, p, err := m.execProcess(req.ID, req.Process)
	if err != nil {
		return nil, nil, err
	}
	tty := req.Process.Terminal
	stdio, in, out, errw, console, err := newStdio(req.Stdin, tty)
	if err != nil {
		return nil, nil, fmt.Errorf("exec in %s: %w", req.ID, err)
	}
	defer stdio.closeChild()
	if in != nil {
		p.Stdin = in
	}
	if out != nil {
		p.Stdout = out
	}
	if errw != nil {
		p.Stderr = errw
	}
	if console != nil {
		p.ConsoleSocket = console
	}
	e := &streamExec{id: req.ID, done: make(chan struct{})}
	execID := newExecID()

	m.reaper.starting.RLock()
	err = lc.Start(p)
	pid := 0
	if err == nil {
		pid, _ = p.Pid()
		m.reaper.watch(pid, func(ws unix.WaitStatus, at time.Time) {
			e.exit = protocol.ExitFromStatus(syscall.WaitStatus(ws), at, "", "monitor")
			close(e.done)
		})
		// Not reaped before the lock is released: pid is still ours.
		var fd int
		if fd, err = unix.PidfdOpen(pid, 0); err == nil {
			e.pidfd = os.NewFile(uintptr(fd), "pidfd")
		} else {
			_ = p.Signal(unix.SIGKILL)
			err = fmt.Errorf("pidfd_open: %w", err)
		}
	}
	m.reaper.starting.RUnlock()
	if err != nil {
		stdio.closeAll()
		return nil, nil, fmt.Errorf("exec in %s: %w", req.ID, err)
	}
	if tty {
		if err := stdio.receiveConsole(false); err != nil {
			_ = e.signal(unix.SIGKILL)
			e.pidfd.Close()
			stdio.closeAll()
			return nil, nil, fmt.Errorf("exec in %s: %w", req.ID, err)
		}
	}
	m.mu.Lock()
	if m.execs == nil {
		m.execs = map[string]*streamExec{}
	}
	m.execs[execID] = e
	e.unbind = context.AfterFunc(ctx, func() {
		defer panicguard.Recover("abandoned exec "+execID, nil)
		m.abandonExec(execID, e)
	})
	m.mu.Unlock()

	var roles []string
	var files []*os.File
	for _, role := range []string{protocol.StdioStdin, protocol.StdioStdout, protocol.StdioStderr, protocol.StdioPTY} {
		if f := stdio.mine[role]; f != nil {
			roles = append(roles, role)
			files = append(files, f)
		}
	}
	stdio.mine = nil // handed over: the reply closes our copies once sent
	if err := failpoint.Inject("monitor.exec.after-start"); err != nil {
		protocol.CloseFiles(files)
		return nil, nil, err
	}
	m.log.Info("Exec started", "id", req.ID, "exec", execID, "pid", pid, "tty", tty)
	return &protocol.ExecStartReply{ExecID: execID, Pid: pid, Stdio: roles}, files, nil
}

// execWait returns a streamed exec's exit once it has one, and forgets it.
func (m *Monitor) execWait(ctx context.Context, req protocol.ExecIDRequest) (*protocol.Exit, error) {
	e, err := m.getExec(req)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for exec %s in %s: %w", req.ExecID, req.ID, ctx.Err())
	}
	m.forgetExec(req.ExecID, e)
	x := e.exit
	return &x, nil
}

// abandonExec kills an exec whose connection ended before its exit was
// collected, and forgets it; the reaper still reaps it.
func (m *Monitor) abandonExec(execID string, e *streamExec) {
	select {
	case <-e.done:
	default:
		m.log.Info("Killing exec: the connection that started it ended", "id", e.id, "exec", execID)
		if err := e.signal(unix.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			m.log.Warn("Killing abandoned exec failed", "id", e.id, "exec", execID, "err", err)
		}
	}
	m.forgetExec(execID, e)
}

// forgetExec drops e from the table, stops its kill-on-disconnect and
// closes its pidfd.
func (m *Monitor) forgetExec(execID string, e *streamExec) {
	m.mu.Lock()
	known := m.execs[execID] == e
	if known {
		delete(m.execs, execID)
	}
	m.mu.Unlock()
	if known {
		e.release()
	}
}

// release lets go of what the exec holds.
func (e *streamExec) release() {
	if e.unbind != nil {
		e.unbind()
	}
	e.pidfd.Close()
}

// execKill signals a streamed exec through its pidfd: never a reused pid.
func (m *Monitor) execKill(req protocol.ExecKillRequest) error {
	e, err := m.getExec(protocol.ExecIDRequest{ID: req.ID, ExecID: req.ExecID})
	if err != nil {
		return err
	}
	if req.Signal <= 0 || req.Signal > 64 {
		return invalid("signal exec %s in %s: invalid signal %d", req.ExecID, req.ID, req.Signal)
	}
	if err := e.signal(unix.Signal(req.Signal)); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal exec %s in %s: %w", req.ExecID, req.ID, err)
	}
	return nil
}

func (m *Monitor) getExec(req protocol.ExecIDRequest) (*streamExec, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.execs[req.ExecID]
	if e == nil || e.id != req.ID {
		return nil, protocol.Errorf(protocol.CodeNotFound, "exec %q in container %q not found", req.ExecID, req.ID)
	}
	return e, nil
}

// forgetExecs drops the execs of a deleted container: their processes died
// with it, and no one will wait for them any more.
func (m *Monitor) forgetExecs(id string) {
	m.mu.Lock()
	var gone []*streamExec
	for k, e := range m.execs {
		if e.id == id {
			delete(m.execs, k)
			gone = append(gone, e)
		}
	}
	m.mu.Unlock()
	for _, e := range gone {
		e.release()
	}
}

func newExecID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b[:])
}

// execProcess checks that the container runs and prepares the process to
// start in it.
func (m *Monitor) execProcess(id string, proc *specs.Process) (*libcontainer.Container, *libcontainer.Process, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	status := c.status
	c.mu.Unlock()
	if status != protocol.StatusRunning {
		return nil, nil, precondition("exec in %s: container is not running", id)
	}
	lc, err := m.load(id)
	if err != nil {
		return nil, nil, err
	}
	if lc == nil {
		return nil, nil, precondition("exec in %s: container is not running", id)
	}
	p, clamped, err := m.limits.newProcess(proc)
	if err != nil {
		return nil, nil, fmt.Errorf("exec in %s: %w", id, err)
	}
	if len(clamped) > 0 {
		m.log.Info("Clamped exec settings to what the monitor may grant", "id", id, "changes", clamped)
	}
	return lc, p, nil
}
