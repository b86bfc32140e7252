package imageservice

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

func TestParseReference(t *testing.T) {
	const hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for in, want := range map[string]string{
		"busybox":                       "docker.io/library/busybox:latest",
		"busybox:1.36":                  "docker.io/library/busybox:1.36",
		"library/busybox":               "docker.io/library/busybox:latest",
		"docker.io/busybox":             "docker.io/library/busybox:latest",
		"docker.io/library/busybox:1":   "docker.io/library/busybox:1",
		"index.docker.io/library/redis": "docker.io/library/redis:latest",
		"someone/app":                   "docker.io/someone/app:latest",
		"registry.k8s.io/pause:3.10":    "registry.k8s.io/pause:3.10",
		"localhost/app":                 "localhost/app:latest",
		"127.0.0.1:5000/a/b/c:t":        "127.0.0.1:5000/a/b/c:t",
		"busybox@sha256:" + hex:         "docker.io/library/busybox@sha256:" + hex,
		"quay.io/x/y:v1@sha256:" + hex:  "quay.io/x/y:v1@sha256:" + hex,
	} {
		got, err := parseReference(in)
		if err != nil {
			t.Errorf("parseReference(%q): %v", in, err)
			continue
		}
		if got.String() != want {
			t.Errorf("parseReference(%q) = %q, want %q", in, got.String(), want)
		}
	}
	for _, in := range []string{"", "BusyBox", "busy box", "busybox:", ":latest", "busybox@sha256:abc", "a//b", hex} {
		_, err := parseReference(in)
		var bad *ErrInvalidReference
		if !errors.As(err, &bad) || bad.Ref != in {
			t.Errorf("parseReference(%q) = %v, want *ErrInvalidReference naming it", in, err)
		}
	}
}

