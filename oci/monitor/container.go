package monitor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/runc/libcontainer"

	"github.com/crid-dev/crid/oci/crilog"
	"github.com/crid-dev/crid/oci/protocol"
	"github.com/crid-dev/crid/panicguard"
)

// OutputLostMessage is the status message of a running container whose
// output pipes nobody kept through a crash of both the monitor and the
// daemon (and the holder): its writes fill the pipe, or kill it with
// SIGPIPE once no reader is left, and nothing reaches its log.
const OutputLostMessage = "crid lost this container's output: no holder of its stdout/stderr survived the crash of crid-monitor; nothing reaches its log any more"

// drainGrace bounds how long an exit waits for the output pipes to reach
// EOF: a process that escaped the container's PID namespace (or a shared
// one) may hold them open forever. Copying goes on after it.
const drainGrace = 2 * time.Second

// container is one managed container. Its init is watched either by the
// reaper (created by this monitor) or through a pidfd (reloaded after a
// monitor restart, when the init is no longer our child).
//
// libcontainer's Container is not kept: it retains the whole start-time
// state (config, command, bootstrap data), some tens of kB per container
// that pin heap spans. It is loaded from its state.json for each operation
// instead, as the runc CLI does; a load costs well under a millisecond.
type container struct {
	id string

	mu      sync.Mutex
	rec     protocol.Record
	status  string // "" while being created, then protocol.Status*
	exit    *protocol.Exit
	stdio   map[string]*os.File // monitor-held ends, by role
	log     *crilog.File
	outDone chan struct{} // closed when every output copier ended; nil if none attached
	// sinks are the attach clients' sockets; outputEnded is set once the
	// output reached EOF, after which no attach is accepted.
	sinks       []int
	outputEnded bool
	// outputLost is set when a reloaded container's output ends came
	// back from nobody: nothing reaches its log any more.
	outputLost bool

	ioReady chan struct{} // closed once Create has wired stdio, or adopt (or its grace) after a reload
	ioOnce  sync.Once
	exited  chan struct{} // closed once the exit is recorded and output drained
}

func newContainer(rec protocol.Record) *container {
	return &container{
		id:      rec.ID,
		rec:     rec,
		stdio:   map[string]*os.File{},
		ioReady: make(chan struct{}),
		exited:  make(chan struct{}),
	}
}

func (c *container) state() protocol.State {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := protocol.State{
		ID:            c.id,
		Status:        c.status,
		Pid:           c.rec.Pid,
		InitStartTime: c.rec.InitStartTime,
		CreatedAt:     c.rec.CreatedAt,
		StartedAt:     c.rec.StartedAt,
		LogPath:       c.rec.LogPath,
	}
	if c.outputLost && c.status != protocol.StatusStopped {
		s.Message = OutputLostMessage
	}
	if c.exit != nil {
		e := *c.exit
		s.Exit = &e
	}
	return s
}

// attachOutput starts one log copier per output file; each ends at EOF
// (every writer gone) or when Delete closes the file.
func (m *Monitor) attachOutput(c *container, files map[string]*os.File) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for role, f := range files {
		c.stdio[role] = f
	}
	streams := map[string]crilog.Stream{
		protocol.StdioStdout: crilog.Stdout,
		protocol.StdioPTY:    crilog.Stdout,
		protocol.StdioStderr: crilog.Stderr,
	}
	log, maxLine := c.log, c.rec.MaxLogLine
	done := make(chan struct{})
	c.outDone = done
	var remaining atomic.Int32 // the last copier to end closes done
	for role := range files {
		if _, ok := streams[role]; ok {
			remaining.Add(1)
		}
	}
	if remaining.Load() == 0 {
		close(done)
	}
	onDrop := func(err error) {
		m.log.Warn("Dropped an attach client that does not keep up", "id", c.id, "err", err)
	}
	// Each stream's journal (see crilog.CopyPipe) settles the batch a
	// killed predecessor left half-done, for all streams before any
	// copier writes to their shared log.
	journals := map[string]string{}
	for role, f := range files {
		if _, ok := streams[role]; ok && log != nil {
			journals[role] = filepath.Join(m.containerDir(c.id), "log-"+role+".journal")
			crilog.RecoverPipe(log, f, journals[role])
		}
	}
	for role, f := range files {
		stream, ok := streams[role]
		if !ok {
			continue
		}
		journal := journals[role]
		tag := protocol.AttachStdout
		if stream == crilog.Stderr {
			tag = protocol.AttachStderr
		}
		go func() {
			// At EOF no writer is left: the pipe is done with (a pty's
			// input too, once the container is gone). A panic ends
			// the copy the same way, after its stack is logged.
			defer func() {
				c.mu.Lock()
				if c.stdio[role] == f {
					delete(c.stdio, role)
					f.Close()
				}
				c.mu.Unlock()
				if remaining.Add(-1) == 0 {
					c.mu.Lock()
					c.outputEnded = true
					c.closeSinksLocked()
					c.mu.Unlock()
					close(done)
				}
			}()
			var err error
			defer panicguard.Recover("log copy of container "+c.id, &err)
			// CopyPipe, not Copy: what it has read but not yet logged
			// stays in the pipe, so a kill of the monitor loses no line
			// (the holder keeps the pipe for the next monitor).
			tap := func(p []byte) { c.broadcast(tag, p, onDrop) }
			err = crilog.CopyPipe(log, stream, f, maxLine, nil, func(err error) {
				m.log.Warn("Writing container log failed; output is counted as lost, and marked in the log where it resumes", "id", c.id, "err", err)
			}, tap, journal)
			if err != nil {
				m.log.Warn("Reading container output failed", "id", c.id, "stream", stream, "err", err)
			}
		}()
	}
}

