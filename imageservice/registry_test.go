package imageservice

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// This file holds the test doubles of the pull tests: a fake registry
// serving the read side of the Registry HTTP API v2 on 127.0.0.1, and
// builders of images (layers, configs, manifests, lists) in memory.

const (
	mtDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mtDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mtDockerConfig   = "application/vnd.docker.container.image.v1+json"
	mtDockerLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// fakeRegistry is an httptest server speaking enough of the Registry HTTP
// API v2 for containers/image to pull from it. It counts what it serves.
type fakeRegistry struct {
	t    *testing.T
	srv  *httptest.Server
	host string // 127.0.0.1:port

	shutdown chan struct{} // closed at cleanup: stalled handlers return

	mu        sync.Mutex
	manifests map[string]map[string]servedManifest // repo → tag or digest → manifest
	blobs     map[digest.Digest][]byte
	wrong     map[digest.Digest][]byte // bytes served instead of the blob's own
	stalls    map[digest.Digest]*stall
	user      string // basic auth required when set
	password  string

	blobGets     map[digest.Digest]int
	blobBytes    map[digest.Digest]int64
	manifestGets map[string]int // "repo:ref" → GETs
	unauthorized int            // requests refused with 401
}

type servedManifest struct {
	mediaType string
	body      []byte
}

// stall makes a blob's response stop after some bytes: the handler waits
// until the test releases it (then sends the rest in chunks), the client
// goes away, or the registry shuts down.
type stall struct {
	after int           // bytes sent before stalling
	chunk int           // after release, the rest goes in chunks of this size…
	pause time.Duration // …with this pause between them

	release chan struct{} // closed by the test
	stalled chan struct{} // closed when a handler reaches the stall
	gone    chan struct{} // closed when a handler sees the client go away
	done    chan struct{} // closed when a handler sent the whole blob

	stalledOnce, goneOnce, doneOnce sync.Once
}

func newFakeRegistry(t *testing.T) *fakeRegistry {
	t.Helper()
	r := &fakeRegistry{
		t:            t,
		shutdown:     make(chan struct{}),
		manifests:    map[string]map[string]servedManifest{},
		blobs:        map[digest.Digest][]byte{},
		wrong:        map[digest.Digest][]byte{},
		stalls:       map[digest.Digest]*stall{},
		blobGets:     map[digest.Digest]int{},
		blobBytes:    map[digest.Digest]int64{},
		manifestGets: map[string]int{},
	}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(r.serveHTTP))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.srv.Listener = l
	r.srv.Start()
	r.host = l.Addr().String()
	t.Cleanup(func() {
		close(r.shutdown)
		r.srv.CloseClientConnections()
		r.srv.Close()
	})
	return r
}

// registriesConf writes a registries.conf marking the fake registry as a
// plain-HTTP one and returns its path.
func (r *fakeRegistry) registriesConf(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "registries.conf")
	conf := fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", r.host)
	if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ref returns the full reference of repo:tag (or repo@digest) at the registry.
func (r *fakeRegistry) ref(repoAndTag string) string { return r.host + "/" + repoAndTag }

func (r *fakeRegistry) requireAuth(user, password string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.user, r.password = user, password
}

func (r *fakeRegistry) addBlob(b []byte) digest.Digest {
	d := digest.FromBytes(b)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.blobs[d] = b
	return d
}

// serveWrong makes the registry send b when asked for blob d.
func (r *fakeRegistry) serveWrong(d digest.Digest, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.wrong[d] = b
}

// stallBlob makes every GET of d stall after `after` bytes.
func (r *fakeRegistry) stallBlob(d digest.Digest, after int) *stall {
	st := &stall{
		after:   after,
		chunk:   16 << 10,
		pause:   20 * time.Millisecond,
		release: make(chan struct{}),
		stalled: make(chan struct{}),
		gone:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stalls[d] = st
	return st
}

func (r *fakeRegistry) unstall(d digest.Digest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.stalls, d)
}

func (r *fakeRegistry) putManifest(repo, ref, mediaType string, body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.manifests[repo] == nil {
		r.manifests[repo] = map[string]servedManifest{}
	}
	r.manifests[repo][ref] = servedManifest{mediaType: mediaType, body: body}
}

// push serves img as repo:tag (and as repo@<manifest digest>).
func (r *fakeRegistry) push(repo, tag string, img *testImage) {
	r.addBlob(img.config)
	for _, l := range img.layers {
		r.addBlob(l.blob)
	}
	r.putManifest(repo, img.manifestDigest.String(), img.mediaType, img.manifest)
	if tag != "" {
		r.putManifest(repo, tag, img.mediaType, img.manifest)
	}
}

