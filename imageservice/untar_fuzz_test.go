package imageservice

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/moby/sys/userns"
	"golang.org/x/sys/unix"
)

// The fuzzed layer is extracted into /a/b/c/layer of a small world, seen
// through a chroot: fuzzWorldUp climbs from the layer to the world's root.
const (
	fuzzLayer   = "a/b/c/layer"
	fuzzWorldUp = "../../../../"
	// Bounds of what one input may make the extractor write (a sparse
	// entry can announce gigabytes in a few bytes; the pull's own limits
	// are not the extractor's).
	fuzzMaxBytes   = 4 << 20
	fuzzMaxEntries = 2000
)

// fuzzWorld builds the world around the layer dir: a canary dir with a
// secret, an /etc, a file beside the layer's parents and symlinks planted
// beside the layer that lead to the canary. Every time is set with atime
// before mtime, so a read of anything (relatime) changes its atime.
func fuzzWorld(t *testing.T) string {
	w := fuzzTempDir(t)
	for _, d := range []string{"canary/sub", "etc", "tmp", fuzzLayer} {
		if err := os.MkdirAll(filepath.Join(w, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range map[string]string{
		"canary/secret": "secret", "canary/sub/file": "file", "etc/passwd": "root:x:0:0::/root:/bin/sh\n", "a/sibling": "sibling",
	} {
		if err := os.WriteFile(filepath.Join(w, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range map[string]string{"a/b/c/planted": "/canary", "a/b/c/planted-rel": "../../../canary", "canary/loop": "loop"} {
		if err := os.Symlink(target, filepath.Join(w, name)); err != nil {
			t.Fatal(err)
		}
	}
	ts := []unix.Timespec{{Sec: 1000}, {Sec: 2000}}
	err := filepath.WalkDir(w, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == filepath.Join(w, fuzzLayer) {
			return err
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// worldSnapshot describes everything under dir but skip, down to ctime
// (any change of owner, mode, links or xattrs) and atime (any read, a
// symlink followed), read without touching either: symlinks are not read
// (a new target would be a new inode).
func worldSnapshot(t *testing.T, dir, skip string) map[string]string {
	out := map[string]string{}
	var walk func(rel string)
	walk = func(rel string) {
		p := filepath.Join(dir, rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		desc := fmt.Sprintf("mode=%o uid=%d gid=%d nlink=%d size=%d ino=%d atime=%d.%d mtime=%d.%d ctime=%d.%d",
			st.Mode, st.Uid, st.Gid, st.Nlink, st.Size, st.Ino, st.Atim.Sec, st.Atim.Nsec, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
		if sz, _ := unix.Llistxattr(p, nil); sz > 0 {
			desc += fmt.Sprintf(" xattrs=%d", sz)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NOATIME|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			f := os.NewFile(uintptr(fd), p)
			b, err := io.ReadAll(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			desc += fmt.Sprintf(" content=%q", b)
		case unix.S_IFDIR:
			fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NOATIME|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			f := os.NewFile(uintptr(fd), p)
			names, err := f.Readdirnames(-1)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(names)
			for _, n := range names {
				if c := filepath.Join(rel, n); c != skip {
					walk(c)
				}
			}
		}
		out[rel] = desc
	}
	walk(".")
	return out
}

// fuzzTempDir returns a fresh directory, on tmpfs when /dev/shm is one (it
// keeps atime with relatime, xattrs and device nodes like a disk): each
// input builds a world and extracts a layer, which on the busy shared disk
// ran at 100 inputs a second.
func fuzzTempDir(t *testing.T) string {
	var st unix.Statfs_t
	if unix.Statfs("/dev/shm", &st) != nil || st.Type != unix.TMPFS_MAGIC {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("/dev/shm", "crid-fuzz-untar-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// untarInWorld extracts data into the world's layer dir on a thread of its
// own whose root is the world: even an escape could not reach beyond it.
// The thread ends with its goroutine, never unlocked.
func untarInWorld(world string, data []byte) (setupErr, err error) {
	type result struct{ setup, err error }
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			done <- result{setup: fmt.Errorf("unshare: %w", err)}
			return
		}
		if err := unix.Chroot(world); err != nil {
			done <- result{setup: fmt.Errorf("chroot: %w", err)}
			return
		}
		if err := unix.Chdir("/"); err != nil {
			done <- result{setup: fmt.Errorf("chdir: %w", err)}
			return
		}
		done <- result{err: untar(bytes.NewReader(data), "/"+fuzzLayer, untarLimits{Files: 1 << 20, Bytes: 1 << 30})}
	}()
	r := <-done
	return r.setup, r.err
}

// fuzzBounded reports whether data's entries stay within what one input
// may write.
func fuzzBounded(data []byte) bool {
	tr := tar.NewReader(bytes.NewReader(data))
	var total int64
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err != nil {
			return true // untar stops at the same place
		}
		if total += max(hdr.Size, 0); total > fuzzMaxBytes || n > fuzzMaxEntries || hdr.Size < 0 {
			return false
		}
	}
}

// FuzzUntar extracts arbitrary tar streams into a layer dir inside a small
// world (through a chroot of the extracting thread, so nothing beyond the
// world can be reached whatever the bug). Oracle, as the malicious-layer
// suite's: nothing outside the layer dir is created, removed, changed,
// linked to or read (snapshot of the world down to ctime and atime, so a
// followed symlink planted beside the layer or a hard link to the canary
// shows), and no descriptor is left open.
func FuzzUntar(f *testing.F) {
	utRequireRoot(f)
	up := fuzzWorldUp
	dev := func(name string) utEntry {
		return utEntry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: name, Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: utTime}}
	}
	seeds := [][]utEntry{
		{utDir("d/", 0o755), utFile("d/f", "content", 0o644), utLink(tar.TypeSymlink, "d/l", "f"), utLink(tar.TypeLink, "d/h", "d/f")},
		{utFile(up+"canary/secret", "pwned", 0o644)},
		{utFile("../x", "pwned", 0o644)},
		{utDir("a/", 0o755), utFile("a/../../"+up+"canary/x", "pwned", 0o644)},
		{utFile("/canary/secret", "pwned", 0o644), utFile("/etc/passwd", "pwned", 0o644)},
		{utLink(tar.TypeSymlink, "evil", "/canary"), utFile("evil/secret", "pwned", 0o644), utDir("evil/new/", 0o700)},
		{utLink(tar.TypeSymlink, "evil", up+"canary"), utFile("evil/secret", "pwned", 0o644)},
		{utLink(tar.TypeSymlink, "evil", up+"a/b/c/planted"), utFile("evil/secret", "pwned", 0o644)},
		{utDir("d/", 0o755), utLink(tar.TypeSymlink, "d/up", ".."), utLink(tar.TypeSymlink, "s", "d/up/d/up/"+up+"canary"), utFile("s/x", "pwned", 0o644)},
		{utLink(tar.TypeSymlink, "evil", "/"), utDir("evil/canary/", 0o777)},
		{utLink(tar.TypeLink, "stolen", up+"canary/secret")},
		{utLink(tar.TypeLink, "stolen", "/canary/secret")},
		{utLink(tar.TypeSymlink, "d", "/canary"), utLink(tar.TypeLink, "stolen", "d/secret")},
		{utLink(tar.TypeSymlink, "d", up+"canary"), utLink(tar.TypeLink, "stolen", "d/secret")},
		{utLink(tar.TypeSymlink, "sym", "/canary/secret"), utOwned(utLink(tar.TypeLink, "stolen", "sym"), 4242, 4242), utFile("stolen", "pwned", 0o4777)},
		{utLink(tar.TypeSymlink, "evil", "/canary"), dev("evil/dev"), dev(up + "canary/dev2")},
		{utLink(tar.TypeSymlink, "evil", "/canary"), utFile("evil/.wh.secret", "", 0o644), utFile("evil/sub/.wh..wh..opq", "", 0o644)},
		{utXattrs(utLink(tar.TypeSymlink, "l", "/canary/secret"), "trusted.evil", "1", "user.evil", "2")},
		{utLink(tar.TypeSymlink, "l", "/canary"), utDir("l/", 0o755), utFile("l/x", "x", 0o644), utLink(tar.TypeSymlink, "m", "/canary/secret"), utFile("m", "overwrite", 0o644)},
		{utDir("d/", 0o755), utLink(tar.TypeSymlink, "d", "/canary")},
		{utLink(tar.TypeSymlink, "a", "b"), utLink(tar.TypeSymlink, "b", "a"), utFile("a/x", "x", 0o644), utLink(tar.TypeSymlink, "c", "/canary/loop"), utFile("c/x", "x", 0o644)},
		{utFile(strings.Repeat("d/", 120)+"f", "deep", 0o644), utLink(tar.TypeSymlink, "deep", strings.Repeat("../", 300)+"canary"), utFile("deep/x", "x", 0o644)},
		{utFile(".wh..wh..opq", "", 0o644), utFile(".wh.x", "", 0o644), utFile(".wh.", "", 0o644)},
	}
	for _, s := range seeds {
		f.Add(utTar(f, s...))
	}
	f.Add([]byte{})
	f.Add(make([]byte, 1024))

	userns.RunningInUserNS() // read /proc before any chroot
	f.Fuzz(func(t *testing.T, data []byte) {
		if !fuzzBounded(data) {
			return // writes more than one input may
		}
		world := fuzzWorld(t)
		before := worldSnapshot(t, world, fuzzLayer)
		fds := countOpenFDs(t)
		setupErr, err := untarInWorld(world, data)
		if setupErr != nil {
			t.Fatal(setupErr)
		}
		after := worldSnapshot(t, world, fuzzLayer)
		for _, p := range slices.Sorted(func(yield func(string) bool) {
			for p := range after {
				if !yield(p) {
					return
				}
			}
			for p := range before {
				if _, ok := after[p]; !ok && !yield(p) {
					return
				}
			}
		}) {
			if before[p] != after[p] {
				t.Errorf("ESCAPE (untar error %v): %s outside the layer\n before: %s\n after:  %s", err, p, before[p], after[p])
			}
		}
		if n := countOpenFDs(t); n != fds {
			t.Errorf("untar (error %v) left %d descriptors open, %d before", err, n, fds)
		}
		if err != nil && errors.Is(err, unix.EBADF) {
			t.Errorf("untar used a closed descriptor: %v", err)
		}
	})
}

func countOpenFDs(t *testing.T) int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}
