package imageservice

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// Image volumes (KEP-4639): a pulled image's layers mounted read-only for
// one container, at <rootfs dir>/<container id>/volumes/<n>/merged, where
// n is the index of the CRI mount. volume.json beside it names the image
// and its layers and is written before the mount, under the store's lock:
// for as long as the directory exists the image counts as in use (Remove
// refuses it) and its layers are kept by GC, across daemon restarts too.
// UnmountRootfs unmounts and deletes the volumes with the container's
// rootfs, so every path that undoes a rootfs (a failed create, a remove,
// a remove after a restart) undoes them too.
const (
	volumesDir   = "volumes"
	volumeFile   = "volume.json"
	volumeMerged = "merged"
)

// volumeRecord is what volume.json holds.
type volumeRecord struct {
	Image  Digest   `json:"image"`
	Layers []Digest `json:"layers"`
}

// ImageVolume is an image mounted read-only for a container.
type ImageVolume struct {
	// Path is the host path to bind into the container: the image's root,
	// or the sub path resolved inside it.
	Path string
	// Image is the mounted image.
	Image *Image
}

// ErrImageInUse is returned when removing an image a container mounts as
// an image volume.
var ErrImageInUse = errors.New("image is in use")

// ErrInvalidSubPath marks an image volume sub path that is not a relative
// path inside the image, or that the image does not hold.
var ErrInvalidSubPath = errors.New("invalid image sub path")

// CheckSubPath checks the form of an image volume's sub path: empty (the
// image's root) or a relative path that stays inside the image by its
// names alone. Symlinks are resolved later, inside the image's root.
func CheckSubPath(subPath string) error {
	if subPath == "" {
		return nil
	}
	if strings.ContainsRune(subPath, 0) || !filepath.IsLocal(subPath) {
		return fmt.Errorf("%w: %q is not a relative path inside the image", ErrInvalidSubPath, subPath)
	}
	return nil
}

// MountImageVolume mounts image read-only as image volume n of container
// id, whose rootfs must be mounted, and resolves subPath inside it: its
// symlinks are followed as if the image's root were /, so none can lead
// out of the image. A failure leaves no mount behind.
func (s *Service) MountImageVolume(id string, n int, image, subPath string) (*ImageVolume, error) {
	cid, err := parseContainerID(id)
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, fmt.Errorf("image volume %d of %s: negative index", n, id)
	}
	if err := CheckSubPath(subPath); err != nil {
		return nil, err
	}
	vdir := filepath.Join(s.rootfsDir(cid), volumesDir, strconv.Itoa(n))
	img, err := s.markVolume(vdir, image)
	if err != nil {
		return nil, err
	}
	path, err := s.mountVolume(vdir, img, subPath)
	if err != nil {
		if uerr := unmountVolume(vdir); uerr != nil {
			err = errors.Join(err, uerr)
		}
		return nil, fmt.Errorf("image volume %d (%s) of %s: %w", n, image, id, err)
	}
	return &ImageVolume{Path: path, Image: img}, nil
}

// markVolume looks image up and writes vdir's volume.json, both under the
// store's lock, so that Remove either sees the mark or has removed the
// image before it is looked up.
func (s *Service) markVolume(vdir, image string) (*Image, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	img, err := s.lookup(image)
	if err != nil {
		return nil, err
	}
	if img == nil {
		return nil, fmt.Errorf("%w: %s", ErrImageNotFound, image)
	}
	if err := os.MkdirAll(filepath.Dir(vdir), 0o700); err != nil {
		return nil, fmt.Errorf("image volume: %w", err)
	}
	if err := os.Mkdir(vdir, 0o700); err != nil {
		return nil, fmt.Errorf("image volume: %w", err)
	}
	b, err := json.Marshal(volumeRecord{Image: img.ID, Layers: img.Layers})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(vdir, volumeFile), b, 0o600); err != nil {
		return nil, fmt.Errorf("image volume: %w", err)
	}
	return img.clone(), nil
}

// mountVolume mounts img's layers read-only at vdir/merged and returns the
// host path of subPath inside it. Overlayfs needs two lower dirs when it
// has no upper one: a one-layer image is its layer dir bound read-only,
// an image without layers an empty directory.
func (s *Service) mountVolume(vdir string, img *Image, subPath string) (string, error) {
	merged := filepath.Join(vdir, volumeMerged)
	if err := os.Mkdir(merged, 0o755); err != nil {
		return "", err
	}
	switch len(img.Layers) {
	case 0, 1:
		src := filepath.Join(vdir, "empty")
		if len(img.Layers) == 1 {
			src = s.LayerDiffDir(img.Layers[0])
		} else if err := os.Mkdir(src, 0o755); err != nil {
			return "", err
		}
		if err := bindReadOnly(src, merged); err != nil {
			return "", err
		}
	default:
		if err := s.mountLayers(vdir, img.Layers, merged, false, Userns{}); err != nil {
			return "", err
		}
	}
	return resolveInRoot(merged, subPath)
}

