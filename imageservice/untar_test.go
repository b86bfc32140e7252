package imageservice

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/go-archive"
	"golang.org/x/sys/unix"
)

var utTime = time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)

// noLimits are limits no test layer reaches.
var noLimits = untarLimits{Files: math.MaxInt64, Bytes: math.MaxInt64}

// utEntry is one tar entry: a header and, for a regular file, its content.
type utEntry struct {
	hdr  tar.Header
	body string
}

func utDir(name string, mode int64) utEntry {
	return utEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: utTime}}
}

func utFile(name, body string, mode int64) utEntry {
	return utEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: utTime}, body: body}
}

func utLink(typ byte, name, target string) utEntry {
	return utEntry{hdr: tar.Header{Typeflag: typ, Name: name, Linkname: target, Mode: 0o777, ModTime: utTime}}
}

func utOwned(e utEntry, uid, gid int) utEntry {
	e.hdr.Uid, e.hdr.Gid = uid, gid
	return e
}

func utXattrs(e utEntry, kv ...string) utEntry {
	e.hdr.Format = tar.FormatPAX
	if e.hdr.PAXRecords == nil {
		e.hdr.PAXRecords = map[string]string{}
	}
	for i := 0; i < len(kv); i += 2 {
		e.hdr.PAXRecords["SCHILY.xattr."+kv[i]] = kv[i+1]
	}
	return e
}

