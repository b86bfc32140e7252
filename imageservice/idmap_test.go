package imageservice

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// testUserns starts a process in a new user namespace mapping 0-65535 to
// host IDs 100000-165535 and returns the path of that namespace.
func testUserns(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	idmap := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, UidMappings: idmap, GidMappings: idmap}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a process in a user namespace: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid)
}

// TestMountRootfsIdmapped mounts a container's rootfs for a user namespace
// from images of 2 and 60 layers (60 do not fit one page of absolute
// paths): a layer's file owned by 0 shows as the mapped host ID through
// the overlay, a file the namespace's root writes lands in its own writable
// layer (given to that root), the layers stay owned by 0 (never chowned), no
// idmapped helper mount is left, and UnmountRootfs removes it all.
func TestMountRootfsIdmapped(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root")
	}
	userns := testUserns(t)
	for _, n := range []int{2, 60} {
		t.Run(fmt.Sprint(n, " layers"), func(t *testing.T) {
			s, img := fakeImage(t, n)
			id := testID("userns")
			merged, err := s.MountRootfsUserns(id, "fake", Userns{Path: userns, RootUID: 100000, RootGID: 100000})
			if err != nil {
				t.Fatalf("MountRootfsUserns: %v", err)
			}
			t.Cleanup(func() { _ = s.UnmountRootfs(id) })
			var st unix.Stat_t
			if err := unix.Stat(filepath.Join(merged, "layer0"), &st); err != nil {
				t.Fatal(err)
			}
			if st.Uid != 100000 || st.Gid != 100000 {
				t.Errorf("through the rootfs a layer's file is owned by %d:%d, want 100000:100000", st.Uid, st.Gid)
			}
			// What the namespace's root (host 100000) owns.
			f := filepath.Join(merged, "new")
			if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(f, 100000, 100000); err != nil {
				t.Fatal(err)
			}
			rootfsDir := filepath.Dir(merged)
			if err := unix.Stat(filepath.Join(rootfsDir, "upper", "new"), &st); err != nil {
				t.Fatal(err)
			}
			if st.Uid != 100000 || st.Gid != 100000 {
				t.Errorf("the writable layer stores the namespace root's file as %d:%d, want 100000:100000", st.Uid, st.Gid)
			}
			if err := unix.Stat(filepath.Join(s.LayerDiffDir(img.Layers[0]), "layer0"), &st); err != nil || st.Uid != 0 || st.Gid != 0 {
				t.Errorf("the layer's own file is owned by %d:%d (%v), want 0:0", st.Uid, st.Gid, err)
			}
			if _, err := os.Stat(filepath.Join(rootfsDir, idmapDir)); !os.IsNotExist(err) {
				t.Errorf("idmapped layer mounts left in %s: %v", rootfsDir, err)
			}
			if err := s.UnmountRootfs(id); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(rootfsDir); !os.IsNotExist(err) {
				t.Errorf("rootfs dir left: %v", err)
			}
		})
	}
}
