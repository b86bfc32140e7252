package imageservice

import (
	"archive/tar"
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
	"strings"
	"syscall"
	"time"

	"go.podman.io/image/v5/docker/reference"
	"golang.org/x/sys/unix"
)

// Export writes a docker-archive of the image name names (ID, prefix, tag
// or digest reference) to w: manifest.json, repositories, the config and
// one layer.tar per layer, as `docker save` wrote them before Docker 25,
// which `docker load` and Import both read.
//
// Layer blobs are not kept after unpacking, so each layer tar is written
// anew from its unpacked directory: deterministically (names in lexical
// order, owners, modes, mtimes, xattrs, hard links, overlay whiteouts
// turned back into .wh. entries; no atime, ctime or user names), so two
// exports of one layer are byte for byte equal. Its digest is not the
// original layer's, so the exported config carries the new diff IDs and
// the exported image has a new ID; its content, config and tags are the
// same.
func (s *Service) Export(ctx context.Context, name string, w io.Writer) (*Image, error) {
	s.mu.RLock()
	found, err := s.lookup(name)
	var img *Image
	if found != nil {
		img = found.clone()
	}
	s.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	if img == nil {
		return nil, fmt.Errorf("%w: %s", ErrImageNotFound, name)
	}
	// Safe from a concurrent RemoveImage's layer GC until written.
	s.holdLayers(img.Layers)
	defer s.releaseLayers(img.Layers)
	if missing, ok := s.missingLayer(img); !ok {
		return nil, fmt.Errorf("export %s: layer %s is gone", img.ID, missing)
	}
	configBlob, err := os.ReadFile(s.blobPath(img.ID))
	if err != nil {
		return nil, fmt.Errorf("export %s: config: %w", img.ID, err)
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "export-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	tw := tar.NewWriter(w)
	var diffIDs []string
	var layerPaths []string
	written := map[string]bool{}
	for _, chain := range img.Layers {
		d, size, f, err := s.layerTar(ctx, chain, tmp)
		if err != nil {
			return nil, fmt.Errorf("export %s: %w", img.ID, err)
		}
		p := d.Hex() + "/layer.tar"
		diffIDs = append(diffIDs, d.String())
		layerPaths = append(layerPaths, p)
		if !written[p] {
			written[p] = true
			err := writeTarDir(tw, d.Hex()+"/")
			if err == nil {
				err = writeTarFile(tw, p, size, f)
			}
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("export %s: %w", img.ID, err)
			}
		}
		f.Close()
		os.Remove(f.Name())
	}
	config, err := withDiffIDs(configBlob, diffIDs)
	if err != nil {
		return nil, fmt.Errorf("export %s: config: %w", img.ID, err)
	}
	id := sha256Of(config)
	configPath := id.Hex() + ".json"
	var tags []string
	repos := map[string]map[string]string{}
	for _, t := range img.RepoTags {
		named, err := reference.ParseNormalizedNamed(t)
		if err != nil {
			continue
		}
		tagged, ok := named.(reference.NamedTagged)
		if !ok {
			continue
		}
		tags = append(tags, reference.FamiliarString(named))
		repo := reference.FamiliarName(named)
		if repos[repo] == nil {
			repos[repo] = map[string]string{}
		}
		repos[repo][tagged.Tag()] = strings.TrimSuffix(layerPaths[len(layerPaths)-1], "/layer.tar")
	}
	manifest, err := json.Marshal([]map[string]any{{"Config": configPath, "RepoTags": tags, "Layers": layerPaths}})
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		body []byte
	}{{configPath, config}, {"manifest.json", manifest}} {
		if err := writeTarBytes(tw, f.name, f.body); err != nil {
			return nil, fmt.Errorf("export %s: %w", img.ID, err)
		}
	}
	if len(repos) > 0 && len(img.Layers) > 0 {
		b, err := json.Marshal(repos)
		if err != nil {
			return nil, err
		}
		if err := writeTarBytes(tw, "repositories", b); err != nil {
			return nil, fmt.Errorf("export %s: %w", img.ID, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("export %s: %w", img.ID, err)
	}
	return img, nil
}

// withDiffIDs returns the config with rootfs.diff_ids replaced, every
// other field as it was.
func withDiffIDs(config []byte, diffIDs []string) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(config, &m); err != nil {
		return nil, err
	}
	var rootfs map[string]json.RawMessage
	if err := json.Unmarshal(m["rootfs"], &rootfs); err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	if diffIDs == nil {
		diffIDs = []string{}
	}
	var err error
	if rootfs["diff_ids"], err = json.Marshal(diffIDs); err != nil {
		return nil, err
	}
	if m["rootfs"], err = json.Marshal(rootfs); err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

// exportTime is the modification time of the archive's own entries: fixed,
// so that exports are reproducible.
var exportTime = time.Unix(0, 0)

func writeTarDir(tw *tar.Writer, name string) error {
	return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: exportTime})
}

