// Package imageservice owns images: references, pulls from registries
// (go.podman.io/image), the content-addressed store of manifests and
// configs, layers unpacked once per chain ID for use as overlay lower dirs,
// image records, filesystem usage and garbage collection.
package imageservice

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/records"
)

// recordKind is the records kind of image records.
const recordKind = "images"

// Options configure the image service.
type Options struct {
	// Root is the store's directory.
	Root string
	// RootfsDir holds the containers' root filesystems: their writable
	// layers and overlay mounts.
	RootfsDir string
	// Records persists image records.
	Records *records.Store
	// RegistriesConf is crid's containers-registries.conf(5) file, with
	// its .d directory; either may be absent. Empty: none.
	RegistriesConf string
	// ContainersRegistriesConf is the containers-wide file, read (with its
	// .d directory) when crid's own file and directory are both absent.
	// Empty: none.
	ContainersRegistriesConf string
	// SandboxImage is pinned: never removed. Empty: none.
	SandboxImage string
	// ProgressTimeout fails a pull that receives nothing for this long.
	ProgressTimeout time.Duration
	// UserAgent is sent to registries.
	UserAgent string
	// Limits bound what one pull may cost.
	Limits Limits
}

// Limits bound the work and space a pull may take, so that a crafted or
// broken image cannot exhaust the node: connections and decompressors,
// layer directories, disk and inodes. Every field must be positive.
type Limits struct {
	// FetchesPerPull is how many layers one pull downloads and unpacks at
	// a time.
	FetchesPerPull int
	// FetchesTotal is how many layers all pulls together download and
	// unpack at a time.
	FetchesTotal int
	// MaxLayers refuses a manifest with more layers.
	MaxLayers int
	// MaxLayerBytes refuses a layer whose uncompressed tar stream, or the
	// file content it unpacks to, is larger.
	MaxLayerBytes int64
	// MaxLayerFiles refuses a layer with more tar entries.
	MaxLayerFiles int64
}

func (l Limits) validate() error {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"FetchesPerPull", int64(l.FetchesPerPull)},
		{"FetchesTotal", int64(l.FetchesTotal)},
		{"MaxLayers", int64(l.MaxLayers)},
		{"MaxLayerBytes", l.MaxLayerBytes},
		{"MaxLayerFiles", l.MaxLayerFiles},
	} {
		if f.v <= 0 {
			return fmt.Errorf("image store: limit %s must be positive, got %d", f.name, f.v)
		}
	}
	return nil
}

// Service is the image store and puller.
type Service struct {
	root    string
	opts    Options
	sandbox string // normalized name of the sandbox image

	mu      sync.RWMutex
	images  map[Digest]*Image
	byName  map[string]Digest // tag or digest reference → image ID
	pulling map[Digest]int    // layers held by pulls in flight

	pulls flightGroup[*Image]
	// ctrFs is the writable layers' filesystem (containerFs).
	ctrFs fsCache
	// fetchSlots holds a token per layer being fetched, node-wide.
	fetchSlots chan struct{}
}