func utTar(t testing.TB, entries ...utEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatalf("%s: %v", hdr.Name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// utDescribe lists every file under dir with everything extraction sets.
// Times within the last hour (implied directories, whiteouts: set by
// neither extractor) are not compared.
func utDescribe(t *testing.T, dir string) map[string]string {
	t.Helper()
	recent := time.Now().Add(-time.Hour).Unix()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("mode=%o uid=%d gid=%d nlink=%d", st.Mode, st.Uid, st.Gid, st.Nlink)
		if st.Mtim.Sec < recent {
			// Not atime: following symlinks and reading update it.
			desc += fmt.Sprintf(" mtime=%d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" size=%d content=%q", st.Size, b)
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		case unix.S_IFCHR, unix.S_IFBLK:
			desc += fmt.Sprintf(" dev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		sz, err := unix.Llistxattr(p, nil)
		if err != nil {
			return err
		}
		if sz > 0 {
			names := make([]byte, sz)
			sz, err = unix.Llistxattr(p, names)
			if err != nil {
				return err
			}
			list := strings.Split(strings.TrimRight(string(names[:sz]), "\x00"), "\x00")
			slices.Sort(list)
			for _, n := range list {
				v := make([]byte, 256)
				vn, err := unix.Lgetxattr(p, n, v)
				if err != nil {
					return err
				}
				desc += fmt.Sprintf(" xattr:%s=%q", n, v[:vn])
			}
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func utRequireRoot(t testing.TB) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: devices, chown, trusted xattrs")
	}
}

// utBoth extracts data with go-archive and with untar into fresh dirs.
func utBoth(t *testing.T, data []byte) (want, got string, wantErr, gotErr error) {
	base := t.TempDir()
	want, got = filepath.Join(base, "goarchive"), filepath.Join(base, "untar")
	for _, d := range []string{want, got} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	wantErr = archive.UntarUncompressed(bytes.NewReader(data), want, &archive.TarOptions{WhiteoutFormat: archive.OverlayWhiteoutFormat})
	gotErr = untar(bytes.NewReader(data), got, noLimits)
	return want, got, wantErr, gotErr
}

func utCompare(t *testing.T, want, got string) map[string]string {
	t.Helper()
	w, g := utDescribe(t, want), utDescribe(t, got)
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		seen := map[string]bool{}
		for k := range w {
			seen[k] = true
		}
		for k := range g {
			seen[k] = true
		}
		for k := range seen {
			if !yield(k) {
				return
			}
		}
	}) {
		if k == "." {
			continue // the extraction root itself: created by the test
		}
		if w[k] != g[k] {
			t.Errorf("%s:\n go-archive: %s\n untar:      %s", k, w[k], g[k])
		}
	}
	return g
}

func TestUntarMatchesGoArchive(t *testing.T) {
	utRequireRoot(t)
	setuid := utOwned(utFile("usr/bin/su", "#!su", 0o4755), 1000, 1001)
	cases := map[string][]utEntry{
		"types": {
			utDir("etc/", 0o750),
			utOwned(utFile("etc/passwd", "root:x:0:0", 0o644), 0, 42),
			utDir("usr/", 0o755),
			utDir("usr/bin/", 0o755),
			setuid,
			utOwned(utFile("usr/bin/sg", "sg", 0o2711), 7, 8),
			utDir("tmp/", 0o1777),
			utXattrs(utFile("usr/bin/ping", "ping", 0o755), "security.capability", "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", "user.note", "hello"),
			utXattrs(utDir("data/", 0o700), "trusted.foo", "bar", "user.x", "y"),
			utOwned(utLink(tar.TypeSymlink, "usr/bin/rel", "su"), 3, 4),
			utLink(tar.TypeSymlink, "usr/bin/abs", "/usr/bin/su"),
			utLink(tar.TypeSymlink, "dangling", "/nowhere/at/all"),
			utLink(tar.TypeLink, "usr/bin/su2", "etc/passwd"),
			utLink(tar.TypeLink, "usr/bin/su3", "/etc/passwd"),
			utLink(tar.TypeLink, "usr/bin/rel2", "usr/bin/rel"),
			{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: utTime}},
			{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/loop0", Mode: 0o660, Devmajor: 7, Devminor: 0, Gid: 6, ModTime: utTime}},
			{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o4620, ModTime: utTime, AccessTime: utTime.Add(time.Hour)}},
			utFile("implied/a/b/c", "deep", 0o600),
			utFile("/abs/name", "leading slash", 0o644),
			utFile("./dot/./x/../name", "dots", 0o644),
			utDir("./", 0o700),
			utFile("empty", "", 0o000),
		},
		"whiteouts": {
			utDir("a/", 0o755),
			utFile("a/keep", "k", 0o644),
			utFile("a/.wh..wh..opq", "", 0o644),
			utFile("b/.wh.gone", "", 0o644),
			utOwned(utFile("b/.wh.owned", "", 0o644), 5, 6),
			utFile(".wh.top", "", 0o644),
			utFile(".wh..wh..opq", "", 0o644),
			utDir("c/", 0o711),
			utDir("c/.wh.subdir/", 0o755),
		},
		"replace": {
			utFile("p", "file first", 0o644),
			utDir("p/", 0o700),
			utFile("p/child", "c", 0o644),
			utDir("q/", 0o755),
			utFile("q/sub/f", "f", 0o644),
			utFile("q", "file replaces dir", 0o600),
			utLink(tar.TypeSymlink, "r", "q"),
			utFile("r", "file replaces symlink", 0o644),
			utFile("s", "becomes a symlink", 0o644),
			utLink(tar.TypeSymlink, "s", "/target"),
			utDir("d/", 0o755),
			utFile("d/x", "x", 0o644),
			utOwned(utDir("d/", 0o700), 9, 9),
			utFile("twice", "one", 0o644),
			utFile("twice", "two", 0o640),
			utLink(tar.TypeLink, "hl", "twice"),
			utFile("hl", "hard link replaced", 0o644),
		},
		"through-symlinks": {
			utDir("real/", 0o755),
			utLink(tar.TypeSymlink, "abs", "/real"),
			utLink(tar.TypeSymlink, "rel", "real"),
			utFile("abs/f1", "via absolute symlink", 0o644),
			utFile("rel/f2", "via relative symlink", 0o644),
			utLink(tar.TypeSymlink, "dang", "/made/by/parent"),
			utFile("dang/f3", "dangling parent created", 0o644),
			utLink(tar.TypeLink, "hl", "abs/f1"),
			utFile("abs/.wh.f9", "", 0o644),
			utFile("rel/.wh..wh..opq", "", 0o644),
		},
	}
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			data := utTar(t, entries...)
			want, got, wantErr, gotErr := utBoth(t, data)
			if wantErr != nil || gotErr != nil {
				t.Fatalf("go-archive: %v, untar: %v", wantErr, gotErr)
			}
			g := utCompare(t, want, got)
			// Guard against a vacuous comparison.
			switch name {
			case "types":
				if d := g["usr/bin/su"]; !strings.Contains(d, "mode=104755 uid=1000 gid=1001 nlink=1") {
					t.Errorf("setuid after chown: %s", d)
				}
				if d := g["etc"]; !strings.Contains(d, fmt.Sprintf("mtime=%d.", utTime.Unix())) {
					t.Errorf("directory mtime: %s", d)
				}
				if d := g["usr/bin/ping"]; !strings.Contains(d, "xattr:security.capability") {
					t.Errorf("capability: %s", d)
				}
			case "whiteouts":
				if d := g["b/gone"]; !strings.HasPrefix(d, "mode=20000 uid=0 gid=0") || !strings.Contains(d, "dev=0:0") {
					t.Errorf("whiteout: %s", d)
				}
				if d := g["a"]; !strings.Contains(d, `xattr:trusted.overlay.opaque="y"`) {
					t.Errorf("opaque: %s", d)
				}
			}
		})
	}
}

