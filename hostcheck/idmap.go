package hostcheck

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// tryIdmap makes an idmapped mount of a scratch tmpfs. The tmpfs comes from
// fsopen/fsmount, so it is a detached mount that is never attached anywhere
// on the host and disappears when its descriptor is closed: nothing to
// unmount, nothing left behind if the check is killed.
func tryIdmap() error {
	userns, release, err := mappedUserns()
	if err != nil {
		return err
	}
	defer release()
	fsfd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen tmpfs: %w", err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("create tmpfs: %w", err)
	}
	mnt, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount tmpfs: %w", err)
	}
	defer unix.Close(mnt)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns)}
	if err := unix.MountSetattr(mnt, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("mount_setattr(MOUNT_ATTR_IDMAP): %w", err)
	}
	return nil
}

// mappedUserns returns a descriptor of a new user namespace mapping ids
// 0-65535 to host ids 65536-131071, and a release that closes it. A user
// namespace cannot be entered by a multi-threaded Go process, so a child
// is started in one: it is traced, so it stops at its exec before running
// a single instruction of the new program, and is killed once its
// namespace is open.
func mappedUserns() (int, func(), error) {
	// The tracer is the thread that started the child.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := exec.Command("/proc/self/exe")
	idmap := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 65536, Size: 65536}}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: idmap,
		GidMappings: idmap,
		Ptrace:      true,
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return -1, nil, fmt.Errorf("start a process in a new user namespace: %w", err)
	}
	pid := cmd.Process.Pid
	fd, openErr := unix.Open(fmt.Sprintf("/proc/%d/ns/user", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	_ = cmd.Process.Kill()
	if err := reap(pid); err != nil && openErr == nil {
		unix.Close(fd)
		return -1, nil, err
	}
	_ = cmd.Process.Release()
	if openErr != nil {
		return -1, nil, fmt.Errorf("open the user namespace: %w", openErr)
	}
	return fd, func() { unix.Close(fd) }, nil
}

// reap waits for the killed, traced child until it is gone: a traced child
// reports its exec stop before its death.
func reap(pid int) error {
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

// CanIdmap says whether src can be bind-mounted idmapped through the user
// namespace pinned at userns (recursive: with the mounts below it), as the
// runtime will mount it: it makes that mount detached, never attached
// anywhere, and drops it. The error says why not, such as a tmpfs on a
// kernel before 6.3 or a filesystem that cannot be idmapped at all.
func CanIdmap(src, userns string, recursive bool) error {
	nsfd, err := unix.Open(userns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the pod's user namespace: %w", err)
	}
	defer unix.Close(nsfd)
	flags := unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	tree, err := unix.OpenTree(unix.AT_FDCWD, src, uint(flags))
	if err != nil {
		return fmt.Errorf("open_tree %s: %w", src, err)
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(nsfd)}
	setFlags := unix.AT_EMPTY_PATH
	if recursive {
		setFlags |= unix.AT_RECURSIVE
	}
	if err := unix.MountSetattr(tree, "", uint(setFlags), &attr); err != nil {
		var st unix.Statfs_t
		if unix.Fstatfs(tree, &st) == nil && st.Type == unix.TMPFS_MAGIC {
			return fmt.Errorf("%s is on a tmpfs, which this kernel cannot idmap (6.3+): %w", src, err)
		}
		return fmt.Errorf("%s (or a mount below it) is on a filesystem this kernel cannot idmap: %w", src, err)
	}
	return nil
}
