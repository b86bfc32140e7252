package imageservice

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/moby/sys/userns"
	"golang.org/x/sys/unix"
)

// Overlay whiteout names, as in the OCI image spec.
const (
	whiteoutPrefix    = ".wh."
	whiteoutMetaPref  = whiteoutPrefix + whiteoutPrefix
	whiteoutOpaqueDir = whiteoutMetaPref + ".opq"
	paxSchilyXattr    = "SCHILY.xattr."
	impliedDirMode    = 0o755
	maxSymlinkHops    = 255
	untarCopyBufSize  = 128 << 10
)

var (
	untarMinTime = time.Unix(0, 0)
	untarMaxTime = time.Unix(0, math.MaxInt64)
)

// untar extracts the uncompressed OCI/Docker layer tar r into dir, which the
// caller created empty and which nobody else modifies meanwhile. It produces
// the same tree as go-archive's UntarUncompressed with OverlayWhiteoutFormat.
//
// dir is opened once; every path is then resolved by the kernel inside it
// (openat2 with RESOLVE_IN_ROOT: absolute symlinks and ".." stay inside, as
// in a chroot) down to the parent directory of the entry, and the entry
// itself is created or changed relative to that parent fd by its last
// component only, never following a symlink there. The parent fd of the
// previous entry is reused as long as nothing has been removed since.
//
// lim bounds the entries and the bytes of file content written (which a
// sparse entry can make far larger than the stream); going over fails
// with an error wrapping ErrTooLarge.
func untar(r io.Reader, dir string, lim untarLimits) error {
	root, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	u := &untarrer{
		lim:         lim,
		root:        root,
		cacheFd:     -1,
		opaqueXattr: "trusted.overlay.opaque",
		buf:         make([]byte, untarCopyBufSize),
	}
	if userns.RunningInUserNS() {
		u.opaqueXattr = "user.overlay.opaque"
	}
	defer u.close()

	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if errors.Is(err, tar.ErrHeader) || errors.Is(err, tar.ErrFieldTooLong) || errors.Is(err, io.ErrUnexpectedEOF) {
				// The tar itself is malformed, not the stream failing.
				return fmt.Errorf("untar: %w: read header: %w", ErrInvalidLayer, err)
			}
			return fmt.Errorf("untar: read header: %w", err)
		}
		if u.entries++; u.entries > lim.Files {
			return fmt.Errorf("untar: %w: more than %d entries (image.max_layer_files)", ErrTooLarge, lim.Files)
		}
		if err := u.entry(hdr, tr); err != nil {
			return err
		}
	}
	// Directory times last: creating their children changed them.
	for _, d := range u.dirs {
		pfd, base, err := u.parent(d.name)
		if err == nil {
			err = utimesAt(pfd, base, d.times)
		}
		if err != nil {
			return fmt.Errorf("untar %q: set times: %w", d.name, err)
		}
	}
	return nil
}

type untarDir struct {
	name  string
	times [2]unix.Timespec
}

// untarLimits bound one layer's extraction.
type untarLimits struct {
	Files int64 // tar entries
	Bytes int64 // file content written
}

type untarrer struct {
	lim         untarLimits
	entries     int64
	written     int64
	root        int
	cacheKey    string // cleaned relative path of the cached directory
	cacheFd     int    // -1 when empty; never root
	removed     bool   // something was removed during the current entry
	opaqueXattr string
	dirs        []untarDir
	buf         []byte
}

func (u *untarrer) close() {
	u.dropCache()
	_ = unix.Close(u.root)
}

func (u *untarrer) dropCache() {
	if u.cacheFd >= 0 {
		_ = unix.Close(u.cacheFd)
	}
	u.cacheFd, u.cacheKey = -1, ""
}

func (u *untarrer) setCache(key string, fd int) {
	u.dropCache()
	u.cacheKey, u.cacheFd = key, fd
}

