package imageservice

import (
	"archive/tar"
	"context"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The layer is extracted into <base>/root/tmp/layer-*/diff: this many
// ".." lead from there to <base>, beside the canary.
const upToBase = "../../../../"

// fsSnapshot describes every file under a directory, for proving a pull
// touched none of them.
func fsSnapshot(t *testing.T, dir string, skip ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if slices.Contains(skip, rel) {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("mode=%o uid=%d gid=%d nlink=%d size=%d mtime=%d.%d ino=%d", st.Mode, st.Uid, st.Gid, st.Nlink, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ino)
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += " content=" + string(b)
		}
		if d.Type()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			desc += " -> " + target
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// escapeCase is one crafted layer.
type escapeCase struct {
	name    string
	entries func(e *testEnv, marker string) []tarEntry
	// confined: go-archive does not refuse the layer but keeps everything
	// inside it; check then asserts where the entries landed.
	confined bool
	check    func(t *testing.T, e *testEnv, diff, marker string)
}

func TestPullMaliciousLayers(t *testing.T) {
	var initialUserNS bool
	if b, err := os.ReadFile("/proc/self/uid_map"); err == nil {
		initialUserNS = strings.Join(strings.Fields(string(b)), " ") == "0 0 4294967295"
	}
	rootInInitNS := os.Geteuid() == 0 && initialUserNS

	cases := []escapeCase{
		{name: "dotdot-to-base", entries: func(e *testEnv, m string) []tarEntry {
			return []tarEntry{file("ok", "ok"), file(upToBase+m, "pwned")}
		}},
		{name: "dotdot-into-canary", entries: func(e *testEnv, m string) []tarEntry {
			return []tarEntry{file(upToBase+"canary/secret", "pwned")}
		}},
		{name: "dotdot-into-store-root", entries: func(e *testEnv, m string) []tarEntry {
			return []tarEntry{file("../../../"+m, "pwned")}
		}},
		{name: "dotdot-one-level", entries: func(e *testEnv, m string) []tarEntry {
			return []tarEntry{file("../"+m, "pwned")}
		}},
		{name: "dotdot-inside-path", entries: func(e *testEnv, m string) []tarEntry {
			return []tarEntry{dir("a/"), file("a/../../"+upToBase+m, "pwned")}
		}},
		{name: "dotdot-dir", entries: func(e *testEnv, m string) []tarEntry {
			return []tarEntry{dir(upToBase + m + "/")}
		}},
		{name: "dotdot-many", entries: func(e *testEnv, m string) []tarEntry {
			return []tarEntry{file(strings.Repeat("../", 40)+strings.TrimPrefix(filepath.Join(e.base, m), "/"), "pwned")}
		}},
		{
			name: "absolute-path", confined: true,
			entries: func(e *testEnv, m string) []tarEntry {
				return []tarEntry{file(filepath.Join(e.base, m), "pwned"), file(filepath.Join(e.canary, "secret"), "pwned")}
			},
			check: func(t *testing.T, e *testEnv, diff, m string) {
				// The leading "/" is stripped: the files land inside the layer.
				for _, p := range []string{filepath.Join(e.base, m), filepath.Join(e.canary, "secret")} {
					if b, err := os.ReadFile(filepath.Join(diff, p)); err != nil || string(b) != "pwned" {
						t.Errorf("absolute entry %s not inside the layer: %q, %v", p, b, err)
					}
				}
			},
		},
		{
			name: "absolute-symlink-then-write-through", confined: true,
			entries: func(e *testEnv, m string) []tarEntry {
				return []tarEntry{symlink("evil", e.canary), file("evil/pwned", "pwned"), file("evil/secret", "pwned")}
			},
			check: func(t *testing.T, e *testEnv, diff, m string) {
				// The symlink is kept as it is; writing through it resolves
				// it as in a chroot: inside the layer.
				if target, err := os.Readlink(filepath.Join(diff, "evil")); err != nil || target != e.canary {
					t.Errorf("evil = %q, %v; want the symlink to %s", target, err, e.canary)
				}
				for _, f := range []string{"pwned", "secret"} {
					if b, err := os.ReadFile(filepath.Join(diff, e.canary, f)); err != nil || string(b) != "pwned" {
						t.Errorf("evil/%s not written inside the layer at %s: %q, %v", f, filepath.Join(e.canary, f), b, err)
					}
				}
			},
		},
		{
			name: "relative-symlink-then-write-through", confined: true,
			entries: func(e *testEnv, m string) []tarEntry {
				return []tarEntry{symlink("evil", "../../../../.."+e.canary), file("evil/pwned", "pwned")}
			},
			// ".." stops at the layer's root, as in a chroot (and as
			// containerd resolves layer paths): the write lands inside.
			check: insideLayer(func(e *testEnv, m string) string { return filepath.Join(e.canary, "pwned") }),
		},
		{
			name: "relative-symlink-exact-then-write-through", confined: true,
			entries: func(e *testEnv, m string) []tarEntry {
				return []tarEntry{symlink("evil", upToBase+"canary"), file("evil/secret", "pwned")}
			},
			check: insideLayer(func(e *testEnv, m string) string { return "canary/secret" }),
		},
		{
			name: "symlink-chain-then-write-through", confined: true,
			entries: func(e *testEnv, m string) []tarEntry {
				return []tarEntry{dir("a/"), symlink("a/up", ".."), symlink("b", "a/up/a/up/"+upToBase), file("b/"+m, "pwned")}
			},
			check: insideLayer(func(e *testEnv, m string) string { return m }),
		},
		{
			name: "relative-symlink-dir-then-mkdir", confined: true,
			entries: func(e *testEnv, m string) []tarEntry {
				return []tarEntry{symlink("evil", upToBase), dir("evil/" + m + "/")}
			},
			check: insideLayer(func(e *testEnv, m string) string { return m }),
		},
		{name: "hardlink-dotdot", entries: func(e *testEnv, m string) []tarEntry {
			return []tarEntry{hardlink("stolen", upToBase+"canary/secret")}
		}},
		{name: "hardlink-absolute", entries: func(e *testEnv, m string) []tarEntry {
			return []tarEntry{hardlink("stolen", filepath.Join(e.canary, "secret"))}
		}},
		{name: "hardlink-through-absolute-symlink-dir", entries: func(e *testEnv, m string) []tarEntry {
			return []tarEntry{symlink("d", e.canary), hardlink("stolen", "d/secret")}
		}},
		{name: "hardlink-through-relative-symlink-dir", entries: func(e *testEnv, m string) []tarEntry {
			return []tarEntry{symlink("d", upToBase+"canary"), hardlink("stolen", "d/secret")}
		}},
		{
			name: "hardlink-to-absolute-symlink", confined: true,
			entries: func(e *testEnv, m string) []tarEntry {
				hl := hardlink("stolen", "sym")
				hl.Hdr.Mode, hl.Hdr.Uid = 0o4777, 4242 // would chmod/chown the host file if followed
				return []tarEntry{symlink("sym", filepath.Join(e.canary, "secret")), hl}
			},
			check: checkHardlinkToSymlink,
		},
		{
			name: "hardlink-to-relative-symlink", confined: true,
			entries: func(e *testEnv, m string) []tarEntry {
				hl := hardlink("stolen", "sym")
				hl.Hdr.Mode, hl.Hdr.Uid = 0o4777, 4242
				return []tarEntry{symlink("sym", upToBase+"canary/secret"), hl}
			},
			check: checkHardlinkToSymlink,
		},
		{
			name: "hardlink-to-symlink-then-overwrite", confined: true,
			entries: func(e *testEnv, m string) []tarEntry {
				return []tarEntry{symlink("sym", filepath.Join(e.canary, "secret")), hardlink("stolen", "sym"), file("stolen", "pwned"), file("sym", "pwned")}
			},
			check: func(t *testing.T, e *testEnv, diff, m string) {
				for _, f := range []string{"stolen", "sym"} {
					if b, err := os.ReadFile(filepath.Join(diff, f)); err != nil || string(b) != "pwned" {
						t.Errorf("%s = %q, %v; want the layer's own file", f, b, err)
					}
				}
			},
		},
		{name: "device-dotdot", entries: func(e *testEnv, m string) []tarEntry {
			return []tarEntry{{Hdr: tar.Header{Typeflag: tar.TypeChar, Name: upToBase + m, Mode: 0o666, Devmajor: 1, Devminor: 3}}}
		}},
		{
			name: "device-through-symlink", confined: true,
			entries: func(e *testEnv, m string) []tarEntry {
				return []tarEntry{symlink("evil", upToBase), {Hdr: tar.Header{Typeflag: tar.TypeChar, Name: "evil/" + m, Mode: 0o666, Devmajor: 1, Devminor: 3}}}
			},
			check: insideLayer(func(e *testEnv, m string) string { return m }),
		},
		{
			name: "device-nodes", confined: true,
			entries: func(e *testEnv, m string) []tarEntry {
				return []tarEntry{
					dir("dev/"),
					{Hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
					{Hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Mode: 0o660, Devmajor: 8, Devminor: 0}},
					{Hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "dev/fifo", Mode: 0o600}},
					{Hdr: tar.Header{Typeflag: tar.TypeChar, Name: filepath.Join(e.base, m), Mode: 0o666, Devmajor: 1, Devminor: 3}},
				}
			},
			check: func(t *testing.T, e *testEnv, diff, m string) {
				// Recorded behaviour: as root in the initial user namespace
				// go-archive creates the nodes, inside the layer only; in a
				// user namespace it skips char and block devices.
				for _, d := range []struct {
					name       string
					typ        uint32
					maj, minor uint32
				}{
					{"dev/null", unix.S_IFCHR, 1, 3},
					{"dev/sda", unix.S_IFBLK, 8, 0},
					{strings.TrimPrefix(filepath.Join(e.base, m), "/"), unix.S_IFCHR, 1, 3},
				} {
					var st unix.Stat_t
					err := unix.Lstat(filepath.Join(diff, d.name), &st)
					if !rootInInitNS {
						if err == nil {
							t.Errorf("%s: device created in a user namespace", d.name)
						}
						continue
					}
					if err != nil || st.Mode&unix.S_IFMT != d.typ || unix.Major(st.Rdev) != d.maj || unix.Minor(st.Rdev) != d.minor {
						t.Errorf("%s: mode %o rdev %d:%d err %v; want type %o %d:%d inside the layer", d.name, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev), err, d.typ, d.maj, d.minor)
					}
				}
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(diff, "dev/fifo"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
					t.Errorf("dev/fifo: mode %o err %v", st.Mode, err)
				}
				t.Logf("root in the initial user namespace: %v; char and block device nodes created inside the layer dir: %v", rootInInitNS, rootInInitNS)
			},
		},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			marker := "crid-escape-" + strings.ReplaceAll(tc.name, "/", "-")
			entries := tc.entries(e, marker)
			layer := newLayer(t, entries...)
			// A good base layer below, so the bad one is not the first.
			img := newImage(t, imageSpec{layers: []testLayer{newLayer(t, file("base", "base")), layer}})
			e.reg.push("evil", "v1", img)
			before := fsSnapshot(t, e.base, "root", "records")

			pulled, err := e.svc.Pull(context.Background(), e.reg.ref("evil:v1"), nil)

			if after := fsSnapshot(t, e.base, "root", "records"); !maps.Equal(before, after) {
				for p, d := range after {
					if before[p] != d {
						t.Errorf("ESCAPE: %s outside the store changed: %q (was %q)", p, d, before[p])
					}
				}
				for p := range before {
					if _, ok := after[p]; !ok {
						t.Errorf("ESCAPE: %s outside the store removed", p)
					}
				}
			}
			for _, p := range []string{filepath.Join(e.base, marker), filepath.Join("/", marker), filepath.Join("/tmp", marker)} {
				if !isNotExist(t, p) {
					t.Errorf("ESCAPE: %s exists", p)
					if strings.HasPrefix(p, "/"+marker) || strings.HasPrefix(p, "/tmp/"+marker) {
						os.RemoveAll(p)
					}
				}
			}
			checkStoreLayout(t, e)

			if !tc.confined {
				if err == nil {
					t.Fatalf("pull of a layer with %s succeeded", tc.name)
				}
				t.Logf("error: %v", err)
				if !strings.Contains(err.Error(), layer.digest.String()) {
					t.Errorf("error %q does not name the bad layer %s", err, layer.digest)
				}
				if imgs, _ := e.svc.List(""); len(imgs) != 0 {
					t.Errorf("image listed after a refused layer: %v", imgs)
				}
				e.assertAbsent(t, e.reg.ref("evil:v1"))
				if tmp := dirNames(t, filepath.Join(e.root, "tmp")); len(tmp) != 0 {
					t.Errorf("tmp not empty: %v", tmp)
				}
				if l := e.layerNames(t); slices.Contains(l, img.chains()[1].Hex()) {
					t.Errorf("the bad layer was committed: %v", l)
				}
				return
			}
			if err != nil {
				t.Fatalf("pull: %v", err)
			}
			if pulled.ID != img.id() {
				t.Fatalf("pulled %s", pulled.ID)
			}
			tc.check(t, e, e.svc.LayerDiffDir(img.chains()[1]), marker)
		})
	}
}

