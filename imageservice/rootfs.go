package imageservice

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/panicguard"
)

// A container's root filesystem is an overlay mount: the image's layers,
// read-only and shared, under a writable layer of its own, all in
// <rootfs dir>/<container id>/. layers.json names the layers the mount
// uses, written before the mount, so layer GC keeps them for as long as
// the directory exists.
const (
	rootfsLayersFile = "layers.json"
	rootfsMerged     = "merged"
)

func (s *Service) rootfsDir(id containerDirName) string {
	return filepath.Join(s.opts.RootfsDir, id.id)
}

// MountRootfs mounts the root filesystem of container id from image and
// returns the path to give the runtime spec as Root.Path.
func (s *Service) MountRootfs(id, image string) (string, error) {
	return s.MountRootfsUserns(id, image, Userns{})
}

// MountRootfsUserns is MountRootfs for a container in the user namespace
// u (none when u.Path is empty): the overlay is made of idmapped layers.
// A failure (a full disk, say) leaves no directory behind.
func (s *Service) MountRootfsUserns(id, image string, u Userns) (_ string, err error) {
	cid, err := parseContainerID(id)
	if err != nil {
		return "", err
	}
	s.mu.RLock()
	img, err := s.lookup(image)
	var layers []Digest
	if img != nil {
		layers = append(layers, img.Layers...)
	}
	s.mu.RUnlock()
	if err != nil {
		return "", err
	}
	if img == nil {
		return "", fmt.Errorf("%w: %s", ErrImageNotFound, image)
	}
	dir := s.rootfsDir(cid)
	defer func() {
		if err != nil {
			if uerr := s.UnmountRootfs(id); uerr != nil {
				err = errors.Join(err, uerr)
			}
		}
	}()
	// The container's / takes the upper dir's mode: 0755, so any user the
	// image runs as can enter it. The directory above stays private.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("rootfs of %s: %w", id, err)
	}
	for _, d := range []string{"upper", "work", rootfsMerged} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("rootfs of %s: %w", id, err)
		}
	}
	b, err := json.Marshal(layers)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, rootfsLayersFile), b, 0o600); err != nil {
		return "", fmt.Errorf("rootfs of %s: %w", id, err)
	}
	merged := filepath.Join(dir, rootfsMerged)
	if u.Path != "" {
		// The container's runtime init, root only in the user namespace,
		// reaches merged through dir by its path: dir can be passed, not
		// listed.
		if err := os.Chmod(dir, 0o711); err != nil {
			return "", fmt.Errorf("rootfs of %s: %w", id, err)
		}
		for _, d := range []string{"upper", "work"} {
			if err := os.Chown(filepath.Join(dir, d), int(u.RootUID), int(u.RootGID)); err != nil {
				return "", fmt.Errorf("rootfs of %s: %w", id, err)
			}
		}
	}
	if err := s.mountLayers(dir, layers, merged, true, u); err != nil {
		return "", fmt.Errorf("rootfs of %s: %w", id, err)
	}
	return merged, nil
}

// mountLayers mounts the layers (bottom first) at target, under dir's
// writable layer (dir/upper, dir/work) when writable, else read-only with
// no upper dir, which overlayfs allows from two lower dirs up. When
// absolute lower dirs would not fit the one page the kernel accepts for
// mount options, the mount is made with short relative links in dir/l,
// from a thread whose working directory is its own. With userns (a user
// namespace) the overlay is made of idmapped layers (idmap.go).
func (s *Service) mountLayers(dir string, layers []Digest, target string, writable bool, u Userns) error {
	var lowers []string
	for i := len(layers) - 1; i >= 0; i-- {
		lowers = append(lowers, s.LayerDiffDir(layers[i]))
	}
	if len(lowers) == 0 {
		empty := filepath.Join(dir, "empty")
		if err := os.MkdirAll(empty, 0o755); err != nil {
			return err
		}
		lowers = []string{empty}
	}
	upper, work := "", ""
	var flags uintptr = unix.MS_RDONLY
	if writable {
		upper, work, flags = filepath.Join(dir, "upper"), filepath.Join(dir, "work"), 0
	}
	// Checked as given: the idmapped mounts stand for these directories.
	if _, err := s.overlayOptions(lowers, upper, work); err != nil {
		return err
	}
	if u.Path != "" {
		idLowers, release, err := idmapLayers(dir, lowers, u)
		if err != nil {
			return err
		}
		defer func() {
			if rerr := release(); rerr != nil {
				klog.ErrorS(rerr, "Removing the idmapped layer mounts", "dir", dir)
			}
		}()
		lowers = idLowers
	}
	data, err := s.overlayOptions(lowers, upper, work)
	if err != nil {
		return err
	}
	if len(data) < unix.Getpagesize()-1 {
		if err := unix.Mount("overlay", target, "overlay", flags, data); err != nil {
			return fmt.Errorf("mount overlay: %w", err)
		}
		return nil
	}
	// Short names for the layers: links l/0, l/1… in the rootfs dir,
	// mounted from inside l/, as Docker's overlay2 does.
	links := filepath.Join(dir, "l")
	if err := os.MkdirAll(links, 0o700); err != nil {
		return err
	}
	for i, l := range lowers {
		name := strconv.Itoa(i)
		if err := os.Symlink(l, filepath.Join(links, name)); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		lowers[i] = name
	}
	data = "lowerdir=" + strings.Join(lowers, ":")
	if writable {
		data += ",upperdir=" + upper + ",workdir=" + work
	}
	errc := make(chan error, 1)
	go func() {
		var err error
		defer func() { errc <- err }()
		defer panicguard.Recover("mount overlay", &err)
		runtime.LockOSThread() // never unlocked: the thread's cwd is changed
		if err = unix.Unshare(unix.CLONE_FS); err != nil {
			err = fmt.Errorf("unshare fs: %w", err)
			return
		}
		if err = unix.Chdir(links); err != nil {
			return
		}
		if err = unix.Mount("overlay", target, "overlay", flags, data); err != nil {
			err = fmt.Errorf("mount overlay (%d layers): %w", len(layers), err)
		}
	}()
	return <-errc
}

