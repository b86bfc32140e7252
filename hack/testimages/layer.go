package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"sort"
	"time"
)

// A Blob is content stored in the registry under its digest.
type Blob struct {
	MediaType string
	Digest    string // "sha256:<hex>"
	Data      []byte
}

// Size is the length of the blob in bytes.
func (b Blob) Size() int64 { return int64(len(b.Data)) }

// newBlob computes the digest of data.
func newBlob(mediaType string, data []byte) Blob {
	return Blob{MediaType: mediaType, Digest: digestOf(data), Data: data}
}

func digestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// A Layer is a gzip-compressed tar of a Tree. Its media type depends on the
// manifest that lists it, so Blob.MediaType is left empty here.
type Layer struct {
	Blob
	DiffID string // digest of the uncompressed tar, for the image config
}

// epoch is the modification time of every entry: rebuilding a layer from the
// same Tree must give the same bytes, hence the same digest, so that a second
// run of the builder finds everything already pushed.
var epoch = time.Unix(0, 0)

// BuildLayer writes t as a deterministic layer: entries sorted by path
// (so a directory comes before its content), mtime 0, the owners the tree
// gives (root unless a file needs another), no user or group names, and a
// gzip stream without name or time. Parent directories the tree does not
// list are added as root-owned 0755, the mode every parent has in these
// images; a directory that needs another mode or owner must be listed.
// Paths sharing an inode are written as hard links to the first of them in
// sorted order, as tar itself does.
func BuildLayer(t *Tree) (*Layer, error) {
	if err := t.Err(); err != nil {
		return nil, fmt.Errorf("build layer: %w", err)
	}
	entries := map[string]*inode{}
	for _, p := range t.Paths() {
		n, _ := t.Lookup(p)
		entries[p] = n
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if _, ok := entries[dir]; !ok {
				if n, ok := t.Lookup(dir); ok {
					entries[dir] = n
				} else {
					entries[dir] = &inode{kind: kindDir, mode: 0o755}
				}
			}
		}
	}
	paths := make([]string, 0, len(entries))
	for p := range entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	written := map[*inode]string{}
	for _, p := range paths {
		n := entries[p]
		hdr := &tar.Header{
			Name:    p,
			Mode:    n.mode,
			Uid:     n.uid,
			Gid:     n.gid,
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		switch n.kind {
		case kindDir:
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case kindSymlink:
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = n.target
		case kindFile:
			if first, ok := written[n]; ok {
				hdr.Typeflag = tar.TypeLink
				hdr.Linkname = first
				break
			}
			written[n] = p
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(n.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("build layer: tar header of %s: %w", p, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(n.data); err != nil {
				return nil, fmt.Errorf("build layer: tar content of %s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("build layer: close tar: %w", err)
	}

	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, fmt.Errorf("build layer: gzip: %w", err)
	}
	// The zero gzip.Header (no name, no mtime) keeps the stream reproducible.
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, fmt.Errorf("build layer: compress: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("build layer: close gzip: %w", err)
	}
	return &Layer{Blob: newBlob("", gz.Bytes()), DiffID: digestOf(raw.Bytes())}, nil
}
