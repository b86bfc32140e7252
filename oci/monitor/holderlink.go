package monitor

import (
	"context"
	"os"
	"sync"
	"time"

	"github.com/crid-dev/crid/oci/holder"
	"github.com/crid-dev/crid/oci/protocol"
)

// holderCallTimeout bounds each call to the stdio holder: it answers from
// memory, so a slow answer means a stuck holder, which must not hold up a
// container's create or delete.
const holderCallTimeout = 2 * time.Second

// holderLink is the monitor's connection to the stdio holder (oci/holder):
// every container's output ends and init go to it at create (and after a
// reload or an adopt), and leave it when the container has exited. A holder
// that dies is started again and given everything the monitor holds.
type holderLink struct {
	binary string

	mu sync.Mutex
	c  *holder.Client // nil while no holder answers
}

// holderClient is the live connection, or nil.
func (m *Monitor) holderClient() *holder.Client {
	if m.holder == nil {
		return nil
	}
	m.holder.mu.Lock()
	defer m.holder.mu.Unlock()
	return m.holder.c
}

// connectHolder connects to (or starts) the holder once.
func (m *Monitor) connectHolder(ctx context.Context) *holder.Client {
	c, err := holder.Connect(ctx, m.holder.binary, m.cfg.RunDir, m.cfg.StateDir)
	if err != nil {
		m.log.Warn("No stdio holder: a container's output survives a monitor crash only while the daemon lives", "err", err)
		return nil
	}
	m.holder.mu.Lock()
	m.holder.c = c
	m.holder.mu.Unlock()
	m.log.Info("Connected to the stdio holder", "pid", c.Pid)
	return c
}

// superviseHolder reconnects when the holder's connection ends and hands a
// new holder everything, until ctx ends.
func (m *Monitor) superviseHolder(ctx context.Context) {
	for backoff := 100 * time.Millisecond; ; {
		c := m.holderClient()
		if c != nil {
			select {
			case <-ctx.Done():
				c.Close()
				return
			case <-c.Done():
			}
			m.holder.mu.Lock()
			m.holder.c = nil
			m.holder.mu.Unlock()
			m.log.Warn("Lost the stdio holder; starting another")
		}
		if c = m.connectHolder(ctx); c != nil {
			backoff = 100 * time.Millisecond
			m.holdAll()
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// holdAll hands the holder every live container's output.
func (m *Monitor) holdAll() {
	m.mu.Lock()
	cs := make([]*container, 0, len(m.containers))
	for _, c := range m.containers {
		cs = append(cs, c)
	}
	m.mu.Unlock()
	for _, c := range cs {
		m.hold(c)
	}
}

// hold hands the holder duplicates of a live container's output ends (its
// stdin stays the monitor's alone: a held write end would keep the
// container from ever reading EOF).
func (m *Monitor) hold(c *container) {
	hc := m.holderClient()
	if hc == nil {
		return
	}
	c.mu.Lock()
	req := holder.HoldRequest{ID: c.id, Pid: c.rec.Pid, InitStartTime: c.rec.InitStartTime, MemoryCgroup: c.rec.MemoryCgroup}
	var files []*os.File
	if c.status != protocol.StatusStopped {
		for _, role := range []string{protocol.StdioStdout, protocol.StdioStderr, protocol.StdioPTY} {
			f := c.stdio[role]
			if f == nil {
				continue
			}
			d, err := protocol.Dup(f, false)
			if err != nil {
				m.log.Warn("Duplicating output for the holder failed", "id", c.id, "role", role, "err", err)
				continue
			}
			req.Stdio = append(req.Stdio, role)
			files = append(files, d)
		}
	}
	stopped := c.status == protocol.StatusStopped
	c.mu.Unlock()
	defer protocol.CloseFiles(files)
	if stopped || req.Pid <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx, holderCallTimeout)
	defer cancel()
	if err := hc.Hold(ctx, req, files); err != nil {
		m.log.Warn("Handing output to the stdio holder failed", "id", c.id, "err", err)
	}
}

// unhold makes the holder forget a container.
func (m *Monitor) unhold(id string) {
	hc := m.holderClient()
	if hc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx, holderCallTimeout)
	defer cancel()
	if err := hc.Release(ctx, id); err != nil {
		m.log.Warn("Releasing a container from the stdio holder failed", "id", id, "err", err)
	}
}

// takeHeld returns duplicates of what the holder kept for a container.
func (m *Monitor) takeHeld(id string) map[string]*os.File {
	hc := m.holderClient()
	if hc == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(m.ctx, holderCallTimeout)
	defer cancel()
	files, err := hc.Take(ctx, id)
	if err != nil {
		m.log.Warn("Taking output back from the stdio holder failed", "id", id, "err", err)
		return nil
	}
	return files
}
