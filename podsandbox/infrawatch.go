package podsandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/events"
	"github.com/crid-dev/crid/panicguard"
)

// A pod's infra process is held by a pidfd from its start: the pidfd tells
// when it exits (the pod then turns NOTREADY, as containerd's does when its
// pause dies, and kubelet recreates the pod) and proves, while it lives,
// that a pid still names it. The pod's PID namespace is pinned like its
// other namespaces, so containers join it by a path that cannot come to
// mean another process's namespace; once the infra has died they are
// refused before they try.

// infraWatch is the pidfd of one pod's infra process.
type infraWatch struct {
	pid int
	f   *os.File // pidfd, non-blocking, in the runtime's netpoller
}

// ErrNotReady says a pod cannot take containers: it is stopped, or its
// infra process (the holder of its PID namespace) has exited.
var ErrNotReady = errors.New("pod sandbox is not ready")

// openPidfd takes a pidfd of pid.
func openPidfd(pid int) (*os.File, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("pidfd of process %d: %w", pid, err)
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("pidfd:%d", pid)), nil
}

// pidfdAlive reports whether the pidfd's process has not exited.
func pidfdAlive(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	if err := rc.Control(func(fd uintptr) { alive = !pidfdExited(int(fd)) }); err != nil {
		return false
	}
	return alive
}

// pidfdExited polls the pidfd without waiting: it turns readable when its
// process exits.
func pidfdExited(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err != nil || (n > 0 && fds[0].Revents != 0)
	}
}

// waitPidfd parks until the pidfd's process exits (nil) or f is closed (an
// error), without holding a thread: the netpoller wakes it.
func waitPidfd(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Read(func(fd uintptr) bool { return pidfdExited(int(fd)) })
}

// pinProcessNamespace bind-mounts the namespace kind ("pid") of the process
// behind pidfd, whose pid is pid, at pin. The pidfd is checked after the
// mount: if the process was alive then, /proc/<pid> was that process and the
// pin holds its namespace, never that of a process that reused the pid.
func pinProcessNamespace(pidfd *os.File, pid int, kind, pin string) error {
	if err := os.MkdirAll(filepath.Dir(pin), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(pin, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o400)
	if err != nil {
		return fmt.Errorf("create %s pin: %w", kind, err)
	}
	f.Close()
	if err := unix.Mount(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), pin, "", unix.MS_BIND, ""); err != nil {
		os.Remove(pin)
		return fmt.Errorf("pin %s namespace of process %d: %w", kind, pid, err)
	}
	if !pidfdAlive(pidfd) {
		return errors.Join(fmt.Errorf("%w: process %d exited while its %s namespace was pinned", ErrNotReady, pid, kind), unpin(pin))
	}
	return nil
}

// sameNamespace reports whether the pin holds the namespace kind of the
// process behind pidfd (checked alive after the look).
func sameNamespace(pidfd *os.File, pid int, kind, pin string) bool {
	var a, b unix.Stat_t
	if unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), &a) != nil || unix.Stat(pin, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino && pidfdAlive(pidfd)
}

// holdInfra pins the PID namespace of the pod's just started infra process
// (pid) and watches it; it returns the pin. The monitor is asked for the
// infra's pid again after the pidfd is taken: a live pidfd and a live
// infra with the same pid are the same process. It runs beside the CNI ADD
// and so leaves sb to its caller.
func (m *Manager) holdInfra(ctx context.Context, sb *Sandbox, pid int) (string, error) {
	f, err := openPidfd(pid)
	if err != nil {
		return "", err
	}
	pin := filepath.Join(m.dir(sb.ID), "ns", string(nsPID))
	if err := pinProcessNamespace(f, pid, string(nsPID), pin); err != nil {
		f.Close()
		return "", err
	}
	if now, err := m.opts.Infra.Pid(ctx, sb); err != nil || now != pid {
		f.Close()
		return "", fmt.Errorf("%w: infra process %d of pod %s is gone (monitor: pid %d, %v)", ErrNotReady, pid, sb.ID, now, err)
	}
	m.watch(sb.ID, &infraWatch{pid: pid, f: f})
	return pin, nil
}

// adoptInfra takes up, after a daemon restart, the watch of a ready pod's
// infra process: the monitor must report it running with the recorded pid,
// and that process must hold the pinned PID namespace. A pod recorded
// before PID namespaces were pinned gets its pin now.
func (m *Manager) adoptInfra(ctx context.Context, sb *Sandbox) error {
	pid, err := m.opts.Infra.Pid(ctx, sb)
	if err != nil || pid == 0 || pid != sb.InfraPid {
		return fmt.Errorf("%w: infra process %d is gone (monitor: pid %d, %v)", ErrNotReady, sb.InfraPid, pid, err)
	}
	f, err := openPidfd(pid)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	pin := filepath.Join(m.dir(sb.ID), "ns", string(nsPID))
	switch {
	case pinned(pin):
		if !sameNamespace(f, pid, string(nsPID), pin) {
			f.Close()
			return fmt.Errorf("%w: process %d does not hold the pod's PID namespace: the infra process is gone", ErrNotReady, pid)
		}
	default:
		if err := pinProcessNamespace(f, pid, string(nsPID), pin); err != nil {
			f.Close()
			return err
		}
	}
	sb.Namespaces[string(nsPID)] = pin
	if err := m.persist(sb); err != nil {
		f.Close()
		return err
	}
	m.watch(sb.ID, &infraWatch{pid: pid, f: f})
	return nil
}