// overlayOptions returns the overlay mount data for lowers (top first)
// under upper and work (none when both are empty: a read-only mount),
// refusing any directory that is not crid's own: a
// lower dir must lie in the layer store or the rootfs dir, upper and work
// dirs in the rootfs dir, and no path may be unclean or carry overlay's
// option syntax (',' ':' '\\') or control characters, so nothing from an
// image can add a directory or an option to the mount.
func (s *Service) overlayOptions(lowers []string, upper, work string) (string, error) {
	layers := filepath.Join(s.root, "layers")
	for _, l := range lowers {
		if err := checkMountDir("lower", l, layers, s.opts.RootfsDir); err != nil {
			return "", err
		}
	}
	if upper == "" && work == "" {
		return "lowerdir=" + strings.Join(lowers, ":"), nil
	}
	if err := checkMountDir("upper", upper, s.opts.RootfsDir); err != nil {
		return "", err
	}
	if err := checkMountDir("work", work, s.opts.RootfsDir); err != nil {
		return "", err
	}
	return fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lowers, ":"), upper, work), nil
}

// errUnsafeMountDir marks an overlay directory overlayOptions refused.
var errUnsafeMountDir = errors.New("refusing overlay directory")

func checkMountDir(what, p string, roots ...string) error {
	if err := checkOptionSafe(p); err != nil {
		return fmt.Errorf("%w: %s dir: %w", errUnsafeMountDir, what, err)
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("%w: %s dir %q is not a clean absolute path", errUnsafeMountDir, what, p)
	}
	for _, r := range roots {
		if strings.HasPrefix(p, r+"/") {
			return nil
		}
	}
	return fmt.Errorf("%w: %s dir %q is not in crid's store (%s)", errUnsafeMountDir, what, p, strings.Join(roots, ", "))
}

// checkOptionSafe refuses a path that could not stand inside overlay mount
// options as one value.
func checkOptionSafe(p string) error {
	if i := strings.IndexFunc(p, func(r rune) bool {
		return r == ',' || r == ':' || r == '\\' || r < 0x20 || r == 0x7f
	}); i >= 0 {
		return fmt.Errorf("%q holds %q, which overlay mount options cannot carry", p, p[i])
	}
	return nil
}

