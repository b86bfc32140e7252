package imageservice

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/failpoint"
	"github.com/crid-dev/crid/metrics"
	"github.com/crid-dev/crid/panicguard"
)

// Auth holds registry credentials for one pull.
type Auth struct {
	Username      string
	Password      string
	IdentityToken string
	RegistryToken string
}

// ErrUnauthorized marks a registry's refusal of a pull: no credentials or
// wrong ones.
var ErrUnauthorized = errors.New("unauthorized")

// Pull fetches ref into the store and returns the image. Concurrent pulls
// of the same reference with the same credentials share one download; the
// download stops when every client waiting for it has gone.
func (s *Service) Pull(ctx context.Context, ref string, auth *Auth) (*Image, error) {
	named, err := parseReference(ref)
	if err != nil {
		return nil, err
	}
	key := named.String()
	if auth != nil {
		b, _ := json.Marshal(auth)
		sum := sha256.Sum256(b)
		key += "|" + hex.EncodeToString(sum[:8])
	}
	return s.pulls.Do(ctx, key, func(ctx context.Context) (*Image, error) {
		// Once per download, however many clients share it.
		start := time.Now()
		img, err := s.pull(ctx, named, auth)
		metrics.PullDone(time.Since(start), err)
		return img, err
	})
}

func (s *Service) systemContext(auth *Auth) *types.SystemContext {
	confFile, confDir := s.registriesPaths()
	sys := &types.SystemContext{
		SystemRegistriesConfPath:    confFile,
		SystemRegistriesConfDirPath: confDir,
		OSChoice:                    "linux",
		ArchitectureChoice:          goruntime.GOARCH,
		DockerRegistryUserAgent:     s.opts.UserAgent,
		BigFilesTemporaryDir:        filepath.Join(s.root, "tmp"),
	}
	if auth != nil {
		if auth.Username != "" || auth.Password != "" || auth.IdentityToken != "" {
			sys.DockerAuthConfig = &types.DockerAuthConfig{Username: auth.Username, Password: auth.Password, IdentityToken: auth.IdentityToken}
		}
		sys.DockerBearerRegistryToken = auth.RegistryToken
	}
	return sys
}

func (s *Service) pull(ctx context.Context, named reference.Named, auth *Auth) (*Image, error) {
	ctx, watch, stop := withWatchdog(ctx, s.opts.ProgressTimeout, reference.Domain(named))
	defer stop()
	img, err := s.fetch(ctx, named, auth, watch)
	if err != nil {
		// Layers this pull unpacked before it failed belong to no image:
		// nothing stays from a failed pull. Layers other pulls hold or
		// images and containers use are kept.
		if gcErr := s.gcLayers(); gcErr != nil {
			klog.ErrorS(gcErr, "Image layer GC after a failed pull", "image", named)
		}
		err = cause(ctx, err)
		switch class := pullClass(err); {
		case class == ErrNoSpace:
			// The node's disk, not the registry: name where it is full.
			err = fmt.Errorf("%w: image store %s: %w", class, s.root, err)
		case class != nil:
			err = fmt.Errorf("%w: registry %s: %w", class, reference.Domain(named), err)
		}
		return nil, fmt.Errorf("pull %s: %w", named, err)
	}
	return img, nil
}

func (s *Service) fetch(ctx context.Context, named reference.Named, auth *Auth, watch *watchdog) (*Image, error) {
	ref, err := docker.NewReference(named)
	if err != nil {
		return nil, &ErrInvalidReference{Ref: named.String(), Err: err}
	}
	sys := s.systemContext(auth)
	if err := checkRegistry(sys, named); err != nil {
		return nil, err
	}
	src, err := ref.NewImageSource(ctx, sys)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	u, err := s.unpackSource(ctx, sys, src, named.String(), watch)
	if err != nil {
		return nil, err
	}
	defer u.release()
	var tag string
	if _, ok := named.(reference.NamedTagged); ok {
		tag = named.String()
	}
	img, err := s.commit(u.image, tag, reference.TrimNamed(named).String()+"@"+u.topDigest.String())
	if err != nil {
		return nil, err
	}
	if err := failpoint.Inject("image.pull.after-record"); err != nil {
		return nil, err
	}
	return img, nil
}

// unpacked is an image unpacked into the store but not yet recorded: its
// layers are held (safe from GC) until release is called, which must
// happen after commit or on failure.
type unpacked struct {
	image *Image
	// topDigest is the digest of the manifest or index the source served
	// first: what a repo digest names.
	topDigest Digest
	release   func()
}

