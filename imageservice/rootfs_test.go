package imageservice

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/records"
)

// fakeImage puts an image of n hand-made layers into a fresh store: layer
// i holds /layer<i> and overwrites /top; the last one whites out /gone.
func fakeImage(t *testing.T, n int) (*Service, *Image) {
	t.Helper()
	dir := t.TempDir()
	return fakeImageIn(t, n, filepath.Join(dir, "images"), filepath.Join(dir, "rootfs"))
}

// fakeImageIn is fakeImage with the store in images and the writable
// layers in rootfs.
func fakeImageIn(t *testing.T, n int, images, rootfs string) (*Service, *Image) {
	t.Helper()
	rec, err := records.Open(filepath.Join(t.TempDir(), "records"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Root: images, RootfsDir: rootfs, Records: rec, SandboxImage: "pause:test", Limits: testLimits})
	if err != nil {
		t.Fatal(err)
	}
	img := &Image{ID: sha256Of([]byte(fmt.Sprint("config", n))), RepoTags: []string{"docker.io/library/fake:latest"}}
	var diffs []Digest
	for i := range n {
		diffs = append(diffs, sha256Of([]byte(fmt.Sprint("layer", i))))
	}
	img.Layers = chainIDs(diffs)
	for i, chain := range img.Layers {
		d := s.LayerDiffDir(chain)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		write := func(name, body string) {
			if err := os.WriteFile(filepath.Join(d, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write(fmt.Sprintf("layer%d", i), "x")
		write("top", fmt.Sprint(i))
		if i == 0 {
			write("gone", "deleted above")
		}
		if i == n-1 && n > 1 {
			if err := unix.Mknod(filepath.Join(d, "gone"), unix.S_IFCHR, 0); err != nil {
				t.Fatal(err)
			}
		}
		meta, _ := json.Marshal(layerMeta{ChainID: chain, DiffID: diffs[i]})
		if err := os.WriteFile(filepath.Join(s.layerDir(chain), layerMetaFile), meta, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	s.index(img)
	s.mu.Unlock()
	return s, img
}

func TestMountRootfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: mounts overlayfs")
	}
	for _, n := range []int{1, 3, 60} { // 60 layers do not fit one page of absolute paths
		t.Run(fmt.Sprint(n, " layers"), func(t *testing.T) {
			s, img := fakeImage(t, n)
			root, err := s.MountRootfs(testID("c1"), "fake")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.UnmountRootfs(testID("c1")) })
			top, err := os.ReadFile(filepath.Join(root, "top"))
			if err != nil || string(top) != fmt.Sprint(n-1) {
				t.Fatalf("/top = %q, %v; want the topmost layer's", top, err)
			}
			for i := range n {
				if _, err := os.Stat(filepath.Join(root, fmt.Sprintf("layer%d", i))); err != nil {
					t.Fatalf("layer %d not visible: %v", i, err)
				}
			}
			if _, err := os.Stat(filepath.Join(root, "gone")); n > 1 && !os.IsNotExist(err) {
				t.Fatalf("whiteout did not hide /gone: %v", err)
			}
			// Writes go to the container's own layer, never to the image's.
			if err := os.WriteFile(filepath.Join(root, "top"), []byte("mine"), 0o644); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(s.LayerDiffDir(img.Layers[n-1]), "top")); string(b) != fmt.Sprint(n-1) {
				t.Fatalf("container write reached the image layer: %q", b)
			}
			u, err := s.ContainerFsUsage()
			if err != nil || u.Inodes == 0 {
				t.Fatalf("container fs usage: %+v %v", u, err)
			}
			// A mounted rootfs keeps its layers through GC even when its
			// image goes away.
			if err := s.Remove("fake"); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(s.LayerDiffDir(img.Layers[0])); err != nil {
				t.Fatalf("layer used by a rootfs was collected: %v", err)
			}
			if err := s.UnmountRootfs(testID("c1")); err != nil {
				t.Fatal(err)
			}
			if err := s.UnmountRootfs(testID("c1")); err != nil {
				t.Fatalf("second unmount: %v", err)
			}
			mi, _ := os.ReadFile("/proc/self/mountinfo")
			if strings.Contains(string(mi), filepath.Join(s.opts.RootfsDir, testID("c1"))) {
				t.Fatal("rootfs still mounted")
			}
			if err := s.gcLayers(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(s.layerDir(img.Layers[0])); !os.IsNotExist(err) {
				t.Fatalf("layer not collected once unused: %v", err)
			}
		})
	}
}

func TestMountRootfsUnknownImage(t *testing.T) {
	s, _ := fakeImage(t, 1)
	if _, err := s.MountRootfs(testID("c2"), "nothing:here"); err == nil || !strings.Contains(err.Error(), "image not found") {
		t.Fatalf("unknown image: %v", err)
	}
	for _, id := range []string{"../escape", "c1", "", strings.ToUpper(testID("c2"))} {
		if _, err := s.MountRootfs(id, "fake"); err == nil {
			t.Fatalf("container id %q was accepted", id)
		}
	}
	if entries, _ := os.ReadDir(s.opts.RootfsDir); len(entries) != 0 {
		t.Fatalf("refused mounts left %v", entries)
	}
}

// overlayOptions takes only crid's own directories, and no value that
// could add a directory or an option to the mount.
func TestOverlayOptionsRefuseForeignDirs(t *testing.T) {
	s, img := fakeImage(t, 2)
	layer := s.LayerDiffDir(img.Layers[0])
	dir := filepath.Join(s.opts.RootfsDir, testID("c"))
	upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	data, err := s.overlayOptions([]string{s.LayerDiffDir(img.Layers[1]), layer}, upper, work)
	if err != nil {
		t.Fatal(err)
	}
	if want := "lowerdir=" + s.LayerDiffDir(img.Layers[1]) + ":" + layer + ",upperdir=" + upper + ",workdir=" + work; data != want {
		t.Fatalf("options %q, want %q", data, want)
	}
	layers := filepath.Join(s.root, "layers")
	for _, tc := range []struct {
		name               string
		lower, upper, work string
	}{
		{"lower outside", "/etc", upper, work},
		{"lower climbing out", layers + "/../../../etc", upper, work},
		{"lower is the layers dir", layers, upper, work},
		{"lower with a comma", layer + ",upperdir=/tmp", upper, work},
		{"lower with a colon", layer + ":/etc", upper, work},
		{"lower with a backslash", layer + `\:/etc`, upper, work},
		{"lower with a newline", layer + "\n", upper, work},
		{"relative lower", "layers/x/diff", upper, work},
		{"upper in the layer store", layer, layer, work},
		{"upper outside", layer, "/tmp/upper", work},
		{"work outside", layer, upper, "/tmp/work"},
		{"work with a comma", layer, upper, work + ",index=on"},
	} {
		if data, err := s.overlayOptions([]string{tc.lower}, tc.upper, tc.work); !errors.Is(err, errUnsafeMountDir) {
			t.Errorf("%s: options %q, %v; want errUnsafeMountDir", tc.name, data, err)
		}
	}
}

func TestStoreRootsMustBeOptionSafe(t *testing.T) {
	dir := t.TempDir()
	rec, err := records.Open(filepath.Join(dir, "records"))
	if err != nil {
		t.Fatal(err)
	}
	for _, root := range []string{filepath.Join(dir, "a,b"), filepath.Join(dir, "a:b")} {
		if _, err := New(Options{Root: root, RootfsDir: filepath.Join(dir, "rootfs"), Records: rec, SandboxImage: "pause:test", Limits: testLimits}); err == nil {
			t.Errorf("store root %q accepted", root)
		}
		if _, err := New(Options{Root: filepath.Join(dir, "images"), RootfsDir: root, Records: rec, SandboxImage: "pause:test", Limits: testLimits}); err == nil {
			t.Errorf("rootfs dir %q accepted", root)
		}
	}
}

// An exited container's rootfs leaves the mount table while its writable
// layer stays: its usage is still read, its image volume still holds its
// image, and UnmountRootfs removes the rest later.
func TestUnmountRootfsKeepLayer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: mounts overlayfs")
	}
	s, _ := fakeImage(t, 2)
	id := testID("c1")
	root, err := s.MountRootfs(id, "fake")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.UnmountRootfs(id) })
	if _, err := s.MountImageVolume(id, 1, "fake", ""); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "written"), make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := s.ContainerUsage(id)
	if err != nil || before.Bytes < 64<<10 {
		t.Fatalf("usage before: %+v %v", before, err)
	}
	for range 2 { // idempotent
		if err := s.UnmountRootfsKeepLayer(id); err != nil {
			t.Fatal(err)
		}
	}
	if m := mountedUnder(t, s.opts.RootfsDir); len(m) != 0 {
		t.Fatalf("still mounted: %v", m)
	}
	after, err := s.ContainerUsage(id)
	if err != nil || after.Bytes != before.Bytes || after.Inodes != before.Inodes {
		t.Fatalf("usage after the unmount %+v %v, want %+v", after, err, before)
	}
	if err := s.Remove("fake"); !errors.Is(err, ErrImageInUse) {
		t.Fatalf("remove of the image of an exited container's volume: %v, want ErrImageInUse until the container is removed", err)
	}
	if err := s.UnmountRootfs(id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.opts.RootfsDir, id)); !os.IsNotExist(err) {
		t.Fatalf("rootfs dir after UnmountRootfs: %v", err)
	}
	if err := s.Remove("fake"); err != nil {
		t.Fatalf("remove once the container is gone: %v", err)
	}
}