// parent returns an fd of the directory holding name (owned by the cache or
// the root: callers must not close it) and the last component of name,
// creating missing parent directories (0755) like go-archive does.
func (u *untarrer) parent(name string) (int, string, error) {
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		return u.root, base, nil
	}
	if u.cacheFd >= 0 && u.cacheKey == dir {
		return u.cacheFd, base, nil
	}
	fd, err := u.resolveDir(dir, true)
	if err != nil {
		return -1, "", err
	}
	if fd == u.root {
		return u.root, base, nil
	}
	u.setCache(dir, fd)
	return fd, base, nil
}

// resolveDir opens the directory rel (cleaned, local) inside the root with
// RESOLVE_IN_ROOT. The result may be u.root itself (not to be closed);
// otherwise it is a new fd. If a component is missing and create is set,
// the missing directories are created.
func (u *untarrer) resolveDir(rel string, create bool) (int, error) {
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	var (
		fd  int
		err error
	)
	for range 16 {
		fd, err = unix.Openat2(u.root, rel, &how)
		if err != unix.EAGAIN && err != unix.EINTR {
			break
		}
	}
	switch {
	case err == nil:
		return fd, nil
	case errors.Is(err, unix.ENOENT) && create,
		errors.Is(err, unix.ENOSYS), errors.Is(err, unix.E2BIG):
		// Missing parents (or no openat2): walk component by component,
		// each step one name relative to a held directory fd, never
		// following a symlink in the kernel; symlinks are read and
		// re-resolved from the root with the same chroot semantics.
		return u.walk(rel, create)
	}
	return -1, err
}

func (u *untarrer) walk(rel string, create bool) (int, error) {
	comps := strings.Split(rel, "/")
	hops := 0
restart:
	cur := u.root
	closeCur := func() {
		if cur != u.root {
			_ = unix.Close(cur)
		}
	}
	for i := 0; i < len(comps); i++ {
		c := comps[i]
		fd, err := unix.Openat(cur, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if err = unix.Mkdirat(cur, c, impliedDirMode); err == nil {
				fd, err = unix.Openat(cur, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
				if err == nil {
					// Not subject to the umask, as go-archive.
					if err = unix.Fchmod(fd, impliedDirMode); err != nil {
						_ = unix.Close(fd)
					}
				}
			}
		}
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			target, rerr := readlinkAt(cur, c)
			if rerr != nil {
				closeCur()
				return -1, unix.ENOTDIR
			}
			if hops++; hops > maxSymlinkHops {
				closeCur()
				return -1, unix.ELOOP
			}
			base := "/" + strings.Join(comps[:i], "/")
			if path.IsAbs(target) {
				base = "/"
			}
			// comps[:i] are real directories, so a lexical ".." is the
			// physical one; path.Join keeps it from going above "/".
			next := strings.TrimPrefix(path.Join(base, target, strings.Join(comps[i+1:], "/")), "/")
			closeCur()
			if next == "" {
				return u.root, nil
			}
			comps = strings.Split(next, "/")
			goto restart
		}
		if err != nil {
			closeCur()
			return -1, err
		}
		closeCur()
		cur = fd
	}
	return cur, nil
}

func readlinkAt(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		b := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, b)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(b[:n]), nil
		}
		if size > 1<<20 {
			return "", unix.ENAMETOOLONG
		}
	}
}

// removeAt removes dirfd/name, recursively for a directory, never following
// symlinks, and notes that the cached parent may be stale.
func (u *untarrer) removeAt(dirfd int, name string) error {
	err := removeAllAt(dirfd, name)
	u.removed = true
	return err
}

func removeAllAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) {
		return err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), name)
	for {
		names, rerr := d.Readdirnames(256)
		for _, n := range names {
			if err := removeAllAt(fd, n); err != nil {
				_ = d.Close()
				return err
			}
		}
		if errors.Is(rerr, io.EOF) || (rerr == nil && len(names) == 0) {
			break
		}
		if rerr != nil {
			_ = d.Close()
			return rerr
		}
	}
	_ = d.Close()
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}