// New opens the store at opts.Root: it loads the image records, removes
// the debris of interrupted pulls and deletes, drops records whose layers
// are gone and layers no image uses.
func New(opts Options) (*Service, error) {
	if !filepath.IsAbs(opts.Root) || !filepath.IsAbs(opts.RootfsDir) {
		return nil, fmt.Errorf("image store: root %q and rootfs dir %q must be absolute", opts.Root, opts.RootfsDir)
	}
	for _, d := range []string{opts.Root, opts.RootfsDir} {
		// Both go into overlay mount options.
		if err := checkOptionSafe(d); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	if err := opts.Limits.validate(); err != nil {
		return nil, err
	}
	s := &Service{root: opts.Root, opts: opts, images: map[Digest]*Image{}, byName: map[string]Digest{},
		fetchSlots: make(chan struct{}, opts.Limits.FetchesTotal)}
	// No sandbox image (the built-in infra) pins nothing.
	if opts.SandboxImage != "" {
		ref, err := parseReference(opts.SandboxImage)
		if err != nil {
			return nil, fmt.Errorf("sandbox image: %w", err)
		}
		s.sandbox = ref.String()
	}
	// tmp holds in-progress layers and deletes: anything in it is debris.
	if err := os.RemoveAll(filepath.Join(s.root, "tmp")); err != nil {
		return nil, fmt.Errorf("image store: clean tmp: %w", err)
	}
	for _, d := range []string{"tmp", "layers", "blobs"} {
		if err := os.MkdirAll(filepath.Join(s.root, d), 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	recs, errs := opts.Records.Load(recordKind)
	for _, err := range errs {
		klog.ErrorS(err, "Skipping unreadable image record")
	}
	for _, r := range recs {
		img, err := records.Decode[Image](r)
		if err == nil && img.ID.Hex() != r.ID {
			err = fmt.Errorf("%w: record %s holds image %s", ErrInvalidDigest, r.ID, img.ID)
		}
		if errors.Is(err, ErrInvalidDigest) {
			// Its IDs would name paths: never used, dropped for good.
			klog.ErrorS(err, "Dropping image record with an invalid digest", "record", r.ID)
			if err := opts.Records.Delete(recordKind, r.ID); err != nil {
				klog.ErrorS(err, "Deleting image record", "record", r.ID)
			}
			continue
		}
		if err != nil {
			klog.ErrorS(err, "Skipping unreadable image record", "image", r.ID)
			continue
		}
		if missing, ok := s.missingLayer(&img); !ok {
			klog.InfoS("Dropping image whose layer is gone", "image", img.ID, "layer", missing)
			_ = opts.Records.Delete(recordKind, img.ID.Hex())
			continue
		}
		s.index(&img)
	}
	if err := s.gcLayers(); err != nil {
		klog.ErrorS(err, "Image layer GC at start")
	}
	return s, nil
}

// missingLayer returns the first layer of img that is not unpacked, and
// false, or true when every layer is there.
func (s *Service) missingLayer(img *Image) (Digest, bool) {
	for _, l := range img.Layers {
		if _, err := s.readLayer(l); err != nil {
			return l, false
		}
	}
	return Digest{}, true
}

// index adds img to the in-memory maps; s.mu must be held or the service
// not yet shared.
func (s *Service) index(img *Image) {
	img.Pinned = slices.Contains(img.RepoTags, s.sandbox)
	s.images[img.ID] = img
	for _, n := range img.names() {
		s.byName[n] = img.ID
	}
}

func (s *Service) unindex(img *Image) {
	delete(s.images, img.ID)
	for _, n := range img.names() {
		if s.byName[n] == img.ID {
			delete(s.byName, n)
		}
	}
}

// ErrImageNotFound is returned when a container names an image the store
// does not have.
var ErrImageNotFound = errors.New("image not found")

// ErrAmbiguous is returned for an ID prefix that names several images.
var ErrAmbiguous = errors.New("ambiguous image ID prefix")

// Get resolves an image by ID (digest, hex or unique hex prefix), by tag
// ("busybox", "docker.io/library/busybox:1.36") or by digest reference.
// It returns nil, nil for an unknown image.
func (s *Service) Get(name string) (*Image, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	img, err := s.lookup(name)
	if img == nil || err != nil {
		return nil, err
	}
	return img.clone(), nil
}

func (s *Service) lookup(name string) (*Image, error) {
	if d, err := ParseDigest(name); err == nil {
		return s.images[d], nil
	}
	if ref, err := parseReference(name); err == nil {
		if id, ok := s.byName[ref.String()]; ok {
			return s.images[id], nil
		}
	}
	// A bare hex ID or a prefix of one, as crictl prints them.
	if len(name) >= 3 && len(name) <= 64 && strings.Trim(name, "0123456789abcdef") == "" {
		var found *Image
		for id, img := range s.images {
			if strings.HasPrefix(id.Hex(), name) {
				if found != nil {
					return nil, fmt.Errorf("%w: %q", ErrAmbiguous, name)
				}
				found = img
			}
		}
		return found, nil
	}
	return nil, nil
}

// List returns every image, or those matching filter when it is not empty.
func (s *Service) List(filter string) ([]*Image, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if filter != "" {
		img, err := s.lookup(filter)
		if img == nil || err != nil {
			return nil, err
		}
		return []*Image{img.clone()}, nil
	}
	out := make([]*Image, 0, len(s.images))
	for _, img := range s.images {
		out = append(out, img.clone())
	}
	slices.SortFunc(out, func(a, b *Image) int { return strings.Compare(a.ID.Hex(), b.ID.Hex()) })
	return out, nil
}

// ErrPinned is returned when removing the pinned sandbox image.
var ErrPinned = errors.New("image is pinned")

// Remove deletes the image named by name (ID, tag or digest) with all its
// tags and digests, as kubelet and critest expect, then frees layers that
// nothing uses. Removing an unknown image is not an error; removing one a
// container mounts as an image volume is (ErrImageInUse).
func (s *Service) Remove(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.lookup(name)
	if err != nil || img == nil {
		return err
	}
	if img.Pinned {
		return fmt.Errorf("%w: %s is the sandbox image %s", ErrPinned, img.ID, s.sandbox)
	}
	if err := s.checkNotInUse(img); err != nil {
		return err
	}
	if err := s.opts.Records.Delete(recordKind, img.ID.Hex()); err != nil {
		return err
	}
	s.unindex(img)
	if err := s.removeBlob(img.ID); err != nil {
		klog.ErrorS(err, "Removing image config blob", "image", img.ID)
	}
	if err := s.gcLayersLocked(); err != nil {
		klog.ErrorS(err, "Image layer GC", "image", img.ID)
	}
	return nil
}

func (s *Service) gcLayers() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gcLayersLocked()
}

// gcLayersLocked removes unpacked layers that no image and no container
// uses. s.mu must be held.
func (s *Service) gcLayersLocked() error {
	used := map[Digest]bool{}
	for _, img := range s.images {
		for _, l := range img.Layers {
			used[l] = true
		}
	}
	for l := range s.pulling {
		used[l] = true
	}
	for _, l := range s.rootfsLayers() {
		used[l] = true
	}
	entries, err := os.ReadDir(filepath.Join(s.root, "layers"))
	if err != nil {
		return fmt.Errorf("layer GC: %w", err)
	}
	var errs []error
	for _, e := range entries {
		d, err := ParseDigest(digestAlgorithm + ":" + e.Name())
		if err != nil || used[d] {
			continue // not a layer of ours, or in use
		}
		klog.V(2).InfoS("Removing unused layer", "layer", d)
		errs = append(errs, s.removeLayer(d))
	}
	return errors.Join(errs...)
}

func (s *Service) holdLayers(chains []Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pulling == nil {
		s.pulling = map[Digest]int{}
	}
	for _, c := range chains {
		s.pulling[c]++
	}
}

func (s *Service) releaseLayers(chains []Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range chains {
		if s.pulling[c]--; s.pulling[c] <= 0 {
			delete(s.pulling, c)
		}
	}
}

// FsUsage is the space the store uses on one filesystem.
type FsUsage struct {
	// Mountpoint is where the filesystem is mounted.
	Mountpoint string
	// Device is the filesystem's device number (st_dev): equal for two
	// directories on one filesystem.
	Device uint64
	Bytes  uint64
	Inodes uint64
}

// Usage reports the bytes and inodes of the unpacked layers and blobs, on
// the filesystem holding the image store.
func (s *Service) Usage() (FsUsage, error) {
	var u FsUsage
	if err := fsOf(&u, s.root); err != nil {
		return u, fmt.Errorf("image fs usage: %w", err)
	}
	entries, err := os.ReadDir(filepath.Join(s.root, "layers"))
	if err != nil {
		return u, fmt.Errorf("image fs usage: %w", err)
	}
	for _, e := range entries {
		d, err := ParseDigest(digestAlgorithm + ":" + e.Name())
		if err != nil {
			continue // not ours
		}
		m, err := s.readLayer(d)
		if err != nil {
			continue // being removed
		}
		u.Bytes += m.Size
		u.Inodes += m.Inodes
	}
	b, i, err := usage(filepath.Join(s.root, "blobs"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return u, err
	}
	u.Bytes += b
	u.Inodes += i
	return u, nil
}