// insideLayer checks that what the layer wrote through its symlinks landed
// inside the layer, at the path rel (relative to the layer's root).
func insideLayer(rel func(e *testEnv, m string) string) func(t *testing.T, e *testEnv, diff, m string) {
	return func(t *testing.T, e *testEnv, diff, m string) {
		t.Helper()
		p := filepath.Join(diff, rel(e, m))
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("the write through the symlink is not inside the layer at %s: %v", p, err)
		}
	}
}

func checkHardlinkToSymlink(t *testing.T, e *testEnv, diff, m string) {
	// The link is to the symlink itself, inside the layer: the host file
	// gains no link (its nlink is checked by the snapshot).
	var sym, stolen unix.Stat_t
	if err := unix.Lstat(filepath.Join(diff, "sym"), &sym); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(filepath.Join(diff, "stolen"), &stolen); err != nil {
		t.Fatal(err)
	}
	if stolen.Mode&unix.S_IFMT != unix.S_IFLNK || stolen.Ino != sym.Ino {
		t.Errorf("stolen: mode %o ino %d; want a hard link to the symlink sym (ino %d)", stolen.Mode, stolen.Ino, sym.Ino)
	}
	var host unix.Stat_t
	if err := unix.Stat(filepath.Join(e.canary, "secret"), &host); err != nil {
		t.Fatal(err)
	}
	if host.Nlink != 1 || host.Mode&0o7777 != 0o600 || host.Uid == 4242 {
		t.Errorf("host file touched: nlink %d mode %o uid %d", host.Nlink, host.Mode, host.Uid)
	}
}

// checkStoreLayout asserts the store root holds only what the store
// writes: nothing a layer's ".." could have put there.
func checkStoreLayout(t *testing.T, e *testEnv) {
	t.Helper()
	for _, n := range dirNames(t, e.root) {
		if n != "tmp" && n != "layers" && n != "blobs" {
			t.Errorf("ESCAPE: unexpected %s in the store root", n)
		}
	}
	for _, l := range e.layerNames(t) {
		got := dirNames(t, filepath.Join(e.root, "layers", l))
		if !slices.Equal(got, []string{"diff", "layer.json"}) {
			t.Errorf("ESCAPE: layer dir %s holds %v", l, got)
		}
	}
	_ = filepath.WalkDir(filepath.Join(e.root, "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if rel, _ := filepath.Rel(e.root, p); rel != "blobs" && rel != "blobs/sha256" && (filepath.Dir(rel) != "blobs/sha256" || !d.Type().IsRegular()) {
			t.Errorf("ESCAPE: unexpected %s in the blob store", rel)
		}
		return nil
	})
}
