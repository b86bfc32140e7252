package specgen

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// Bounds on reading an image's /etc/passwd and /etc/group. Real files are a
// few KiB (directory dumps a few MiB); the image is not trusted, and a
// CreateContainer must not read 100 MB or wait on a slow file to find a
// user.
const (
	maxImageFileSize   = 16 << 20
	imageFileTimeout   = 5 * time.Second
	imageFileReadChunk = 64 << 10
)

// readImageFile reads path inside the container's rootfs the way a file
// from an untrusted image must be read: resolved in the rootfs as in a
// chroot (openat2 RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS, through
// pathrs-lite), so no symlink or ".." leads out of it; taken only when it
// is a regular file, checked on an O_PATH handle before anything opens it,
// so a FIFO cannot block and a device is never opened; at most
// maxImageFileSize bytes, within imageFileTimeout. A missing file returns
// nil and no error: a numeric user needs none. Anything else the image put
// there is ErrInvalid.
func readImageFile(rootfs, path string) ([]byte, error) {
	h, err := pathrs.OpenInRoot(rootfs, path)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: image file %s: %v", ErrInvalid, path, err)
	}
	defer h.Close()
	if err := checkImageFile(h, path); err != nil {
		return nil, err
	}
	// O_NONBLOCK as a second guard: even a FIFO swapped in would not block.
	f, err := pathrs.Reopen(h, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return nil, fmt.Errorf("%w: image file %s: %v", ErrInvalid, path, err)
	}
	defer f.Close()
	if err := checkImageFile(f, path); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(imageFileTimeout)
	var buf bytes.Buffer
	chunk := make([]byte, imageFileReadChunk)
	for {
		n, err := f.Read(chunk)
		buf.Write(chunk[:n])
		if buf.Len() > maxImageFileSize {
			return nil, fmt.Errorf("%w: image file %s is larger than %d bytes", ErrInvalid, path, maxImageFileSize)
		}
		if errors.Is(err, io.EOF) {
			return buf.Bytes(), nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: image file %s: %v", ErrInvalid, path, err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: image file %s: not read within %s", ErrInvalid, path, imageFileTimeout)
		}
	}
}

// checkImageFile refuses anything but a regular file of a sane size.
func checkImageFile(f *os.File, path string) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("image file %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%w: image file %s is a %s, not a regular file", ErrInvalid, path, fileType(st.Mode))
	}
	if st.Size > maxImageFileSize {
		return fmt.Errorf("%w: image file %s is %d bytes, more than the %d crid reads", ErrInvalid, path, st.Size, maxImageFileSize)
	}
	return nil
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symbolic link"
	}
	return fmt.Sprintf("file of type %#o", mode&unix.S_IFMT)
}
