package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Air-gapped image import and export (issue 14 item 3): archives are built
// from the test bed's busybox (the blobs its registry serves), imported
// into a crid that can reach no registry for their names, run, exported
// and imported again into a fresh crid.

// airgapRepo's registry does not exist (.invalid never resolves): a pull
// of it fails, so what runs from it came from an archive.
const airgapRepo = "airgap.invalid/e2e/busybox"

// registryImage is an image as the test bed's registry serves it.
type registryImage struct {
	config []byte
	layers [][]byte // compressed blobs, bottom first
}

func fetchRegistryImage(t *testing.T, repo, tag string) registryImage {
	t.Helper()
	get := func(path, accept string) []byte {
		req, err := http.NewRequest(http.MethodGet, "http://"+testRegistry+"/v2/"+repo+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		return b
	}
	var m struct {
		Config descriptor   `json:"config"`
		Layers []descriptor `json:"layers"`
	}
	if err := json.Unmarshal(get("/manifests/"+tag, mtManifest), &m); err != nil {
		t.Fatal(err)
	}
	img := registryImage{config: get("/blobs/"+m.Config.Digest, "*/*")}
	for _, l := range m.Layers {
		img.layers = append(img.layers, get("/blobs/"+l.Digest, "*/*"))
	}
	return img
}

type tarFile struct {
	name string
	body []byte
	typ  byte
	link string
}

func tarOf(t *testing.T, files ...tarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Typeflag: f.typ, Linkname: f.link, Mode: 0o644, ModTime: time.Unix(1700000000, 0)}
		if h.Typeflag == 0 {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dockerArchive lays img out as `docker save` (before Docker 25) does:
// uncompressed layer tars named by diff ID.
func dockerArchive(t *testing.T, img registryImage, tags ...string) []tarFile {
	t.Helper()
	cfgName := strings.TrimPrefix(sha256Digest(img.config), "sha256:") + ".json"
	files := []tarFile{{name: cfgName, body: img.config}}
	var layers []string
	for _, l := range img.layers {
		raw := gunzip(t, l)
		p := strings.TrimPrefix(sha256Digest(raw), "sha256:") + "/layer.tar"
		layers = append(layers, p)
		files = append(files, tarFile{name: p, body: raw})
	}
	manifest, _ := json.Marshal([]map[string]any{{"Config": cfgName, "RepoTags": tags, "Layers": layers}})
	return append([]tarFile{{name: "manifest.json", body: manifest}}, files...)
}

// ociArchive lays img out as an OCI image layout with OCI media types
// (same blobs, so the same image ID) and the name in ref.name.
func ociArchive(t *testing.T, img registryImage, name string) []tarFile {
	t.Helper()
	blob := func(b []byte) tarFile {
		return tarFile{name: "blobs/sha256/" + strings.TrimPrefix(sha256Digest(b), "sha256:"), body: b}
	}
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Size: len(img.config), Digest: sha256Digest(img.config)},
	}
	files := []tarFile{{name: "oci-layout", body: []byte(`{"imageLayoutVersion":"1.0.0"}`)}, blob(img.config)}
	var layers []descriptor
	for _, l := range img.layers {
		layers = append(layers, descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Size: len(l), Digest: sha256Digest(l)})
		files = append(files, blob(l))
	}
	m["layers"] = layers
	manifest, _ := json.Marshal(m)
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"manifests": []map[string]any{{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": len(manifest), "digest": sha256Digest(manifest),
			"annotations": map[string]string{"org.opencontainers.image.ref.name": name},
		}},
	})
	return append(files, blob(manifest), tarFile{name: "index.json", body: index})
}

