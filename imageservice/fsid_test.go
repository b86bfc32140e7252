package imageservice

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// mountTmpfs mounts a tmpfs of size bytes at dir (made if missing) until
// the test ends.
func mountTmpfs(t *testing.T, dir string, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root: mounts tmpfs")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mount tmpfs at %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

func devOf(t *testing.T, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Dev
}

// checkFs fails unless u names the filesystem holding dir: its device, and
// a mount point at or above dir on that device.
func checkFs(t *testing.T, what string, u FsUsage, dir string) {
	t.Helper()
	if u.Device != devOf(t, dir) || !within(dir, u.Mountpoint) || devOf(t, u.Mountpoint) != u.Device {
		t.Fatalf("%s: filesystem %q (device %d), want the one holding %s (device %d)", what, u.Mountpoint, u.Device, dir, devOf(t, dir))
	}
}

// The mount point is the filesystem's, found from any directory in it,
// also when the kernel escapes its path in mountinfo.
func TestMountPoint(t *testing.T) {
	base := t.TempDir()
	mnt := filepath.Join(base, "with space")
	mountTmpfs(t, mnt, "1m")
	deep := filepath.Join(mnt, "a", "b")
	if err := os.MkdirAll(deep, 0o700); err != nil {
		t.Fatal(err)
	}
	var u FsUsage
	if err := fsOf(&u, deep); err != nil {
		t.Fatal(err)
	}
	if u.Mountpoint != mnt {
		t.Fatalf("mount point of %s = %q, want %q", deep, u.Mountpoint, mnt)
	}
	var outer FsUsage
	if err := fsOf(&outer, base); err != nil {
		t.Fatal(err)
	}
	if outer.Device == u.Device || outer.Mountpoint == mnt {
		t.Fatalf("the directory holding the mount reports %+v, the same filesystem as the mount %+v", outer, u)
	}
	checkFs(t, "outer", outer, base)
}

// With the image store and the writable layers on two filesystems, a
// container's rootfs mounts (lower dirs on one, upper on the other), its
// writes count on the writable layers' filesystem only, and each usage
// names its own filesystem.
func TestSplitImageFs(t *testing.T) {
	base := t.TempDir()
	imgFs, ctrFs := filepath.Join(base, "imagefs"), filepath.Join(base, "containerfs")
	mountTmpfs(t, imgFs, "16m")
	mountTmpfs(t, ctrFs, "16m")
	s, _ := fakeImageIn(t, 3, filepath.Join(imgFs, "images"), filepath.Join(ctrFs, "rootfs"))
	id := testID("split")
	root, err := s.MountRootfs(id, "fake")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.UnmountRootfs(id); err != nil {
			t.Error(err)
		}
	})
	if b, err := os.ReadFile(filepath.Join(root, "top")); err != nil || string(b) != "2" {
		t.Fatalf("top layer's file through the overlay: %q, %v", b, err)
	}
	imagesBefore, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "data"), bytes.Repeat([]byte{'x'}, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	images, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	containers, err := s.ContainerFsUsage()
	if err != nil {
		t.Fatal(err)
	}
	one, err := s.ContainerUsage(id)
	if err != nil {
		t.Fatal(err)
	}
	if images.Mountpoint != imgFs || containers.Mountpoint != ctrFs || one.Mountpoint != ctrFs {
		t.Fatalf("mount points: images %q, containers %q, one container %q; want %s, %s, %s", images.Mountpoint, containers.Mountpoint, one.Mountpoint, imgFs, ctrFs, ctrFs)
	}
	if images.Device == containers.Device {
		t.Fatal("two filesystems reported as one device")
	}
	if images.Bytes != imagesBefore.Bytes || containers.Bytes < 2<<20 || one.Bytes < 2<<20 {
		t.Fatalf("after writing 2 MiB in the container: images %d bytes (were %d), containers %d, the container %d",
			images.Bytes, imagesBefore.Bytes, containers.Bytes, one.Bytes)
	}
	c, err := s.ContainerFsCapacity()
	if err != nil || c.Mountpoint != ctrFs || c.Bytes != 16<<20 {
		t.Fatalf("container fs capacity %+v, %v; want the 16 MiB tmpfs at %s", c, err, ctrFs)
	}
}

// The remembered mount point follows the directory's filesystem: a tmpfs
// mounted on it, then gone, is seen at once, as fsOf sees it.
func TestFsCacheFollowsMounts(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "rootfs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var c fsCache
	check := func(what string) FsUsage {
		t.Helper()
		var got, want FsUsage
		if err := c.fsOf(&got, dir); err != nil {
			t.Fatal(err)
		}
		if err := fsOf(&want, dir); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("%s: remembered %+v, fsOf says %+v", what, got, want)
		}
		checkFs(t, what, got, dir)
		return got
	}
	before := check("first")
	check("again")
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs at %s: %v", dir, err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	if on := check("a tmpfs mounted on it"); on.Mountpoint != dir || on.Device == before.Device {
		t.Fatalf("with a tmpfs on %s: %+v", dir, on)
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	mounted = false
	if after := check("unmounted"); after != before {
		t.Fatalf("after the unmount %+v, before the mount %+v", after, before)
	}
}
