package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/opencontainers/runc/libcontainer"

	"github.com/crid-dev/crid/cgroupmgr"
	"github.com/crid-dev/crid/oci/protocol"
)

// handleUpdates serves the update and exits methods; ok is false for any
// other method.
func (m *Monitor) handleUpdates(ctx context.Context, method string, body json.RawMessage) (reply any, ok bool, err error) {
	switch method {
	case protocol.MethodUpdate:
		var req protocol.UpdateRequest
		if err := protocol.Decode(body, &req); err != nil {
			return nil, true, err
		}
		return struct{}{}, true, m.update(req)
	case protocol.MethodExits:
		var req protocol.ExitsRequest
		if err := protocol.Decode(body, &req); err != nil {
			return nil, true, err
		}
		r, err := m.waitExits(ctx, req)
		return r, true, err
	}
	return nil, false, nil
}

// update applies new cgroup limits to a created or running container
// through libcontainer's Set, so its saved config (what a reloaded monitor
// and later updates start from) stays in step with the cgroup.
func (m *Monitor) update(req protocol.UpdateRequest) error {
	c, err := m.get(req.ID)
	if err != nil {
		return err
	}
	if req.Resources == nil {
		return invalid("update %s: no resources", req.ID)
	}
	c.mu.Lock()
	status := c.status
	c.mu.Unlock()
	switch status {
	case "":
		return precondition("update %s: container is being created", req.ID)
	case protocol.StatusStopped:
		return precondition("update %s: container has exited", req.ID)
	}
	lc, err := m.load(req.ID)
	if err != nil {
		return err
	}
	if lc == nil {
		return precondition("update %s: container has exited", req.ID)
	}
	config := lc.Config()
	if config.Cgroups == nil || config.Cgroups.Resources == nil {
		return fmt.Errorf("update %s: libcontainer config has no cgroup", req.ID)
	}
	dropped, err := cgroupmgr.ApplyResources(config.Cgroups.Resources, req.Resources, cgroupmgr.HugetlbAvailable())
	if err != nil {
		return invalid("update %s: %v", req.ID, err)
	}
	if dropped {
		m.log.Info("Hugepage limits dropped from an update: no hugetlb cgroup controller", "id", req.ID)
	}
	if err := lc.Set(config); err != nil {
		if errors.Is(err, libcontainer.ErrNotRunning) {
			return precondition("update %s: container has exited", req.ID)
		}
		return fmt.Errorf("update %s: set cgroup limits: %w", req.ID, err)
	}
	m.log.Info("Container resources updated", "id", req.ID)
	return nil
}

// exitLog numbers the exits the monitor records, so the daemon can follow
// them with one outstanding request (exits) instead of a wait per
// container. It keeps the last maxRecentExits IDs; a caller further behind
// is told to reset.
//
// The daemon is at most one round trip behind, so a few hundred IDs are
// plenty: a reset only makes it refresh its live containers, about what
// refreshing that many exits costs anyway. 4,096 64-character IDs held
// 330 kB, grown over a node's first few thousand exits (the soak's
// monitor grew by that much from 100 to 2,000 pods).
type exitLog struct {
	mu     sync.Mutex
	seq    uint64
	recent []string // IDs of exits seq-len(recent)+1 … seq
	wake   chan struct{}
}

const maxRecentExits = 256

// add records an exit and wakes the waiters.
func (l *exitLog) add(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	l.recent = append(l.recent, id)
	if len(l.recent) > maxRecentExits {
		l.recent = append([]string(nil), l.recent[len(l.recent)-maxRecentExits/2:]...)
	}
	if l.wake != nil {
		close(l.wake)
		l.wake = nil
	}
}

// since returns the exits after seq, or reset when they are not all known;
// wait, when neither, is closed by the next add.
func (l *exitLog) since(after uint64) (ids []string, seq uint64, reset bool, wait <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	oldest := l.seq - uint64(len(l.recent)) // exits after oldest are in recent
	switch {
	case after > l.seq || after < oldest:
		return nil, l.seq, true, nil
	case after < l.seq:
		return append([]string(nil), l.recent[after-oldest:]...), l.seq, false, nil
	}
	if l.wake == nil {
		l.wake = make(chan struct{})
	}
	return nil, l.seq, false, l.wake
}

// epoch names this monitor instance: a sequence means nothing to another.
func (m *Monitor) epoch() string {
	return fmt.Sprintf("%d-%d", os.Getpid(), m.startedAt.UnixNano())
}

// waitExits answers once an exit after req.After is recorded, or at once
// with Reset when the caller's position is unknown here. It returns when
// ctx (the connection) ends.
func (m *Monitor) waitExits(ctx context.Context, req protocol.ExitsRequest) (*protocol.ExitsReply, error) {
	epoch := m.epoch()
	for {
		ids, seq, reset, wait := m.exits.since(req.After)
		if req.Epoch != epoch {
			reset = true
		}
		if reset || len(ids) > 0 {
			return &protocol.ExitsReply{Epoch: epoch, Seq: seq, IDs: ids, Reset: reset}, nil
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for exits: %w", ctx.Err())
		}
	}
}