func writeBytes(t *testing.T, path string, b []byte) string {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// airgapNode is a pod node that can reach no registry: airgap.invalid
// never resolves, and its registries.conf blocks the test bed's registry
// (the only one this machine has), so the node is as air-gapped as one
// whose registry is stopped.
func airgapNode(t *testing.T) *podNode {
	t.Helper()
	n := &podNode{dir: newDirs(t)}
	n.writeConfig(t)
	var blocks strings.Builder
	for _, r := range []string{testRegistry, "localhost:5000", "registry.k8s.io", "docker.io"} {
		fmt.Fprintf(&blocks, "[[registry]]\nprefix = %q\nlocation = %q\nblocked = true\n\n", r, r)
	}
	writeFile(t, filepath.Join(n.dir, "registries.conf"), blocks.String())
	n.daemon = startDaemon(t, n.dir, "--cni-bin-dirs", "/opt/cni/bin")
	return n
}

// cridImages runs `crid images ...` against the node's socket.
func (n *podNode) cridImages(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := append([]string{"images", args[0], "--socket", n.socket}, args[1:]...)
	return runCridCtx(ctx, t, full...)
}

// storeState lists every file of the image store and the image records
// (type, mode, size, inode: not times, which reads and the store's own
// temporary directories change), and fails if the store's tmp holds
// anything.
func (n *podNode) storeState(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, dir := range []string{filepath.Join(n.dir, "root", "images"), filepath.Join(n.dir, "root", "records", "images")} {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return err
			}
			if d.IsDir() {
				st.Size = 0 // a directory's size follows its entries' history
			}
			out[p] = fmt.Sprintf("mode=%o size=%d ino=%d", st.Mode, st.Size, st.Ino)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if tmp, _ := os.ReadDir(filepath.Join(n.dir, "root", "images", "tmp")); len(tmp) != 0 {
		t.Fatalf("the image store's tmp holds %d entries", len(tmp))
	}
	return out
}

// mapDiff describes how two maps differ, for a failure message.
func mapDiff(a, b map[string]string) string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			out = append(out, "gone: "+k)
		} else if v != w {
			out = append(out, fmt.Sprintf("changed: %s: %s -> %s", k, v, w))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, "new: "+k)
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

func runContainerFrom(t *testing.T, n *podNode, name, image string) string {
	t.Helper()
	pod := n.logPod(name)
	podID := n.run(t, pod)
	cfg := ctrConfig(name, "sh", "-c", "echo hello from $(cat /etc/hostname) && ls /bin/busybox")
	cfg.Image.Image = image
	id := n.create(t, podID, pod, cfg, true)
	st := n.waitExited(t, id, 30*time.Second)
	if st.ExitCode != 0 {
		t.Fatalf("container from %s exited %d: %s\n%s", image, st.ExitCode, st.Message, n.log)
	}
	waitLog(t, filepath.Join(pod.LogDirectory, name+".log"), "hello from "+name, 10*time.Second)
	n.removePod(t, podID)
	return id
}

