package imageservice

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/crid-dev/crid/records"
)

const goodHex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseDigest(t *testing.T) {
	d, err := ParseDigest("sha256:" + goodHex)
	if err != nil || d.Hex() != goodHex || d.String() != "sha256:"+goodHex || d.OCI() != digest.Digest("sha256:"+goodHex) {
		t.Fatalf("ParseDigest(good) = %v %q, %v", d, d.Hex(), err)
	}
	for _, bad := range []string{
		"",
		goodHex,                                       // no algorithm
		"sha256:",                                     // no hex
		"sha256:" + strings.ToUpper(goodHex),          // uppercase
		"SHA256:" + goodHex,                           // uppercase algorithm
		"sha256:" + goodHex[:63],                      // short
		"sha256:" + goodHex + "0",                     // long
		"sha256:" + goodHex[:62] + "g0",               // not hex
		"md5:0123456789abcdef0123456789abcdef",        // unsupported
		"sha512:" + goodHex + goodHex,                 // not supported either
		"sha256:../../../../etc",                      // a path
		"sha256:" + goodHex[:60] + ",a=b",             // mount option syntax
		"sha256:" + goodHex[:32] + ":" + goodHex[:31], // colon
		"sha256:" + goodHex[:63] + "\n",
		" sha256:" + goodHex,
	} {
		if d, err := ParseDigest(bad); err == nil || !errors.Is(err, ErrInvalidDigest) || !d.IsZero() {
			t.Errorf("ParseDigest(%q) = %v, %v; want ErrInvalidDigest", bad, d, err)
		}
	}
}

func TestDigestJSON(t *testing.T) {
	type rec struct {
		ID     Digest   `json:"id"`
		Layers []Digest `json:"layers"`
	}
	in := rec{ID: sha256Of([]byte("a")), Layers: []Digest{sha256Of([]byte("b"))}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out rec
	if err := json.Unmarshal(b, &out); err != nil || out.ID != in.ID || len(out.Layers) != 1 || out.Layers[0] != in.Layers[0] {
		t.Fatalf("round trip: %s -> %+v, %v", b, out, err)
	}
	for _, bad := range []string{
		`{"id":"sha256:../../x"}`,
		`{"id":"sha256:` + goodHex + `","layers":["md5:00"]}`,
		`{"id":""}`,
	} {
		var r rec
		if err := json.Unmarshal([]byte(bad), &r); !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("Unmarshal(%s) = %v, want ErrInvalidDigest", bad, err)
		}
	}
	if _, err := json.Marshal(rec{}); err == nil {
		t.Error("the zero Digest was written out")
	}
}

func TestParseContainerID(t *testing.T) {
	if _, err := parseContainerID(goodHex); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", ".", "..", "../" + goodHex[3:], goodHex[:63] + "/", strings.ToUpper(goodHex), goodHex[:12], "c1"} {
		if _, err := parseContainerID(bad); err == nil {
			t.Errorf("parseContainerID(%q) accepted", bad)
		}
	}
}

// badDigestCase is an image whose manifest or config carries a bad value.
type badDigestCase struct {
	name  string
	field string // the error must name it
	// push serves the crafted image as repo:v1.
	push func(t *testing.T, e *testEnv, repo string)
}

// pushWithDiffIDs serves a one-layer image whose config names diffIDs.
func pushWithDiffIDs(diffIDs ...digest.Digest) func(*testing.T, *testEnv, string) {
	return func(t *testing.T, e *testEnv, repo string) {
		l := newLayer(t, file("ok", "ok"))
		e.reg.push(repo, "v1", newImage(t, imageSpec{layers: []testLayer{l}, diffIDs: diffIDs}))
	}
}

// pushManifest serves a hand-made Docker schema2 manifest whose config and
// layer digests are the given strings, pointing at real blobs otherwise.
func pushManifest(config string, layers ...string) func(*testing.T, *testEnv, string) {
	return func(t *testing.T, e *testEnv, repo string) {
		l := newLayer(t, file("ok", "ok"))
		img := newImage(t, imageSpec{layers: []testLayer{l}})
		e.reg.addBlob(img.config)
		e.reg.addBlob(l.blob)
		if config == "" {
			config = img.configDigest.String()
		}
		m := ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: mtDockerManifest,
			Config:    ocispec.Descriptor{MediaType: mtDockerConfig, Size: int64(len(img.config)), Digest: digest.Digest(config)},
		}
		for _, d := range layers {
			if d == "" {
				d = l.digest.String()
			}
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: mtDockerLayer, Size: int64(len(l.blob)), Digest: digest.Digest(d)})
		}
		e.reg.putManifest(repo, "v1", mtDockerManifest, mustJSON(t, m))
	}
}

