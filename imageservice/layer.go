package imageservice

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	kgzip "github.com/klauspost/compress/gzip"
	"github.com/moby/go-archive/compression"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// layerMeta is written beside each unpacked layer, inside the directory
// that is renamed into place, so a layer and its metadata appear together.
type layerMeta struct {
	ChainID Digest `json:"chain_id"`
	DiffID  Digest `json:"diff_id"`
	// Blob is the compressed digest the layer was downloaded as.
	Blob   Digest `json:"blob"`
	Size   uint64 `json:"size"`
	Inodes uint64 `json:"inodes"`
}

const (
	layerDiffDir  = "diff"
	layerMetaFile = "layer.json"
)

// chainIDs computes the OCI chain IDs of a stack of diff IDs: a layer's
// content is only meaningful on top of the layers below it, so layers are
// stored and shared by chain ID.
func chainIDs(diffIDs []Digest) []Digest {
	out := make([]Digest, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		out[i] = sha256Of([]byte(out[i-1].String() + " " + d.String()))
	}
	return out
}

// layerDir is the directory of an unpacked layer: <root>/layers/<hex>.
func (s *Service) layerDir(chainID Digest) string {
	return filepath.Join(s.root, "layers", chainID.Hex())
}

// LayerDiffDir is the directory a container's overlay mount uses as the
// lower dir for a layer.
func (s *Service) LayerDiffDir(chainID Digest) string {
	return filepath.Join(s.layerDir(chainID), layerDiffDir)
}

// readLayer returns the metadata of an unpacked layer, or an error that
// satisfies errors.Is(err, fs.ErrNotExist) when it is not unpacked.
func (s *Service) readLayer(chainID Digest) (layerMeta, error) {
	var m layerMeta
	b, err := os.ReadFile(filepath.Join(s.layerDir(chainID), layerMetaFile))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("layer %s: corrupt metadata: %w", chainID, err)
	}
	return m, nil
}

// unpackLayer streams one compressed layer blob into a fresh directory,
// verifying both the blob digest and the diff ID as the bytes pass, and
// renames it into place only when both match: a layer directory exists
// complete or not at all.
//
// Extraction (untar) resolves every path inside the directory in the kernel
// (openat2 RESOLVE_IN_ROOT): entries with "..", absolute or relative
// symlinks pointing out and hard links to outside cannot touch anything
// beyond it.
func (s *Service) unpackLayer(ctx context.Context, blob io.Reader, want layerMeta) (layerMeta, error) {
	tmp, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "layer-")
	if err != nil {
		return want, fmt.Errorf("layer %s: %w", want.Blob, err)
	}
	defer os.RemoveAll(tmp)
	diff := filepath.Join(tmp, layerDiffDir)
	if err := os.Mkdir(diff, 0o755); err != nil {
		return want, err
	}

	blobHash := sha256.New()
	compressed := io.TeeReader(&ctxReader{ctx: ctx, r: blob}, blobHash)
	decompressed, err := decompress(compressed)
	if err != nil {
		return want, fmt.Errorf("layer %s: decompress: %w", want.Blob, err)
	}
	defer decompressed.Close()
	diffHash := sha256.New()
	lim := s.opts.Limits
	tarStream := io.TeeReader(&capReader{r: decompressed, left: lim.MaxLayerBytes}, diffHash)
	if err := untar(tarStream, diff, untarLimits{Files: lim.MaxLayerFiles, Bytes: lim.MaxLayerBytes}); err != nil {
		if ctx.Err() != nil {
			return want, ctx.Err()
		}
		return want, fmt.Errorf("layer %s: unpack: %w", want.Blob, err)
	}
	// The tar reader stops at the end-of-archive marker: hash the rest so
	// the digests cover the whole blob.
	if _, err := io.Copy(io.Discard, tarStream); err != nil {
		return want, fmt.Errorf("layer %s: read: %w", want.Blob, err)
	}
	if _, err := io.Copy(io.Discard, compressed); err != nil {
		return want, fmt.Errorf("layer %s: read: %w", want.Blob, err)
	}
	if got := hex.EncodeToString(blobHash.Sum(nil)); got != want.Blob.Hex() {
		return want, fmt.Errorf("%w: layer blob: the source sent sha256:%s for %s", ErrDigestMismatch, got, want.Blob)
	}
	if got := hex.EncodeToString(diffHash.Sum(nil)); got != want.DiffID.Hex() {
		return want, fmt.Errorf("%w: layer %s: uncompressed digest sha256:%s does not match the config's diff ID %s", ErrDigestMismatch, want.Blob, got, want.DiffID)
	}

	meta := want
	if meta.Size, meta.Inodes, err = usage(diff); err != nil {
		return want, fmt.Errorf("layer %s: %w", want.Blob, err)
	}
	b, err := json.Marshal(meta)
	if err != nil {
		return want, err
	}
	if err := os.WriteFile(filepath.Join(tmp, layerMetaFile), b, 0o600); err != nil {
		return want, err
	}
	// Every file and directory unpacked, and layer.json, reach the disk
	// before the rename makes the layer visible under its chain ID: after
	// a power loss a layer is complete or absent, never a complete-looking
	// directory of truncated files. One syncfs of the store's filesystem
	// costs less than an fsync per file of a layer of many small ones.
	start := time.Now()
	if err := layerSync(tmp); err != nil {
		return want, fmt.Errorf("layer %s: %w", want.Blob, err)
	}
	klog.V(3).InfoS("Synced layer", "layer", meta.ChainID, "duration", time.Since(start))
	if err := os.Rename(tmp, s.layerDir(meta.ChainID)); err != nil {
		// A concurrent pull of another image with the same layer won.
		if errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTEMPTY) {
			return s.readLayer(meta.ChainID)
		}
		return want, fmt.Errorf("layer %s: %w", want.Blob, err)
	}
	if err := syncDir(filepath.Join(s.root, "layers")); err != nil {
		return want, fmt.Errorf("layer %s: %w", want.Blob, err)
	}
	return meta, nil
}

