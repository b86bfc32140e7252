package imageservice

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// A container's writes land in its own writable layer and are counted
// there, in bytes and inodes, against the rootfs filesystem.
func TestContainerUsage(t *testing.T) {
	s, _ := fakeImage(t, 2)
	root, err := s.MountRootfs(testID("cu"), "fake")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.UnmountRootfs(testID("cu")); err != nil {
			t.Error(err)
		}
	})
	before, err := s.ContainerUsage(testID("cu"))
	if err != nil {
		t.Fatal(err)
	}
	checkFs(t, "container usage", before, s.opts.RootfsDir)
	if err := os.MkdirAll(filepath.Join(root, "var", "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c"} {
		if err := os.WriteFile(filepath.Join(root, "var", "data", name), bytes.Repeat([]byte{'x'}, 256<<10), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	after, err := s.ContainerUsage(testID("cu"))
	if err != nil {
		t.Fatal(err)
	}
	if after.Bytes < before.Bytes+3*256<<10 || after.Inodes < before.Inodes+5 {
		t.Fatalf("usage %+v after writing 3×256 KiB in 2 new dirs, was %+v", after, before)
	}
	if _, err := s.ContainerUsage("../cu"); err == nil {
		t.Fatal("an id with a slash was accepted")
	}
	if _, err := s.ContainerUsage(testID("missing")); err == nil {
		t.Fatal("usage of a missing container")
	}
	c, err := s.ContainerFsCapacity()
	if err != nil || c.Bytes == 0 || c.Inodes == 0 || c.AvailableBytes > c.Bytes || c.Mountpoint != before.Mountpoint {
		t.Fatalf("capacity %+v, %v", c, err)
	}
}