func (u *untarrer) entry(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name := path.Clean(strings.TrimLeft(hdr.Name, "/"))
	if name == "." {
		return nil
	}
	if !filepath.IsLocal(name) {
		return fmt.Errorf("untar %q: %w: invalid entry name: path escapes the root", hdr.Name, ErrInvalidLayer)
	}
	u.removed = false
	err := u.create(hdr, name, r)
	if u.removed {
		// A removed directory may have been (through a symlink) on the
		// cached path: resolve again next time.
		u.dropCache()
	}
	if err != nil {
		return fmt.Errorf("untar %q: %w", hdr.Name, err)
	}
	return nil
}

func (u *untarrer) create(hdr *tar.Header, name string, r io.Reader) error {
	pfd, base, err := u.parent(name)
	if err != nil {
		return fmt.Errorf("open parent directory: %w", err)
	}

	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(hdr, pfd, base)
	}

	perm := uint32(hdr.Mode & 0o7777)
	times := headerTimes(hdr)
	switch hdr.Typeflag {
	case tar.TypeDir:
		return u.mkdir(hdr, name, pfd, base, perm, times)

	case tar.TypeReg:
		return u.regular(hdr, pfd, base, perm, times, r)

	case tar.TypeSymlink:
		if err := retryExisting(u, pfd, base, func() error {
			return unix.Symlinkat(hdr.Linkname, pfd, base)
		}); err != nil {
			return fmt.Errorf("symlink: %w", err)
		}
		if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("lchown: %w", err)
		}
		if err := setXattrs(hdr, func(k string, v []byte) error { return setxattrAt(pfd, base, k, v) }); err != nil {
			return err
		}
		if err := utimesAt(pfd, base, times); err != nil {
			return fmt.Errorf("set times: %w", err)
		}
		return nil

	case tar.TypeLink:
		return u.hardlink(hdr, pfd, base, perm, times)

	case tar.TypeBlock, tar.TypeChar, tar.TypeFifo:
		mode := perm
		switch hdr.Typeflag {
		case tar.TypeBlock:
			mode |= unix.S_IFBLK
		case tar.TypeChar:
			mode |= unix.S_IFCHR
		default:
			mode |= unix.S_IFIFO
		}
		if hdr.Devmajor < 0 || hdr.Devmajor > math.MaxUint32 || hdr.Devminor < 0 || hdr.Devminor > math.MaxUint32 {
			return fmt.Errorf("%w: device number %d:%d out of range", ErrInvalidLayer, hdr.Devmajor, hdr.Devminor)
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := retryExisting(u, pfd, base, func() error {
			return unix.Mknodat(pfd, base, mode, int(dev))
		}); err != nil {
			return fmt.Errorf("mknod: %w", err)
		}
		return u.finishAt(hdr, pfd, base, perm, times)

	default:
		return fmt.Errorf("%w: unhandled tar header type %d", ErrInvalidLayer, hdr.Typeflag)
	}
}

// retryExisting runs create; if the name exists, removes it (recursively for
// a directory) and runs create again.
func retryExisting(u *untarrer, pfd int, base string, create func() error) error {
	err := create()
	if !errors.Is(err, unix.EEXIST) {
		return err
	}
	if err := u.removeAt(pfd, base); err != nil {
		return fmt.Errorf("remove existing: %w", err)
	}
	return create()
}

// whiteout converts overlay whiteouts like go-archive's overlay converter.
func (u *untarrer) whiteout(hdr *tar.Header, pfd int, base string) error {
	switch base {
	case whiteoutPrefix, whiteoutPrefix + ".", whiteoutPrefix + "..":
		return fmt.Errorf("%w: invalid whiteout entry", ErrInvalidLayer)
	}
	// go-archive removes whatever exists under the entry's own name first.
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil &&
		(st.Mode&unix.S_IFMT != unix.S_IFDIR || hdr.Typeflag != tar.TypeDir) {
		if err := u.removeAt(pfd, base); err != nil {
			return fmt.Errorf("remove existing: %w", err)
		}
	}
	switch {
	case base == whiteoutOpaqueDir:
		if err := unix.Fsetxattr(pfd, u.opaqueXattr, []byte{'y'}, 0); err != nil {
			return fmt.Errorf("fsetxattr %s=y on parent directory: %w", u.opaqueXattr, err)
		}
		return nil
	case strings.HasPrefix(base, whiteoutMetaPref):
		// AUFS metadata (.wh..wh.plnk, .wh..wh.aufs...): skipped.
		return nil
	}
	orig := strings.TrimPrefix(base, whiteoutPrefix)
	if err := unix.Mknodat(pfd, orig, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("mknod whiteout %q: %w", orig, err)
	}
	if hdr.Uid != 0 || hdr.Gid != 0 {
		if err := unix.Fchownat(pfd, orig, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("lchown whiteout %q: %w", orig, err)
		}
	}
	return nil
}