func TestImageUser(t *testing.T) {
	for _, tc := range []struct {
		user string
		uid  int64 // -1: none
		name string
	}{
		{"1002", 1002, ""},
		{"www-data", -1, "www-data"},
		{"1003:1004", 1003, ""},
		{"www-data:1004", -1, "www-data"},
		{"0", 0, ""},
		{"", -1, ""},
	} {
		img := &Image{}
		img.Config.Config.User = tc.user
		uid, name := img.User()
		if tc.uid < 0 && uid != nil || tc.uid >= 0 && (uid == nil || *uid != tc.uid) || name != tc.name {
			gotUID := "nil"
			if uid != nil {
				gotUID = jsonString(*uid)
			}
			t.Errorf("USER %q: User() = %s, %q; want %d, %q", tc.user, gotUID, name, tc.uid, tc.name)
		}
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// basicImage is a two-layer image whose second layer carries an overlay
// whiteout and an opaque directory.
func basicImage(t *testing.T, s imageSpec) *testImage {
	t.Helper()
	if s.layers == nil {
		s.layers = []testLayer{
			newLayer(t, dir("etc/"), file("etc/hello", "hello from layer 1\n"), dir("data/"), file("data/old", "old\n"), file("gone", "x")),
			newLayer(t, dir("etc/"), file("etc/second", "layer 2"), file(".wh.gone", ""), dir("data/"), file("data/.wh..wh..opq", ""), file("data/new", "new\n")),
		}
	}
	return newImage(t, s)
}

func TestPullByTag(t *testing.T) {
	e := newEnv(t)
	want := basicImage(t, imageSpec{user: "1003:1004"})
	e.reg.push("team/app", "v1", want)

	img := e.mustPull(t, e.reg.ref("team/app:v1"))

	if img.ID != want.id() {
		t.Errorf("ID = %s, want the config digest %s", img.ID, want.configDigest)
	}
	if w := []string{e.reg.ref("team/app:v1")}; !slices.Equal(img.RepoTags, w) {
		t.Errorf("RepoTags = %v, want %v", img.RepoTags, w)
	}
	if w := []string{e.reg.ref("team/app@" + want.manifestDigest.String())}; !slices.Equal(img.RepoDigests, w) {
		t.Errorf("RepoDigests = %v, want %v", img.RepoDigests, w)
	}
	if img.Manifest != want.manifestID() {
		t.Errorf("Manifest = %s, want %s", img.Manifest, want.manifestDigest)
	}
	if !slices.Equal(img.Layers, want.chains()) {
		t.Errorf("Layers = %v, want chain IDs %v", img.Layers, want.chains())
	}
	if img.Size <= uint64(len(want.config)) {
		t.Errorf("Size = %d, want more than the config's %d bytes", img.Size, len(want.config))
	}
	if img.Config.Config.User != "1003:1004" || !slices.Equal(img.Config.RootFS.DiffIDs, []digest.Digest{want.layers[0].diffID, want.layers[1].diffID}) {
		t.Errorf("Config = %+v, not the pushed config", img.Config)
	}
	if uid, name := img.User(); uid == nil || *uid != 1003 || name != "" {
		t.Errorf("User() = %v, %q; want 1003", uid, name)
	}
	if img.Pinned {
		t.Error("an ordinary image is pinned")
	}

	// Every blob came once; the layers are unpacked under their chain IDs.
	for _, d := range []digest.Digest{want.configDigest, want.layers[0].digest, want.layers[1].digest} {
		if n := e.reg.blobGetCount(d); n != 1 {
			t.Errorf("blob %s fetched %d times, want 1", d, n)
		}
	}
	e.assertLayers(t, want.chains()...)
	l1 := e.svc.LayerDiffDir(want.chains()[0])
	l2 := e.svc.LayerDiffDir(want.chains()[1])
	if l1 != filepath.Join(e.layerDir(want.chains()[0]), "diff") {
		t.Errorf("LayerDiffDir = %s", l1)
	}
	if b, err := os.ReadFile(filepath.Join(l1, "etc/hello")); err != nil || string(b) != "hello from layer 1\n" {
		t.Errorf("layer 1 etc/hello = %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(l2, "etc/second")); err != nil || string(b) != "layer 2" {
		t.Errorf("layer 2 etc/second = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(l2, "etc/hello")); err == nil {
		t.Error("layer 2 holds layer 1's file: layers are not unpacked separately")
	}
	// Overlay whiteout format: a 0:0 char device for ".wh.gone", the opaque
	// xattr for "data/.wh..wh..opq".
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(l2, "gone"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("whiteout of gone: mode %o rdev %d err %v; want a 0:0 char device", st.Mode, st.Rdev, err)
	}
	if _, err := os.Lstat(filepath.Join(l2, ".wh.gone")); err == nil {
		t.Error(".wh.gone left as a file")
	}
	buf := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(l2, "data"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("data/ opaque xattr = %q, %v; want y", buf[:n], err)
	}
	var meta layerMeta
	if b, err := os.ReadFile(filepath.Join(e.layerDir(want.chains()[1]), "layer.json")); err != nil {
		t.Error(err)
	} else if err := json.Unmarshal(b, &meta); err != nil || meta.Blob != mustDigest(want.layers[1].digest) || meta.DiffID != mustDigest(want.layers[1].diffID) || meta.Size == 0 || meta.Inodes == 0 {
		t.Errorf("layer.json = %+v, %v", meta, err)
	}
	if tmp := dirNames(t, filepath.Join(e.root, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp not empty after a pull: %v", tmp)
	}
	if _, err := os.Stat(filepath.Join(e.root, "blobs", "sha256", want.configDigest.Encoded())); err != nil {
		t.Errorf("config blob not stored: %v", err)
	}
	if got := e.mustGet(t, e.reg.ref("team/app:v1")); got.ID != img.ID {
		t.Errorf("Get by tag = %s", got.ID)
	}
}

func TestPullByDigest(t *testing.T) {
	e := newEnv(t)
	want := basicImage(t, imageSpec{user: "1002"})
	e.reg.push("app", "v1", want)
	ref := e.reg.ref("app@" + want.manifestDigest.String())

	img := e.mustPull(t, ref)
	if img.ID != want.id() {
		t.Errorf("ID = %s, want %s", img.ID, want.configDigest)
	}
	if len(img.RepoTags) != 0 {
		t.Errorf("RepoTags = %v, want none for a pull by digest", img.RepoTags)
	}
	if !slices.Equal(img.RepoDigests, []string{ref}) {
		t.Errorf("RepoDigests = %v, want [%s]", img.RepoDigests, ref)
	}
	if n := e.reg.manifestGetCount("app", want.manifestDigest.String()); n != 1 {
		t.Errorf("manifest fetched by digest %d times, want 1", n)
	}
	if n := e.reg.manifestGetCount("app", "v1"); n != 0 {
		t.Errorf("manifest fetched by tag %d times, want 0", n)
	}
	if uid, name := img.User(); uid == nil || *uid != 1002 || name != "" {
		t.Errorf("User() = %v, %q; want 1002", uid, name)
	}
	if got := e.mustGet(t, ref); got.ID != want.id() {
		t.Errorf("Get(%s) = %s", ref, got.ID)
	}
	e.assertAbsent(t, e.reg.ref("app:v1"))

	// A digest the registry does not have fails and stores nothing more.
	bogus := e.reg.ref("app@" + digest.FromString("nothing").String())
	if _, err := e.svc.Pull(context.Background(), bogus, nil); err == nil {
		t.Fatalf("pull of an unknown digest succeeded")
	}
	if imgs, _ := e.svc.List(""); len(imgs) != 1 {
		t.Errorf("%d images after a failed pull, want 1", len(imgs))
	}
}

// TestPullManifestVariants pulls Docker schema2 and OCI images, each with
// a USER form CRI reports differently.
func TestPullManifestVariants(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		oci  bool
		user string
		uid  int64
		un   string
	}{
		{"docker-uid", false, "1002", 1002, ""},
		{"docker-name", false, "www-data", -1, "www-data"},
		{"oci-uid-gid", true, "1003:1004", 1003, ""},
		{"oci-name-gid", true, "www-data:1004", -1, "www-data"},
		{"oci-none", true, "", -1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := newImage(t, imageSpec{oci: tc.oci, user: tc.user, label: tc.name, layers: []testLayer{
				newLayer(t, file("id", tc.name)),
			}})
			e.reg.push(tc.name, "latest", want)
			if want.mediaType == mtDockerManifest == tc.oci {
				t.Fatalf("built a %s manifest", want.mediaType)
			}
			img := e.mustPull(t, e.reg.ref(tc.name)) // ":latest" implied
			if img.ID != want.id() || img.Manifest != want.manifestID() {
				t.Errorf("ID %s manifest %s, want %s %s", img.ID, img.Manifest, want.configDigest, want.manifestDigest)
			}
			if w := []string{e.reg.ref(tc.name + ":latest")}; !slices.Equal(img.RepoTags, w) {
				t.Errorf("RepoTags = %v, want %v", img.RepoTags, w)
			}
			uid, name := img.User()
			if tc.uid < 0 && uid != nil || tc.uid >= 0 && (uid == nil || *uid != tc.uid) || name != tc.un {
				t.Errorf("User() = %v, %q; want %d, %q", uid, name, tc.uid, tc.un)
			}
			if b, err := os.ReadFile(filepath.Join(e.svc.LayerDiffDir(want.chains()[0]), "id")); err != nil || string(b) != tc.name {
				t.Errorf("layer content = %q, %v", b, err)
			}
		})
	}
}

func TestPullManifestList(t *testing.T) {
	for _, oci := range []bool{false, true} {
		name := "docker-list"
		if oci {
			name = "oci-index"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			var others []*testImage
			for _, p := range [][3]string{{"arm64", "linux", "v8"}, {"ppc64le", "linux", ""}, {"s390x", "linux", ""}, {"amd64", "windows", ""}} {
				if p[0] == testArch && p[1] == "linux" {
					continue
				}
				others = append(others, newImage(t, imageSpec{oci: oci, arch: p[0], os: p[1], variant: p[2], label: p[0] + p[1],
					layers: []testLayer{newLayer(t, file("arch", p[0]+"/"+p[1]))}}))
			}
			native := newImage(t, imageSpec{oci: oci, label: "native", user: "www-data",
				layers: []testLayer{newLayer(t, file("arch", testArch)), newLayer(t, file("more", "x"))}})
			list := e.reg.pushList("multi", "v1", oci, append(others[:2:2], append([]*testImage{native}, others[2:]...)...)...)

			img := e.mustPull(t, e.reg.ref("multi:v1"))
			if img.ID != native.id() {
				t.Errorf("ID = %s, want linux/%s config %s", img.ID, testArch, native.configDigest)
			}
			if w := []string{e.reg.ref("multi@" + list.String())}; !slices.Equal(img.RepoDigests, w) {
				t.Errorf("RepoDigests = %v, want the list's digest %v", img.RepoDigests, w)
			}
			if img.Manifest != native.manifestID() {
				t.Errorf("Manifest = %s, want the platform manifest %s", img.Manifest, native.manifestDigest)
			}
			if !slices.Equal(img.Layers, native.chains()) {
				t.Errorf("Layers = %v, want %v", img.Layers, native.chains())
			}
			if img.Config.Architecture != testArch || img.Config.OS != "linux" {
				t.Errorf("config platform %s/%s", img.Config.OS, img.Config.Architecture)
			}
			for _, o := range others {
				if n := e.reg.blobGetCount(o.configDigest) + e.reg.blobGetCount(o.layers[0].digest); n != 0 {
					t.Errorf("%s/%s blobs fetched %d times, want 0", o.os, o.arch, n)
				}
			}
			e.assertLayers(t, native.chains()...)
			// The list's digest and the platform's tag both name the image.
			if got := e.mustGet(t, e.reg.ref("multi@"+list.String())); got.ID != native.id() {
				t.Errorf("Get by list digest = %s", got.ID)
			}
		})
	}
}

// TestPullDigestMismatch serves bytes that do not match the blob digest
// the manifest names.
func TestPullDigestMismatch(t *testing.T) {
	for _, tc := range []struct {
		name  string
		wrong func(good testLayer) []byte
	}{
		// The same tar compressed otherwise: the diff ID matches, only the
		// blob digest check can catch it.
		{"same-tar-recompressed", func(good testLayer) []byte {
			var b bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&b, gzip.NoCompression)
			_, _ = zw.Write(good.tar)
			_ = zw.Close()
			if bytes.Equal(b.Bytes(), good.blob) {
				t.Fatal("recompression gave the same bytes")
			}
			return b.Bytes()
		}},
		{"other-valid-layer", func(testLayer) []byte {
			return newLayer(t, file("etc/hello", "evil twin")).blob
		}},
		{"one-bit-flipped", func(good testLayer) []byte {
			b := bytes.Clone(good.blob)
			b[len(b)/2] ^= 1
			return b
		}},
		{"truncated", func(good testLayer) []byte { return good.blob[:len(good.blob)/2] }},
		{"garbage", func(testLayer) []byte { return []byte("this is not a gzip stream at all") }},
		{"trailing-bytes", func(good testLayer) []byte { return append(bytes.Clone(good.blob), "extra"...) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			want := basicImage(t, imageSpec{})
			bad := want.layers[1].digest
			e.reg.push("app", "v1", want)
			e.reg.serveWrong(bad, tc.wrong(want.layers[1]))

			_, err := e.svc.Pull(context.Background(), e.reg.ref("app:v1"), nil)
			if err == nil {
				t.Fatal("pull of a corrupt blob succeeded")
			}
			if !strings.Contains(err.Error(), bad.String()) {
				t.Errorf("error %q does not name the digest %s", err, bad)
			}
			t.Logf("error: %v", err)
			e.assertEmptyStore(t)
			if n := e.reg.blobGetCount(bad); n < 1 {
				t.Errorf("corrupt blob not fetched (%d)", n)
			}
		})
	}
}

func TestPullConfigDigestMismatch(t *testing.T) {
	e := newEnv(t)
	want := basicImage(t, imageSpec{user: "root"})
	e.reg.push("app", "v1", want)
	e.reg.serveWrong(want.configDigest, basicImage(t, imageSpec{user: "evil"}).config)
	_, err := e.svc.Pull(context.Background(), e.reg.ref("app:v1"), nil)
	if err == nil {
		t.Fatal("pull with a forged config succeeded")
	}
	if !strings.Contains(err.Error(), want.configDigest.String()) {
		t.Errorf("error %q does not name the config digest %s", err, want.configDigest)
	}
	e.assertEmptyStore(t)
}

func TestPullDiffIDMismatch(t *testing.T) {
	e := newEnv(t)
	good := newLayer(t, file("a", "a"))
	forged := newLayer(t, file("b", "b"))
	// The blob matches its digest, but its uncompressed content is not
	// what the config's diff_ids promise.
	want := newImage(t, imageSpec{layers: []testLayer{good, forged}, diffIDs: []digest.Digest{good.diffID, digest.FromString("another tar")}})
	e.reg.push("app", "v1", want)

	_, err := e.svc.Pull(context.Background(), e.reg.ref("app:v1"), nil)
	if err == nil {
		t.Fatal("pull with a forged diff ID succeeded")
	}
	if !strings.Contains(err.Error(), "diff ID") || !strings.Contains(err.Error(), forged.digest.String()) {
		t.Errorf("error %q does not say which layer's diff ID failed", err)
	}
	t.Logf("error: %v", err)
	// The good layer may have been unpacked before the other failed: it
	// must not stay behind without an image using it.
	e.assertEmptyStore(t)
	if !isNotExist(t, e.layerDir(mustDigest(digest.FromString(good.diffID.String()+" "+forged.diffID.String())))) {
		t.Error("the forged layer was unpacked under its chain ID")
	}
}

// TestPullConcurrentSameReference starts N pulls of one reference while
// the layer download is held: they share one download.
func TestPullConcurrentSameReference(t *testing.T) {
	e := newEnv(t)
	big := make([]byte, 256<<10)
	_, _ = rand.Read(big)
	want := newImage(t, imageSpec{layers: []testLayer{newLayer(t, file("big", string(big))), newLayer(t, file("small", "s"))}})
	e.reg.push("app", "v1", want)
	st := e.reg.stallBlob(want.layers[0].digest, 32<<10)
	st.pause = 0

	const n = 5
	ctx0, cancel0 := context.WithCancel(context.Background())
	defer cancel0()
	type result struct {
		img *Image
		err error
		at  time.Time
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		ctx := context.Background()
		if i == 0 {
			ctx = ctx0
		}
		wg.Go(func() {
			img, err := e.svc.Pull(ctx, e.reg.ref("app:v1"), nil)
			results[i] = result{img, err, time.Now()}
		})
	}
	waitChan(t, "the layer download to start", 10*time.Second, st.stalled)
	// Give every caller time to reach Pull: an implementation without a
	// shared download would now show N requests for the layer.
	time.Sleep(200 * time.Millisecond)
	cancelled := time.Now()
	cancel0()
	time.Sleep(50 * time.Millisecond) // the cancelled caller must not stop the shared download
	close(st.release)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	waitChan(t, "the pulls to finish", 20*time.Second, finished)

	if !errors.Is(results[0].err, context.Canceled) {
		t.Errorf("cancelled caller: %v, want context.Canceled", results[0].err)
	}
	if d := results[0].at.Sub(cancelled); d > time.Second {
		t.Errorf("cancelled caller returned %s after its cancel", d)
	}
	for i := 1; i < n; i++ {
		if results[i].err != nil {
			t.Errorf("caller %d: %v", i, results[i].err)
			continue
		}
		if results[i].img.ID != want.id() {
			t.Errorf("caller %d got %s, want %s", i, results[i].img.ID, want.configDigest)
		}
	}
	for _, l := range want.layers {
		if c := e.reg.blobGetCount(l.digest); c != 1 {
			t.Errorf("layer blob %s downloaded %d times by %d concurrent pulls, want 1", l.digest, c, n)
		}
	}
	if c := e.reg.blobGetCount(want.configDigest); c != 1 {
		t.Errorf("config downloaded %d times, want 1", c)
	}
	if c := e.reg.manifestGetCount("app", "v1"); c != 1 {
		t.Errorf("manifest fetched %d times, want 1", c)
	}
	if got := e.reg.bytesServed(want.layers[0].digest); got != int64(len(want.layers[0].blob)) {
		t.Errorf("served %d bytes of the layer, want exactly its %d", got, len(want.layers[0].blob))
	}
	if imgs, _ := e.svc.List(""); len(imgs) != 1 {
		t.Errorf("%d images, want 1", len(imgs))
	}
	e.assertLayers(t, want.chains()...)
}

// TestPullSharedLayers pulls B, which shares its base with A, after A.
func TestPullSharedLayers(t *testing.T) {
	e := newEnv(t)
	base := newLayer(t, dir("bin/"), file("bin/sh", "#!shell"))
	a := newImage(t, imageSpec{label: "a", layers: []testLayer{base, newLayer(t, file("a", "a"))}})
	b := newImage(t, imageSpec{oci: true, label: "b", layers: []testLayer{base, newLayer(t, file("b", "b"))}})
	e.reg.push("a", "v1", a)
	e.reg.push("b", "v1", b)

	e.mustPull(t, e.reg.ref("a:v1"))
	if got := e.reg.totalBlobGets(); got != 3 {
		t.Fatalf("pull of A fetched %d blobs, want 3", got)
	}
	imgB := e.mustPull(t, e.reg.ref("b:v1"))
	if c := e.reg.blobGetCount(base.digest); c != 1 {
		t.Errorf("shared base layer downloaded %d times, want 1", c)
	}
	if c := e.reg.blobGetCount(b.layers[1].digest); c != 1 {
		t.Errorf("B's own layer downloaded %d times, want 1", c)
	}
	if got := e.reg.totalBlobGets(); got != 5 {
		t.Errorf("%d blob downloads for A then B, want 5 (2 configs, 3 distinct layers)", got)
	}
	if imgB.Layers[0] != a.chains()[0] {
		t.Errorf("B's base chain %s, A's %s", imgB.Layers[0], a.chains()[0])
	}
	e.assertLayers(t, a.chains()[0], a.chains()[1], b.chains()[1])

	// Already pulled: pulling again downloads no blob at all.
	before := e.reg.totalBlobGets()
	e.mustPull(t, e.reg.ref("a:v1"))
	e.mustPull(t, e.reg.ref("b:v1"))
	if got := e.reg.totalBlobGets() - before; got != 0 {
		t.Errorf("pulling present images again downloaded %d blobs, want 0", got)
	}
	e.assertLayers(t, a.chains()[0], a.chains()[1], b.chains()[1])
}

func TestPullBasicAuth(t *testing.T) {
	e := newEnv(t)
	want := basicImage(t, imageSpec{})
	e.reg.push("private/app", "v1", want)
	e.reg.requireAuth("alice", "s3cret")
	ref := e.reg.ref("private/app:v1")

	for _, tc := range []struct {
		name string
		auth *Auth
	}{
		{"no-credentials", nil},
		{"wrong-password", &Auth{Username: "alice", Password: "wrong"}},
		{"unknown-user", &Auth{Username: "bob", Password: "s3cret"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.reg.unauthorizedCount()
			_, err := e.svc.Pull(context.Background(), ref, tc.auth)
			if err == nil {
				t.Fatal("pull succeeded against a registry requiring other credentials")
			}
			t.Logf("error: %v", err)
			if !errors.Is(err, ErrUnauthorized) {
				t.Errorf("error %q does not satisfy errors.Is(err, ErrUnauthorized)", err)
			}
			if !strings.Contains(err.Error(), e.reg.host) {
				t.Errorf("error %q does not name the registry %s", err, e.reg.host)
			}
			if e.reg.unauthorizedCount() == before {
				t.Error("the registry refused nothing: the failure is not the registry's 401")
			}
			if tc.auth != nil && strings.Contains(err.Error(), tc.auth.Password) {
				t.Errorf("error %q leaks the password", err)
			}
			e.assertEmptyStore(t)
			if c := e.reg.totalBlobGets(); c != 0 {
				t.Errorf("%d blobs served without credentials", c)
			}
		})
	}

	img, err := e.svc.Pull(context.Background(), ref, &Auth{Username: "alice", Password: "s3cret"})
	if err != nil {
		t.Fatalf("pull with the right credentials: %v", err)
	}
	if img.ID != want.id() {
		t.Errorf("ID = %s, want %s", img.ID, want.configDigest)
	}
	e.assertLayers(t, want.chains()...)
}

// TestPullCancel cancels the only client while a layer streams in.
func TestPullCancel(t *testing.T) {
	e := newEnv(t)
	big := make([]byte, 4<<20)
	_, _ = rand.Read(big)
	want := newImage(t, imageSpec{layers: []testLayer{newLayer(t, file("small", "s")), newLayer(t, file("big", string(big)))}})
	e.reg.push("app", "v1", want)
	d := want.layers[1].digest
	st := e.reg.stallBlob(d, 64<<10)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := e.svc.Pull(ctx, e.reg.ref("app:v1"), nil)
		errc <- err
	}()
	waitChan(t, "the layer to stall", 10*time.Second, st.stalled)
	// The registry sends on; the client reads while it does.
	close(st.release)
	waitFor(t, "the client to read past the stall", 10*time.Second, func() bool { return e.reg.bytesServed(d) >= 64<<10+2*int64(st.chunk) })

	served := e.reg.bytesServed(d)
	cancelled := time.Now()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Pull = %v, want context.Canceled", err)
		}
		if took := time.Since(cancelled); took > time.Second {
			t.Errorf("Pull returned %s after the cancel", took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Pull did not return after its context was cancelled")
	}
	select {
	case <-st.gone:
	case <-st.done:
		t.Fatal("the registry sent the whole blob after the cancel")
	case <-time.After(5 * time.Second):
		t.Fatal("the registry did not see the client go away")
	}
	after := e.reg.bytesServed(d) - served
	t.Logf("bytes served after the cancel: %d (chunks of %d every %s; blob %d)", after, st.chunk, st.pause, len(want.layers[1].blob))
	if after > int64(2*st.chunk) {
		t.Errorf("the registry served %d bytes after the cancel, want at most what was in flight (%d)", after, 2*st.chunk)
	}
	// The pull winds down in the background: nothing of it may remain.
	// The small layer may have been unpacked before the cancel: it goes too.
	waitFor(t, "the cancelled pull's debris to go", 5*time.Second, func() bool {
		return len(dirNames(t, filepath.Join(e.root, "tmp"))) == 0 && len(e.layerNames(t)) == 0
	})
	e.assertEmptyStore(t)

	e.reg.unstall(d)
	img := e.mustPull(t, e.reg.ref("app:v1"))
	if img.ID != want.id() {
		t.Errorf("second pull got %s", img.ID)
	}
	if c := e.reg.blobGetCount(d); c != 2 {
		t.Errorf("big layer fetched %d times in all, want 2", c)
	}
	e.assertLayers(t, want.chains()...)
}

