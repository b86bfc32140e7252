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

	"github.com/docker/distribution/registry/api/errcode"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/metrics"
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
	sys := &types.SystemContext{
		SystemRegistriesConfPath:    s.opts.RegistriesConf,
		SystemRegistriesConfDirPath: s.opts.RegistriesConf + ".d",
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
		var (
			badCreds docker.ErrUnauthorizedForCredentials
			code     errcode.Error
		)
		if errors.As(err, &badCreds) || (errors.As(err, &code) && code.Code == errcode.ErrorCodeUnauthorized) {
			err = fmt.Errorf("%w: registry %s: %w", ErrUnauthorized, reference.Domain(named), err)
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
	src, err := ref.NewImageSource(ctx, sys)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	unparsed := image.UnparsedInstance(src, nil)
	topManifest, topMIME, err := unparsed.Manifest(ctx)
	if err != nil {
		return nil, err
	}
	watch.touch()
	topDigest, err := manifest.Digest(topManifest)
	if err != nil {
		return nil, err
	}
	// A manifest list or OCI index resolves to the node's platform; the
	// instance's manifest is verified against the digest the list names.
	// (The resolved image's Manifest() would return the list itself.)
	manifestDigest, instance := topDigest, unparsed
	if mt := manifest.NormalizedMIMEType(topMIME); manifest.MIMETypeIsMultiImage(mt) {
		list, err := manifest.ListFromBlob(topManifest, mt)
		if err != nil {
			return nil, err
		}
		if manifestDigest, err = list.ChooseInstance(sys); err != nil {
			return nil, err
		}
		instance = image.UnparsedInstance(src, &manifestDigest)
	}
	img, err := image.FromUnparsedImage(ctx, sys, instance)
	if err != nil {
		return nil, err
	}
	watch.touch()
	configInfo := img.ConfigInfo()
	// An image pulled before has its config in the store: pulling it again
	// downloads no blob at all.
	configBlob, config, err := s.storedConfig(configInfo)
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

	layers := img.LayerInfos()
	if len(layers) != len(config.RootFS.DiffIDs) {
		return nil, fmt.Errorf("image %s: manifest has %d layers but config %d diff IDs", configInfo.Digest, len(layers), len(config.RootFS.DiffIDs))
	}
	chains := chainIDs(config.RootFS.DiffIDs)
	// Held from the moment a layer is found or unpacked until the image is
	// committed, so a concurrent RemoveImage's GC cannot take it away.
	s.holdLayers(chains)
	defer s.releaseLayers(chains)
	metas := make([]layerMeta, len(layers))
	g, gctx := errgroup.WithContext(ctx)
	for i, info := range layers {
		want := layerMeta{ChainID: chains[i], DiffID: config.RootFS.DiffIDs[i], Blob: info.Digest}
		if m, err := s.readLayer(want.ChainID); err == nil {
			metas[i] = m
			continue
		}
		g.Go(func() error {
			rc, _, err := src.GetBlob(gctx, info, none.NoCache)
			if err != nil {
				return err
			}
			defer rc.Close()
			m, err := s.unpackLayer(gctx, watch.reader(rc), want)
			if err != nil {
				return err
			}
			klog.V(2).InfoS("Unpacked layer", "image", named, "layer", m.ChainID, "bytes", m.Size)
			metas[i] = m
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	if err := s.writeBlob(configBlob); err != nil {
		return nil, err
	}
	pulled := &Image{
		ID:       configInfo.Digest,
		Layers:   chains,
		Config:   *config,
		Manifest: manifestDigest,
	}
	// The config counts too, so even an image of empty layers has the
	// non-zero size CRI requires.
	pulled.Size = uint64(len(configBlob))
	for _, m := range metas {
		pulled.Size += m.Size
	}
	var tag string
	if _, ok := named.(reference.NamedTagged); ok {
		tag = named.String()
	}
	return s.commit(pulled, tag, reference.TrimNamed(named).String()+"@"+topDigest.String())
}

// commit records a pulled image under its new names: the record write is
// the point from which the image exists. A tag that named another image
// moves to this one.
func (s *Service) commit(pulled *Image, tag, repoDigest string) (*Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img := pulled
	if old, ok := s.images[pulled.ID]; ok {
		c := *old
		c.RepoTags = append([]string(nil), old.RepoTags...)
		c.RepoDigests = append([]string(nil), old.RepoDigests...)
		img = &c
	}
	var moved []*Image
	for _, name := range []string{tag, repoDigest} {
		if name == "" {
			continue
		}
		if other, ok := s.byName[name]; ok && other != img.ID {
			o := *s.images[other]
			o.RepoTags = withoutName(o.RepoTags, name)
			o.RepoDigests = withoutName(o.RepoDigests, name)
			moved = append(moved, &o)
		}
	}
	if tag != "" {
		img.RepoTags = addName(img.RepoTags, tag)
	}
	img.RepoDigests = addName(img.RepoDigests, repoDigest)
	for _, o := range moved {
		if err := s.opts.Records.Put(recordKind, o.ID.Encoded(), o); err != nil {
			return nil, err
		}
		s.unindex(s.images[o.ID])
		s.index(o)
	}
	if err := s.opts.Records.Put(recordKind, img.ID.Encoded(), img); err != nil {
		return nil, err
	}
	if old, ok := s.images[img.ID]; ok {
		s.unindex(old)
	}
	s.index(img)
	c := *img
	return &c, nil
}

func (s *Service) blobPath(d digest.Digest) string {
	return filepath.Join(s.root, "blobs", d.Algorithm().String(), d.Encoded())
}

// writeBlob stores an image config under its digest.
func (s *Service) writeBlob(b []byte) error {
	d := digest.FromBytes(b)
	path := s.blobPath(d)
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
func (s *Service) storedConfig(info types.BlobInfo) ([]byte, *ocispec.Image, error) {
	if info.MediaType != manifest.DockerV2Schema2ConfigMediaType && info.MediaType != ocispec.MediaTypeImageConfig {
		return nil, nil, fmt.Errorf("config media type %q", info.MediaType)
	}
	if err := info.Digest.Validate(); err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(s.blobPath(info.Digest))
	if err != nil {
		return nil, nil, err
	}
	if got := info.Digest.Algorithm().FromBytes(b); got != info.Digest {
		return nil, nil, fmt.Errorf("stored config %s has digest %s", info.Digest, got)
	}
	var config ocispec.Image
	if err := json.Unmarshal(b, &config); err != nil {
		return nil, nil, fmt.Errorf("stored config %s: %w", info.Digest, err)
	}
	return b, &config, nil
}

func (s *Service) removeBlob(d digest.Digest) error {
	if err := os.Remove(s.blobPath(d)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