func TestImportExportAirGapped(t *testing.T) {
	src := fetchRegistryImage(t, "e2e-test-images/busybox", "1.29-2")
	imageID := sha256Digest(src.config)
	work := t.TempDir()
	// A docker-archive, gzip'd as `docker save | gzip` writes it, and an
	// oci-archive, zstd-compressed: the same image under two tags.
	dockerTar := writeBytes(t, filepath.Join(work, "busybox-docker.tar.gz"), gzipBytes(t, tarOf(t, dockerArchive(t, src, airgapRepo+":docker")...)))
	var zbuf bytes.Buffer
	zw, _ := zstd.NewWriter(&zbuf)
	zw.Write(tarOf(t, ociArchive(t, src, airgapRepo+":oci")...))
	zw.Close()
	ociTar := writeBytes(t, filepath.Join(work, "busybox-oci.tar.zst"), zbuf.Bytes())

	n := airgapNode(t)
	ctx := context.Background()
	// No registry: a pull of the name fails.
	pullCtx, cancel := context.WithTimeout(ctx, time.Minute)
	_, err := n.images().PullImage(pullCtx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: airgapRepo + ":docker"}})
	cancel()
	if err == nil {
		t.Fatal("pull from a registry that does not exist succeeded")
	}
	// Nor the test bed's registry, which holds the very image.
	_, err = n.images().PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: localBusybox}})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("pull of %s on the air-gapped node: %v, want PermissionDenied (blocked)", localBusybox, err)
	}

	start := time.Now()
	code, out := n.cridImages(t, "import", dockerTar, ociTar)
	t.Logf("crid images import (%s):\n%s", time.Since(start), out)
	if code != 0 {
		t.Fatalf("import exited %d:\n%s\n%s", code, out, n.log)
	}
	mustContain(t, "import output", out, "imported "+airgapRepo+":docker "+imageID, "imported "+airgapRepo+":oci "+imageID)
	// An OCI layout directory: the CLI tars it into the stream.
	layoutDir := filepath.Join(work, "layout")
	for _, f := range ociArchive(t, src, airgapRepo+":layout") {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(layoutDir, f.name)), 0o755); err != nil {
			t.Fatal(err)
		}
		writeBytes(t, filepath.Join(layoutDir, f.name), f.body)
	}
	code, out = n.cridImages(t, "import", layoutDir)
	if code != 0 {
		t.Fatalf("import of an OCI layout directory exited %d:\n%s", code, out)
	}
	mustContain(t, "layout import output", out, "imported "+airgapRepo+":layout "+imageID)
	st, err := n.images().ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: airgapRepo + ":oci"}})
	if err != nil || st.Image == nil {
		t.Fatalf("ImageStatus: %v %v", st, err)
	}
	if st.Image.Id != imageID || !slices.Contains(st.Image.RepoTags, airgapRepo+":docker") || !slices.Contains(st.Image.RepoTags, airgapRepo+":oci") {
		t.Fatalf("imported image: %v", st.Image)
	}
	if len(st.Image.RepoDigests) == 0 || !strings.HasPrefix(st.Image.RepoDigests[0], airgapRepo+"@sha256:") {
		t.Fatalf("imported image has no repo digest: %v", st.Image.RepoDigests)
	}
	layers, _ := os.ReadDir(filepath.Join(n.dir, "root", "images", "layers"))
	if len(layers) != len(src.layers) {
		t.Fatalf("%d layer dirs for an image of %d layers imported twice: not deduplicated", len(layers), len(src.layers))
	}
	out = crictl(t, n.daemon, "images", "--digests")
	mustContain(t, "crictl images", out, airgapRepo, "docker", "oci", strings.TrimPrefix(st.Image.RepoDigests[0], airgapRepo+"@sha256:")[:13])

	// Malicious archives: refused, the store exactly as it was.
	good := dockerArchive(t, src, airgapRepo+":evil")
	evilLayer := tarOf(t, tarFile{name: "ok", body: []byte("ok")}, tarFile{name: "../../../../../../tmp/crid-e2e-pwned", body: []byte("pwned")})
	evilCfg := imageConfig(t, "layers", sha256Digest(evilLayer))
	evilManifest, _ := json.Marshal([]map[string]any{{"Config": "c.json", "RepoTags": []string{airgapRepo + ":evil"}, "Layers": []string{"l/layer.tar"}}})
	// A layer whose content is not what the config's diff ID says (a layer
	// not in the store: a stored one is reused by its chain ID unread).
	badLayer := tarOf(t, tarFile{name: "x", body: []byte("not what the config says")})
	badCfg := imageConfig(t, "layers", sha256Digest(tarOf(t, tarFile{name: "x", body: []byte("what the config says")})))
	symlinked := append([]tarFile{{name: "real.json", body: good[0].body}, {name: "manifest.json", typ: tar.TypeSymlink, link: "real.json"}}, good[1:]...)
	escaping := append(slices.Clone(good), tarFile{name: "../../outside", body: []byte("pwned")})
	before := n.storeState(t)
	for name, archive := range map[string][]byte{
		"path-traversal-layer":    tarOf(t, tarFile{name: "manifest.json", body: evilManifest}, tarFile{name: "c.json", body: evilCfg}, tarFile{name: "l/layer.tar", body: evilLayer}),
		"bad-layer-digest":        tarOf(t, tarFile{name: "manifest.json", body: evilManifest}, tarFile{name: "c.json", body: badCfg}, tarFile{name: "l/layer.tar", body: badLayer}),
		"symlinked-manifest-json": tarOf(t, symlinked...),
		"escaping-entry":          gzipBytes(t, tarOf(t, escaping...)),
	} {
		path := writeBytes(t, filepath.Join(work, name+".tar"), archive)
		code, out := n.cridImages(t, "import", path)
		t.Logf("%s: exit %d: %s", name, code, strings.TrimSpace(out))
		if code == 0 {
			t.Fatalf("malicious archive %s imported:\n%s", name, out)
		}
		mustContain(t, name+" refusal", out, "InvalidArgument")
		if after := n.storeState(t); !maps.Equal(before, after) {
			t.Fatalf("%s changed the store:\n%s", name, mapDiff(before, after))
		}
		if _, err := os.Stat("/tmp/crid-e2e-pwned"); err == nil {
			t.Fatalf("%s wrote outside the layer", name)
		}
	}

	// A pod runs from the imported image with no registry at all.
	runContainerFrom(t, n, "imported", airgapRepo+":docker")

	// Export, and import the export into a fresh crid.
	exported := filepath.Join(work, "exported.tar")
	start = time.Now()
	code, out = n.cridImages(t, "export", airgapRepo+":oci", exported)
	if code != 0 {
		t.Fatalf("export exited %d:\n%s", code, out)
	}
	fi, err := os.Stat(exported)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("crid images export: %d bytes in %s", fi.Size(), time.Since(start))
	names := tarNames(t, exported)
	for _, want := range []string{"manifest.json", "repositories"} {
		if !slices.Contains(names, want) {
			t.Fatalf("export lacks %s: %v", want, names)
		}
	}
	if code, out := n.cridImages(t, "export", "nosuch/image:1", filepath.Join(work, "none.tar")); code == 0 || !strings.Contains(out, "NotFound") {
		t.Fatalf("export of an unknown image: exit %d: %s", code, out)
	}
	if _, err := os.Stat(filepath.Join(work, "none.tar")); err == nil {
		t.Fatal("a failed export left its file")
	}

	fresh := airgapNode(t)
	code, out = fresh.cridImages(t, "import", exported)
	t.Logf("re-import of the export:\n%s", out)
	if code != 0 {
		t.Fatalf("re-import exited %d:\n%s\n%s", code, out, fresh.log)
	}
	mustContain(t, "re-import output", out, "imported "+airgapRepo+":docker ", "imported "+airgapRepo+":oci ")
	runContainerFrom(t, fresh, "reimported", airgapRepo+":oci")
}

