package oci

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/oci/protocol"
)

// execReplyMargin is the time an exec's reply needs after its timeout.
const execReplyMargin = 500 * time.Millisecond

func timeUntil(t time.Time) time.Duration { return time.Until(t) }

// Reap reaps the container inits that became the daemon's children when
// their monitor died, and records their exits where the next monitor reads
// them. Only known inits are waited for — by pid, after checking the pid
// is still that init (start time) and a zombie — so the exec.Cmd children
// of the daemon keep their statuses. New runs it on every SIGCHLD; calling
// it more often is harmless.
func (r *Runtime) Reap() {
	type cand struct {
		id    string
		pid   int
		start uint64
	}
	var cands []cand
	var ids []string
	inits := map[int]bool{}
	r.mu.Lock()
	for id, t := range r.tracked {
		ids = append(ids, id)
		inits[t.pid] = true
		if !t.exited && t.pid > 0 {
			cands = append(cands, cand{id, t.pid, t.start})
		}
	}
	r.mu.Unlock()
	defer reapExecOrphans(ids, inits)
	for _, c := range cands {
		start, state, err := protocol.ProcStartTime(c.pid)
		if err != nil || start != c.start || state != 'Z' {
			continue
		}
		var ws unix.WaitStatus
		pid, err := unix.Wait4(c.pid, &ws, unix.WNOHANG, nil)
		if err != nil || pid != c.pid {
			continue // not our child: its monitor lives and reaps it
		}
		var mem string
		if rec, err := protocol.ReadRecord(r.opts.StateDir, c.id); err == nil && rec != nil {
			mem = rec.MemoryCgroup
		}
		e := protocol.ExitFromStatus(syscall.WaitStatus(ws), time.Now(), mem, "daemon")
		if _, err := protocol.WriteExit(r.opts.StateDir, c.id, e); err != nil {
			klog.ErrorS(err, "Recording the exit of a container reaped by the daemon failed", "id", c.id, "code", e.Code)
		} else {
			klog.InfoS("Reaped container init while the monitor was down", "id", c.id, "pid", c.pid, "code", e.Code)
		}
		r.mu.Lock()
		if t := r.tracked[c.id]; t != nil && t.pid == c.pid {
			t.exited = true // its stdio still goes to the new monitor to drain
		}
		r.mu.Unlock()
	}
}

// initEnded reports whether the container's init is known to be gone (no
// process with its pid and start time, or a zombie), before its monitor
// may have recorded the exit.
func (r *Runtime) initEnded(id string) bool {
	r.mu.Lock()
	t := r.tracked[id]
	var pid int
	var start uint64
	if t != nil {
		pid, start = t.pid, t.start
	}
	r.mu.Unlock()
	if pid <= 0 {
		return false
	}
	s, state, err := protocol.ProcStartTime(pid)
	return err != nil || s != start || state == 'Z'
}

// reapExecOrphans reaps the exec processes a dead monitor left: they
// become the daemon's children (it is a child subreaper) and, never
// reaped, would stay zombies for ever and keep a container in its own PID
// namespace from finishing its exit (its init waits until every process
// of the namespace is reaped), so that stopping it hangs. Only a zombie in
// the cgroup of a container the daemon knows is reaped, never an init
// (Reap records those): the daemon's own exec.Cmd children (CNI plugins,
// the monitor) are in none and keep their statuses for their Wait.
func reapExecOrphans(ids []string, inits map[int]bool) {
	if len(ids) == 0 {
		return
	}
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, field := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(field)
			if err != nil || inits[pid] {
				continue
			}
			if _, state, err := protocol.ProcStartTime(pid); err != nil || state != 'Z' {
				continue
			}
			cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
			if err != nil || !slices.ContainsFunc(ids, func(id string) bool { return strings.Contains(string(cg), id) }) {
				continue
			}
			var ws unix.WaitStatus
			if got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err == nil && got == pid {
				klog.InfoS("Reaped a process of a container that its dead monitor left", "pid", pid)
			}
		}
	}
}
