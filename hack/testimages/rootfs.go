package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// inodeKind is what a tree entry is. Devices, fifos and sockets never
// appear in these images.
type inodeKind uint8

const (
	kindDir inodeKind = iota
	kindFile
	kindSymlink
)

// An inode is one file system object. Several paths of a Tree may share one
// inode: they are hard links, which is how the applets of the busybox image
// are installed (a symlink would make masking /bin/ls mask busybox itself).
type inode struct {
	kind     inodeKind
	mode     int64 // permission bits plus setuid/setgid/sticky, as in a tar header
	uid, gid int
	data     []byte // content of a regular file
	target   string // target of a symlink
}

// A Tree is the content of one image layer, described in memory so that its
// tar form depends only on the description: no host mtimes, owners or
// directory order leak in. Paths are slash-separated and relative to the
// image root. The first error of a method sticks and is returned by Err, so
// image definitions read as plain lists of files.
type Tree struct {
	entries map[string]*inode
	err     error
}

// NewTree returns an empty Tree.
func NewTree() *Tree {
	return &Tree{entries: map[string]*inode{}}
}

// Err returns the first error met while filling the tree.
func (t *Tree) Err() error { return t.err }

// cleanPath turns "/usr/bin/" or "usr//bin" into "usr/bin" and refuses paths
// that name the root or leave it.
func cleanPath(p string) (string, error) {
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("invalid image path %q: has a .. component", p)
		}
	}
	c := strings.TrimPrefix(path.Clean("/"+p), "/")
	if c == "" {
		return "", fmt.Errorf("invalid image path %q: names the root", p)
	}
	return c, nil
}

func (t *Tree) add(p string, n *inode) {
	if t.err != nil {
		return
	}
	c, err := cleanPath(p)
	if err != nil {
		t.err = err
		return
	}
	t.entries[c] = n
}

// Dir adds a directory.
func (t *Tree) Dir(p string, mode int64, uid, gid int) {
	t.add(p, &inode{kind: kindDir, mode: mode, uid: uid, gid: gid})
}

// Dirs adds root-owned 0755 directories.
func (t *Tree) Dirs(paths ...string) {
	for _, p := range paths {
		t.Dir(p, 0o755, 0, 0)
	}
}

// File adds a root-owned regular file.
func (t *Tree) File(p string, mode int64, data []byte) {
	t.OwnedFile(p, mode, 0, 0, data)
}

// OwnedFile adds a regular file with an explicit owner.
func (t *Tree) OwnedFile(p string, mode int64, uid, gid int, data []byte) {
	t.add(p, &inode{kind: kindFile, mode: mode, uid: uid, gid: gid, data: data})
}

// Symlink adds a symbolic link to target (kept verbatim).
func (t *Tree) Symlink(p, target string) {
	t.add(p, &inode{kind: kindSymlink, mode: 0o777, target: target})
}

// HardLink makes p another name of the regular file at existing.
func (t *Tree) HardLink(p, existing string) {
	if t.err != nil {
		return
	}
	c, err := cleanPath(existing)
	if err != nil {
		t.err = err
		return
	}
	n, ok := t.entries[c]
	if !ok || n.kind != kindFile {
		t.err = fmt.Errorf("hard link %s: %s is not a regular file of the tree", p, existing)
		return
	}
	t.add(p, n)
}

// Lookup returns the entry at p, if any.
func (t *Tree) Lookup(p string) (*inode, bool) {
	c, err := cleanPath(p)
	if err != nil {
		return nil, false
	}
	n, ok := t.entries[c]
	return n, ok
}

// Paths returns every path of the tree, sorted.
func (t *Tree) Paths() []string {
	ps := make([]string, 0, len(t.entries))
	for p := range t.entries {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// AddHostDir copies the directory root of the host into the tree at the
// image root: regular files with their permission bits, directories and
// symlinks, all owned by root. It is how the staged busybox binary and the
// glibc libraries it needs enter the image.
func (t *Tree) AddHostDir(root string) {
	if t.err != nil {
		return
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return fmt.Errorf("relative path of %s: %w", p, err)
		}
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		perm := int64(info.Mode().Perm())
		switch {
		case d.IsDir():
			t.Dir(rel, perm, 0, 0)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("read link %s: %w", p, err)
			}
			t.Symlink(rel, target)
		case d.Type().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return fmt.Errorf("read %s: %w", p, err)
			}
			if info.Mode()&fs.ModeSetuid != 0 {
				perm |= 0o4000
			}
			t.File(rel, perm, data)
		default:
			return fmt.Errorf("%s: unsupported file type %v", p, d.Type())
		}
		return t.err
	})
	if err != nil && t.err == nil {
		t.err = fmt.Errorf("add host directory %s: %w", root, err)
	}
}

// errNoStage is returned when a staged input test-images.sh prepares is missing.
var errNoStage = errors.New("staged input missing (run hack/test-images.sh, which prepares it)")
