package imageservice

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A pull into a full image store fails as ErrNoSpace naming the store,
// leaves no image, layer, blob or scratch file, and the same pull succeeds
// once space is freed.
func TestPullOnFullDisk(t *testing.T) {
	e := newEnv(t)
	fsDir := filepath.Join(e.base, "fs")
	mountTmpfs(t, fsDir, "1m")
	e.root = filepath.Join(fsDir, "images")
	e.opts.Root = e.root
	e.svc = e.open(t)

	big := make([]byte, 64<<10)
	_, _ = rand.Read(big) // does not compress
	img := newImage(t, imageSpec{label: "big", layers: []testLayer{newLayer(t, dir("data/"), file("data/big", string(big)))}})
	e.reg.push("big", "v1", img)

	filler := filepath.Join(fsDir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = f.Write(make([]byte, 4096))
	}
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling: %v", err)
	}

	_, err = e.svc.Pull(context.Background(), e.reg.ref("big:v1"), nil)
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "image store "+e.root) {
		t.Fatalf("pull into a full store: %v; want ErrNoSpace naming %s", err, e.root)
	}
	t.Logf("pull into a full store: %v", err)
	e.assertEmptyStore(t)
	if recs, _ := e.svc.opts.Records.Load(recordKind); len(recs) != 0 {
		t.Fatalf("image records after the failed pull: %v", recs)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	got := e.mustPull(t, e.reg.ref("big:v1"))
	b, err := os.ReadFile(filepath.Join(e.svc.LayerDiffDir(got.Layers[0]), "data", "big"))
	if err != nil || string(b) != string(big) {
		t.Fatalf("layer content after the pull: %d bytes, %v", len(b), err)
	}
}

// A container's rootfs that cannot be made on a full disk fails with
// ENOSPC and leaves no directory.
func TestMountRootfsOnFullDisk(t *testing.T) {
	base := t.TempDir()
	ctrFs := filepath.Join(base, "containerfs")
	mountTmpfs(t, ctrFs, "256k")
	s, _ := fakeImageIn(t, 2, filepath.Join(base, "images"), filepath.Join(ctrFs, "rootfs"))
	filler := filepath.Join(ctrFs, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = f.Write(make([]byte, 4096))
	}
	f.Close()
	if _, err := s.MountRootfs(testID("full"), "fake"); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("MountRootfs on a full disk: %v, want ENOSPC", err)
	}
	if names := dirNames(t, filepath.Join(ctrFs, "rootfs")); len(names) != 0 {
		t.Fatalf("rootfs dir after the failure: %v", names)
	}
}