// layerSync is syncFS; tests watch it.
var layerSync = syncFS

// syncFS flushes the filesystem holding dir to disk (syncfs(2), which
// since Linux 5.8 also reports write-back errors).
func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return &os.PathError{Op: "syncfs", Path: dir, Err: err}
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// removeLayer deletes an unpacked layer: renamed out of the way first so a
// crash mid-delete never leaves a half layer under its chain ID.
func (s *Service) removeLayer(chainID Digest) error {
	tmp, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "rm-")
	if err != nil {
		return err
	}
	if err := os.Rename(s.layerDir(chainID), filepath.Join(tmp, "layer")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		os.RemoveAll(tmp)
		return fmt.Errorf("remove layer %s: %w", chainID, err)
	}
	return os.RemoveAll(tmp)
}

// usage returns the bytes and inodes used under dir.
func usage(dir string) (bytes, inodes uint64, err error) {
	seen := map[uint64]bool{}
	err = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if seen[st.Ino] {
			return nil // a hard link: counted once
		}
		seen[st.Ino] = true
		inodes++
		bytes += uint64(st.Blocks) * 512
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("usage of %s: %w", dir, err)
	}
	return bytes, inodes, nil
}

// capReader fails with an error wrapping ErrTooLarge once more than left
// bytes come through: a layer's uncompressed stream is bounded however
// well it compresses.
type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if c.left -= int64(n); c.left < 0 {
		return 0, fmt.Errorf("%w: uncompressed layer over image.max_layer_bytes", ErrTooLarge)
	}
	return n, err
}

// ctxReader fails reads once ctx is done, so a cancelled pull stops
// consuming the registry's stream at once.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}

// decompress opens a layer stream. gzip, by far the most common, goes
// through klauspost/compress, whose inflate is about 1.3x the standard
// library's (measured on a 49 MB layer here: 256 vs 323-454 ms); anything
// else (zstd, uncompressed) through go-archive's detection.
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(3)
	if err == nil && magic[0] == 0x1f && magic[1] == 0x8b && magic[2] == 0x08 {
		return kgzip.NewReader(br)
	}
	return compression.DecompressStream(br)
}