// TestPullNoProgress stalls a layer forever: the pull fails once nothing
// arrives for ProgressTimeout, naming the registry.
func TestPullNoProgress(t *testing.T) {
	e := newEnv(t)
	e.opts.ProgressTimeout = 300 * time.Millisecond
	e.svc = e.open(t)
	big := make([]byte, 1<<20)
	_, _ = rand.Read(big)
	want := newImage(t, imageSpec{layers: []testLayer{newLayer(t, file("big", string(big)))}})
	e.reg.push("app", "v1", want)
	st := e.reg.stallBlob(want.layers[0].digest, 8<<10)

	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := e.svc.Pull(context.Background(), e.reg.ref("app:v1"), nil)
		errc <- err
	}()
	var err error
	select {
	case err = <-errc:
	case <-time.After(10 * time.Second):
		t.Fatal("a pull that receives nothing did not fail within 10s")
	}
	took := time.Since(start)
	if err == nil {
		t.Fatal("a stalled pull succeeded")
	}
	t.Logf("after %s: %v", took, err)
	if took > 3*time.Second {
		t.Errorf("stalled pull failed after %s, want about 300ms", took)
	}
	if took < 300*time.Millisecond {
		t.Errorf("pull failed after %s, before the progress timeout", took)
	}
	var np *ErrNoProgress
	if !errors.As(err, &np) {
		t.Fatalf("error %q is not an *ErrNoProgress", err)
	}
	if np.Registry != e.reg.host || !strings.Contains(err.Error(), e.reg.host) {
		t.Errorf("error names registry %q (%q), want %s", np.Registry, err, e.reg.host)
	}
	if np.Timeout != 300*time.Millisecond {
		t.Errorf("Timeout = %s", np.Timeout)
	}
	waitChan(t, "the registry to see the client go away", 5*time.Second, st.gone)
	e.assertEmptyStore(t)
}

