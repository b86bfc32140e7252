package podsandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
	criapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/panicguard"
)

// nsUser is the pod's user namespace (KEP-127, mode POD): the pod's other
// namespaces are created inside it, and every container joins it.
const nsUser nsKind = "user"

// ValidateUserns checks the user namespace options of a pod or container
// (field names them in the error): NODE or unset is the node's user
// namespace; POD needs exactly one uid and one gid mapping, each mapping
// container ID 0, as kubelet sends; CONTAINER and TARGET are refused, as
// the CRI says runtimes may.
func ValidateUserns(field string, u *criapi.UserNamespace) error {
	if u == nil {
		return nil
	}
	switch u.Mode {
	case criapi.NamespaceMode_NODE:
		if len(u.Uids) != 0 || len(u.Gids) != 0 {
			return fmt.Errorf("%w: %s: mode NODE takes no uids or gids", ErrInvalid, field)
		}
		return nil
	case criapi.NamespaceMode_POD:
	default:
		return fmt.Errorf("%w: %s.mode %s is not supported: only NODE and POD are", ErrInvalid, field, u.Mode)
	}
	for _, m := range []struct {
		name string
		maps []*criapi.IDMapping
	}{{"uids", u.Uids}, {"gids", u.Gids}} {
		if len(m.maps) != 1 {
			return fmt.Errorf("%w: %s.%s: mode POD needs exactly one mapping, got %d", ErrInvalid, field, m.name, len(m.maps))
		}
		mp := m.maps[0]
		switch {
		case mp.ContainerId != 0:
			return fmt.Errorf("%w: %s.%s[0]: container ID 0 must be mapped (the mapping starts at container ID %d)", ErrInvalid, field, m.name, mp.ContainerId)
		case mp.Length == 0:
			return fmt.Errorf("%w: %s.%s[0]: length must not be 0", ErrInvalid, field, m.name)
		case uint64(mp.HostId)+uint64(mp.Length) > 1<<32-1:
			return fmt.Errorf("%w: %s.%s[0]: host IDs %d+%d run past 4294967294", ErrInvalid, field, m.name, mp.HostId, mp.Length)
		}
	}
	return nil
}

// usernsMode is the pod's user namespace mode: POD when it has one of its
// own, NODE otherwise.
func (sb *Sandbox) usernsMode() criapi.NamespaceMode {
	return UsernsMode(sb.options().GetUsernsOptions())
}

// UsernsMode is the mode of user namespace options: unset options are
// NODE, as the CRI says (the zero NamespaceMode is POD).
func UsernsMode(u *criapi.UserNamespace) criapi.NamespaceMode {
	if u == nil {
		return criapi.NamespaceMode_NODE
	}
	return u.Mode
}

// UserNS is the pinned user namespace of a pod in mode POD, empty for a
// pod in the node's user namespace.
func (sb *Sandbox) UserNS() string { return sb.Namespaces[string(nsUser)] }

func sysProcIDMap(maps []*criapi.IDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, 0, len(maps))
	for _, m := range maps {
		out = append(out, syscall.SysProcIDMap{ContainerID: int(m.ContainerId), HostID: int(m.HostId), Size: int(m.Length)})
	}
	return out
}

// pinUsernsNamespaces creates a user namespace with the pod's mappings and
// the namespaces kinds inside it (so they belong to it: a container in the
// user namespace may mount sysfs for its network namespace and mqueue for
// its IPC one), pins them all under dir, then sets the hostname and
// sysctls from a thread that enters them.
//
// A Go process has many threads and cannot unshare or enter a user
// namespace, so a child is started in the new namespaces: it is traced, so
// it stops at its exec before running a single instruction of the new
// program, and it is killed once its namespaces are pinned.
func pinUsernsNamespaces(dir string, kinds []nsKind, u *criapi.UserNamespace, setup nsSetup) (paths map[nsKind]string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	all := append([]nsKind{nsUser}, kinds...)
	type result struct {
		paths map[nsKind]string
		err   error
	}
	done := make(chan result, 1)
	go func() { // ends with the child reaped; the caller waits for it
		var r result
		defer func() { done <- r }()
		defer panicguard.Recover("pin pod user namespace", &r.err)
		// The tracer is the thread that started the child; the thread
		// goes back to the scheduler once the child is reaped.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		r.paths, r.err = pinFromChild(dir, all, u)
	}()
	r := <-done
	if r.err != nil {
		return r.paths, r.err
	}
	defer func() {
		if err != nil {
			unpinNamespaces(r.paths)
		}
	}()
	if err := setupInside(r.paths, kinds, setup); err != nil {
		return r.paths, err
	}
	return r.paths, nil
}