// pushList serves a manifest list (or OCI index) of imgs as repo:tag and
// returns its digest.
func (r *fakeRegistry) pushList(repo, tag string, oci bool, imgs ...*testImage) digest.Digest {
	r.t.Helper()
	type platform struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		Variant      string `json:"variant,omitempty"`
	}
	type entry struct {
		MediaType string        `json:"mediaType"`
		Size      int           `json:"size"`
		Digest    digest.Digest `json:"digest"`
		Platform  platform      `json:"platform"`
	}
	mt := mtDockerList
	if oci {
		mt = ocispec.MediaTypeImageIndex
	}
	list := struct {
		SchemaVersion int     `json:"schemaVersion"`
		MediaType     string  `json:"mediaType"`
		Manifests     []entry `json:"manifests"`
	}{SchemaVersion: 2, MediaType: mt}
	for _, img := range imgs {
		r.push(repo, "", img)
		list.Manifests = append(list.Manifests, entry{
			MediaType: img.mediaType,
			Size:      len(img.manifest),
			Digest:    img.manifestDigest,
			Platform:  platform{Architecture: img.arch, OS: img.os, Variant: img.variant},
		})
	}
	b := mustJSON(r.t, list)
	d := digest.FromBytes(b)
	r.putManifest(repo, d.String(), mt, b)
	r.putManifest(repo, tag, mt, b)
	return d
}

func (r *fakeRegistry) blobGetCount(d digest.Digest) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobGets[d]
}

// totalBlobGets counts every blob GET, of any digest.
func (r *fakeRegistry) totalBlobGets() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.blobGets {
		n += c
	}
	return n
}

func (r *fakeRegistry) bytesServed(d digest.Digest) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobBytes[d]
}

func (r *fakeRegistry) manifestGetCount(repo, ref string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.manifestGets[repo+":"+ref]
}

func (r *fakeRegistry) unauthorizedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unauthorized
}

