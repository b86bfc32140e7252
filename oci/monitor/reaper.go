package monitor

import (
	"context"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/panicguard"
)

// reaper is the monitor's only wait4(-1) caller. As a child subreaper the
// monitor inherits orphans besides its container inits and exec'd
// processes; all are reaped at once (an unreaped orphan would linger as a
// zombie, and PID 1 on these machines reaps late). Exits of watched pids go
// to their callbacks; orphans are dropped.
//
// libcontainer waits for its own helper processes (the runc init stages) by
// pid while it starts a process, so a wait4(-1) in that window would steal
// their status. Every start holds starting for reading; the reaper takes it
// for writing, so it reaps between starts. A start registers its new pid
// before releasing the lock, so no exit of a watched pid is ever dropped.
type reaper struct {
	starting sync.RWMutex
	sig      chan os.Signal

	mu   sync.Mutex
	subs map[int]func(unix.WaitStatus, time.Time)
}

func newReaper() *reaper {
	r := &reaper{sig: make(chan os.Signal, 1), subs: map[int]func(unix.WaitStatus, time.Time){}}
	signal.Notify(r.sig, unix.SIGCHLD)
	return r
}

// run reaps on every SIGCHLD until ctx ends.
func (r *reaper) run(ctx context.Context) {
	defer signal.Stop(r.sig)
	r.reapAll() // children that exited before we listened
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.sig:
			r.reapAll()
		}
	}
}

func (r *reaper) reapAll() {
	r.starting.Lock()
	defer r.starting.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		at := time.Now()
		r.mu.Lock()
		f := r.subs[pid]
		delete(r.subs, pid)
		r.mu.Unlock()
		if f != nil {
			notify(pid, f, ws, at)
		}
	}
}

// notify calls one watcher; a panic in it is logged and ends only that
// call, so the reaper goes on reaping.
func notify(pid int, f func(unix.WaitStatus, time.Time), ws unix.WaitStatus, at time.Time) {
	defer panicguard.Recover("exit callback of pid "+strconv.Itoa(pid), nil)
	f(ws, at)
}

// watch calls f (which must not block) with pid's exit status. Call it while
// holding starting for reading, before the pid can have been reaped.
func (r *reaper) watch(pid int, f func(unix.WaitStatus, time.Time)) {
	r.mu.Lock()
	r.subs[pid] = f
	r.mu.Unlock()
}