func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tarNames(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

// runCridCtx runs crid to completion within ctx and returns its exit code
// and output.
func runCridCtx(ctx context.Context, t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := exec.CommandContext(ctx, cridBin, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("run crid %v: %v", args, err)
	}
	return 0, string(out)
}

// recordFiles reads the import dir's records: file name → content.
func recordFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, _ := os.ReadDir(filepath.Join(dir, "root", "records", "import-dir"))
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, "root", "records", "import-dir", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

func waitImage(t *testing.T, d *daemon, name string) *runtime.Image {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := d.images().ImageStatus(context.Background(), &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: name}})
		if err != nil {
			t.Fatal(err)
		}
		if st.Image != nil {
			return st.Image
		}
		if time.Now().After(deadline) {
			t.Fatalf("image %s not imported from the import dir within 60 s\n%s", name, d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The import dir (image.import_dir, default <root_dir>/import): archives
// there at start and added later are imported, each file once; a bad one
// is recorded and not retried, across a restart too.
func TestImportDir(t *testing.T) {
	src := fetchRegistryImage(t, "e2e-test-images/busybox", "1.29-2")
	dir := newDirs(t)
	importDir := filepath.Join(dir, "root", "import")
	if err := os.MkdirAll(importDir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeBytes(t, filepath.Join(importDir, "at-start.tar"), tarOf(t, dockerArchive(t, src, airgapRepo+":at-start")...))
	d := startDaemon(t, dir)
	waitImage(t, d, airgapRepo+":at-start")

	writeBytes(t, filepath.Join(importDir, "bad.tar"), []byte("not an archive"))
	// Written elsewhere, renamed into place: never seen half written.
	writeBytes(t, filepath.Join(importDir, ".added.tmp"), gzipBytes(t, tarOf(t, ociArchive(t, src, airgapRepo+":added")...)))
	if err := os.Rename(filepath.Join(importDir, ".added.tmp"), filepath.Join(importDir, "added.tar.gz")); err != nil {
		t.Fatal(err)
	}
	img := waitImage(t, d, airgapRepo+":added")
	if img.Id != sha256Digest(src.config) {
		t.Fatalf("imported %s, want %s", img.Id, sha256Digest(src.config))
	}
	recs := recordFiles(t, dir)
	if len(recs) != 3 {
		t.Fatalf("%d import dir records, want 3 (at-start, bad, added): %v", len(recs), recs)
	}
	refused := 0
	for _, r := range recs {
		if strings.Contains(r, `"name":"bad.tar"`) && strings.Contains(r, `"error":`) {
			refused++
		}
	}
	if refused != 1 {
		t.Fatalf("bad.tar not recorded as refused: %v", recs)
	}

	// After a restart nothing is imported again (the records are not
	// rewritten); a file added then is.
	d.stop(syscall.SIGTERM, 10*time.Second)
	d = startDaemon(t, dir)
	writeBytes(t, filepath.Join(importDir, "later.tar"), tarOf(t, dockerArchive(t, src, airgapRepo+":later")...))
	waitImage(t, d, airgapRepo+":later")
	// The file's record is written once its image is stored: wait for it.
	after := recordFiles(t, dir)
	for deadline := time.Now().Add(10 * time.Second); len(after) < 4 && time.Now().Before(deadline); after = recordFiles(t, dir) {
		time.Sleep(20 * time.Millisecond)
	}
	for k, v := range recs {
		if after[k] != v {
			t.Fatalf("record %s rewritten after the restart: the file was handled again:\n%s\n%s", k, v, after[k])
		}
	}
	if len(after) != 4 {
		t.Fatalf("%d records after later.tar, want 4", len(after))
	}
}