func writeRegistryError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q,"detail":null}]}`, code, msg)
}

func (r *fakeRegistry) serveHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	r.mu.Lock()
	user, password := r.user, r.password
	r.mu.Unlock()
	if user != "" {
		u, p, ok := req.BasicAuth()
		if !ok || u != user || p != password {
			r.mu.Lock()
			r.unauthorized++
			r.mu.Unlock()
			w.Header().Set("WWW-Authenticate", `Basic realm="fake-registry"`)
			writeRegistryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "fake registry: authentication required")
			return
		}
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		writeRegistryError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "read-only fake registry")
		return
	}
	p := req.URL.Path
	if p == "/v2/" || p == "/v2" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
		return
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		http.NotFound(w, req)
		return
	}
	if i := strings.LastIndex(rest, "/manifests/"); i > 0 {
		r.serveManifest(w, req, rest[:i], rest[i+len("/manifests/"):])
		return
	}
	if i := strings.LastIndex(rest, "/blobs/"); i > 0 {
		d, err := digest.Parse(rest[i+len("/blobs/"):])
		if err != nil {
			writeRegistryError(w, http.StatusBadRequest, "DIGEST_INVALID", err.Error())
			return
		}
		r.serveBlob(w, req, d)
		return
	}
	http.NotFound(w, req)
}

func (r *fakeRegistry) serveManifest(w http.ResponseWriter, req *http.Request, repo, ref string) {
	r.mu.Lock()
	m, ok := r.manifests[repo][ref]
	if req.Method == http.MethodGet {
		r.manifestGets[repo+":"+ref]++
	}
	r.mu.Unlock()
	if !ok {
		writeRegistryError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
		return
	}
	w.Header().Set("Content-Type", m.mediaType)
	w.Header().Set("Docker-Content-Digest", digest.FromBytes(m.body).String())
	w.Header().Set("Content-Length", strconv.Itoa(len(m.body)))
	if req.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(m.body)
}

func (r *fakeRegistry) serveBlob(w http.ResponseWriter, req *http.Request, d digest.Digest) {
	r.mu.Lock()
	body, ok := r.blobs[d]
	if wrong, bad := r.wrong[d]; bad {
		body = wrong
	}
	st := r.stalls[d]
	if req.Method == http.MethodGet {
		r.blobGets[d]++
	}
	r.mu.Unlock()
	if !ok {
		writeRegistryError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if req.Method == http.MethodHead {
		return
	}
	flusher := w.(http.Flusher)
	send := func(b []byte) bool {
		n, err := w.Write(b)
		if err == nil {
			flusher.Flush()
		}
		r.mu.Lock()
		r.blobBytes[d] += int64(n)
		r.mu.Unlock()
		return err == nil
	}
	if st == nil {
		send(body)
		return
	}
	goneAway := func() { st.goneOnce.Do(func() { close(st.gone) }) }
	after := min(st.after, len(body))
	if !send(body[:after]) {
		goneAway()
		return
	}
	st.stalledOnce.Do(func() { close(st.stalled) })
	select {
	case <-st.release:
	case <-req.Context().Done():
		goneAway()
		return
	case <-r.shutdown:
		return
	}
	for rest := body[after:]; len(rest) > 0; {
		select {
		case <-req.Context().Done():
			goneAway()
			return
		case <-r.shutdown:
			return
		case <-time.After(st.pause):
		}
		n := min(st.chunk, len(rest))
		if !send(rest[:n]) {
			goneAway()
			return
		}
		rest = rest[n:]
	}
	st.doneOnce.Do(func() { close(st.done) })
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tarEntry is one entry of a test layer: the header as given (Size is set
// from Body for regular files) and the file's content.
type tarEntry struct {
	Hdr  tar.Header
	Body string
}

func file(name, body string) tarEntry {
	return tarEntry{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644}, Body: body}
}

func dir(name string) tarEntry {
	return tarEntry{Hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

func symlink(name, target string) tarEntry {
	return tarEntry{Hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func hardlink(name, target string) tarEntry {
	return tarEntry{Hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}}
}

// testLayer is a gzip'd tar layer.
type testLayer struct {
	blob   []byte        // compressed bytes, as served
	digest digest.Digest // of blob
	diffID digest.Digest // of the uncompressed tar
	tar    []byte        // uncompressed
}

func newLayer(t testing.TB, entries ...tarEntry) testLayer {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, e := range entries {
		h := e.Hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.Body))
		}
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1700000000, 0)
		}
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %q: %v", h.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.Body)); err != nil {
				t.Fatal(err)
			}
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
	return testLayer{blob: gz.Bytes(), digest: digest.FromBytes(gz.Bytes()), diffID: digest.FromBytes(raw.Bytes()), tar: raw.Bytes()}
}

// imageSpec describes a test image.
type imageSpec struct {
	oci     bool   // OCI manifest and config media types; Docker schema2 otherwise
	user    string // config USER
	label   string // makes otherwise equal configs differ
	arch    string // default runtime GOARCH
	os      string // default linux
	variant string
	layers  []testLayer
	// diffIDs replaces the layers' true diff IDs in the config when set.
	diffIDs []digest.Digest
}

// testImage is a built image: what a registry serves for it.
type testImage struct {
	config         []byte
	configDigest   digest.Digest
	layers         []testLayer
	manifest       []byte
	manifestDigest digest.Digest
	mediaType      string
	arch, os       string
	variant        string
}

func newImage(t testing.TB, s imageSpec) *testImage {
	t.Helper()
	if s.arch == "" {
		s.arch = testArch
	}
	if s.os == "" {
		s.os = "linux"
	}
	diffIDs := s.diffIDs
	if diffIDs == nil {
		for _, l := range s.layers {
			diffIDs = append(diffIDs, l.diffID)
		}
	}
	cfg := ocispec.Image{
		Platform: ocispec.Platform{Architecture: s.arch, OS: s.os, Variant: s.variant},
		Config: ocispec.ImageConfig{
			User:   s.user,
			Env:    []string{"PATH=/usr/bin:/bin"},
			Labels: map[string]string{"test": s.label},
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	}
	img := &testImage{config: mustJSON(t, cfg), layers: s.layers, arch: s.arch, os: s.os, variant: s.variant}
	img.configDigest = digest.FromBytes(img.config)
	configMT, layerMT := mtDockerConfig, mtDockerLayer
	img.mediaType = mtDockerManifest
	if s.oci {
		configMT, layerMT = ocispec.MediaTypeImageConfig, ocispec.MediaTypeImageLayerGzip
		img.mediaType = ocispec.MediaTypeImageManifest
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: img.mediaType,
		Config:    ocispec.Descriptor{MediaType: configMT, Size: int64(len(img.config)), Digest: img.configDigest},
	}
	for _, l := range s.layers {
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: layerMT, Size: int64(len(l.blob)), Digest: l.digest})
	}
	img.manifest = mustJSON(t, m)
	img.manifestDigest = digest.FromBytes(img.manifest)
	return img
}

// chains returns the chain IDs of the image's layers, computed here
// independently of the code under test.
func (img *testImage) chains() []Digest {
	var out []Digest
	var prev digest.Digest
	for i, l := range img.layers {
		c := l.diffID
		if i > 0 {
			c = digest.FromString(prev.String() + " " + l.diffID.String())
		}
		v, err := ParseDigest(string(c))
		if err != nil {
			panic(err)
		}
		out = append(out, v)
		prev = c
	}
	return out
}

// id and manifestID are the image's config and manifest digests in the
// service's type.
func (img *testImage) id() Digest         { return mustDigest(img.configDigest) }
func (img *testImage) manifestID() Digest { return mustDigest(img.manifestDigest) }

func mustDigest(d digest.Digest) Digest {
	v, err := ParseDigest(string(d))
	if err != nil {
		panic(err)
	}
	return v
}
