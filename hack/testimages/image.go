package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
)

// Format is the family of media types an image is pushed with. Both are
// used so that the runtime under test pulls both kinds, as it would from
// the public registries (registry.k8s.io serves Docker lists, ECR serves OCI
// indexes).
type Format int

const (
	Docker Format = iota // Docker image manifest v2 schema 2 and manifest list
	OCI                  // OCI image manifest and index
)

// Media types of the two formats.
const (
	MediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaDockerConfig   = "application/vnd.docker.container.image.v1+json"
	MediaDockerLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	MediaOCIIndex       = "application/vnd.oci.image.index.v1+json"
	MediaOCIConfig      = "application/vnd.oci.image.config.v1+json"
	MediaOCILayer       = "application/vnd.oci.image.layer.v1.tar+gzip"
)

func (f Format) manifestType() string { return pick(f, MediaDockerManifest, MediaOCIManifest) }
func (f Format) listType() string     { return pick(f, MediaDockerList, MediaOCIIndex) }
func (f Format) configType() string   { return pick(f, MediaDockerConfig, MediaOCIConfig) }
func (f Format) layerType() string    { return pick(f, MediaDockerLayer, MediaOCILayer) }

func pick(f Format, docker, oci string) string {
	if f == OCI {
		return oci
	}
	return docker
}

// ManifestTypes are the media types the builder pushes, for Accept headers.
var ManifestTypes = []string{MediaDockerManifest, MediaDockerList, MediaOCIManifest, MediaOCIIndex}

// ImageConfig is the runtime configuration of an image: the "config" object
// of the image configuration, under the field names Docker and OCI share.
type ImageConfig struct {
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
	StopSignal   string              `json:"StopSignal,omitempty"`
}

// A LayerSpec is one layer of an image and the build step it stands for,
// recorded in the image history.
type LayerSpec struct {
	Tree      *Tree
	CreatedBy string
}

// An Image is the definition of one test image.
type Image struct {
	Layers []LayerSpec
	Config ImageConfig
	Format Format
	// List pushes the image as a manifest list (or OCI index) with its one
	// linux platform, as the upstream multi-arch images are published, so
	// that the runtime resolves a list the way it must on the real hosts.
	List bool
}

// A Built image is every blob of an image, ready to push.
type Built struct {
	Config   Blob
	Layers   []Blob
	Manifest Blob
	Index    *Blob // the manifest list or index, when Image.List
}

// Top is what the tags point at: the index when there is one.
func (b *Built) Top() Blob {
	if b.Index != nil {
		return *b.Index
	}
	return b.Manifest
}

// ID is the image ID a runtime reports: the digest of the config.
func (b *Built) ID() string { return b.Config.Digest }

// created is the creation time of every image, fixed for reproducibility
// (SOURCE_DATE_EPOCH=0).
const created = "1970-01-01T00:00:00Z"

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type descriptor struct {
	MediaType string    `json:"mediaType"`
	Size      int64     `json:"size"`
	Digest    string    `json:"digest"`
	Platform  *platform `json:"platform,omitempty"`
}

type history struct {
	Created    string `json:"created"`
	CreatedBy  string `json:"created_by,omitempty"`
	EmptyLayer bool   `json:"empty_layer,omitempty"`
}

type rootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

type configFile struct {
	Architecture string      `json:"architecture"`
	OS           string      `json:"os"`
	Created      string      `json:"created"`
	Config       ImageConfig `json:"config"`
	RootFS       rootFS      `json:"rootfs"`
	History      []history   `json:"history"`
}

type manifestFile struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type indexFile struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

// marshal encodes v as indented JSON without HTML escaping, so that labels
// such as "Name <mail>" read as written. Go sorts map keys: the bytes, and
// so the digests, depend only on v.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "   ")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return buf.Bytes(), nil
}

