package imageservice

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	dockerarchive "go.podman.io/image/v5/docker/archive"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/types"
	"k8s.io/klog/v2"
)

// Archive formats Import reads.
const (
	FormatDockerArchive = "docker-archive"
	FormatOCIArchive    = "oci-archive"
)

// ErrInvalidArchive marks an archive crid refuses to import: not a tar,
// neither a docker-archive nor an OCI layout, or an entry that could name
// something outside the archive.
var ErrInvalidArchive = errors.New("invalid image archive")

func invalidArchive(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidArchive, fmt.Sprintf(format, a...))
}

// Bounds of an archive's own structure (its layers are bounded by Limits).
const (
	archiveMaxEntries  = 1 << 16
	archiveMaxMetaSize = 4 << 20 // manifest.json, repositories, index.json, oci-layout
	annotationCtrName  = "io.containerd.image.name"
)

// archiveMetaFiles name the archive's own description: never a link, so
// what they say is what the archive holds at that name.
var archiveMetaFiles = map[string]bool{
	"manifest.json":         true,
	"repositories":          true,
	ocispec.ImageIndexFile:  true,
	ocispec.ImageLayoutFile: true,
}

// Imported is one image an archive held, as stored.
type Imported struct {
	Image *Image
	// Names are the tags the archive gave the image (the image may have
	// more, from pulls or other imports).
	Names  []string
	Format string
}

// Import loads every image of one archive read from r — a docker-archive
// (`docker save`) or an OCI image layout as a tar (oci-archive), either
// plain or gzip/zstd compressed — into the store. The layers go through
// the same checks and extractor as a pull (unpackSource): digests are
// verified, the limits apply, layers already stored are reused. The import
// is all or nothing: the images are recorded only once every one of them
// is unpacked; a failure leaves no image, no layer and no temporary file.
//
// Names: a docker-archive's RepoTags; an OCI layout's
// io.containerd.image.name annotation or a full reference in
// org.opencontainers.image.ref.name (a bare tag there names no repository
// and is ignored). Each named image gets the repo digest repo@<digest of
// the manifest the archive holds or, for a docker-archive, of the
// manifest containers/image derives from it>, as containerd's `ctr images
// import` records. An image with no name is stored by ID only.
func (s *Service) Import(ctx context.Context, r io.Reader) (_ []Imported, err error) {
	dir, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "import-")
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer os.RemoveAll(dir)
	defer func() {
		if err != nil {
			// Layers this import unpacked belong to no image: nothing
			// stays from a failed import.
			if gcErr := s.gcLayers(); gcErr != nil {
				klog.ErrorS(gcErr, "Image layer GC after a failed import")
			}
			err = fmt.Errorf("import: %w", err)
		}
	}()
	tarPath := filepath.Join(dir, "archive.tar")
	format, err := receiveArchive(ctx, r, tarPath)
	if err != nil {
		return nil, err
	}
	sys := s.systemContext(nil)
	sys.BigFilesTemporaryDir = dir

	type source struct {
		ref   types.ImageReference
		names []reference.Named
	}
	var sources []source
	switch format {
	case FormatDockerArchive:
		ar, err := dockerarchive.NewReader(sys, tarPath)
		if err != nil {
			return nil, invalidArchive("docker-archive: %v", err)
		}
		defer ar.Close()
		groups, err := ar.List()
		if err != nil {
			return nil, invalidArchive("docker-archive: %v", err)
		}
		for _, refs := range groups {
			src := source{ref: refs[0]}
			for _, ref := range refs {
				if n := ref.DockerReference(); n != nil {
					src.names = append(src.names, n)
				}
			}
			sources = append(sources, src)
		}
	case FormatOCIArchive:
		layoutDir := filepath.Join(dir, "layout")
		if err := extractArchive(ctx, tarPath, layoutDir); err != nil {
			return nil, err
		}
		if err := os.Remove(tarPath); err != nil {
			return nil, err
		}
		root, err := os.OpenRoot(layoutDir)
		if err != nil {
			return nil, err
		}
		defer root.Close()
		lr := layout.NewReaderWithRoot(root)
		list, err := layout.List(layoutDir)
		if err != nil {
			return nil, invalidArchive("OCI layout: %v", err)
		}
		for i, res := range list {
			ref, err := lr.NewIndexReference(layoutDir, i)
			if err != nil {
				return nil, invalidArchive("OCI layout: %v", err)
			}
			src := source{ref: ref}
			if n := ociImageName(res.ManifestDescriptor.Annotations); n != nil {
				src.names = append(src.names, n)
			}
			sources = append(sources, src)
		}
	}
	if len(sources) == 0 {
		return nil, invalidArchive("%s holds no image", format)
	}

	var done []*unpacked
	defer func() {
		for _, u := range done {
			u.release()
			if err != nil {
				s.dropUnrecordedConfig(u.image.ID)
			}
		}
	}()
	ctx, watch, stop := withWatchdog(ctx, s.opts.ProgressTimeout, "import")
	defer stop()
	for i, src := range sources {
		u, err := s.unpackArchived(ctx, sys, src.ref, watch)
		if err != nil {
			return nil, fmt.Errorf("%s image %d: %w", format, i, cause(ctx, err))
		}
		done = append(done, u)
	}
	out := make([]Imported, 0, len(done))
	for i, u := range done {
		var tags, digests []string
		for _, n := range sources[i].names {
			tags = append(tags, n.String())
			digests = append(digests, reference.TrimNamed(n).String()+"@"+u.topDigest.String())
		}
		img, err := s.commitNames(u.image, tags, digests)
		if err != nil {
			return nil, err
		}
		out = append(out, Imported{Image: img, Names: tags, Format: format})
	}
	return out, nil
}

