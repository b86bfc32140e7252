package monitor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/oci/protocol"
)

// oomWatcher counts the OOM kills of containers on cgroup v2 as they
// happen. An exit is marked OOMKilled from the oom_kill counter of the
// container's memory.events, read when the exit is recorded; but with the
// systemd driver a container's cgroup is a transient scope that systemd
// removes as soon as its last process is gone, often before that read.
// So every container's memory.events is watched (one inotify descriptor
// and one goroutine for all of them) and its counter is read on each
// change, while the cgroup is still there. systemd reacts to the same
// change and may win that race too (the more so on a loaded node): then
// the parent's counter (the pod's cgroup, which counts its children's
// kills and outlives them) tells whether an OOM kill happened under the
// pod since the container was created.
type oomWatcher struct {
	f  *os.File // the inotify descriptor, non-blocking, in Go's poller
	fd int      // the same, for the watch calls (f.Fd would make it blocking)

	mu   sync.Mutex
	byWD map[int32]*oomWatch
	byID map[string]*oomWatch
}

type oomWatch struct {
	id, file string
	wd       int32 // -1 once the file is gone
	kills    uint64
	// parentKills is the parent cgroup's counter when the watch began.
	parentKills uint64
}

func newOOMWatcher() (*oomWatcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	return &oomWatcher{
		f:    os.NewFile(uintptr(fd), "inotify"),
		fd:   fd,
		byWD: map[int32]*oomWatch{},
		byID: map[string]*oomWatch{},
	}, nil
}

// add starts watching a container's memory cgroup directory.
func (w *oomWatcher) add(id, memoryDir string) error {
	file := filepath.Join(memoryDir, "memory.events")
	wd, err := unix.InotifyAddWatch(w.fd, file, unix.IN_MODIFY)
	if err != nil {
		return fmt.Errorf("watch %s: %w", file, err)
	}
	ow := &oomWatch{id: id, file: file, wd: int32(wd), kills: protocol.OOMKills(memoryDir),
		parentKills: protocol.OOMKills(filepath.Dir(memoryDir))}
	w.mu.Lock()
	if old := w.byID[id]; old != nil && old.wd >= 0 && old.wd != ow.wd {
		delete(w.byWD, old.wd)
	}
	w.byID[id], w.byWD[ow.wd] = ow, ow
	w.mu.Unlock()
	return nil
}

// remove forgets a container (deleted).
func (w *oomWatcher) remove(id string) {
	w.mu.Lock()
	ow := w.byID[id]
	delete(w.byID, id)
	if ow != nil && ow.wd >= 0 {
		delete(w.byWD, ow.wd)
		_, _ = unix.InotifyRmWatch(w.fd, uint32(ow.wd))
	}
	w.mu.Unlock()
}

// killed reports whether the container saw an OOM kill: the count the
// watcher read, else its memory.events when still there, else (the cgroup
// was removed before either could read it) whether the parent's count
// rose since the watch began and the init died of SIGKILL, as the OOM
// killer's victims do.
func (w *oomWatcher) killed(id string, sigkill bool) bool {
	w.mu.Lock()
	ow := w.byID[id]
	var n, parent uint64
	var file string
	if ow != nil {
		n, parent, file = ow.kills, ow.parentKills, ow.file
	}
	w.mu.Unlock()
	switch {
	case ow == nil:
		return false
	case n > 0:
		return true
	}
	if _, err := os.Stat(file); err == nil {
		return protocol.OOMKills(filepath.Dir(file)) > 0
	}
	return sigkill && protocol.OOMKills(filepath.Dir(filepath.Dir(file))) > parent
}

// run reads inotify events until ctx ends, then closes the descriptor.
func (w *oomWatcher) run(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { w.f.Close() })
	defer stop()
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) || ctx.Err() != nil {
				return
			}
			continue // EINTR and the like
		}
		w.mu.Lock()
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			ow := w.byWD[ev.Wd]
			if ow == nil {
				continue
			}
			if ev.Mask&unix.IN_IGNORED != 0 { // the cgroup is gone
				delete(w.byWD, ev.Wd)
				ow.wd = -1
				continue
			}
			if k := protocol.OOMKills(filepath.Dir(ow.file)); k > ow.kills {
				ow.kills = k
			}
		}
		w.mu.Unlock()
	}
}