func (u *untarrer) mkdir(hdr *tar.Header, name string, pfd int, base string, perm uint32, times [2]unix.Timespec) error {
	err := unix.Mkdirat(pfd, base, perm&0o777)
	if errors.Is(err, unix.EEXIST) {
		// An existing directory is kept (merged); anything else replaced.
		var st unix.Stat_t
		if err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err = u.removeAt(pfd, base); err == nil {
				err = unix.Mkdirat(pfd, base, perm&0o777)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	if err := finishFd(hdr, fd, perm); err != nil {
		_ = unix.Close(fd)
		return err
	}
	u.dirs = append(u.dirs, untarDir{name: name, times: times})
	if u.removed {
		_ = unix.Close(fd)
		return nil
	}
	// The next entries are most likely inside this directory.
	u.setCache(name, fd)
	return nil
}

func (u *untarrer) regular(hdr *tar.Header, pfd int, base string, perm uint32, times [2]unix.Timespec, r io.Reader) error {
	var fd int
	if err := retryExisting(u, pfd, base, func() (err error) {
		fd, err = unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm&0o777)
		return err
	}); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	err := u.copyTo(fd, r)
	if err == nil {
		err = finishFd(hdr, fd, perm)
	}
	if err == nil {
		if err = futimens(fd, times); err != nil {
			err = fmt.Errorf("set times: %w", err)
		}
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	return err
}

func (u *untarrer) copyTo(fd int, r io.Reader) error {
	for {
		n, rerr := r.Read(u.buf)
		if u.written += int64(n); u.written > u.lim.Bytes {
			return fmt.Errorf("%w: more than %d bytes of file content (image.max_layer_bytes)", ErrTooLarge, u.lim.Bytes)
		}
		for b := u.buf[:n]; len(b) > 0; {
			w, err := unix.Write(fd, b)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return fmt.Errorf("write: %w", err)
			}
			b = b[w:]
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read: %w", rerr)
		}
	}
}

func (u *untarrer) hardlink(hdr *tar.Header, pfd int, base string, perm uint32, times [2]unix.Timespec) error {
	target := path.Clean(hdr.Linkname)
	if strings.HasPrefix(target, "/") {
		// Absolute targets are root-relative, but a ".." must not be
		// collapsed against "/": clean the stripped original instead.
		target = path.Clean(strings.TrimLeft(hdr.Linkname, "/"))
	}
	if target == "." || !filepath.IsLocal(target) {
		return fmt.Errorf("%w: invalid hardlink target %q: path escapes the root", ErrInvalidLayer, hdr.Linkname)
	}
	// Remove an existing entry before resolving the target, as go-archive.
	if err := unix.Fstatat(pfd, base, &unix.Stat_t{}, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		if err := u.removeAt(pfd, base); err != nil {
			return fmt.Errorf("remove existing: %w", err)
		}
	}
	tdir, tbase := path.Split(target)
	tdir = strings.TrimSuffix(tdir, "/")
	tfd := u.root
	switch tdir {
	case "":
	case u.cacheKey:
		tfd = u.cacheFd
	default:
		fd, err := u.resolveDir(tdir, false)
		if err != nil {
			return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
		}
		tfd = fd
		if fd != u.root {
			defer unix.Close(fd)
		}
	}
	// Flags 0: a symlink target is linked as the symlink itself.
	if err := retryExisting(u, pfd, base, func() error {
		return unix.Linkat(tfd, tbase, pfd, base, 0)
	}); err != nil {
		return fmt.Errorf("link to %q: %w", hdr.Linkname, err)
	}
	return u.finishAt(hdr, pfd, base, perm, times)
}

// finishAt applies owner, xattrs, mode and times to pfd/base (device, fifo
// or hard link) like go-archive: mode and times only when it is not a
// symlink (a hard link to one).
func (u *untarrer) finishAt(hdr *tar.Header, pfd int, base string, perm uint32, times [2]unix.Timespec) error {
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("lchown: %w", err)
	}
	if err := setXattrs(hdr, func(k string, v []byte) error { return setxattrAt(pfd, base, k, v) }); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("lstat: %w", err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return nil
	}
	err := unix.Fchmodat(pfd, base, perm, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.EOPNOTSUPP) {
		// No fchmodat2 (Linux < 6.6): just checked it is no symlink, and
		// nobody else writes in this tree.
		err = unix.Fchmodat(pfd, base, perm, 0)
	}
	if err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if err := utimesAt(pfd, base, times); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// finishFd applies owner, xattrs and mode to an open file or directory, in
// go-archive's order: chown first as it clears setuid/setgid and
// security.capability.
func finishFd(hdr *tar.Header, fd int, perm uint32) error {
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := setXattrs(hdr, func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) }); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, perm); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return nil
}