// TestPullTagMove pulls a tag again after the registry moved it.
func TestPullTagMove(t *testing.T) {
	e := newEnv(t)
	x := basicImage(t, imageSpec{label: "x"})
	y := basicImage(t, imageSpec{label: "y", oci: true})
	e.reg.push("app", "stable", x)
	tag := e.reg.ref("app:stable")
	imgX := e.mustPull(t, tag)

	e.reg.push("app", "stable", y)
	imgY := e.mustPull(t, tag)
	if imgY.ID != y.id() || imgX.ID == imgY.ID {
		t.Fatalf("second pull got %s, want %s", imgY.ID, y.configDigest)
	}
	check := func(t *testing.T) {
		t.Helper()
		if got := e.mustGet(t, tag); got.ID != y.id() {
			t.Errorf("tag %s names %s, want the new image %s", tag, got.ID, y.configDigest)
		}
		oldImg := e.mustGet(t, x.configDigest.String())
		if len(oldImg.RepoTags) != 0 {
			t.Errorf("old image keeps RepoTags %v", oldImg.RepoTags)
		}
		if w := []string{e.reg.ref("app@" + x.manifestDigest.String())}; !slices.Equal(oldImg.RepoDigests, w) {
			t.Errorf("old image RepoDigests = %v, want %v", oldImg.RepoDigests, w)
		}
		newImg := e.mustGet(t, y.configDigest.String())
		if !slices.Equal(newImg.RepoTags, []string{tag}) {
			t.Errorf("new image RepoTags = %v", newImg.RepoTags)
		}
		if imgs, _ := e.svc.List(""); len(imgs) != 2 {
			t.Errorf("%d images, want 2", len(imgs))
		}
	}
	check(t)
	// The move is recorded, not only in memory.
	e.svc = e.open(t)
	check(t)
}