// decoyDiffID aims a diff ID at the canary's decoy layer: from
// <root>/layers, two ".." reach the env's base.
const decoyDiffID = "sha256:../../canary/decoy"

func badDigestCases() []badDigestCase {
	return []badDigestCase{
		{"dotdot diff ID at a planted layer", "config rootfs.diff_ids[0]", pushWithDiffIDs(decoyDiffID)},
		{"diff ID without algorithm", "config rootfs.diff_ids[0]", pushWithDiffIDs(goodHex)},
		{"md5 diff ID", "config rootfs.diff_ids[0]", pushWithDiffIDs("md5:0123456789abcdef0123456789abcdef")},
		{"sha512 diff ID", "config rootfs.diff_ids[0]", pushWithDiffIDs(digest.Digest("sha512:" + goodHex + goodHex))},
		{"uppercase diff ID", "config rootfs.diff_ids[0]", pushWithDiffIDs(digest.Digest("sha256:" + strings.ToUpper(goodHex)))},
		{"comma in diff ID", "config rootfs.diff_ids[0]", pushWithDiffIDs(digest.Digest("sha256:" + goodHex[:40] + ",upperdir=/tmp"))},
		{"colon in diff ID", "config rootfs.diff_ids[0]", pushWithDiffIDs(digest.Digest("sha256:" + goodHex[:32] + ":/" + goodHex[:31]))},
		{"empty diff ID", "config rootfs.diff_ids[0]", pushWithDiffIDs("")},
		{"more diff IDs than layers", "config rootfs.diff_ids", pushWithDiffIDs(digest.Digest("sha256:"+goodHex), digest.Digest("sha256:"+goodHex))},
		{"fewer diff IDs than layers", "config rootfs.diff_ids", pushWithDiffIDs([]digest.Digest{}...)},
		{"config digest a path", "manifest config.digest", pushManifest("sha256:../../canary/decoy", "")},
		{"config digest md5", "manifest config.digest", pushManifest("md5:0123456789abcdef0123456789abcdef", "")},
		{"layer digest uppercase", "manifest layers[0].digest", pushManifest("", "sha256:"+strings.ToUpper(goodHex))},
		{"layer digest without algorithm", "manifest layers[1].digest", pushManifest("", "", goodHex)},
		{"rootfs type", "config rootfs.type", func(t *testing.T, e *testEnv, repo string) {
			l := newLayer(t, file("ok", "ok"))
			img := newImage(t, imageSpec{layers: []testLayer{l}})
			var cfg map[string]any
			if err := json.Unmarshal(img.config, &cfg); err != nil {
				t.Fatal(err)
			}
			cfg["rootfs"].(map[string]any)["type"] = "../layers"
			img = rebuild(t, img, mustJSON(t, cfg))
			e.reg.push(repo, "v1", img)
		}},
		{"manifest list entry digest", "manifest list entry digest", func(t *testing.T, e *testEnv, repo string) {
			type entry struct {
				MediaType string            `json:"mediaType"`
				Size      int               `json:"size"`
				Digest    string            `json:"digest"`
				Platform  map[string]string `json:"platform"`
			}
			list := map[string]any{"schemaVersion": 2, "mediaType": mtDockerList, "manifests": []entry{{
				MediaType: mtDockerManifest, Size: 100, Digest: "sha256:../../canary/decoy",
				Platform: map[string]string{"architecture": testArch, "os": "linux"},
			}}}
			e.reg.putManifest(repo, "v1", mtDockerList, mustJSON(t, list))
		}},
	}
}

// rebuild replaces img's config and remakes its manifest.
func rebuild(t *testing.T, img *testImage, config []byte) *testImage {
	t.Helper()
	c := *img
	c.config = config
	c.configDigest = digest.FromBytes(config)
	var m ocispec.Manifest
	if err := json.Unmarshal(img.manifest, &m); err != nil {
		t.Fatal(err)
	}
	m.Config.Digest, m.Config.Size = c.configDigest, int64(len(config))
	c.manifest = mustJSON(t, m)
	c.manifestDigest = digest.FromBytes(c.manifest)
	return &c
}