// finish records an exit: durably first (the first recorded exit wins, so a
// daemon's earlier observation is kept), then, once the output has drained,
// in memory for State and Wait.
func (m *Monitor) finish(c *container, e protocol.Exit) {
	if written, err := protocol.WriteExit(m.cfg.StateDir, c.id, e); err != nil {
		m.log.Error("Recording exit failed", "id", c.id, "err", err)
	} else if !written {
		if prev, err := protocol.ReadExit(m.cfg.StateDir, c.id); err == nil && prev != nil {
			e = *prev
		}
	}
	m.log.Info("Container exited", "id", c.id, "code", e.Code, "signal", e.Signal, "oomKilled", e.OOMKilled, "unknown", e.Unknown)
	<-c.ioReady
	c.mu.Lock()
	done := c.outDone
	c.mu.Unlock()
	drained := true
	if done != nil {
		t := time.NewTimer(drainGrace)
		select {
		case <-done:
		case <-t.C:
			drained = false
			m.log.Warn("Container output still open after its exit; not waiting for it", "id", c.id)
		}
		t.Stop()
	}
	c.mu.Lock()
	c.exit = &e
	c.status = protocol.StatusStopped
	c.rec.Finished = true
	if drained && c.log != nil {
		// Nothing can reach the log any more: closed now, not at
		// delete. kubelet keeps exited containers, and a descriptor
		// each ran the monitor out of them (20,000 exited containers
		// against a limit of 20,000: creates failed with EMFILE).
		// Output still open (a process that outlived the container in
		// the pod's PID namespace) keeps it until the delete.
		c.log.Close()
	}
	c.mu.Unlock()
	if err := m.saveRecord(c); err != nil {
		m.log.Warn("Saving finished record failed", "id", c.id, "err", err)
	}
	// Drained and recorded: nothing left to keep. Released before the
	// exit is announced, so a delete waiting for it never races the
	// holder's last write under the container's directory.
	m.unhold(c.id)
	close(c.exited)
	m.exits.add(c.id)
}

// stdioWired marks the container's stdio as wired (or given up on).
func (c *container) stdioWired() { c.ioOnce.Do(func() { close(c.ioReady) }) }

// release closes everything the monitor holds for the container.
func (c *container) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for role, f := range c.stdio {
		f.Close()
		delete(c.stdio, role)
	}
	c.closeSinksLocked()
	if c.log != nil {
		c.log.Close()
	}
}

func (m *Monitor) containerDir(id string) string { return protocol.ContainerDir(m.cfg.StateDir, id) }

func (m *Monitor) saveRecord(c *container) error {
	c.mu.Lock()
	rec := c.rec
	c.mu.Unlock()
	return protocol.WriteJSON(filepath.Join(m.containerDir(c.id), protocol.RecordFile), rec, false)
}

// load returns libcontainer's view of the container, or nil when its state
// is gone (a monitor killed mid-create, a reboot of a tmpfs run dir).
func (m *Monitor) load(id string) (*libcontainer.Container, error) {
	lc, err := libcontainer.Load(m.root, id)
	if errors.Is(err, libcontainer.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load libcontainer state of %s: %w", id, err)
	}
	return lc, nil
}
