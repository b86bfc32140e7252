package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildFilesLayer builds a small many-files layer and reads it back:
// the files, directories and symlinks it promises, text that compresses
// like source code, and digests that match its bytes.
func TestBuildFilesLayer(t *testing.T) {
	l, err := buildFilesLayer("t", 7, 120, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := digestOf(sha256sum(l.data)); got != l.digest {
		t.Fatalf("blob digest %s, its bytes hash to %s", l.digest, got)
	}
	zr, err := gzip.NewReader(bytes.NewReader(l.data))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if got := digestOf(sha256sum(raw)); got != l.diffID {
		t.Fatalf("diff ID %s, the tar hashes to %s", l.diffID, got)
	}
	tr := tar.NewReader(bytes.NewReader(raw))
	var files, links, dirs int
	var size int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch h.Typeflag {
		case tar.TypeReg:
			files++
			size += h.Size
		case tar.TypeSymlink:
			links++
		case tar.TypeDir:
			dirs++
		}
	}
	if files != 120 || links != 2 || dirs < 5 {
		t.Fatalf("%d files, %d symlinks, %d dirs; want 120, 2, at least 5", files, links, dirs)
	}
	if size < 800_000 || size > 1_200_000 {
		t.Fatalf("%d bytes of files, want about 1 MB", size)
	}
	if ratio := float64(size) / float64(len(l.data)); ratio < 2 || ratio > 6 {
		t.Fatalf("compresses %.1f:1, want text-like (2-6)", ratio)
	}
	again, err := buildFilesLayer("t", 7, 120, 1)
	if err != nil || again.digest != l.digest {
		t.Fatalf("the same recipe gave %s, then %s (%v)", l.digest, again.digest, err)
	}
}

func sha256sum(b []byte) hash.Hash {
	h := sha256.New()
	h.Write(b)
	return h
}

// TestFloorLayer runs the pull floor's pipeline (GET, sha256, pigz -d,
// sha256, tar -x) on a small layer served over HTTP, and checks that it
// refuses a wrong digest.
func TestFloorLayer(t *testing.T) {
	l, err := buildFilesLayer("t", 8, 60, 1)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(l.data) }))
	defer srv.Close()
	dir := filepath.Join(t.TempDir(), "x")
	if err := floorLayer(context.Background(), srv.URL, l.digest, l.diffID, dir); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "usr/lib/t/pkg000/mod00/f00000.py"))
	if err != nil || len(data) == 0 {
		t.Fatalf("first file: %d bytes, %v", len(data), err)
	}
	if err := floorLayer(context.Background(), srv.URL, l.diffID, l.diffID, filepath.Join(t.TempDir(), "y")); err == nil || !strings.Contains(err.Error(), "blob digest") {
		t.Fatalf("a wrong blob digest: %v", err)
	}
}
