package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/": "usr/bin",
		"usr//bin":  "usr/bin",
		"./etc/x":   "etc/x",
		"bin/[":     "bin/[",
	} {
		got, err := cleanPath(in)
		if err != nil || got != want {
			t.Errorf("cleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "/", ".", "..", "../etc", "a/../../b", "a/.."} {
		if got, err := cleanPath(bad); err == nil {
			t.Errorf("cleanPath(%q) = %q, want an error", bad, got)
		}
	}
}

func TestTreeStickyError(t *testing.T) {
	tr := NewTree()
	tr.File("a", 0o644, nil)
	tr.HardLink("b", "missing")
	tr.File("c", 0o644, nil) // ignored after the first error
	if err := tr.Err(); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Err() = %v, want the hard link error", err)
	}
	if _, ok := tr.Lookup("c"); ok {
		t.Error("an entry was added after the first error")
	}
	if _, err := BuildLayer(tr); err == nil {
		t.Error("BuildLayer of a tree with an error succeeded")
	}
}

func TestHardLinkToDirectoryRefused(t *testing.T) {
	tr := NewTree()
	tr.Dirs("bin")
	tr.HardLink("sbin", "bin")
	if tr.Err() == nil {
		t.Fatal("hard link to a directory accepted")
	}
}

func TestAddHostDir(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "lib/x86_64-linux-gnu"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "lib/x86_64-linux-gnu/libc.so.6"), []byte("elf"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "lib/x86_64-linux-gnu/libresolv.so.2"), []byte("elf2"), 0o644))
	must(t, os.MkdirAll(filepath.Join(dir, "lib64"), 0o755))
	must(t, os.Symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", filepath.Join(dir, "lib64/ld-linux-x86-64.so.2")))

	tr := NewTree()
	tr.AddHostDir(dir)
	if err := tr.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{"lib", "lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu/libc.so.6", "lib/x86_64-linux-gnu/libresolv.so.2", "lib64", "lib64/ld-linux-x86-64.so.2"}
	if got := tr.Paths(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("paths = %q, want %q", got, want)
	}
	if n, _ := tr.Lookup("lib/x86_64-linux-gnu/libc.so.6"); n.kind != kindFile || n.mode != 0o755 || string(n.data) != "elf" || n.uid != 0 {
		t.Errorf("libc entry = %+v", n)
	}
	if n, _ := tr.Lookup("lib/x86_64-linux-gnu/libresolv.so.2"); n.mode != 0o644 {
		t.Errorf("libresolv mode = %o, want 644", n.mode)
	}
	if n, _ := tr.Lookup("lib64/ld-linux-x86-64.so.2"); n.kind != kindSymlink || n.target != "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" {
		t.Errorf("ld.so link = %+v", n)
	}
}

func TestAddHostDirMissing(t *testing.T) {
	tr := NewTree()
	tr.AddHostDir(filepath.Join(t.TempDir(), "nope"))
	if tr.Err() == nil {
		t.Fatal("AddHostDir of a missing directory succeeded")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