// dropUnrecordedConfig removes the config blob an unpack stored for an
// image that was then not recorded.
func (s *Service) dropUnrecordedConfig(id Digest) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, ok := s.images[id]; ok {
		return
	}
	if err := s.removeBlob(id); err != nil {
		klog.ErrorS(err, "Removing the config of an image not imported", "image", id)
	}
}

func (s *Service) unpackArchived(ctx context.Context, sys *types.SystemContext, ref types.ImageReference, watch *watchdog) (*unpacked, error) {
	src, err := ref.NewImageSource(ctx, sys)
	if err != nil {
		return nil, invalidArchive("%v", err)
	}
	defer src.Close()
	return s.unpackSource(ctx, sys, &localSource{ImageSource: src}, "archive", watch)
}

// localSource refuses what an archive's image must not do: have crid
// fetch a layer from a URL (OCI "non-distributable" layers). An import
// never reaches the network.
type localSource struct{ types.ImageSource }

func (l *localSource) GetBlob(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache) (io.ReadCloser, int64, error) {
	if len(info.URLs) > 0 {
		return nil, 0, invalidImage("manifest layer urls", fmt.Errorf("layer %s is to be fetched from %v: an import fetches nothing", info.Digest, info.URLs))
	}
	return l.ImageSource.GetBlob(ctx, info, cache)
}

// ociImageName is the name an OCI index entry gives its image, or nil.
func ociImageName(ann map[string]string) reference.Named {
	for _, v := range []string{ann[annotationCtrName], ann[ocispec.AnnotationRefName]} {
		// A ref.name of only a tag ("1.0", "latest") names no repository.
		if v == "" || !strings.ContainsAny(v, "/:@") {
			continue
		}
		n, err := reference.ParseNormalizedNamed(v)
		if err != nil {
			continue
		}
		if _, ok := n.(reference.NamedTagged); !ok {
			continue // a digest alone is no name to list an image by
		}
		return n
	}
	return nil
}