// watch starts the goroutine that waits for the infra's exit. It ends at
// the exit or when unwatch (or Close) closes the pidfd.
func (m *Manager) watch(id string, w *infraWatch) {
	m.mu.Lock()
	if old := m.watches[id]; old != nil {
		old.f.Close()
	}
	m.watches[id] = w
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer panicguard.Recover("watch infra process", nil)
		if err := waitPidfd(w.f); err != nil {
			return // unwatched
		}
		m.infraExited(id, w)
	}()
}

// unwatch stops watching the pod's infra process: it is being stopped.
func (m *Manager) unwatch(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w := m.watches[id]; w != nil {
		w.f.Close()
		delete(m.watches, id)
	}
}

// infraExited marks a ready pod whose infra process died NOTREADY and
// tells the event subscribers (a CONTAINER_STOPPED event of the pod), as
// containerd does; the pod's network and namespaces stay until kubelet
// stops it. A Stop or Remove in progress has unwatched the pod first and
// wins.
func (m *Manager) infraExited(id string, w *infraWatch) {
	sb, unlock, err := m.lock(m.ctx, id)
	if err != nil {
		return
	}
	defer unlock()
	m.mu.Lock()
	current := m.watches[id] == w
	ready := sb.State == StateReady
	if current && ready {
		sb.State = StateNotReady
	}
	m.mu.Unlock()
	if !current || !ready {
		return
	}
	klog.InfoS("Infra process of sandbox exited; the sandbox is not ready", "podSandboxID", id, "pid", w.pid)
	if err := m.persist(sb); err != nil {
		klog.ErrorS(err, "Recording the not-ready sandbox", "podSandboxID", id)
	}
	m.publish(events.ContainerStopped, id)
}

// PidNamespace returns the pinned PID namespace of a ready pod that shares
// one, for its containers to join. It fails with ErrNotReady when the pod
// is not ready or its infra process has exited, even if the exit has not
// been handled yet: a container must never be made in a PID namespace whose
// init is gone.
func (m *Manager) PidNamespace(sb *Sandbox) (string, error) {
	m.mu.Lock()
	w := m.watches[sb.ID]
	cur := m.sandboxes[sb.ID]
	m.mu.Unlock()
	pin := sb.Namespaces[string(nsPID)]
	switch {
	case cur == nil || cur.State != StateReady:
		return "", fmt.Errorf("%w: pod %s is not ready", ErrNotReady, sb.ID)
	case pin == "" || w == nil:
		return "", fmt.Errorf("%w: pod %s has no infra process holding a PID namespace", ErrNotReady, sb.ID)
	case !pidfdAlive(w.f):
		return "", fmt.Errorf("%w: the infra process of pod %s has exited", ErrNotReady, sb.ID)
	}
	return pin, nil
}

// Close ends the infra watches; pods and their processes are untouched.
func (m *Manager) Close() {
	m.cancel()
	m.mu.Lock()
	for id, w := range m.watches {
		w.f.Close()
		delete(m.watches, id)
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// targetPinPrefix names the pins of PinTargetPidNamespace in a pod's ns dir.
const targetPinPrefix = "pid-target-"

// unpinTargets removes the TARGET pins a crash in the middle of a create
// left in a pod directory.
func unpinTargets(dir string) {
	pins, _ := filepath.Glob(filepath.Join(dir, "ns", targetPinPrefix+"*"))
	for _, p := range pins {
		if err := unpin(p); err != nil {
			klog.ErrorS(err, "Removing a leftover target PID namespace pin", "pin", p)
		}
	}
}

// PinTargetPidNamespace pins the PID namespace of a running container's
// init (pid), for the create of container ctrID in pod sb with the TARGET
// PID mode: the create then joins it by a path that cannot be taken over by
// another process reusing the pid. stillPid asks the monitor again after
// the pin: a live pidfd and a live container init with the same pid are
// the same process. The caller calls release once the create is done (its
// container's processes hold the namespace from then on).
func (m *Manager) PinTargetPidNamespace(sb *Sandbox, ctrID string, pid int, stillPid func() (int, error)) (path string, release func(), err error) {
	f, err := openPidfd(pid)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	pin := filepath.Join(m.dir(sb.ID), "ns", targetPinPrefix+ctrID)
	if err := pinProcessNamespace(f, pid, string(nsPID), pin); err != nil {
		return "", nil, err
	}
	release = func() {
		if err := unpin(pin); err != nil {
			klog.ErrorS(err, "Unpinning a target PID namespace", "podSandboxID", sb.ID, "containerID", ctrID)
		}
	}
	if now, err := stillPid(); err != nil || now != pid {
		release()
		return "", nil, fmt.Errorf("process %d exited while its PID namespace was pinned (now %d, %v)", pid, now, err)
	}
	return pin, release, nil
}