// TestUntarAufsMeta: .wh..wh.* entries other than the opaque marker are
// skipped (go-archive turns them into a whiteout named ".wh.<rest>").
func TestUntarAufsMeta(t *testing.T) {
	utRequireRoot(t)
	dir := t.TempDir()
	data := utTar(t, utDir(".wh..wh.plnk/", 0o700), utFile(".wh..wh.aufs", "", 0o600), utFile("x", "x", 0o644))
	if err := untar(bytes.NewReader(data), dir, noLimits); err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"x"}) {
		t.Errorf("got %v", names)
	}
}

// TestUntarConsumesArchive: the stream is read up to the end-of-archive
// marker, exactly as far as go-archive reads it.
func TestUntarConsumesArchive(t *testing.T) {
	utRequireRoot(t)
	data := append(utTar(t, utFile("a", "a", 0o644)), "trailer"...)
	for name, fn := range map[string]func(io.Reader, string) error{
		"untar": func(r io.Reader, d string) error { return untar(r, d, noLimits) },
		"go-archive": func(r io.Reader, d string) error {
			return archive.UntarUncompressed(r, d, &archive.TarOptions{WhiteoutFormat: archive.OverlayWhiteoutFormat})
		},
	} {
		r := bytes.NewReader(data)
		if err := fn(r, t.TempDir()); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		rest, _ := io.ReadAll(r)
		if string(rest) != "trailer" {
			t.Errorf("%s left %q", name, rest)
		}
	}
}

