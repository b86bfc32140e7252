package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// fakeRegistry is the part of the Registry HTTP API v2 the pusher uses,
// in memory, strict where distribution is: digests are verified, a mount
// needs the blob in the source repository, manifests are content-typed.
type fakeRegistry struct {
	mu        sync.Mutex
	blobs     map[string]map[string][]byte // repo -> digest -> data
	manifests map[string]map[string]string // repo -> ref -> digest
	bodies    map[string][]byte            // manifest digest -> body
	types     map[string]string            // manifest digest -> media type
	writes    []string                     // "POST repo", "PUT repo" ...
	uploads   int
}

func newFakeRegistry() *fakeRegistry {
	return &fakeRegistry{
		blobs:     map[string]map[string][]byte{},
		manifests: map[string]map[string]string{},
		bodies:    map[string][]byte{},
		types:     map[string]string{},
	}
}

var (
	reBlob     = regexp.MustCompile(`^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$`)
	reUploads  = regexp.MustCompile(`^/v2/(.+)/blobs/uploads/$`)
	reSession  = regexp.MustCompile(`^/v2/(.+)/blobs/uploads/([0-9]+)$`)
	reManifest = regexp.MustCompile(`^/v2/(.+)/manifests/([^/]+)$`)
)

func (f *fakeRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := r.URL.Path
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		f.writes = append(f.writes, r.Method+" "+p)
	}
	switch {
	case p == "/v2/":
		w.WriteHeader(http.StatusOK)
	case reBlob.MatchString(p) && r.Method == http.MethodHead:
		m := reBlob.FindStringSubmatch(p)
		if _, ok := f.blobs[m[1]][m[2]]; !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusOK)
	case reUploads.MatchString(p) && r.Method == http.MethodPost:
		repo := reUploads.FindStringSubmatch(p)[1]
		if d, from := r.URL.Query().Get("mount"), r.URL.Query().Get("from"); d != "" {
			if data, ok := f.blobs[from][d]; ok {
				f.put(repo, d, data)
				w.WriteHeader(http.StatusCreated)
				return
			}
		}
		f.uploads++
		// Relative, with a query, as distribution's are absolute: both must work.
		w.Header().Set("Location", fmt.Sprintf("/v2/%s/blobs/uploads/%d?_state=abc", repo, f.uploads))
		w.WriteHeader(http.StatusAccepted)
	case reSession.MatchString(p) && r.Method == http.MethodPut:
		repo := reSession.FindStringSubmatch(p)[1]
		data, _ := io.ReadAll(r.Body)
		d := r.URL.Query().Get("digest")
		if r.URL.Query().Get("_state") != "abc" || d != digestOf(data) {
			http.Error(w, "digest invalid", http.StatusBadRequest)
			return
		}
		f.put(repo, d, data)
		w.WriteHeader(http.StatusCreated)
	case reManifest.MatchString(p) && r.Method == http.MethodHead:
		m := reManifest.FindStringSubmatch(p)
		d, ok := f.manifests[m[1]][m[2]]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("Docker-Content-Digest", d)
		w.WriteHeader(http.StatusOK)
	case reManifest.MatchString(p) && r.Method == http.MethodPut:
		m := reManifest.FindStringSubmatch(p)
		body, _ := io.ReadAll(r.Body)
		d := digestOf(body)
		if strings.HasPrefix(m[2], "sha256:") && m[2] != d {
			http.Error(w, "digest invalid", http.StatusBadRequest)
			return
		}
		if f.manifests[m[1]] == nil {
			f.manifests[m[1]] = map[string]string{}
		}
		f.manifests[m[1]][m[2]] = d
		f.bodies[d] = body
		f.types[d] = r.Header.Get("Content-Type")
		w.Header().Set("Docker-Content-Digest", d)
		w.WriteHeader(http.StatusCreated)
	default:
		http.Error(w, "unexpected "+r.Method+" "+p, http.StatusMethodNotAllowed)
	}
}

func (f *fakeRegistry) put(repo, digest string, data []byte) {
	if f.blobs[repo] == nil {
		f.blobs[repo] = map[string][]byte{}
	}
	f.blobs[repo][digest] = data
}