func pinFromChild(dir string, kinds []nsKind, u *criapi.UserNamespace) (paths map[nsKind]string, err error) {
	flags := uintptr(unix.CLONE_NEWUSER)
	for _, k := range kinds {
		flags |= uintptr(cloneFlags[k])
	}
	cmd := exec.Command("/proc/self/exe")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  flags,
		UidMappings: sysProcIDMap(u.Uids),
		GidMappings: sysProcIDMap(u.Gids),
		Ptrace:      true,
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start a process in the pod's user namespace: %w", err)
	}
	pid := cmd.Process.Pid
	defer func() {
		_ = cmd.Process.Kill()
		if rerr := reapTraced(pid); rerr != nil && err == nil {
			err = rerr
		}
		_ = cmd.Process.Release()
		if err != nil {
			unpinNamespaces(paths)
		}
	}()
	paths = map[nsKind]string{}
	return paths, pinEach(paths, dir, kinds, fmt.Sprintf("/proc/%d/ns", pid))
}

// reapTraced waits for the killed, traced child until it is gone: a traced
// child reports its exec stop before its death.
func reapTraced(pid int) error {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(pid, &ws, unix.WALL, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for the user namespace process: %w", err)
		}
		if ws.Exited() || ws.Signaled() {
			return nil
		}
	}
}

// setupInside sets the hostname and the namespaced sysctls from a thread
// that enters the pinned UTS, network and IPC namespaces (root on the node
// may enter namespaces that belong to the pod's user namespace; a thread
// may, unlike a user namespace). The thread is never given back to the Go
// scheduler.
func setupInside(paths map[nsKind]string, kinds []nsKind, setup nsSetup) error {
	if setup.hostname == "" && len(setup.sysctls) == 0 {
		return nil
	}
	errc := make(chan error, 1)
	go func() { // ends with its thread; the caller waits for it
		var err error
		defer func() { errc <- err }()
		defer panicguard.Recover("pod namespace setup", &err)
		runtime.LockOSThread() // not unlocked: the thread exits in the pod's namespaces
		for _, k := range kinds {
			if err = enterNS(paths[k], cloneFlags[k]); err != nil {
				return
			}
		}
		if setup.hostname != "" && hasKind(kinds, nsUTS) {
			if err = unix.Sethostname([]byte(setup.hostname)); err != nil {
				err = fmt.Errorf("set hostname %q: %w", setup.hostname, err)
				return
			}
		}
		for key, val := range setup.sysctls {
			if err = writeSysctl(key, val); err != nil {
				return
			}
		}
	}()
	return <-errc
}

func enterNS(path string, flag int) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, flag); err != nil {
		return fmt.Errorf("enter %s: %w", path, err)
	}
	return nil
}

// UsernsRoot returns the host IDs the pod's root maps to, when the pod has
// a user namespace of its own.
func (sb *Sandbox) UsernsRoot() (uid, gid uint32, ok bool) {
	u := sb.options().GetUsernsOptions()
	if UsernsMode(u) != criapi.NamespaceMode_POD || len(u.GetUids()) == 0 || len(u.GetGids()) == 0 {
		return 0, 0, false
	}
	return u.Uids[0].HostId, u.Gids[0].HostId, true
}