func TestUntarHostile(t *testing.T) {
	utRequireRoot(t)
	type hostile struct {
		entries func(canary string) []utEntry
		// check, when set, asserts where a confined entry landed (only if
		// untar did not fail).
		check func(t *testing.T, root, canary string)
		// mustFail: the entry has to be refused.
		mustFail bool
	}
	landed := func(rel string) func(t *testing.T, root, canary string) {
		return func(t *testing.T, root, canary string) {
			p := filepath.Join(root, strings.ReplaceAll(rel, "$CANARY", canary))
			if _, err := os.Lstat(p); err != nil {
				t.Errorf("expected %s inside the root: %v", p, err)
			}
		}
	}
	cases := map[string]hostile{
		"dotdot": {mustFail: true, entries: func(string) []utEntry {
			return []utEntry{utFile("../../etc/x", "x", 0o644)}
		}},
		"dotdot-canary": {mustFail: true, entries: func(string) []utEntry {
			return []utEntry{utFile("../canary/x", "x", 0o644)}
		}},
		"absolute-name": {check: landed("$CANARY/x"), entries: func(c string) []utEntry {
			return []utEntry{utFile(c+"/x", "x", 0o644)}
		}},
		"symlink-to-slash": {check: landed("x"), entries: func(string) []utEntry {
			return []utEntry{utLink(tar.TypeSymlink, "l", "/"), utFile("l/x", "x", 0o644)}
		}},
		"symlink-to-dotdot": {check: landed("canary/x"), entries: func(string) []utEntry {
			return []utEntry{utLink(tar.TypeSymlink, "l", ".."), utFile("l/canary/x", "x", 0o644)}
		}},
		"symlink-to-canary-abs": {check: landed("$CANARY/x"), entries: func(c string) []utEntry {
			return []utEntry{utLink(tar.TypeSymlink, "l", c), utFile("l/x", "x", 0o644)}
		}},
		"symlink-to-canary-rel": {check: landed("canary/x"), entries: func(string) []utEntry {
			return []utEntry{utLink(tar.TypeSymlink, "l", "../canary"), utFile("l/x", "x", 0o644)}
		}},
		"symlink-chain": {check: landed("canary/x"), entries: func(string) []utEntry {
			return []utEntry{
				utDir("d/", 0o755),
				utLink(tar.TypeSymlink, "d/up", ".."),
				utLink(tar.TypeSymlink, "s2", "d/up/d/up/../.."),
				utLink(tar.TypeSymlink, "s1", "s2/../canary"),
				utFile("s1/x", "x", 0o644),
			}
		}},
		"symlink-loop": {mustFail: true, entries: func(string) []utEntry {
			return []utEntry{utLink(tar.TypeSymlink, "a", "b"), utLink(tar.TypeSymlink, "b", "a"), utFile("a/x", "x", 0o644)}
		}},
		"hardlink-etc-passwd": {mustFail: true, entries: func(string) []utEntry {
			return []utEntry{utLink(tar.TypeLink, "h", "/etc/passwd")}
		}},
		"hardlink-canary-abs": {mustFail: true, entries: func(c string) []utEntry {
			return []utEntry{utLink(tar.TypeLink, "h", c+"/file")}
		}},
		"hardlink-dotdot": {mustFail: true, entries: func(string) []utEntry {
			return []utEntry{utLink(tar.TypeLink, "h", "../x")}
		}},
		"hardlink-abs-dotdot": {mustFail: true, entries: func(string) []utEntry {
			return []utEntry{utLink(tar.TypeLink, "h", "/../canary/file")}
		}},
		"hardlink-through-symlink": {mustFail: true, entries: func(c string) []utEntry {
			return []utEntry{utLink(tar.TypeSymlink, "l", c), utLink(tar.TypeLink, "h", "l/file")}
		}},
		"hardlink-to-escaping-symlink": {check: func(t *testing.T, root, _ string) {
			if target, err := os.Readlink(filepath.Join(root, "h")); err != nil || target != "../canary/file" {
				t.Errorf("h: %q, %v", target, err)
			}
		}, entries: func(string) []utEntry {
			return []utEntry{utLink(tar.TypeSymlink, "l", "../canary/file"), utLink(tar.TypeLink, "h", "l")}
		}},
		"dir-replaces-escaping-symlink": {check: func(t *testing.T, root, _ string) {
			fi, err := os.Lstat(filepath.Join(root, "l"))
			if err != nil || !fi.IsDir() {
				t.Fatalf("l: %v %v", fi, err)
			}
			landed("l/x")(t, root, "")
		}, entries: func(c string) []utEntry {
			return []utEntry{utLink(tar.TypeSymlink, "l", c), utDir("l/", 0o755), utFile("l/x", "x", 0o644)}
		}},
		"file-replaces-escaping-symlink": {check: landed("l"), entries: func(c string) []utEntry {
			return []utEntry{utLink(tar.TypeSymlink, "l", c+"/file"), utFile("l", "overwrite", 0o644)}
		}},
		"device-through-symlink": {check: landed("$CANARY/dev"), entries: func(c string) []utEntry {
			return []utEntry{utLink(tar.TypeSymlink, "l", c), {hdr: tar.Header{Typeflag: tar.TypeChar, Name: "l/dev", Mode: 0o600, Devmajor: 1, Devminor: 3}}}
		}},
		"whiteout-through-symlink": {check: landed("$CANARY/file"), entries: func(c string) []utEntry {
			return []utEntry{utLink(tar.TypeSymlink, "l", c), utFile("l/.wh.file", "", 0o644)}
		}},
		"opaque-through-symlink": {check: landed("canary"), entries: func(string) []utEntry {
			return []utEntry{utLink(tar.TypeSymlink, "l", "../canary"), utFile("l/.wh..wh..opq", "", 0o644)}
		}},
		"xattr-on-escaping-symlink": {check: landed("l"), entries: func(c string) []utEntry {
			return []utEntry{utXattrs(utLink(tar.TypeSymlink, "l", c+"/file"), "trusted.evil", "1")}
		}},
		"symlink-then-dir-mtime": {check: landed("d"), entries: func(c string) []utEntry {
			d := utDir("d/", 0o755)
			return []utEntry{d, utLink(tar.TypeSymlink, "d", c)}
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			root, canary := filepath.Join(base, "root"), filepath.Join(base, "canary")
			for _, d := range []string{root, canary} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(canary, "file"), []byte("canary"), 0o644); err != nil {
				t.Fatal(err)
			}
			old := time.Unix(1000, 0)
			for _, p := range []string{filepath.Join(canary, "file"), canary} {
				if err := os.Chtimes(p, old, old); err != nil {
					t.Fatal(err)
				}
			}
			before := fsSnapshot(t, base, "root")
			err := untar(bytes.NewReader(utTar(t, tc.entries(canary)...)), root, noLimits)
			if after := fsSnapshot(t, base, "root"); !mapsEqual(before, after) {
				t.Errorf("outside the root changed:\nbefore %v\nafter  %v", before, after)
			}
			if sz, _ := unix.Llistxattr(canary, nil); sz > 0 {
				t.Errorf("canary got xattrs")
			}
			if tc.mustFail {
				if err == nil {
					t.Fatal("untar accepted the layer")
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Logf("refused: %v", err)
				return
			}
			if tc.check != nil {
				tc.check(t, root, canary)
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// utLayerBlob returns the decompressed biggest layer blob of the test
// registry, if there is one.
func utLayerBlob(b *testing.B) []byte {
	blobs, _ := filepath.Glob("../_output/testbed/registry/data/docker/registry/v2/blobs/sha256/*/*/data")
	var best string
	var bestSize int64
	for _, p := range blobs {
		if fi, err := os.Stat(p); err == nil && fi.Size() > bestSize {
			best, bestSize = p, fi.Size()
		}
	}
	if best == "" {
		b.Skip("no layer blob in _output/testbed")
	}
	if p := os.Getenv("UNTAR_BLOB"); p != "" {
		best = p
	}
	f, err := os.Open(best)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		b.Skipf("%s: %v", best, err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

func BenchmarkUntarLayer(b *testing.B) {
	utRequireRoot(b)
	data := utLayerBlob(b)
	for name, fn := range map[string]func(io.Reader, string) error{
		"untar": func(r io.Reader, d string) error { return untar(r, d, noLimits) },
		"goarchive": func(r io.Reader, d string) error {
			return archive.UntarUncompressed(r, d, &archive.TarOptions{WhiteoutFormat: archive.OverlayWhiteoutFormat})
		},
	} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := filepath.Join(b.TempDir(), "diff")
				if err := os.Mkdir(dir, 0o755); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := fn(bytes.NewReader(data), dir); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := os.RemoveAll(dir); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
