package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"testing"
)

// sampleTree has what the real layers have: nested files, a setuid binary,
// a sticky directory, a file owned by a user, a symlink and hard links whose
// sorted first name ("bin/[") is not the name they were made from.
func sampleTree(reverse bool) *Tree {
	tr := NewTree()
	steps := []func(){
		func() { tr.Dir("tmp", 0o1777, 0, 0) },
		func() { tr.File("usr/local/bin/nnp", 0o4755, []byte("nnp")) },
		func() { tr.Dir("home/default-user", 0o755, 1000, 1000) },
		func() { tr.Symlink("lib64/ld.so", "/lib/ld.so") },
		func() { tr.File("etc/passwd", 0o644, []byte("root:x:0:0::/root:/bin/sh\n")) },
	}
	if reverse {
		for i, j := 0, len(steps)-1; i < j; i, j = i+1, j-1 {
			steps[i], steps[j] = steps[j], steps[i]
		}
	}
	tr.File("bin/busybox", 0o755, []byte("busybox"))
	for _, s := range steps {
		s()
	}
	tr.HardLink("bin/sh", "bin/busybox")
	tr.HardLink("bin/[", "bin/busybox")
	return tr
}

func TestLayerDeterministic(t *testing.T) {
	a, err := BuildLayer(sampleTree(false))
	if err != nil {
		t.Fatal(err)
	}
	b, err := BuildLayer(sampleTree(true))
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest || a.DiffID != b.DiffID {
		t.Fatalf("same tree, different layers: %s/%s vs %s/%s", a.Digest, a.DiffID, b.Digest, b.DiffID)
	}
	if a.Digest != digestOf(a.Data) {
		t.Error("digest is not the sha256 of the blob")
	}

	other := sampleTree(false)
	other.File("etc/passwd", 0o644, []byte("changed\n"))
	c, err := BuildLayer(other)
	if err != nil {
		t.Fatal(err)
	}
	if c.Digest == a.Digest {
		t.Error("different content, same digest")
	}
}

type entry struct {
	typ      byte
	mode     int64
	uid, gid int
	link     string
	data     string
}

func readLayer(t *testing.T, l *Layer) ([]string, map[string]entry) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(l.Data))
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() || zr.Name != "" {
		t.Errorf("gzip header carries a time or name: %v %q", zr.ModTime, zr.Name)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(raw) != l.DiffID {
		t.Error("diff ID is not the sha256 of the tar")
	}
	tr := tar.NewReader(bytes.NewReader(raw))
	var order []string
	got := map[string]entry{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.ModTime.Unix() != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: mtime %v, uname %q, gname %q; want 0 and none", h.Name, h.ModTime, h.Uname, h.Gname)
		}
		data, _ := io.ReadAll(tr)
		order = append(order, h.Name)
		got[h.Name] = entry{h.Typeflag, h.Mode, h.Uid, h.Gid, h.Linkname, string(data)}
	}
	return order, got
}

func TestLayerContent(t *testing.T) {
	l, err := BuildLayer(sampleTree(false))
	if err != nil {
		t.Fatal(err)
	}
	order, got := readLayer(t, l)
	want := []string{
		"bin/", "bin/[", "bin/busybox", "bin/sh",
		"etc/", "etc/passwd",
		"home/", "home/default-user/",
		"lib64/", "lib64/ld.so",
		"tmp/",
		"usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/nnp",
	}
	if len(order) != len(want) {
		t.Fatalf("entries = %q\nwant %q", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("entries = %q\nwant %q", order, want)
		}
	}
	checks := map[string]entry{
		"bin/[":              {typ: tar.TypeReg, mode: 0o755, data: "busybox"},
		"bin/busybox":        {typ: tar.TypeLink, mode: 0o755, link: "bin/["},
		"bin/sh":             {typ: tar.TypeLink, mode: 0o755, link: "bin/["},
		"tmp/":               {typ: tar.TypeDir, mode: 0o1777},
		"usr/local/":         {typ: tar.TypeDir, mode: 0o755}, // added parent
		"usr/local/bin/nnp":  {typ: tar.TypeReg, mode: 0o4755, data: "nnp"},
		"home/default-user/": {typ: tar.TypeDir, mode: 0o755, uid: 1000, gid: 1000},
		"lib64/ld.so":        {typ: tar.TypeSymlink, mode: 0o777, link: "/lib/ld.so"},
	}
	for name, w := range checks {
		if g := got[name]; g != w {
			t.Errorf("%s = %+v, want %+v", name, g, w)
		}
	}
}