// bindReadOnly binds src at target and makes the bind read-only (a bind
// takes its flags only from a remount).
func bindReadOnly(src, target string) error {
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		_ = unix.Unmount(target, unix.MNT_DETACH)
		return fmt.Errorf("make %s read-only: %w", target, err)
	}
	return nil
}

// resolveInRoot returns the host path of subPath inside root, following
// its symlinks with root as / (openat2 RESOLVE_IN_ROOT): ".." stops at
// root and an absolute link starts from it. The image is a read-only
// mount of crid's, so the path stays what it names once resolved.
func resolveInRoot(root, subPath string) (string, error) {
	if subPath == "" {
		return root, nil
	}
	rootFd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(rootFd)
	fd, err := unix.Openat2(rootFd, subPath, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return "", fmt.Errorf("%w: %q does not exist in the image", ErrInvalidSubPath, subPath)
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENAMETOOLONG) {
		return "", fmt.Errorf("%w: %q: %w", ErrInvalidSubPath, subPath, err)
	}
	if errors.Is(err, unix.EXDEV) {
		return "", fmt.Errorf("%w: %q leads out of the image's filesystem", ErrInvalidSubPath, subPath)
	}
	if err != nil {
		return "", fmt.Errorf("resolve sub path %q: %w", subPath, err)
	}
	defer unix.Close(fd)
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", fmt.Errorf("resolve sub path %q: %w", subPath, err)
	}
	if p != root && !strings.HasPrefix(p, root+"/") {
		return "", fmt.Errorf("%w: %q resolves to %q, outside the image", ErrInvalidSubPath, subPath, p)
	}
	return p, nil
}

// readVolumes returns the records of the image volumes in container dir.
func readVolumes(dir string) []volumeRecord {
	entries, err := os.ReadDir(filepath.Join(dir, volumesDir))
	if err != nil {
		return nil
	}
	var out []volumeRecord
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, volumesDir, e.Name(), volumeFile))
		if err != nil {
			continue
		}
		var v volumeRecord
		if json.Unmarshal(b, &v) == nil {
			out = append(out, v)
		}
	}
	return out
}

// volumeUsers returns the containers that mount image as a volume; s.mu
// must be held.
func (s *Service) volumeUsers(image Digest) []string {
	entries, err := os.ReadDir(s.opts.RootfsDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		cid, err := parseContainerID(e.Name())
		if err != nil {
			continue
		}
		for _, v := range readVolumes(s.rootfsDir(cid)) {
			if v.Image == image {
				out = append(out, cid.id)
				break
			}
		}
	}
	return out
}

// checkNotInUse refuses to remove an image a container mounts as a volume;
// s.mu must be held.
func (s *Service) checkNotInUse(img *Image) error {
	users := s.volumeUsers(img.ID)
	if len(users) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s is mounted as an image volume by container %s: remove the container first",
		ErrImageInUse, img.ID, strings.Join(users, ", "))
}

// unmountVolumes unmounts and deletes every image volume in container dir.
func unmountVolumes(dir string) error {
	vols := filepath.Join(dir, volumesDir)
	entries, err := os.ReadDir(vols)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, unmountVolume(filepath.Join(vols, e.Name())))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.Remove(vols)
}

// unmountVolume unmounts and deletes one image volume dir; the directory
// is deleted only once nothing is mounted in it.
func unmountVolume(vdir string) error {
	if err := unmountIfMounted(filepath.Join(vdir, volumeMerged)); err != nil {
		return err
	}
	if err := os.RemoveAll(vdir); err != nil {
		return fmt.Errorf("remove %s: %w", vdir, err)
	}
	return nil
}

// RemoveOrphanRootfs unmounts and deletes every rootfs dir, with its image
// volumes, whose owner known says does not exist: a daemon crash inside
// CreateContainer (or a pod's infra start), after the mounts and before
// the record, leaves one, and its layers and volume marks would keep its
// images in use for ever. known must answer for containers and pod
// sandboxes both (an infra's rootfs is named after its pod), once both are
// loaded and before any create runs.
func (s *Service) RemoveOrphanRootfs(known func(id string) bool) error {
	entries, err := os.ReadDir(s.opts.RootfsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		cid, err := parseContainerID(e.Name())
		if err != nil || known(cid.id) {
			continue
		}
		err = s.UnmountRootfs(cid.id)
		klog.InfoS("Removed the rootfs of a container or pod that was never created", "id", cid.id, "err", err)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