func newTestRegistry(t *testing.T) (*fakeRegistry, *Registry) {
	t.Helper()
	fake := newFakeRegistry()
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	reg, err := NewRegistry(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	return fake, reg
}

func TestPushThenSkip(t *testing.T) {
	fake, reg := newTestRegistry(t)
	ctx := context.Background()
	built, err := NewBuilder().Build(testImage(Docker, true, ""))
	if err != nil {
		t.Fatal(err)
	}
	pushed, err := reg.Push(ctx, "k8s-staging-cri-tools/test-image-tags", []string{"1", "2", "3"}, built)
	if err != nil || !pushed {
		t.Fatalf("first push: pushed=%v err=%v", pushed, err)
	}
	if reg.Stats.BlobsUploaded != 3 || reg.Stats.ManifestsPushed != 4 {
		t.Errorf("first push stats = %+v; want 3 blobs, 4 manifests (child + 3 tags)", reg.Stats)
	}
	for _, tag := range []string{"1", "2", "3"} {
		if d := fake.manifests["k8s-staging-cri-tools/test-image-tags"][tag]; d != built.Index.Digest {
			t.Errorf("tag %s -> %s, want the index %s", tag, d, built.Index.Digest)
		}
	}
	if fake.types[built.Index.Digest] != MediaDockerList || fake.types[built.Manifest.Digest] != MediaDockerManifest {
		t.Errorf("manifest content types = %v", fake.types)
	}

	writes := len(fake.writes)
	reg2, _ := NewRegistry(reg.base.String(), http.DefaultClient)
	pushed, err = reg2.Push(ctx, "k8s-staging-cri-tools/test-image-tags", []string{"1", "2", "3"}, built)
	if err != nil || pushed {
		t.Fatalf("second push: pushed=%v err=%v", pushed, err)
	}
	if len(fake.writes) != writes {
		t.Errorf("second push wrote: %q", fake.writes[writes:])
	}
	if reg2.Stats.TagsUpToDate != 3 {
		t.Errorf("second push stats = %+v", reg2.Stats)
	}
}

func TestPushMountsSharedBlobs(t *testing.T) {
	fake, reg := newTestRegistry(t)
	ctx := context.Background()
	b := NewBuilder()
	one, err := b.Build(testImage(Docker, true, "1002"))
	if err != nil {
		t.Fatal(err)
	}
	two, err := b.Build(testImage(Docker, true, "www-data"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Push(ctx, "a", []string{"latest"}, one); err != nil {
		t.Fatal(err)
	}
	uploads := fake.uploads
	if _, err := reg.Push(ctx, "b", []string{"latest"}, two); err != nil {
		t.Fatal(err)
	}
	// Only the new config is sent; both layers come from repository a.
	if fake.uploads-uploads != 1 || reg.Stats.BlobsMounted != 2 {
		t.Errorf("uploads %d, stats %+v; want 1 upload and 2 mounts", fake.uploads-uploads, reg.Stats)
	}
	for _, l := range two.Layers {
		if _, ok := fake.blobs["b"][l.Digest]; !ok {
			t.Errorf("layer %s missing from b", l.Digest)
		}
	}
}

func TestPushRetagsChangedImage(t *testing.T) {
	fake, reg := newTestRegistry(t)
	ctx := context.Background()
	old, _ := NewBuilder().Build(testImage(Docker, false, "1"))
	cur, _ := NewBuilder().Build(testImage(Docker, false, "2"))
	if _, err := reg.Push(ctx, "r", []string{"latest"}, old); err != nil {
		t.Fatal(err)
	}
	pushed, err := reg.Push(ctx, "r", []string{"latest"}, cur)
	if err != nil || !pushed {
		t.Fatalf("pushed=%v err=%v", pushed, err)
	}
	if fake.manifests["r"]["latest"] != cur.Manifest.Digest {
		t.Error("tag not moved to the new image")
	}
}

func TestPushReportsRegistryErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		http.Error(w, "denied", http.StatusForbidden)
	}))
	defer srv.Close()
	reg, err := NewRegistry(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	built, _ := NewBuilder().Build(testImage(Docker, false, ""))
	_, err = reg.Push(context.Background(), "r", []string{"latest"}, built)
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("err = %v, want the 403", err)
	}
}

func TestNewRegistryRejectsBadAddress(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:5000", "ftp://x", "http://"} {
		if _, err := NewRegistry(addr, http.DefaultClient); err == nil {
			t.Errorf("NewRegistry(%q) accepted", addr)
		}
	}
}