// receiveArchive writes r, decompressed, to path as a plain tar, checking
// every entry as it passes, and says which format it is.
func receiveArchive(ctx context.Context, r io.Reader, dst string) (string, error) {
	dec, err := decompress(&ctxReader{ctx: ctx, r: r})
	if err != nil {
		return "", invalidArchive("decompress: %v", err)
	}
	defer dec.Close()
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	stream := io.TeeReader(dec, f)
	tr := tar.NewReader(stream)
	seen := map[string]byte{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			var pe *os.PathError
			if errors.As(err, &pe) {
				return "", err // the temp file, not the archive
			}
			return "", invalidArchive("read: %v", err)
		}
		if len(seen) >= archiveMaxEntries {
			return "", invalidArchive("more than %d entries", archiveMaxEntries)
		}
		name, err := checkArchiveEntry(hdr)
		if err != nil {
			return "", err
		}
		if name == "." {
			continue
		}
		if _, dup := seen[name]; dup {
			return "", invalidArchive("entry %q appears twice", hdr.Name)
		}
		seen[name] = hdr.Typeflag
	}
	// Trailing bytes after the end marker belong to the file too.
	if _, err := io.Copy(io.Discard, stream); err != nil {
		return "", invalidArchive("read: %v", err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	switch {
	case seen["manifest.json"] == tar.TypeReg:
		// docker save since Docker 25 writes an OCI layout too; its
		// manifest.json carries the tags.
		return FormatDockerArchive, nil
	case seen[ocispec.ImageIndexFile] == tar.TypeReg && seen[ocispec.ImageLayoutFile] == tar.TypeReg:
		return FormatOCIArchive, nil
	}
	return "", invalidArchive("neither a docker-archive (no manifest.json) nor an OCI layout (no index.json and oci-layout)")
}

// checkArchiveEntry refuses an entry that is not a plain file or
// directory with a clean relative name, or a symlink resolving to another
// name inside the archive; it returns the cleaned name.
func checkArchiveEntry(hdr *tar.Header) (string, error) {
	name := strings.TrimPrefix(hdr.Name, "./")
	if hdr.Typeflag == tar.TypeDir {
		name = strings.TrimSuffix(name, "/")
		if name == "" || name == "." {
			return ".", nil // the top directory, as `tar -C dir -c .` writes it
		}
	}
	if name == "" || name == "." || path.IsAbs(name) || path.Clean(name) != name || name == ".." || strings.HasPrefix(name, "../") {
		return "", invalidArchive("entry %q: not a clean relative path", hdr.Name)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir:
	case tar.TypeSymlink:
		if archiveMetaFiles[name] {
			return "", invalidArchive("%s is a symlink (to %q)", name, hdr.Linkname)
		}
		target := path.Join(path.Dir(name), hdr.Linkname)
		if path.IsAbs(hdr.Linkname) || target == ".." || strings.HasPrefix(target, "../") {
			return "", invalidArchive("symlink %q points outside the archive (%q)", hdr.Name, hdr.Linkname)
		}
	default:
		return "", invalidArchive("entry %q: type %q is not a file, directory or symlink", hdr.Name, hdr.Typeflag)
	}
	if archiveMetaFiles[name] && hdr.Size > archiveMaxMetaSize {
		return "", invalidArchive("%s: %d bytes, more than %d", name, hdr.Size, archiveMaxMetaSize)
	}
	return name, nil
}

// extractArchive unpacks a checked OCI archive into dst, which it creates.
// Only files and directories are written (an OCI layout has no links), by
// names checkArchiveEntry cleaned, so nothing can land outside dst.
func extractArchive(ctx context.Context, tarPath, dst string) error {
	f, err := os.Open(tarPath)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(&ctxReader{ctx: ctx, r: f})
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return invalidArchive("read: %v", err)
		}
		name, err := checkArchiveEntry(hdr)
		if err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if name == "." {
				continue
			}
			if err := root.MkdirAll(name, 0o700); err != nil {
				return err
			}
		case tar.TypeSymlink:
			return invalidArchive("OCI layout entry %q is a symlink", hdr.Name)
		case tar.TypeReg:
			if d := path.Dir(name); d != "." {
				if err := root.MkdirAll(d, 0o700); err != nil {
					return err
				}
			}
			out, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}
