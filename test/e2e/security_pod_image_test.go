package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Crafted images for the pod-security tests: busybox with one more layer
// holding hostile files, pushed to the test registry under
// crid-e2e/secpod-userfiles:<tag>. The layers are deterministic, so a
// second run pushes nothing new.

// secpodFile is one entry of a crafted layer.
type secpodFile struct {
	name     string
	typ      byte // tar.TypeReg, TypeSymlink, TypeFifo, TypeChar
	body     []byte
	size     int64 // TypeReg: when set, the body is repeated up to size bytes
	linkname string
	major    int64
	minor    int64
}

const secpodRepo = "crid-e2e/secpod-userfiles"

// secpodBase is the busybox image the crafted ones are built on.
const secpodBase = "e2e-test-images/busybox"

// secpodPushImage pushes busybox plus a layer of files as tag and returns
// its reference on the test registry.
func secpodPushImage(t *testing.T, tag string, files []secpodFile) string {
	t.Helper()
	r := &secpodRegistry{t: t, base: "http://" + testRegistry}
	// The base: its amd64 manifest and config.
	var list struct {
		Manifests []struct {
			Digest   string `json:"digest"`
			Platform struct {
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	baseManifest := r.get("/v2/"+secpodBase+"/manifests/1.29-2", "application/vnd.docker.distribution.manifest.list.v2+json")
	secpodMust(t, json.Unmarshal(baseManifest, &list))
	digest := ""
	for _, m := range list.Manifests {
		if m.Platform.Architecture == "amd64" {
			digest = m.Digest
		}
	}
	if digest == "" {
		t.Fatalf("no amd64 busybox in %s", baseManifest)
	}
	var manifest struct {
		SchemaVersion int                `json:"schemaVersion"`
		MediaType     string             `json:"mediaType"`
		Config        secpodDescriptor   `json:"config"`
		Layers        []secpodDescriptor `json:"layers"`
	}
	secpodMust(t, json.Unmarshal(r.get("/v2/"+secpodBase+"/manifests/"+digest, "application/vnd.docker.distribution.manifest.v2+json"), &manifest))
	var config map[string]any
	secpodMust(t, json.Unmarshal(r.get("/v2/"+secpodBase+"/blobs/"+manifest.Config.Digest, ""), &config))

	layer, diffID := secpodLayer(t, files)
	for _, l := range manifest.Layers {
		r.mount(secpodRepo, l.Digest, secpodBase)
	}
	ld := r.upload(secpodRepo, layer)
	manifest.Layers = append(manifest.Layers, secpodDescriptor{MediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", Size: int64(len(layer)), Digest: ld})
	rootfs := config["rootfs"].(map[string]any)
	rootfs["diff_ids"] = append(rootfs["diff_ids"].([]any), diffID)
	delete(config, "history") // one entry per layer when present; not needed
	cfg, err := json.Marshal(config)
	secpodMust(t, err)
	manifest.Config.Digest = r.upload(secpodRepo, cfg)
	manifest.Config.Size = int64(len(cfg))
	m, err := json.Marshal(manifest)
	secpodMust(t, err)
	r.put("/v2/"+secpodRepo+"/manifests/"+tag, manifest.MediaType, m)
	return testRegistry + "/" + secpodRepo + ":" + tag
}

type secpodDescriptor struct {
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
	Digest    string `json:"digest"`
}

// secpodLayer builds a gzip layer of files (under etc/, created first) and
// returns it with its diff ID.
func secpodLayer(t *testing.T, files []secpodFile) ([]byte, string) {
	t.Helper()
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	secpodMust(t, err)
	h := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(zw, h))
	mtime := time.Unix(1700000000, 0)
	secpodMust(t, tw.WriteHeader(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}))
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Typeflag: f.typ, Mode: 0o644, ModTime: mtime, Linkname: f.linkname, Devmajor: f.major, Devminor: f.minor}
		if f.typ == tar.TypeSymlink {
			hdr.Mode = 0o777
		}
		var body io.Reader
		if f.typ == tar.TypeReg {
			hdr.Size = int64(len(f.body))
			body = bytes.NewReader(f.body)
			if f.size > 0 {
				hdr.Size = f.size
				body = io.LimitReader(&secpodRepeat{b: f.body}, f.size)
			}
		}
		secpodMust(t, tw.WriteHeader(hdr))
		if body != nil {
			if _, err := io.Copy(tw, body); err != nil {
				t.Fatal(err)
			}
		}
	}
	secpodMust(t, tw.Close())
	secpodMust(t, zw.Close())
	return gz.Bytes(), "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// secpodRepeat repeats b for ever.
type secpodRepeat struct {
	b   []byte
	off int
}

func (r *secpodRepeat) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.b[r.off:])
		n += c
		r.off = (r.off + c) % len(r.b)
	}
	return n, nil
}

// secpodRegistry is the little of the registry API v2 the crafted images
// need; every failure fails the test.
type secpodRegistry struct {
	t    *testing.T
	base string
}

func (r *secpodRegistry) do(method, path, contentType, accept string, body []byte) *http.Response {
	r.t.Helper()
	u := path
	if !strings.HasPrefix(path, "http") {
		u = r.base + path
	}
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	secpodMust(r.t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, u, err)
	}
	return resp
}

func (r *secpodRegistry) get(path, accept string) []byte {
	r.t.Helper()
	resp := r.do(http.MethodGet, path, "", accept, nil)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		r.t.Fatalf("GET %s: %s %v", path, resp.Status, err)
	}
	return b
}

func (r *secpodRegistry) put(path, contentType string, body []byte) {
	r.t.Helper()
	resp := r.do(http.MethodPut, path, contentType, "", body)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		r.t.Fatalf("PUT %s: %s %s", path, resp.Status, b)
	}
}

// mount links a blob of repository from into repo.
func (r *secpodRegistry) mount(repo, digest, from string) {
	r.t.Helper()
	resp := r.do(http.MethodPost, "/v2/"+repo+"/blobs/uploads/?"+url.Values{"mount": {digest}, "from": {from}}.Encode(), "", "", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		r.t.Fatalf("mount %s from %s into %s: %s", digest, from, repo, resp.Status)
	}
}

// upload puts a blob into repo unless it is there, and returns its digest.
func (r *secpodRegistry) upload(repo string, blob []byte) string {
	r.t.Helper()
	sum := sha256.Sum256(blob)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	head := r.do(http.MethodHead, "/v2/"+repo+"/blobs/"+digest, "", "", nil)
	head.Body.Close()
	if head.StatusCode == http.StatusOK {
		return digest
	}
	resp := r.do(http.MethodPost, "/v2/"+repo+"/blobs/uploads/", "", "", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		r.t.Fatalf("start upload to %s: %s", repo, resp.Status)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	secpodMust(r.t, err)
	if !loc.IsAbs() {
		base, _ := url.Parse(r.base)
		loc = base.ResolveReference(loc)
	}
	q := loc.Query()
	q.Set("digest", digest)
	loc.RawQuery = q.Encode()
	r.put(loc.String(), "application/octet-stream", blob)
	return digest
}

func secpodMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
