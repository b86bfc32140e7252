package main

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"
)

func testImage(format Format, list bool, user string) *Image {
	base := NewTree()
	base.File("bin/busybox", 0o755, []byte("busybox"))
	return &Image{
		Layers: []LayerSpec{{Tree: base, CreatedBy: "base"}, marker("test-image-1")},
		Config: ImageConfig{Env: []string{pathEnv}, Cmd: []string{"sh"}, User: user,
			Labels: map[string]string{"maintainer": "A <a@example.com>"}},
		Format: format,
		List:   list,
	}
}

func TestBuildDockerList(t *testing.T) {
	b := NewBuilder()
	built, err := b.Build(testImage(Docker, true, "1002"))
	if err != nil {
		t.Fatal(err)
	}
	var idx indexFile
	mustJSON(t, built.Index.Data, &idx)
	if built.Index.MediaType != MediaDockerList || idx.MediaType != MediaDockerList || len(idx.Manifests) != 1 {
		t.Fatalf("index = %+v", idx)
	}
	d := idx.Manifests[0]
	if d.Digest != built.Manifest.Digest || d.Size != built.Manifest.Size() || d.MediaType != MediaDockerManifest ||
		d.Platform == nil || d.Platform.OS != "linux" || d.Platform.Architecture != runtime.GOARCH {
		t.Errorf("index entry = %+v", d)
	}
	if built.Top().Digest != built.Index.Digest {
		t.Error("tags must point at the index")
	}

	var man manifestFile
	mustJSON(t, built.Manifest.Data, &man)
	if man.SchemaVersion != 2 || man.Config.Digest != built.Config.Digest || man.Config.MediaType != MediaDockerConfig {
		t.Errorf("manifest = %+v", man)
	}
	if len(man.Layers) != 2 || len(built.Layers) != 2 {
		t.Fatalf("layers: manifest %d, built %d; want 2", len(man.Layers), len(built.Layers))
	}
	for i, l := range man.Layers {
		if l.MediaType != MediaDockerLayer || l.Digest != built.Layers[i].Digest || l.Size != built.Layers[i].Size() {
			t.Errorf("layer %d = %+v", i, l)
		}
	}

	var cfg configFile
	mustJSON(t, built.Config.Data, &cfg)
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH || cfg.Created != created {
		t.Errorf("config platform = %s/%s created %s", cfg.OS, cfg.Architecture, cfg.Created)
	}
	if cfg.Config.User != "1002" || strings.Join(cfg.Config.Cmd, " ") != "sh" || cfg.Config.Env[0] != pathEnv {
		t.Errorf("config = %+v", cfg.Config)
	}
	if len(cfg.RootFS.DiffIDs) != 2 || cfg.RootFS.Type != "layers" {
		t.Errorf("rootfs = %+v", cfg.RootFS)
	}
	layers := 0
	for _, h := range cfg.History {
		if !h.EmptyLayer {
			layers++
		}
	}
	if layers != 2 {
		t.Errorf("history has %d layer entries, want 2: %+v", layers, cfg.History)
	}
	if !strings.Contains(string(built.Config.Data), "A <a@example.com>") {
		t.Error("config JSON escapes HTML characters")
	}
}

func TestBuildOCISingle(t *testing.T) {
	built, err := NewBuilder().Build(testImage(OCI, false, ""))
	if err != nil {
		t.Fatal(err)
	}
	if built.Index != nil || built.Top().Digest != built.Manifest.Digest {
		t.Fatal("a non-list image has an index")
	}
	var man manifestFile
	mustJSON(t, built.Manifest.Data, &man)
	if man.MediaType != MediaOCIManifest || man.Config.MediaType != MediaOCIConfig || man.Layers[0].MediaType != MediaOCILayer {
		t.Errorf("OCI manifest = %+v", man)
	}
}

func TestBuildDeterministicAndDistinct(t *testing.T) {
	a, err := NewBuilder().Build(testImage(Docker, true, "1002"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBuilder().Build(testImage(Docker, true, "1002"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Top().Digest != b.Top().Digest || a.ID() != b.ID() {
		t.Error("building the same image twice gave different digests")
	}
	c, err := NewBuilder().Build(testImage(Docker, true, "www-data"))
	if err != nil {
		t.Fatal(err)
	}
	if c.ID() == a.ID() {
		t.Error("different USER, same image ID")
	}
	if c.Layers[0].Digest != a.Layers[0].Digest {
		t.Error("same tree, different layer")
	}
}

func TestBuilderSharesLayers(t *testing.T) {
	shared := NewTree()
	shared.File("bin/busybox", 0o755, []byte("x"))
	b := NewBuilder()
	for _, user := range []string{"1", "2"} {
		if _, err := b.Build(&Image{Layers: []LayerSpec{{Tree: shared}}, Config: ImageConfig{User: user}}); err != nil {
			t.Fatal(err)
		}
	}
	if len(b.layers) != 1 {
		t.Errorf("built %d layers for one shared tree", len(b.layers))
	}
}

func mustJSON(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, data)
	}
}
