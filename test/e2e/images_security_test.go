package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// This file attacks crid's image pulls the way a malicious image or
// registry would: crafted configs and manifests pushed to the test bed's
// registry over its HTTP API (or, where that registry refuses to store
// them, served by a small crafting registry in front of it).

const (
	mtManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mtList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mtConfig   = "application/vnd.docker.container.image.v1+json"
	mtLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	// craftedRepo holds this file's images in the shared registry.
	craftedRepo = "crid-e2e/crafted"
)

func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// e2eLayer is a gzip'd tar layer.
type e2eLayer struct {
	blob   []byte
	digest string // of blob
	diffID string // of the tar
}

func makeLayer(t *testing.T, files map[string]string) e2eLayer {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		body := files[name]
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(1700000000, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return e2eLayer{blob: gz.Bytes(), digest: sha256Digest(gz.Bytes()), diffID: sha256Digest(raw.Bytes())}
}

// imageConfig is a Docker image config naming diffIDs as given, unchecked.
func imageConfig(t *testing.T, rootfsType string, diffIDs ...string) []byte {
	t.Helper()
	if diffIDs == nil {
		diffIDs = []string{}
	}
	b, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Env": []string{"PATH=/bin"}, "Cmd": []string{"sh"}},
		"rootfs":       map[string]any{"type": rootfsType, "diff_ids": diffIDs},
		"history":      []map[string]any{{"created_by": "crafted by crid's e2e tests"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type descriptor struct {
	MediaType string `json:"mediaType"`
	Size      int    `json:"size"`
	Digest    string `json:"digest"`
}

// manifestFor is a Docker schema2 manifest of config and layers, with the
// digests as given.
func manifestFor(t *testing.T, configDigest string, configSize int, layers ...e2eLayer) []byte {
	t.Helper()
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     mtManifest,
		"config":        descriptor{MediaType: mtConfig, Size: configSize, Digest: configDigest},
	}
	ls := []descriptor{}
	for _, l := range layers {
		ls = append(ls, descriptor{MediaType: mtLayer, Size: len(l.blob), Digest: l.digest})
	}
	m["layers"] = ls
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// registryPushBlob uploads b to repo in the test bed's registry (a
// monolithic upload: POST for a session, PUT with the digest).
func registryPushBlob(t *testing.T, repo string, b []byte) string {
	t.Helper()
	d := sha256Digest(b)
	resp, err := http.Post("http://"+testRegistry+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload to %s: %s", repo, resp.Status)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	base, _ := url.Parse("http://" + testRegistry + "/")
	loc = base.ResolveReference(loc)
	q := loc.Query()
	q.Set("digest", d)
	loc.RawQuery = q.Encode()
	req, _ := http.NewRequest(http.MethodPut, loc.String(), bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload blob %s to %s: %s %s", d, repo, resp.Status, body)
	}
	return d
}

func registryPushManifest(t *testing.T, repo, tag, mediaType string, b []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, "http://"+testRegistry+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(b))
	req.Header.Set("Content-Type", mediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("push manifest %s:%s: %s %s", repo, tag, resp.Status, body)
	}
}

// pushCrafted pushes an image of layers whose config names diffIDs (and
// rootfs type "layers") as craftedRepo:tag, and returns its reference.
func pushCrafted(t *testing.T, tag string, layers []e2eLayer, diffIDs ...string) string {
	t.Helper()
	config := imageConfig(t, "layers", diffIDs...)
	for _, l := range layers {
		registryPushBlob(t, craftedRepo, l.blob)
	}
	cd := registryPushBlob(t, craftedRepo, config)
	registryPushManifest(t, craftedRepo, tag, mtManifest, manifestFor(t, cd, len(config), layers...))
	return testRegistry + "/" + craftedRepo + ":" + tag
}

// craftingRegistry serves crafted manifests that a real registry refuses
// to store (bad digests in them) and passes everything else through to the
// test bed's registry, counting blob requests.
type craftingRegistry struct {
	addr string

	mu        sync.Mutex
	manifests map[string]servedBlob // "repo:ref" → manifest
	blobGets  map[string]int        // repo → blob GETs
}

type servedBlob struct {
	mediaType string
	body      []byte
}

func newCraftingRegistry(t *testing.T) *craftingRegistry {
	t.Helper()
	target, _ := url.Parse("http://" + testRegistry)
	c := &craftingRegistry{manifests: map[string]servedBlob{}, blobGets: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest := strings.TrimPrefix(r.URL.Path, "/v2/")
		if i := strings.LastIndex(rest, "/manifests/"); i > 0 {
			c.mu.Lock()
			m, ok := c.manifests[rest[:i]+":"+rest[i+len("/manifests/"):]]
			c.mu.Unlock()
			if ok {
				w.Header().Set("Content-Type", m.mediaType)
				w.Header().Set("Docker-Content-Digest", sha256Digest(m.body))
				w.Header().Set("Content-Length", fmt.Sprint(len(m.body)))
				if r.Method == http.MethodGet {
					_, _ = w.Write(m.body)
				}
				return
			}
		}
		if i := strings.LastIndex(rest, "/blobs/"); i > 0 && r.Method == http.MethodGet {
			c.mu.Lock()
			c.blobGets[rest[:i]]++
			c.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c.addr = strings.TrimPrefix(srv.URL, "http://")
	return c
}

// serve makes repo:tag answer with the manifest body and returns the
// reference to pull.
func (c *craftingRegistry) serve(repo, tag, mediaType string, body []byte) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.manifests[repo+":"+tag] = servedBlob{mediaType: mediaType, body: body}
	return c.addr + "/" + repo + ":" + tag
}

func (c *craftingRegistry) blobGetsOf(repo string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.blobGets[repo]
}

// treeState lists every path under dir with its type, size, mode, mtime
// and, for regular files, atime (so a read shows), skipping the named
// entries (those crid itself reads or writes).
func treeState(t *testing.T, dir string, skip ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if slices.Contains(skip, rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("mode=%o size=%d mtime=%d.%d ino=%d", st.Mode, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ino)
		if d.Type().IsRegular() {
			desc += fmt.Sprintf(" atime=%d.%d", st.Atim.Sec, st.Atim.Nsec)
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// watchTree reports every inotify event (an open or a read included) on
// the directories given, until stop is called.
func watchTree(t *testing.T, dirs ...string) (stop func() []string) {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	names := map[int32]string{}
	for _, d := range dirs {
		wd, err := unix.InotifyAddWatch(fd, d, unix.IN_ALL_EVENTS)
		if err != nil {
			unix.Close(fd)
			t.Fatal(err)
		}
		names[int32(wd)] = d
	}
	return func() []string {
		defer unix.Close(fd)
		var events []string
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(fd, buf)
			if n <= 0 || err != nil {
				return events
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := ""
				if ev.Len > 0 {
					name = strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
				}
				events = append(events, fmt.Sprintf("%s/%s mask=%#x", names[ev.Wd], name, ev.Mask))
				off += unix.SizeofInotifyEvent + int(ev.Len)
			}
		}
	}
}

// Crafted images (issue 12): diff IDs and digests that would name paths
// outside the store or inject overlay options, a diff ID count that does
// not match the manifest, a manifest list entry and a config digest that
// are paths, a manifest of 600 layers. Every pull fails with
// InvalidArgument naming the image and the field, the daemon stays up, the
// decoy layer the "../" diff IDs aim at is never opened, nothing appears
// outside crid's directories, and a container from a good image does not
// see the decoy.
func TestCraftedImagesAreRefused(t *testing.T) {
	crafter := newCraftingRegistry(t)
	dir := newDirs(t)
	n := &podNode{dir: dir}
	n.writeConfig(t)
	conf, err := os.ReadFile(filepath.Join(testbedDir, "registries.conf"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "registries.conf"), fmt.Sprintf("%s\n[[registry]]\nlocation = %q\ninsecure = true\n", conf, crafter.addr))

	// The decoy: <dir>/outside/decoy looks like an unpacked layer. From the
	// store's layer dir, <dir>/root/images/layers, three ".." reach <dir>.
	outside := filepath.Join(dir, "outside")
	decoy := filepath.Join(outside, "decoy")
	writeFile(t, filepath.Join(decoy, "diff", "pwned"), "a host file\n")
	const decoyID = "sha256:../../../outside/decoy"
	writeFile(t, filepath.Join(decoy, "layer.json"), `{"chain_id":"`+decoyID+`","diff_id":"`+decoyID+`"}`)
	// An old atime, so that a read would move it (relatime).
	old := time.Now().Add(-72 * time.Hour)
	for _, p := range []string{filepath.Join(decoy, "layer.json"), filepath.Join(decoy, "diff", "pwned")} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}

	n.daemon = startDaemonEnv(t, dir, nil, append(n.args(), "--registries-conf", filepath.Join(dir, "registries.conf"))...)
	ctx := context.Background()

	layer := makeLayer(t, map[string]string{"crafted": "crafted layer\n"})
	one := []e2eLayer{layer}
	hexd := strings.TrimPrefix(layer.diffID, "sha256:")
	type refusal struct {
		name, ref, field string
	}
	cases := []refusal{
		{"dotdot diff ID at the decoy", pushCrafted(t, "dotdot", one, decoyID), "config rootfs.diff_ids[0]"},
		{"diff ID without algorithm", pushCrafted(t, "noalg", one, hexd), "config rootfs.diff_ids[0]"},
		{"md5 diff ID", pushCrafted(t, "md5", one, "md5:0123456789abcdef0123456789abcdef"), "config rootfs.diff_ids[0]"},
		{"uppercase diff ID", pushCrafted(t, "upper", one, "sha256:"+strings.ToUpper(hexd)), "config rootfs.diff_ids[0]"},
		{"comma in diff ID", pushCrafted(t, "comma", one, "sha256:"+hexd[:40]+",upperdir=/tmp"), "config rootfs.diff_ids[0]"},
		{"colon in diff ID", pushCrafted(t, "colon", one, "sha256:"+hexd[:32]+":/"+hexd[:31]), "config rootfs.diff_ids[0]"},
		{"more diff IDs than layers", pushCrafted(t, "count", one, layer.diffID, layer.diffID), "config rootfs.diff_ids"},
	}
	// What the registry will not store: a config digest that is a path, a
	// manifest list entry that is one, 600 layers.
	config := imageConfig(t, "layers", layer.diffID)
	cases = append(cases, refusal{"config digest a path",
		crafter.serve("crid-e2e/crafted-config", "v1", mtManifest, manifestFor(t, decoyID, len(config), layer)), "manifest config.digest"})
	list, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mtList, "manifests": []map[string]any{{
		"mediaType": mtManifest, "size": 500, "digest": decoyID, "platform": map[string]string{"architecture": "amd64", "os": "linux"},
	}}})
	cases = append(cases, refusal{"manifest list entry a path", crafter.serve("crid-e2e/crafted-list", "v1", mtList, list), "manifest list entry digest"})
	tall := make([]e2eLayer, 600)
	for i := range tall {
		tall[i] = layer
	}
	cases = append(cases, refusal{"600 layers", crafter.serve("crid-e2e/crafted-tall", "v1", mtManifest, manifestFor(t, sha256Digest(config), len(config), tall...)), "600 layers, more than image.max_layers (500)"})

	crids := []string{"root", "run", "crid.sock", "crid.toml", "registries.conf"}
	before := treeState(t, dir, crids...)
	stopWatch := watchTree(t, outside, decoy, filepath.Join(decoy, "diff"))
	for _, tc := range cases {
		_, err := n.images().PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: tc.ref}})
		select {
		case <-n.exited:
			t.Fatalf("crid exited on %s: %v\n%s", tc.name, n.cmd.ProcessState, n.log)
		case <-time.After(100 * time.Millisecond):
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: pull %s: %v, want InvalidArgument", tc.name, tc.ref, err)
			continue
		}
		msg := status.Convert(err).Message()
		if !strings.Contains(msg, tc.ref) || !strings.Contains(msg, tc.field) {
			t.Errorf("%s: %q does not name the image %s and the field %q", tc.name, msg, tc.ref, tc.field)
		}
		t.Logf("%s: %s", tc.name, msg)
	}
	if got := crafter.blobGetsOf("crid-e2e/crafted-tall"); got != 0 {
		t.Errorf("%d blobs fetched for the 600-layer manifest", got)
	}
	if events := stopWatch(); len(events) != 0 {
		t.Errorf("the decoy was touched: %v", events)
	}
	if after := treeState(t, dir, crids...); !maps.Equal(before, after) {
		t.Errorf("files outside crid's dirs changed:\nbefore %v\nafter  %v", before, after)
	}
	if l, err := n.images().ListImages(ctx, &runtime.ListImagesRequest{}); err != nil || len(l.Images) != 0 {
		t.Fatalf("images after refused pulls: %v, %v", l, err)
	}
	for _, sub := range []string{"layers", "tmp"} {
		if entries, _ := os.ReadDir(filepath.Join(dir, "root", "images", sub)); len(entries) != 0 {
			t.Errorf("refused pulls left %d entries in the store's %s", len(entries), sub)
		}
	}

	// The daemon serves on: a good image pulls and runs, without the decoy.
	pod := n.logPod("after-crafted")
	podID := n.run(t, pod)
	id := n.startContainer(t, podID, pod, "probe", "sleep", "3600")
	if out := n.exec(t, id, "sh", "-c", "ls /; test ! -e /pwned && echo clean"); !strings.HasSuffix(out, "clean") {
		t.Fatalf("the container sees the decoy:\n%s", out)
	}
	n.removePod(t, podID)
}

// A panic in a pull's layer fetch (fault point pull.layer armed to panic in
// the daemon) fails that pull with Internal; the daemon stays up and serves
// other calls, and a second pull fails the same way rather than crashing.
func TestPullPanicFailsOnlyThePull(t *testing.T) {
	dir := newDirs(t)
	d := startDaemonEnv(t, dir, []string{"CRID_FAILPOINTS=pull.layer=panic"}, "--registries-conf", filepath.Join(testbedDir, "registries.conf"))
	ctx := context.Background()
	for i := range 2 {
		_, err := d.images().PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}})
		if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "panic") {
			t.Fatalf("pull %d: %v, want Internal naming the panic\n%s", i, err, d.log)
		}
		select {
		case <-d.exited:
			t.Fatalf("crid exited: %v\n%s", d.cmd.ProcessState, d.log)
		default:
		}
		if _, err := d.runtime().Version(ctx, &runtime.VersionRequest{}); err != nil {
			t.Fatalf("Version after the panic: %v", err)
		}
		if l, err := d.images().ListImages(ctx, &runtime.ListImagesRequest{}); err != nil || len(l.Images) != 0 {
			t.Fatalf("ListImages after the panic: %v, %v", l, err)
		}
	}
	if err := unix.Kill(d.cmd.Process.Pid, 0); err != nil {
		t.Fatalf("crid's process is gone: %v", err)
	}
	mustContain(t, "crid's log", d.log.String(), "Recovered from a panic", "pull.layer")
	if entries, _ := os.ReadDir(filepath.Join(dir, "root", "images", "tmp")); len(entries) != 0 {
		t.Fatalf("the failed pulls left %v", entries)
	}
}