// setXattrs sets the SCHILY.xattr.* PAX records; EPERM is ignored as in
// go-archive (xattrs not allowed there, e.g. user.* on a symlink).
func setXattrs(hdr *tar.Header, set func(string, []byte) error) error {
	for key, value := range hdr.PAXRecords {
		attr, ok := strings.CutPrefix(key, paxSchilyXattr)
		if !ok {
			continue
		}
		if err := set(attr, []byte(value)); err != nil && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("setxattr %s: %w", attr, err)
		}
	}
	return nil
}

// setxattrAt sets an xattr on dirfd/name without following a symlink there:
// setxattrat(2) (Linux 6.13), else lsetxattr through the parent's
// /proc/self/fd entry (the final component is still not followed).
func setxattrAt(dirfd int, name, attr string, value []byte) error {
	err := setxattrat(dirfd, name, attr, value)
	if !errors.Is(err, unix.ENOSYS) {
		return err
	}
	return unix.Lsetxattr("/proc/self/fd/"+strconv.Itoa(dirfd)+"/"+name, attr, value, 0)
}

// xattrArgs is struct xattr_args { __aligned_u64 value; __u32 size; __u32
// flags; } with the value as a real pointer, so the GC keeps track of it;
// the layout only matches on 64-bit platforms.
type xattrArgs struct {
	value *byte
	size  uint32
	flags uint32
}

func setxattrat(dirfd int, name, attr string, value []byte) error {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		return unix.ENOSYS
	}
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return err
	}
	a, err := unix.BytePtrFromString(attr)
	if err != nil {
		return err
	}
	args := xattrArgs{size: uint32(len(value))}
	if len(value) > 0 {
		args.value = &value[0]
	}
	_, _, errno := unix.Syscall6(unix.SYS_SETXATTRAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		unix.AT_SYMLINK_NOFOLLOW, uintptr(unsafe.Pointer(a)), uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args))
	if errno != 0 {
		return errno
	}
	return nil
}

func headerTimes(hdr *tar.Header) [2]unix.Timespec {
	atime := hdr.AccessTime
	if atime.Before(hdr.ModTime) {
		atime = hdr.ModTime
	}
	return [2]unix.Timespec{timespec(atime), timespec(hdr.ModTime)}
}

func timespec(t time.Time) unix.Timespec {
	if t.Before(untarMinTime) || t.After(untarMaxTime) {
		t = untarMinTime
	}
	return unix.NsecToTimespec(t.UnixNano())
}

func utimesAt(dirfd int, name string, ts [2]unix.Timespec) error {
	return unix.UtimesNanoAt(dirfd, name, ts[:], unix.AT_SYMLINK_NOFOLLOW)
}

func futimens(fd int, ts [2]unix.Timespec) error {
	// utimensat(fd, NULL, ts, 0) sets the times of fd itself.
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
