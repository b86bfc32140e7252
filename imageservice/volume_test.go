package imageservice

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func mountedUnder(t *testing.T, dir string) []string {
	t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

func TestMountImageVolume(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: mounts overlayfs")
	}
	// 0 and 1 layer take a read-only bind, 2 and 60 a read-only overlay
	// (60 through the short links).
	for _, n := range []int{0, 1, 2, 60} {
		t.Run(fmt.Sprint(n, " layers"), func(t *testing.T) {
			s, img := fakeImage(t, n)
			id := testID("c1")
			if _, err := s.MountRootfs(id, "fake"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.UnmountRootfs(id) })
			v, err := s.MountImageVolume(id, 3, "fake", "")
			if err != nil {
				t.Fatal(err)
			}
			if v.Image.ID != img.ID {
				t.Fatalf("mounted image %s, want %s", v.Image.ID, img.ID)
			}
			if n > 0 {
				top, err := os.ReadFile(filepath.Join(v.Path, "top"))
				if err != nil || string(top) != fmt.Sprint(n-1) {
					t.Fatalf("/top = %q, %v; want the topmost layer's", top, err)
				}
				for i := range n {
					if _, err := os.Stat(filepath.Join(v.Path, fmt.Sprintf("layer%d", i))); err != nil {
						t.Fatalf("layer %d not visible: %v", i, err)
					}
				}
			}
			if _, err := os.Stat(filepath.Join(v.Path, "gone")); n > 1 && !os.IsNotExist(err) {
				t.Fatalf("whiteout did not hide /gone: %v", err)
			}
			err = os.WriteFile(filepath.Join(v.Path, "new"), []byte("x"), 0o644)
			if !errors.Is(err, unix.EROFS) {
				t.Fatalf("write into the image volume: %v, want EROFS", err)
			}
			// The image is in use while mounted, also for a store opened
			// anew (a daemon restart): the mark is on disk.
			if err := s.Remove("fake"); !errors.Is(err, ErrImageInUse) || !strings.Contains(err.Error(), id) {
				t.Fatalf("remove of a mounted image: %v, want ErrImageInUse naming %s", err, id)
			}
			s2, err := New(s.opts)
			if err != nil {
				t.Fatal(err)
			}
			s2.mu.Lock()
			s2.index(img)
			s2.mu.Unlock()
			if err := s2.Remove("fake"); !errors.Is(err, ErrImageInUse) {
				t.Fatalf("remove after a restart: %v, want ErrImageInUse", err)
			}
			if n > 0 {
				if err := s2.gcLayers(); err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(s.LayerDiffDir(img.Layers[0])); err != nil {
					t.Fatalf("layer of a mounted volume was collected: %v", err)
				}
			}
			if err := s2.UnmountRootfs(id); err != nil {
				t.Fatal(err)
			}
			if m := mountedUnder(t, s.opts.RootfsDir); len(m) != 0 {
				t.Fatalf("still mounted after UnmountRootfs: %v", m)
			}
			if err := s2.Remove("fake"); err != nil {
				t.Fatalf("remove once unmounted: %v", err)
			}
		})
	}
}

func TestImageVolumeSubPath(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: mounts overlayfs")
	}
	s, img := fakeImage(t, 2)
	bottom := s.LayerDiffDir(img.Layers[0])
	if err := os.MkdirAll(filepath.Join(bottom, "etc", "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bottom, "etc", "passwd"), []byte("root"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"abs":     "/etc",                  // absolute: from the image's root
		"climb":   "../../../../../../etc", // ".." stops at the image's root
		"hostish": "/proc/self/root/etc",   // a path the image does not hold
		"loop":    "loop",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(bottom, name)); err != nil {
			t.Fatal(err)
		}
	}
	id := testID("c1")
	if _, err := s.MountRootfs(id, "fake"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.UnmountRootfs(id) })
	for i, sub := range []string{"etc", "abs", "climb", "etc/passwd", "./etc/conf.d/.."} {
		v, err := s.MountImageVolume(id, i, "fake", sub)
		if err != nil {
			t.Fatalf("sub path %q: %v", sub, err)
		}
		want := filepath.Join(s.opts.RootfsDir, id, volumesDir, fmt.Sprint(i), volumeMerged, "etc")
		if sub == "etc/passwd" {
			want = filepath.Join(want, "passwd")
		}
		if v.Path != want {
			t.Errorf("sub path %q resolved to %q, want %q", sub, v.Path, want)
		}
	}
	before := mountedUnder(t, s.opts.RootfsDir)
	for i, sub := range []string{"../etc", "/etc", "etc/../../x", "nothing", "hostish", "loop", "etc/passwd/x", "a\x00b"} {
		_, err := s.MountImageVolume(id, 10+i, "fake", sub)
		if !errors.Is(err, ErrInvalidSubPath) {
			t.Errorf("sub path %q: %v, want ErrInvalidSubPath", sub, err)
		}
		if _, err := os.Stat(filepath.Join(s.opts.RootfsDir, id, volumesDir, fmt.Sprint(10+i))); !os.IsNotExist(err) {
			t.Errorf("refused sub path %q left its volume dir: %v", sub, err)
		}
	}
	if after := mountedUnder(t, s.opts.RootfsDir); len(after) != len(before) {
		t.Fatalf("refused sub paths left mounts: %v, before %v", after, before)
	}
	if _, err := s.MountImageVolume(id, 20, "nothing:here", ""); !errors.Is(err, ErrImageNotFound) || !strings.Contains(err.Error(), "nothing:here") {
		t.Fatalf("unknown image: %v", err)
	}
	if err := s.UnmountRootfs(id); err != nil {
		t.Fatal(err)
	}
	if m := mountedUnder(t, s.opts.RootfsDir); len(m) != 0 {
		t.Fatalf("still mounted: %v", m)
	}
}

// Only the rootfs dirs of unknown IDs are removed, with or without image
// volumes: a known container's and a known pod's infra rootfs stay.
func TestRemoveOrphanRootfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: mounts overlayfs")
	}
	s, _ := fakeImage(t, 2)
	orphan, bare, kept, infra := testID("orphan"), testID("bare"), testID("kept"), testID("infra")
	for _, id := range []string{orphan, bare, kept, infra} {
		if _, err := s.MountRootfs(id, "fake"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.UnmountRootfs(id) })
	}
	for _, id := range []string{orphan, kept} {
		if _, err := s.MountImageVolume(id, 0, "fake", ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RemoveOrphanRootfs(func(id string) bool { return id == kept || id == infra }); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{orphan, bare} {
		if _, err := os.Stat(filepath.Join(s.opts.RootfsDir, id)); !os.IsNotExist(err) {
			t.Errorf("orphan rootfs dir %s still there: %v", id, err)
		}
	}
	for _, id := range []string{kept, infra} {
		if _, err := os.Stat(filepath.Join(s.opts.RootfsDir, id, rootfsMerged, "top")); err != nil {
			t.Errorf("rootfs of %s was touched: %v", id, err)
		}
	}
	if m := mountedUnder(t, filepath.Join(s.opts.RootfsDir, orphan)); len(m) != 0 {
		t.Errorf("orphan still mounted: %v", m)
	}
	if err := s.Remove("fake"); !errors.Is(err, ErrImageInUse) || strings.Contains(err.Error(), orphan) {
		t.Errorf("remove with the kept container's volume: %v; want in use by %s only", err, kept)
	}
}