// plantDecoy makes <canary>/decoy look like an unpacked layer, which a
// pull that let a diff ID name a path would take as present.
func plantDecoy(t *testing.T, e *testEnv) {
	t.Helper()
	decoy := filepath.Join(e.canary, "decoy")
	if err := os.MkdirAll(filepath.Join(decoy, "diff"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(decoy, "diff", "planted"), []byte("host file"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(decoy, layerMetaFile), []byte(`{"chain_id":"`+decoyDiffID+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Every digest from a manifest or config is checked before it names
// anything: a bad one fails the pull as an invalid image naming the field,
// fetches no layer, and leaves nothing in the store or outside it.
func TestPullRefusesBadDigests(t *testing.T) {
	for _, tc := range badDigestCases() {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			plantDecoy(t, e)
			before := fsSnapshot(t, e.canary)
			tc.push(t, e, "evil")
			ref := e.reg.ref("evil:v1")
			_, err := e.svc.Pull(context.Background(), ref, nil)
			if !errors.Is(err, ErrInvalidImage) {
				t.Fatalf("pull: %v, want ErrInvalidImage", err)
			}
			for _, want := range []string{ref, tc.field} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
			t.Logf("error: %v", err)
			if n := e.reg.totalBlobGets(); n > 1 { // the config at most
				t.Errorf("%d blobs fetched for a refused image", n)
			}
			e.assertEmptyStore(t)
			if after := fsSnapshot(t, e.canary); !maps.Equal(before, after) {
				t.Errorf("the canary dir changed:\nbefore %v\nafter  %v", before, after)
			}
			// The service goes on: a good image pulls.
			e.reg.push("good", "v1", basicImage(t, imageSpec{}))
			e.mustPull(t, e.reg.ref("good:v1"))
		})
	}
}

// A manifest with more layers than MaxLayers is refused before any blob,
// even the config, is fetched.
func TestPullRefusesTooManyLayers(t *testing.T) {
	e := newEnv(t)
	l := newLayer(t, file("ok", "ok"))
	layers := make([]testLayer, 600)
	for i := range layers {
		layers[i] = l
	}
	e.reg.push("tall", "v1", newImage(t, imageSpec{layers: layers}))
	_, err := e.svc.Pull(context.Background(), e.reg.ref("tall:v1"), nil)
	if !errors.Is(err, ErrInvalidImage) || !strings.Contains(err.Error(), "600 layers") || !strings.Contains(err.Error(), "max_layers (500)") {
		t.Fatalf("pull of 600 layers: %v, want ErrInvalidImage naming the count and the limit", err)
	}
	if n := e.reg.totalBlobGets(); n != 0 {
		t.Errorf("%d blobs fetched", n)
	}
	e.assertEmptyStore(t)
}

// Image records read back with an invalid ID or layer are dropped, and
// nothing they name is touched.
func TestRecordsWithBadDigestsAreDropped(t *testing.T) {
	e := newEnv(t)
	plantDecoy(t, e)
	good := basicImage(t, imageSpec{})
	e.reg.push("good", "v1", good)
	img := e.mustPull(t, e.reg.ref("good:v1"))
	before := fsSnapshot(t, e.canary)

	dir := filepath.Join(e.recordsDir, recordKind)
	b, err := os.ReadFile(filepath.Join(dir, img.ID.Hex()+".json"))
	if err != nil {
		t.Fatal(err)
	}
	// Two more records: one whose layer names the decoy, one whose ID is
	// a path; both otherwise well-formed (valid envelope and checksum).
	rs, err := records.Open(e.recordsDir)
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	badLayer := maps.Clone(env.Data)
	badLayer["id"] = "sha256:" + goodHex
	badLayer["layers"] = []string{decoyDiffID}
	badLayer["repo_tags"] = []string{"docker.io/library/decoy:latest"}
	if err := rs.Put(recordKind, goodHex, badLayer); err != nil {
		t.Fatal(err)
	}
	badID := maps.Clone(env.Data)
	badID["id"] = "sha256:../../canary/decoy"
	badID["repo_tags"] = []string{"docker.io/library/badid:latest"}
	if err := rs.Put(recordKind, strings.Repeat("e", 64), badID); err != nil {
		t.Fatal(err)
	}
	rs.Close()

	e.svc = e.open(t)
	imgs, _ := e.svc.List("")
	if len(imgs) != 1 || imgs[0].ID != img.ID {
		t.Fatalf("images after restart: %v, want only the good one", imgs)
	}
	e.assertAbsent(t, "decoy")
	e.assertAbsent(t, "badid")
	if recs := dirNames(t, dir); len(recs) != 1 {
		t.Errorf("records left: %v", recs)
	}
	if after := fsSnapshot(t, e.canary); !maps.Equal(before, after) {
		t.Errorf("the canary dir changed:\nbefore %v\nafter  %v", before, after)
	}
}