// configSteps renders the config-only build steps for the history, in
// Dockerfile syntax, so that `crictl inspecti` tells how the image was made.
func configSteps(c ImageConfig) []string {
	var steps []string
	q := func(args []string) string {
		b, _ := json.Marshal(args)
		return string(b)
	}
	for _, e := range c.Env {
		steps = append(steps, "ENV "+e)
	}
	if c.WorkingDir != "" {
		steps = append(steps, "WORKDIR "+c.WorkingDir)
	}
	for _, p := range sortedKeys(c.ExposedPorts) {
		steps = append(steps, "EXPOSE "+p)
	}
	if c.StopSignal != "" {
		steps = append(steps, "STOPSIGNAL "+c.StopSignal)
	}
	if c.User != "" {
		steps = append(steps, "USER "+c.User)
	}
	if c.Entrypoint != nil {
		steps = append(steps, "ENTRYPOINT "+q(c.Entrypoint))
	}
	if c.Cmd != nil {
		steps = append(steps, "CMD "+q(c.Cmd))
	}
	return steps
}

// A Builder turns Image definitions into blobs. It builds every Tree once,
// however many images share it (the busybox root is in most of them).
type Builder struct {
	layers map[*Tree]*Layer
}

// NewBuilder returns a Builder with an empty layer cache.
func NewBuilder() *Builder {
	return &Builder{layers: map[*Tree]*Layer{}}
}

// Build produces the config, layers, manifest and, for a List image, the
// one-platform index of img.
func (b *Builder) Build(img *Image) (*Built, error) {
	f := img.Format
	out := &Built{}
	cfg := configFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      created,
		Config:       img.Config,
		RootFS:       rootFS{Type: "layers", DiffIDs: []string{}},
	}
	man := manifestFile{SchemaVersion: 2, MediaType: f.manifestType(), Layers: []descriptor{}}
	for _, ls := range img.Layers {
		l, ok := b.layers[ls.Tree]
		if !ok {
			var err error
			if l, err = BuildLayer(ls.Tree); err != nil {
				return nil, fmt.Errorf("layer %q: %w", ls.CreatedBy, err)
			}
			b.layers[ls.Tree] = l
		}
		blob := l.Blob
		blob.MediaType = f.layerType()
		out.Layers = append(out.Layers, blob)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.DiffID)
		cfg.History = append(cfg.History, history{Created: created, CreatedBy: ls.CreatedBy})
		man.Layers = append(man.Layers, descriptor{MediaType: blob.MediaType, Size: blob.Size(), Digest: blob.Digest})
	}
	for _, s := range configSteps(img.Config) {
		cfg.History = append(cfg.History, history{Created: created, CreatedBy: s, EmptyLayer: true})
	}

	data, err := marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	out.Config = newBlob(f.configType(), data)
	man.Config = descriptor{MediaType: out.Config.MediaType, Size: out.Config.Size(), Digest: out.Config.Digest}
	if data, err = marshal(man); err != nil {
		return nil, fmt.Errorf("image manifest: %w", err)
	}
	out.Manifest = newBlob(man.MediaType, data)

	if img.List {
		idx := indexFile{SchemaVersion: 2, MediaType: f.listType(), Manifests: []descriptor{{
			MediaType: out.Manifest.MediaType,
			Size:      out.Manifest.Size(),
			Digest:    out.Manifest.Digest,
			Platform:  &platform{Architecture: runtime.GOARCH, OS: "linux"},
		}}}
		if data, err = marshal(idx); err != nil {
			return nil, fmt.Errorf("image index: %w", err)
		}
		index := newBlob(idx.MediaType, data)
		out.Index = &index
	}
	return out, nil
}

// describe is a one-line summary of an image's runtime configuration.
func describe(c ImageConfig) string {
	var parts []string
	if c.Entrypoint != nil {
		parts = append(parts, fmt.Sprintf("Entrypoint=%q", c.Entrypoint))
	}
	if c.Cmd != nil {
		parts = append(parts, fmt.Sprintf("Cmd=%q", c.Cmd))
	}
	if c.User != "" {
		parts = append(parts, "User="+c.User)
	}
	if c.WorkingDir != "" {
		parts = append(parts, "WorkingDir="+c.WorkingDir)
	}
	return strings.Join(parts, " ")
}