// UnmountRootfs unmounts container id's root filesystem and image volumes
// and deletes its writable layer. It is idempotent.
func (s *Service) UnmountRootfs(id string) error {
	cid, err := parseContainerID(id)
	if err != nil {
		return err
	}
	dir := s.rootfsDir(cid)
	// Its image volumes first: RemoveAll must never walk into a mount.
	if err := unmountVolumes(dir); err != nil {
		return fmt.Errorf("unmount image volumes of %s: %w", id, err)
	}
	if err := unmountIfMounted(filepath.Join(dir, rootfsMerged)); err != nil {
		return fmt.Errorf("rootfs of %s: %w", id, err)
	}
	// Idmapped layer mounts a crash left between their making and the
	// overlay's: they are layers, RemoveAll must not walk into them.
	if err := removeIdmapped(filepath.Join(dir, idmapDir)); err != nil {
		return fmt.Errorf("unmount idmapped layers of %s: %w", id, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove rootfs of %s: %w", id, err)
	}
	return nil
}

// UnmountRootfsKeepLayer unmounts container id's root filesystem, image
// volumes and idmapped layers, and keeps its writable layer (usage stays
// reported, the files stay until UnmountRootfs): an exited container's.
// The image volumes' marks stay too, so their images count as in use until
// the container is removed. It is idempotent.
func (s *Service) UnmountRootfsKeepLayer(id string) error {
	cid, err := parseContainerID(id)
	if err != nil {
		return err
	}
	dir := s.rootfsDir(cid)
	var errs []error
	if entries, err := os.ReadDir(filepath.Join(dir, volumesDir)); err == nil {
		for _, e := range entries {
			errs = append(errs, unmountIfMounted(filepath.Join(dir, volumesDir, e.Name(), volumeMerged)))
		}
	}
	errs = append(errs, unmountIfMounted(filepath.Join(dir, rootfsMerged)))
	if err := removeIdmapped(filepath.Join(dir, idmapDir)); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("unmount rootfs of %s: %w", id, err)
	}
	return nil
}

// unmountIfMounted unmounts p; not mounted or gone is fine.
func unmountIfMounted(p string) error {
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", p, err)
	}
	return nil
}

// rootfsLayers returns the layers every existing rootfs uses.
func (s *Service) rootfsLayers() []Digest {
	entries, err := os.ReadDir(s.opts.RootfsDir)
	if err != nil {
		return nil
	}
	var out []Digest
	for _, e := range entries {
		cid, err := parseContainerID(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.rootfsDir(cid), rootfsLayersFile))
		if err != nil {
			continue
		}
		var layers []Digest
		if json.Unmarshal(b, &layers) == nil {
			out = append(out, layers...)
		}
		for _, v := range readVolumes(s.rootfsDir(cid)) {
			out = append(out, v.Layers...)
		}
	}
	return out
}

// ContainerFsUsage reports the space the writable layers use, on the
// filesystem holding them.
func (s *Service) ContainerFsUsage() (FsUsage, error) {
	var u FsUsage
	if err := s.containerFs(&u); err != nil {
		return u, err
	}
	entries, err := os.ReadDir(s.opts.RootfsDir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return u, nil
		}
		return u, err
	}
	for _, e := range entries {
		cid, err := parseContainerID(e.Name())
		if err != nil {
			continue
		}
		b, i, err := usage(filepath.Join(s.rootfsDir(cid), "upper"))
		if err != nil {
			continue // being removed
		}
		u.Bytes += b
		u.Inodes += i
	}
	return u, nil
}

// ContainerUsage reports the bytes and inodes container id's writable
// layer uses; Mountpoint is the mount point of the filesystem it lives on
// (the one ImageFsInfo reports for container filesystems).
func (s *Service) ContainerUsage(id string) (FsUsage, error) {
	var u FsUsage
	if err := s.containerFs(&u); err != nil {
		return u, err
	}
	cid, err := parseContainerID(id)
	if err != nil {
		return u, err
	}
	b, i, err := usage(filepath.Join(s.rootfsDir(cid), "upper"))
	if err != nil {
		return u, err
	}
	u.Bytes, u.Inodes = b, i
	return u, nil
}

// containerFs fills u's filesystem with the writable layers' one. The
// rootfs dir is made on first use: the filesystem it will be on is its
// parent's.
func (s *Service) containerFs(u *FsUsage) error {
	dir := s.opts.RootfsDir
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		dir = filepath.Dir(dir)
	}
	if err := s.ctrFs.fsOf(u, dir); err != nil {
		return fmt.Errorf("container fs usage: %w", err)
	}
	return nil
}

// FsCapacity is the size of the filesystem holding Mountpoint.
type FsCapacity struct {
	Mountpoint                                string
	Bytes, AvailableBytes, Inodes, FreeInodes uint64
}

// ContainerFsCapacity reports the size of the filesystem holding the
// writable layers.
func (s *Service) ContainerFsCapacity() (FsCapacity, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(s.opts.RootfsDir, &st); err != nil {
		return FsCapacity{}, fmt.Errorf("statfs %s: %w", s.opts.RootfsDir, err)
	}
	bs := uint64(st.Bsize)
	var u FsUsage
	if err := s.containerFs(&u); err != nil {
		return FsCapacity{}, err
	}
	return FsCapacity{Mountpoint: u.Mountpoint, Bytes: st.Blocks * bs, AvailableBytes: st.Bavail * bs, Inodes: st.Files, FreeInodes: st.Ffree}, nil
}