func writeTarBytes(tw *tar.Writer, name string, b []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: exportTime}); err != nil {
		return err
	}
	_, err := tw.Write(b)
	return err
}

func writeTarFile(tw *tar.Writer, name string, size int64, f *os.File) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size, ModTime: exportTime}); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, err := io.Copy(tw, f)
	return err
}

// layerTar writes the layer's tar into a file under dir and returns its
// digest (the new diff ID), its size and the file.
func (s *Service) layerTar(ctx context.Context, chain Digest, dir string) (Digest, int64, *os.File, error) {
	f, err := os.CreateTemp(dir, "layer-")
	if err != nil {
		return Digest{}, 0, nil, err
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	if err := tarLayer(ctx, s.LayerDiffDir(chain), cw); err != nil {
		f.Close()
		return Digest{}, 0, nil, fmt.Errorf("layer %s: %w", chain, err)
	}
	return Digest{hex: hex.EncodeToString(h.Sum(nil))}, cw.n, f, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// Overlay markers untar writes, which become .wh. entries again.
var opaqueXattrs = []string{"trusted.overlay.opaque", "user.overlay.opaque"}

// tarLayer writes the tree under diff as an OCI layer tar: the inverse of
// untar, in lexical order, never following a symlink.
func tarLayer(ctx context.Context, diff string, w io.Writer) error {
	root, err := os.OpenRoot(diff)
	if err != nil {
		return err
	}
	defer root.Close()
	tw := tar.NewWriter(w)
	links := map[uint64]string{} // inode → first name, for hard links
	err = filepath.WalkDir(diff, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(diff, p)
		if err != nil || rel == "." {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: p, Err: err}
		}
		mode := st.Mode & unix.S_IFMT
		hdr := &tar.Header{
			Name:    rel,
			Mode:    int64(st.Mode & 0o7777),
			Uid:     int(st.Uid),
			Gid:     int(st.Gid),
			ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
			Format:  tar.FormatPAX,
		}
		if mode == unix.S_IFCHR && st.Rdev == 0 {
			// An overlay whiteout: the file is deleted in this layer. Its
			// time is the unpack's, which untar does not take from the tar:
			// a fixed one keeps exports of one image from two stores equal.
			dirName, base := filepath.Split(rel)
			hdr.Name = dirName + whiteoutPrefix + base
			hdr.Typeflag, hdr.Mode, hdr.ModTime = tar.TypeReg, 0o644, exportTime
			return tw.WriteHeader(hdr)
		}
		if err := addXattrs(p, hdr); err != nil {
			return err
		}
		switch mode {
		case unix.S_IFDIR:
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
			opaque := false
			for _, x := range opaqueXattrs {
				if v, err := getxattr(p, x); err == nil && string(v) == "y" {
					opaque = true
				}
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if opaque {
				return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: hdr.Name + whiteoutOpaqueDir, Mode: 0o644, ModTime: hdr.ModTime, Format: tar.FormatPAX})
			}
			return nil
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
			return tw.WriteHeader(hdr)
		case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
			hdr.Typeflag = map[uint32]byte{unix.S_IFCHR: tar.TypeChar, unix.S_IFBLK: tar.TypeBlock, unix.S_IFIFO: tar.TypeFifo}[mode]
			hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
			return tw.WriteHeader(hdr)
		case unix.S_IFREG:
			if st.Nlink > 1 {
				if first, ok := links[st.Ino]; ok {
					hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
					return tw.WriteHeader(hdr)
				}
				links[st.Ino] = rel
			}
			hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
			f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if n, err := io.Copy(tw, f); err != nil || n != st.Size {
				return fmt.Errorf("read %s: %d of %d bytes: %w", rel, n, st.Size, err)
			}
			return nil
		}
		return fmt.Errorf("%s: unsupported file type %o", rel, mode)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// addXattrs records the file's extended attributes but overlay's own.
func addXattrs(p string, hdr *tar.Header) error {
	size, err := unix.Llistxattr(p, nil)
	if err != nil || size == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return err
	}
	buf := make([]byte, size)
	if size, err = unix.Llistxattr(p, buf); err != nil {
		return err
	}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:size]), "\x00"), "\x00") {
		if name == "" || strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.") {
			continue
		}
		v, err := getxattr(p, name)
		if err != nil {
			return err
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords[paxSchilyXattr+name] = string(v)
	}
	return nil
}

func getxattr(p, name string) ([]byte, error) {
	size, err := unix.Lgetxattr(p, name, nil)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, size)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}
