package imageservice

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// idmapDir holds, while an overlay is being mounted for a container in a
// user namespace, the idmapped mounts of its layers (0, 1, …). Overlayfs
// itself cannot be idmapped, but it takes idmapped lower layers: a file a
// layer stores as owned by 0 is seen as owned by 0 inside the user
// namespace. No file of a layer is ever chowned; only the container's own
// new, empty upper and work dirs are given to its root (the overlay
// creates files there with the mounter's credentials, which an idmapped
// upper could not store). The overlay keeps its own references to the
// layers, so these mounts are taken off as soon as it is mounted.
const idmapDir = "idmap"

// Userns is the user namespace a container's rootfs is made for: its pin
// and the host IDs its root maps to.
type Userns struct {
	Path             string
	RootUID, RootGID uint32
}

// idmapLayers makes idmapped mounts of lowers under dir/idmap through the
// user namespace u, and returns their paths and a release that takes them
// off.
func idmapLayers(dir string, lowers []string, u Userns) (idLowers []string, release func() error, err error) {
	nsfd, err := unix.Open(u.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open user namespace %s: %w", u.Path, err)
	}
	defer unix.Close(nsfd)
	base := filepath.Join(dir, idmapDir)
	release = func() error { return removeIdmapped(base) }
	if err := os.MkdirAll(base, 0o700); err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, release())
		}
	}()
	for i, l := range lowers {
		dst := filepath.Join(base, strconv.Itoa(i))
		if err := idmapClone(l, dst, nsfd); err != nil {
			return nil, nil, err
		}
		idLowers = append(idLowers, dst)
	}
	return idLowers, release, nil
}

// idmapClone attaches an idmapped copy of the mount tree at src (not its
// submounts) at dst, a directory it creates.
func idmapClone(src, dst string, nsfd int) error {
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	tree, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree %s: %w", src, err)
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(nsfd)}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("idmapped mount of %s: %w", src, err)
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach the idmapped mount of %s at %s: %w", src, dst, err)
	}
	return nil
}

// removeIdmapped takes the idmapped layer mounts under base off and
// removes base; a missing base is fine (it serves leftovers of a crash).
func removeIdmapped(base string) error {
	entries, err := os.ReadDir(base)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(base, e.Name())
		if err := unmountIfMounted(p); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := os.Remove(base); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
