package hostcheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// UsernsSupport says whether this node can run pods in user namespaces of
// their own (KEP-127, hostUsers: false), as the daemon checks once at
// start: the kernel allows user namespaces and an overlay can be made of
// idmapped layers in dir (the directory the containers' root filesystems
// live in), as crid mounts them. An idmapped tmpfs is not needed (6.3+;
// Debian 12 runs 6.1): see IdmapTmpfs. The error says what is missing.
func UsernsSupport(dir string) error {
	b, err := os.ReadFile("/proc/sys/user/max_user_namespaces")
	if err != nil {
		return fmt.Errorf("the kernel has no user namespaces: %w", err)
	}
	if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || n == 0 {
		return fmt.Errorf("user namespaces are disabled (user.max_user_namespaces = %s)", strings.TrimSpace(string(b)))
	}
	if err := searchable(dir); err != nil {
		return err
	}
	if err := tryIdmappedOverlay(dir); err != nil {
		return fmt.Errorf("no overlay of idmapped layers in %s: %w", dir, err)
	}
	return nil
}

// IdmapTmpfs says whether a tmpfs can be idmapped (kernel 6.3+), as the
// daemon checks once at start: when it cannot, a user-namespaced pod's
// /dev/shm and files (on the tmpfs run_dir) are owned by the pod's mapped
// root and bind-mounted without idmap.
func IdmapTmpfs() error { return tryIdmap() }

// tryIdmappedOverlay mounts a writable overlay whose lower layer is an
// idmapped mount of a scratch directory in dir, then removes it all.
func tryIdmappedOverlay(dir string) (err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(dir, ".idmap-probe-")
	if err != nil {
		return err
	}
	defer func() {
		for _, m := range []string{"merged", "idmapped"} {
			if uerr := unix.Unmount(filepath.Join(tmp, m), unix.MNT_DETACH); uerr != nil && !errors.Is(uerr, unix.EINVAL) {
				err = errors.Join(err, fmt.Errorf("unmount probe: %w", uerr))
				return // never remove a directory something is mounted on
			}
		}
		err = errors.Join(err, os.RemoveAll(tmp))
	}()
	for _, d := range []string{"lower", "upper", "work", "merged", "idmapped"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o700); err != nil {
			return err
		}
	}
	userns, release, err := mappedUserns()
	if err != nil {
		return err
	}
	defer release()
	tree, err := unix.OpenTree(unix.AT_FDCWD, filepath.Join(tmp, "lower"), unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree: %w", err)
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns)}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("mount_setattr(MOUNT_ATTR_IDMAP): %w", err)
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, filepath.Join(tmp, "idmapped"), unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	data := fmt.Sprintf("lowerdir=%s/idmapped,upperdir=%s/upper,workdir=%s/work", tmp, tmp, tmp)
	if err := unix.Mount("overlay", filepath.Join(tmp, "merged"), "overlay", 0, data); err != nil {
		return fmt.Errorf("mount overlay on an idmapped layer: %w", err)
	}
	return nil
}

// searchable checks that others may pass through dir and every directory
// above it: a container's runtime init, root only in its pod's user
// namespace, reaches the rootfs through its path.
func searchable(dir string) error {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s (mode %04o) cannot be passed through by others: a container root mapped to another user must reach its rootfs in %s (chmod o+x %s)", d, fi.Mode().Perm(), dir, d)
		}
		if d == "/" {
			return nil
		}
	}
}
