package imageservice

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// sharedPair pushes A and B sharing a base layer, and returns them.
func sharedPair(t *testing.T, e *testEnv) (a, b *testImage) {
	t.Helper()
	base := newLayer(t, dir("bin/"), file("bin/sh", "#!shell"))
	a = newImage(t, imageSpec{label: "a", layers: []testLayer{base, newLayer(t, file("a", "a"))}})
	b = newImage(t, imageSpec{label: "b", layers: []testLayer{base, newLayer(t, file("b", "b"))}})
	e.reg.push("a", "v1", a)
	e.reg.push("a", "v2", a)
	e.reg.push("b", "v1", b)
	return a, b
}

func TestRemove(t *testing.T) {
	e := newEnv(t)
	a, b := sharedPair(t, e)
	e.mustPull(t, e.reg.ref("a:v1"))
	imgA := e.mustPull(t, e.reg.ref("a:v2"))
	e.mustPull(t, e.reg.ref("b:v1"))
	if w := []string{e.reg.ref("a:v1"), e.reg.ref("a:v2")}; !slices.Equal(imgA.RepoTags, w) {
		t.Fatalf("A's RepoTags = %v, want %v", imgA.RepoTags, w)
	}
	e.assertLayers(t, a.chains()[0], a.chains()[1], b.chains()[1])

	// Unknown names are not an error and remove nothing.
	for _, n := range []string{e.reg.ref("nope:v1"), "sha256:" + strings.Repeat("0", 64), "fffffffff", "nope"} {
		if err := e.svc.Remove(n); err != nil {
			t.Errorf("Remove(%q) = %v, want nil", n, err)
		}
	}
	if imgs, _ := e.svc.List(""); len(imgs) != 2 {
		t.Fatalf("%d images after removing unknown names, want 2", len(imgs))
	}

	// By one tag: the whole image goes, with all its tags and digests.
	if err := e.svc.Remove(e.reg.ref("a:v1")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{e.reg.ref("a:v1"), e.reg.ref("a:v2"), e.reg.ref("a@" + a.manifestDigest.String()), a.configDigest.String(), a.configDigest.Encoded()} {
		e.assertAbsent(t, n)
	}
	// Its own layer is freed; the base B shares stays, as does B.
	e.assertLayers(t, b.chains()...)
	if _, err := os.Stat(filepath.Join(e.svc.LayerDiffDir(b.chains()[0]), "bin/sh")); err != nil {
		t.Errorf("shared base layer damaged: %v", err)
	}
	if !isNotExist(t, filepath.Join(e.root, "blobs", "sha256", a.configDigest.Encoded())) {
		t.Error("A's config blob kept")
	}
	if recs := dirNames(t, filepath.Join(e.recordsDir, recordKind)); slices.Contains(recs, a.configDigest.Encoded()+".json") {
		t.Errorf("A's record kept: %v", recs)
	}
	if tmp := dirNames(t, filepath.Join(e.root, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp not empty after removal: %v", tmp)
	}
	e.mustGet(t, e.reg.ref("b:v1"))

	// Removing again is a no-op.
	if err := e.svc.Remove(e.reg.ref("a:v2")); err != nil {
		t.Errorf("second Remove = %v", err)
	}

	// By ID: the last image goes, and every layer with it.
	if err := e.svc.Remove(b.configDigest.String()); err != nil {
		t.Fatal(err)
	}
	e.assertAbsent(t, e.reg.ref("b:v1"))
	e.assertLayers(t)
	e.assertEmptyStore(t)
}

func TestRemoveByIDPrefix(t *testing.T) {
	e := newEnv(t)
	a, b := sharedPair(t, e)
	e.mustPull(t, e.reg.ref("a:v1"))
	e.mustPull(t, e.reg.ref("b:v1"))
	for _, tc := range []struct {
		name string
		img  *testImage
	}{
		{a.configDigest.Encoded()[:12], a}, // as crictl prints it
		{b.configDigest.Encoded(), b},      // the full hex
	} {
		if err := e.svc.Remove(tc.name); err != nil {
			t.Fatalf("Remove(%q): %v", tc.name, err)
		}
		e.assertAbsent(t, tc.img.configDigest.String())
	}
	e.assertEmptyStore(t)
}

func TestRemovePinnedSandboxImage(t *testing.T) {
	e := newEnv(t)
	pause := newImage(t, imageSpec{label: "pause", layers: []testLayer{newLayer(t, file("pause", "\x7fELF"))}})
	e.reg.push("pause", "3.10", pause)
	e.reg.push("pause", "latest", pause)
	img := e.mustPull(t, e.opts.SandboxImage)
	if !img.Pinned {
		t.Fatal("the sandbox image is not pinned")
	}
	e.mustPull(t, e.reg.ref("pause:latest")) // another name of the same image
	for _, n := range []string{e.opts.SandboxImage, e.reg.ref("pause:latest"), pause.configDigest.String(), pause.configDigest.Encoded()[:12]} {
		if err := e.svc.Remove(n); !errors.Is(err, ErrPinned) {
			t.Errorf("Remove(%q) = %v, want ErrPinned", n, err)
		}
	}
	got := e.mustGet(t, e.opts.SandboxImage)
	if !got.Pinned || len(got.RepoTags) != 2 {
		t.Errorf("sandbox image after refused removals: pinned %v tags %v", got.Pinned, got.RepoTags)
	}
	e.assertLayers(t, pause.chains()...)
	// Pinning survives a restart.
	e.svc = e.open(t)
	if got := e.mustGet(t, pause.configDigest.String()); !got.Pinned {
		t.Error("the sandbox image is not pinned after a restart")
	}
	if err := e.svc.Remove(e.opts.SandboxImage); !errors.Is(err, ErrPinned) {
		t.Errorf("Remove after restart = %v, want ErrPinned", err)
	}
}

func TestRemoveKeepsLayersContainersUse(t *testing.T) {
	e := newEnv(t)
	a, b := sharedPair(t, e)
	e.mustPull(t, e.reg.ref("a:v1"))
	e.mustPull(t, e.reg.ref("b:v1"))
	// A container runs on A.
	if _, err := e.svc.MountRootfs(testID("c1"), e.reg.ref("a:v1")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.svc.UnmountRootfs(testID("c1")) })
	if err := e.svc.Remove(e.reg.ref("a:v1")); err != nil {
		t.Fatal(err)
	}
	e.assertAbsent(t, e.reg.ref("a:v1"))
	e.assertLayers(t, a.chains()[0], a.chains()[1], b.chains()[1])

	// The container is gone: the next GC frees the layers.
	if err := e.svc.UnmountRootfs(testID("c1")); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Remove(e.reg.ref("b:v1")); err != nil {
		t.Fatal(err)
	}
	e.assertLayers(t)
}

func TestRestart(t *testing.T) {
	e := newEnv(t)
	a, b := sharedPair(t, e)
	c := newImage(t, imageSpec{label: "c", oci: true, user: "www-data", layers: []testLayer{newLayer(t, file("c", "c"))}})
	e.reg.push("c", "v1", c)
	for _, r := range []string{"a:v1", "a:v2", "b:v1", "c:v1"} {
		e.mustPull(t, e.reg.ref(r))
	}
	before, _ := e.svc.List("")
	usageBefore, err := e.svc.Usage()
	if err != nil {
		t.Fatal(err)
	}

	// Same root, same records: the same images.
	e.svc = e.open(t)
	after, _ := e.svc.List("")
	if len(after) != 3 || len(before) != 3 {
		t.Fatalf("%d images before and %d after the restart, want 3", len(before), len(after))
	}
	for i := range before {
		x, y := before[i], after[i]
		if x.ID != y.ID || !slices.Equal(x.RepoTags, y.RepoTags) || !slices.Equal(x.RepoDigests, y.RepoDigests) ||
			!slices.Equal(x.Layers, y.Layers) || x.Size != y.Size || x.Manifest != y.Manifest || x.Config.Config.User != y.Config.Config.User {
			t.Errorf("image changed over a restart:\n%+v\n%+v", x, y)
		}
	}
	if u, _ := e.svc.Usage(); u != usageBefore {
		t.Errorf("usage %+v after restart, %+v before", u, usageBefore)
	}
	if got := e.mustGet(t, e.reg.ref("a:v2")); got.ID != a.id() {
		t.Errorf("a:v2 = %s after restart", got.ID)
	}

	// Debris of an interrupted pull and delete is removed at start.
	for _, p := range []string{"tmp/layer-123/diff/etc", "tmp/rm-456/layer/diff"} {
		if err := os.MkdirAll(filepath.Join(e.root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(e.root, "tmp/blob-789"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A layer no image uses, as left by a crash between unpack and commit.
	orphan := sha256Of([]byte("orphan layer"))
	if err := os.MkdirAll(filepath.Join(e.layerDir(orphan), "diff"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.layerDir(orphan), "layer.json"), []byte(`{"chain_id":"`+orphan.String()+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	// A's own layer vanished: A cannot be used and is dropped; B, which
	// shares only the base, stays.
	if err := os.RemoveAll(e.layerDir(a.chains()[1])); err != nil {
		t.Fatal(err)
	}
	// C's record is gone (a crash after the delete of the record): its
	// layer is no image's.
	if err := os.Remove(filepath.Join(e.recordsDir, recordKind, c.configDigest.Encoded()+".json")); err != nil {
		t.Fatal(err)
	}

	e.svc = e.open(t)
	if tmp := dirNames(t, filepath.Join(e.root, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp debris not removed at start: %v", tmp)
	}
	imgs, _ := e.svc.List("")
	if len(imgs) != 1 || imgs[0].ID != b.id() {
		t.Fatalf("images after restart = %v, want only B", imgs)
	}
	e.assertAbsent(t, e.reg.ref("a:v1"))
	e.assertAbsent(t, e.reg.ref("c:v1"))
	if recs := dirNames(t, filepath.Join(e.recordsDir, recordKind)); !slices.Equal(recs, []string{b.configDigest.Encoded() + ".json"}) {
		t.Errorf("records after restart = %v, want B's only", recs)
	}
	e.assertLayers(t, b.chains()...)

	// A pulled again comes back, downloading only its missing layer.
	gets := e.reg.blobGetCount(a.layers[1].digest)
	baseGets := e.reg.blobGetCount(a.layers[0].digest)
	e.mustPull(t, e.reg.ref("a:v1"))
	if e.reg.blobGetCount(a.layers[1].digest) != gets+1 || e.reg.blobGetCount(a.layers[0].digest) != baseGets {
		t.Errorf("re-pull of A after restart: own layer %d→%d, base %d→%d fetches", gets, e.reg.blobGetCount(a.layers[1].digest), baseGets, e.reg.blobGetCount(a.layers[0].digest))
	}
}

// ambiguousPair returns two images whose IDs share their first three hex
// digits, found deterministically by varying a label.
func ambiguousPair(t *testing.T) (x, y *testImage, prefix string) {
	t.Helper()
	layer := newLayer(t, file("f", "f"))
	seen := map[string]*testImage{}
	for i := range 100000 {
		img := newImage(t, imageSpec{label: strconv.Itoa(i), layers: []testLayer{layer}})
		p := img.configDigest.Encoded()[:3]
		if other, ok := seen[p]; ok {
			return other, img, p
		}
		seen[p] = img
	}
	t.Fatal("no two IDs share a prefix")
	return nil, nil, ""
}

func TestGet(t *testing.T) {
	e := newEnv(t)
	x, y, prefix := ambiguousPair(t)
	e.reg.push("x", "v1", x)
	e.reg.push("y", "v1", y)
	imgX := e.mustPull(t, e.reg.ref("x:v1"))
	e.mustPull(t, e.reg.ref("y:v1"))

	// Every name of an image gives the same answer.
	unique := x.configDigest.Encoded()[:12]
	for i := 3; i < 64; i++ {
		if x.configDigest.Encoded()[:i] != y.configDigest.Encoded()[:i] {
			unique = x.configDigest.Encoded()[:i]
			break
		}
	}
	for _, n := range []string{
		x.configDigest.String(),
		x.configDigest.Encoded(),
		unique,
		e.reg.ref("x:v1"),
		e.reg.ref("x@" + x.manifestDigest.String()),
	} {
		got := e.mustGet(t, n)
		if got.ID != imgX.ID || !slices.Equal(got.RepoTags, imgX.RepoTags) || !slices.Equal(got.RepoDigests, imgX.RepoDigests) || got.Size != imgX.Size {
			t.Errorf("Get(%q) = %+v, want %+v", n, got, imgX)
		}
		if l, err := e.svc.List(n); err != nil || len(l) != 1 || l[0].ID != imgX.ID {
			t.Errorf("List(%q) = %v, %v", n, l, err)
		}
	}
	if _, err := e.svc.Get(prefix); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("Get(%q) shared by %s and %s = %v, want ErrAmbiguous", prefix, x.configDigest, y.configDigest, err)
	}
	if _, err := e.svc.List(prefix); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("List(%q) = %v, want ErrAmbiguous", prefix, err)
	}
	if err := e.svc.Remove(prefix); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("Remove(%q) = %v, want ErrAmbiguous", prefix, err)
	}
	if imgs, _ := e.svc.List(""); len(imgs) != 2 {
		t.Errorf("%d images after an ambiguous Remove, want 2", len(imgs))
	}
	for _, n := range []string{
		e.reg.ref("x:v2"),
		e.reg.ref("z:v1"),
		"sha256:" + strings.Repeat("0", 64),
		strings.Repeat("0", 64),
		"busybox",
		"docker.io/library/busybox:latest",
		"Not A Reference",
	} {
		e.assertAbsent(t, n)
		if l, err := e.svc.List(n); err != nil || len(l) != 0 {
			t.Errorf("List(%q) = %v, %v; want nothing", n, l, err)
		}
	}
	if l, _ := e.svc.List(""); len(l) != 2 || l[0].ID.Hex() > l[1].ID.Hex() {
		t.Errorf("List() = %v, want both images sorted by ID", l)
	}
}

func TestUsage(t *testing.T) {
	e := newEnv(t)
	a, b := sharedPair(t, e)
	u0, err := e.svc.Usage()
	if err != nil {
		t.Fatal(err)
	}
	checkFs(t, "image usage", u0, e.root)
	e.mustPull(t, e.reg.ref("a:v1"))
	u1, _ := e.svc.Usage()
	e.mustPull(t, e.reg.ref("b:v1"))
	u2, _ := e.svc.Usage()
	if !(u1.Bytes > u0.Bytes && u1.Inodes > u0.Inodes && u2.Bytes > u1.Bytes && u2.Inodes > u1.Inodes) {
		t.Errorf("usage did not grow with pulls: %+v → %+v → %+v", u0, u1, u2)
	}
	// The growth covers every unpacked file of A's layers, counted here
	// independently.
	var bytes, inodes uint64
	for _, c := range a.chains() {
		b, i := du(t, e.svc.LayerDiffDir(c))
		bytes, inodes = bytes+b, inodes+i
	}
	if u1.Bytes-u0.Bytes < bytes || u1.Inodes-u0.Inodes < inodes {
		t.Errorf("pulling A grew usage by %d bytes %d inodes; its layers alone hold %d bytes %d inodes", u1.Bytes-u0.Bytes, u1.Inodes-u0.Inodes, bytes, inodes)
	}
	if err := e.svc.Remove(a.configDigest.String()); err != nil {
		t.Fatal(err)
	}
	u3, _ := e.svc.Usage()
	if !(u3.Bytes < u2.Bytes && u3.Inodes < u2.Inodes) {
		t.Errorf("usage did not shrink after a removal: %+v → %+v", u2, u3)
	}
	if err := e.svc.Remove(b.configDigest.String()); err != nil {
		t.Fatal(err)
	}
	u4, _ := e.svc.Usage()
	if !(u4.Bytes < u3.Bytes && u4.Inodes < u3.Inodes) {
		t.Errorf("usage did not shrink after the last removal: %+v → %+v", u3, u4)
	}
	// Back to the empty store, but for the blobs/sha256 directory.
	if u4.Inodes > u0.Inodes+1 {
		t.Errorf("empty store counts %d inodes, %d at the start", u4.Inodes, u0.Inodes)
	}
}

// du counts the allocated bytes and the inodes under dir.
func du(t *testing.T, dir string) (bytes, inodes uint64) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		bytes += uint64(st.Blocks) * 512
		inodes++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return bytes, inodes
}