// The pull limits of crid.toml's [image] table apply: a layer with more
// files than max_layer_files fails with ResourceExhausted, a manifest with
// more layers than max_layers with InvalidArgument, and neither leaves a
// layer behind.
func TestPullLimitsFromConfig(t *testing.T) {
	dir := newDirs(t)
	writeFile(t, filepath.Join(dir, "crid.toml"), "[image]\nmax_layer_files = 3\n")
	d := startDaemon(t, dir, "--registries-conf", filepath.Join(testbedDir, "registries.conf"))
	ctx := context.Background()
	_, err := d.images().PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "max_layer_files") {
		t.Fatalf("pull with max_layer_files = 3: %v, want ResourceExhausted naming the key", err)
	}
	for _, sub := range []string{"layers", "tmp"} {
		if entries, _ := os.ReadDir(filepath.Join(dir, "root", "images", sub)); len(entries) != 0 {
			t.Errorf("the refused pull left %d entries in the store's %s", len(entries), sub)
		}
	}
	d.stop(unix.SIGTERM, 5*time.Second)

	// Two good layers, one over max_layers = 1: refused before any fetch.
	a, b := makeLayer(t, map[string]string{"a": "a"}), makeLayer(t, map[string]string{"b": "b"})
	ref := pushCrafted(t, "two-layers", []e2eLayer{a, b}, a.diffID, b.diffID)
	writeFile(t, filepath.Join(dir, "crid.toml"), "[image]\nmax_layers = 1\n")
	d = startDaemon(t, dir, "--registries-conf", filepath.Join(testbedDir, "registries.conf"))
	_, err = d.images().PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "max_layers (1)") {
		t.Fatalf("pull of 2 layers with max_layers = 1: %v, want InvalidArgument naming the key", err)
	}
	// The one-layer busybox is within both limits' defaults and this one.
	if _, err := d.images().PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}}); err != nil {
		t.Fatalf("busybox with max_layers = 1: %v", err)
	}
	// An invalid limit stops crid at start, naming the key.
	writeFile(t, filepath.Join(dir, "crid.toml"), "[image]\nmax_layers = 0\n")
	code, out := runCrid(t, append(baseArgs(dir), "--registries-conf", filepath.Join(testbedDir, "registries.conf"))...)
	if code == 0 || !strings.Contains(out, "image.max_layers") {
		t.Fatalf("crid with max_layers = 0: exit %d\n%s", code, out)
	}
}