// unpackSource checks the image src serves (a registry's or an archive's:
// the same checks for both), resolves a manifest list to the node's
// platform, and unpacks the layers the store lacks through unpackLayer,
// verifying every digest. It stores the config blob; it names nothing.
func (s *Service) unpackSource(ctx context.Context, sys *types.SystemContext, src types.ImageSource, label string, watch *watchdog) (*unpacked, error) {
	unparsed := image.UnparsedInstance(src, nil)
	topManifest, topMIME, err := unparsed.Manifest(ctx)
	if err != nil {
		return nil, err
	}
	watch.touch()
	topDigest := sha256Of(topManifest)
	// A manifest list or OCI index resolves to the node's platform; the
	// instance's manifest is verified against the digest the list names.
	// (The resolved image's Manifest() would return the list itself.)
	manifestDigest, instance := topDigest, unparsed
	if mt := manifest.NormalizedMIMEType(topMIME); manifest.MIMETypeIsMultiImage(mt) {
		list, err := manifest.ListFromBlob(topManifest, mt)
		if err != nil {
			return nil, err
		}
		chosen, err := list.ChooseInstance(sys)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errNoPlatform, err)
		}
		if manifestDigest, err = parseDigestField("manifest list entry digest", chosen); err != nil {
			return nil, err
		}
		d := manifestDigest.OCI()
		instance = image.UnparsedInstance(src, &d)
	}
	img, err := image.FromUnparsedImage(ctx, sys, instance)
	if err != nil {
		return nil, err
	}
	watch.touch()
	stack, err := s.checkManifest(ctx, img)
	if err != nil {
		return nil, err
	}
	// An image pulled before has its config in the store: pulling it again
	// downloads no blob at all.
	configBlob, config, err := s.storedConfig(stack.id, stack.configMediaType)
	if err != nil {
		if configBlob, err = img.ConfigBlob(ctx); err != nil { // verified against its digest
			return nil, err
		}
		metrics.PullBytes(len(configBlob))
		watch.touch()
		if config, err = img.OCIConfig(ctx); err != nil {
			return nil, err
		}
	}
	diffIDs, chains, err := layerStack(config, len(stack.blobs))
	if err != nil {
		return nil, err
	}
	layers := img.LayerInfos()
	// Held from the moment a layer is found or unpacked until the image is
	// committed, so a concurrent RemoveImage's GC cannot take it away.
	s.holdLayers(chains)
	ok := false
	defer func() {
		if !ok {
			s.releaseLayers(chains)
		}
	}()
	metas := make([]layerMeta, len(layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.Limits.FetchesPerPull)
	for i, info := range layers {
		want := layerMeta{ChainID: chains[i], DiffID: diffIDs[i], Blob: stack.blobs[i]}
		if m, err := s.readLayer(want.ChainID); err == nil {
			metas[i] = m
			continue
		}
		g.Go(func() (err error) {
			defer panicguard.Recover("fetch layer "+info.Digest.String(), &err)
			if err := failpoint.Inject("pull.layer"); err != nil {
				return err
			}
			release, err := s.fetchSlot(gctx, watch)
			if err != nil {
				return err
			}
			defer release()
			rc, _, err := src.GetBlob(gctx, info, none.NoCache)
			if err != nil {
				return err
			}
			defer rc.Close()
			m, err := s.unpackLayer(gctx, watch.reader(rc), want)
			if err != nil {
				return err
			}
			klog.V(2).InfoS("Unpacked layer", "image", label, "layer", m.ChainID, "bytes", m.Size)
			metas[i] = m
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := failpoint.Inject("image.pull.after-layers"); err != nil {
		return nil, err
	}
	if err := s.writeBlob(configBlob); err != nil {
		return nil, err
	}
	if err := failpoint.Inject("image.pull.after-config"); err != nil {
		return nil, err
	}
	out := &Image{
		ID:       stack.id,
		Layers:   chains,
		Config:   *config,
		Manifest: manifestDigest,
	}
	// The config counts too, so even an image of empty layers has the
	// non-zero size CRI requires.
	out.Size = uint64(len(configBlob))
	for _, m := range metas {
		out.Size += m.Size
	}
	ok = true
	return &unpacked{image: out, topDigest: topDigest, release: func() { s.releaseLayers(chains) }}, nil
}

// fetchSlot takes one of the node's layer-fetch slots (Limits.FetchesTotal),
// waiting for one while ctx lives, and returns its release. Waiting counts
// as progress for the pull's watchdog: the pull is queued behind others,
// not stalled by its registry, and the others' own watchdogs end theirs.
func (s *Service) fetchSlot(ctx context.Context, watch *watchdog) (func(), error) {
	tick := time.NewTicker(max(watch.timeout/2, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case s.fetchSlots <- struct{}{}:
			return func() { <-s.fetchSlots }, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
			watch.touch()
		}
	}
}

// manifestStack is what a platform manifest says about its image, checked.
type manifestStack struct {
	id              Digest   // the config's digest: the image ID
	configMediaType string   // of the config blob
	blobs           []Digest // the layers' blob digests, bottom first
}

// checkManifest checks the digests of a platform manifest before any of
// them is fetched or names anything: the config's and every layer's, and
// the number of layers against image.max_layers.
func (s *Service) checkManifest(ctx context.Context, img types.Image) (manifestStack, error) {
	var st manifestStack
	_, mt, err := img.Manifest(ctx)
	if err != nil {
		return st, err
	}
	switch manifest.NormalizedMIMEType(mt) {
	case manifest.DockerV2Schema1MediaType, manifest.DockerV2Schema1SignedMediaType:
		return st, invalidImage("manifest mediaType", fmt.Errorf("%s: Docker schema 1 images are not supported", mt))
	}
	info := img.ConfigInfo()
	if st.id, err = parseDigestField("manifest config.digest", info.Digest); err != nil {
		return st, err
	}
	st.configMediaType = info.MediaType
	layers := img.LayerInfos()
	if len(layers) > s.opts.Limits.MaxLayers {
		return st, invalidImage("manifest layers", fmt.Errorf("%d layers, more than image.max_layers (%d)", len(layers), s.opts.Limits.MaxLayers))
	}
	st.blobs = make([]Digest, len(layers))
	for i, l := range layers {
		if st.blobs[i], err = parseDigestField(fmt.Sprintf("manifest layers[%d].digest", i), l.Digest); err != nil {
			return st, err
		}
	}
	return st, nil
}

// layerStack checks an image config's layers against its manifest's
// layer count and returns their diff IDs and chain IDs, bottom first:
// nothing of the config names a layer directory before it passed here.
func layerStack(config *ocispec.Image, manifestLayers int) (diffIDs, chains []Digest, err error) {
	if config.RootFS.Type != "layers" {
		return nil, nil, invalidImage("config rootfs.type", fmt.Errorf("%q is not \"layers\"", config.RootFS.Type))
	}
	if n := len(config.RootFS.DiffIDs); n != manifestLayers {
		return nil, nil, invalidImage("config rootfs.diff_ids", fmt.Errorf("%d diff IDs for the manifest's %d layers", n, manifestLayers))
	}
	diffIDs = make([]Digest, len(config.RootFS.DiffIDs))
	for i, d := range config.RootFS.DiffIDs {
		if diffIDs[i], err = parseDigestField(fmt.Sprintf("config rootfs.diff_ids[%d]", i), d); err != nil {
			return nil, nil, err
		}
	}
	return diffIDs, chainIDs(diffIDs), nil
}

// commit records a pulled image under its new names: the record write is
// the point from which the image exists. A tag that named another image
// moves to this one.
func (s *Service) commit(pulled *Image, tag, repoDigest string) (*Image, error) {
	var tags, digests []string
	if tag != "" {
		tags = []string{tag}
	}
	if repoDigest != "" {
		digests = []string{repoDigest}
	}
	return s.commitNames(pulled, tags, digests)
}

// commitNames is commit for any number of tags and repo digests.
func (s *Service) commitNames(pulled *Image, tags, repoDigests []string) (*Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img := pulled
	if old, ok := s.images[pulled.ID]; ok {
		c := *old
		c.RepoTags = append([]string(nil), old.RepoTags...)
		c.RepoDigests = append([]string(nil), old.RepoDigests...)
		img = &c
	}
	moved := map[Digest]*Image{}
	for _, name := range append(append([]string(nil), tags...), repoDigests...) {
		if other, ok := s.byName[name]; ok && other != img.ID {
			o, ok := moved[other]
			if !ok {
				c := *s.images[other]
				o = &c
				moved[other] = o
			}
			o.RepoTags = withoutName(o.RepoTags, name)
			o.RepoDigests = withoutName(o.RepoDigests, name)
		}
	}
	for _, t := range tags {
		img.RepoTags = addName(img.RepoTags, t)
	}
	for _, d := range repoDigests {
		img.RepoDigests = addName(img.RepoDigests, d)
	}
	for _, o := range moved {
		if err := s.opts.Records.Put(recordKind, o.ID.Hex(), o); err != nil {
			return nil, err
		}
		s.unindex(s.images[o.ID])
		s.index(o)
	}
	if err := s.opts.Records.Put(recordKind, img.ID.Hex(), img); err != nil {
		return nil, err
	}
	if old, ok := s.images[img.ID]; ok {
		s.unindex(old)
	}
	s.index(img)
	c := *img
	return &c, nil
}

func (s *Service) blobPath(d Digest) string {
	return filepath.Join(s.root, "blobs", digestAlgorithm, d.Hex())
}

// writeBlob stores an image config under its digest.
func (s *Service) writeBlob(b []byte) error {
	path := s.blobPath(sha256Of(b))
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "blob-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// storedConfig returns the image config an earlier pull stored, verified
// against its digest, or an error when there is none.
func (s *Service) storedConfig(id Digest, mediaType string) ([]byte, *ocispec.Image, error) {
	if mediaType != manifest.DockerV2Schema2ConfigMediaType && mediaType != ocispec.MediaTypeImageConfig {
		return nil, nil, fmt.Errorf("config media type %q", mediaType)
	}
	b, err := os.ReadFile(s.blobPath(id))
	if err != nil {
		return nil, nil, err
	}
	if got := sha256Of(b); got != id {
		return nil, nil, fmt.Errorf("stored config %s has digest %s", id, got)
	}
	var config ocispec.Image
	if err := json.Unmarshal(b, &config); err != nil {
		return nil, nil, fmt.Errorf("stored config %s: %w", id, err)
	}
	return b, &config, nil
}

func (s *Service) removeBlob(d Digest) error {
	if err := os.Remove(s.blobPath(d)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
