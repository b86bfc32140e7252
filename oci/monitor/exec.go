package monitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/oci/protocol"
)

// defaultMaxExecOutput is kubelet's cap on ExecSync output per stream.
const defaultMaxExecOutput = 16 << 20

// exec runs a process in a running container, joining its namespaces and
// cgroup (CRI ExecSync), and returns its output and exit. A timed-out or
// abandoned exec is killed: the reply then says TimedOut.
func (m *Monitor) exec(ctx context.Context, req protocol.ExecRequest) (*protocol.ExecReply, error) {
	lc, p, err := m.execProcess(req.ID, req.Process)
	if err != nil {
		return nil, err
	}
	if req.Process.Terminal {
		return nil, invalid("exec in %s: a terminal needs the streaming exec, not exec-sync", req.ID)
	}
	maxOut := req.MaxOutput
	if maxOut <= 0 {
		maxOut = defaultMaxExecOutput
	}

	var mine, child []*os.File
	defer func() { protocol.CloseFiles(mine); protocol.CloseFiles(child) }()
	outR, outW, err := pipe(true)
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", req.ID, err)
	}
	errR, errW, err := pipe(true)
	if err != nil {
		protocol.CloseFiles([]*os.File{outR, outW})
		return nil, fmt.Errorf("exec in %s: %w", req.ID, err)
	}
	mine, child = append(mine, outR, errR), append(child, outW, errW)
	p.Stdout, p.Stderr = outW, errW
	var inW *os.File
	if len(req.Stdin) > 0 {
		w, r, err := pipe(false)
		if err != nil {
			return nil, fmt.Errorf("exec in %s: %w", req.ID, err)
		}
		inW = w
		mine, child = append(mine, w), append(child, r)
		p.Stdin = r
	}

	exited := make(chan unix.WaitStatus, 1)
	m.reaper.starting.RLock()
	err = lc.Start(p)
	pid := 0
	if err == nil {
		pid, _ = p.Pid()
		m.reaper.watch(pid, func(ws unix.WaitStatus, _ time.Time) { exited <- ws })
	}
	m.reaper.starting.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", req.ID, err)
	}
	protocol.CloseFiles(child)
	child = nil

	var wg sync.WaitGroup
	stdout, stderr := &capped{max: maxOut}, &capped{max: maxOut}
	for _, rc := range []struct {
		r *os.File
		w *capped
	}{{outR, stdout}, {errR, stderr}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(rc.w, rc.r) // ends at EOF or when the read end is closed
		}()
	}
	if inW != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = inW.Write(req.Stdin) // ends when written, or the process is gone (EPIPE), or closed
			inW.Close()
		}()
	}

	var timeout <-chan time.Time
	if req.Timeout > 0 {
		t := time.NewTimer(req.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	reply := &protocol.ExecReply{}
	var ws unix.WaitStatus
	select {
	case ws = <-exited:
	case <-timeout:
		reply.TimedOut = true
	case <-ctx.Done():
		reply.TimedOut = true
	}
	if reply.TimedOut {
		// p.Signal goes through a pidfd: never a reused pid.
		if err := p.Signal(unix.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			m.log.Warn("Killing timed-out exec failed", "id", req.ID, "pid", pid, "err", err)
		}
		ws = <-exited
	}
	reply.Exit = protocol.ExitFromStatus(syscall.WaitStatus(ws), time.Now(), "", "monitor")
	// Output ends at EOF, unless a child of the exec keeps the pipes open.
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drainGrace):
		protocol.CloseFiles(mine)
		mine = nil
		<-drained
	}
	reply.Stdout, reply.Stderr = stdout.b, stderr.b
	reply.Truncated = stdout.dropped || stderr.dropped
	if ctx.Err() != nil {
		return nil, fmt.Errorf("exec in %s: %w", req.ID, ctx.Err())
	}
	return reply, nil
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

// capped keeps the first max bytes written to it and drops the rest, so a
// chatty process can neither block nor exhaust the monitor.
type capped struct {
	max     int
	b       []byte
	dropped bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - len(c.b); room < len(p) {
		c.b = append(c.b, p[:max(room, 0)]...)
		c.dropped = true
	} else {
		c.b = append(c.b, p...)
	}
	return len(p), nil
}
