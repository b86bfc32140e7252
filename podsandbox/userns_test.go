package podsandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestValidateUserns: the inputs critest and kubelet send, good and bad;
// every refusal is ErrInvalid naming the field.
func TestValidateUserns(t *testing.T) {
	one := []*runtime.IDMapping{{ContainerId: 0, HostId: 1000, Length: 100000}}
	two := []*runtime.IDMapping{one[0], {ContainerId: 0, HostId: 2000, Length: 100000}}
	for _, c := range []struct {
		name string
		u    *runtime.UserNamespace
		want string // "" for accepted, else a piece of the error
	}{
		{"unset", nil, ""},
		{"NODE", &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE}, ""},
		{"POD", &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: one, Gids: one}, ""},
		{"POD two uid mappings", &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: two, Gids: one}, "f.uids: mode POD needs exactly one mapping, got 2"},
		{"POD two gid mappings", &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: one, Gids: two}, "f.gids: mode POD needs exactly one mapping"},
		{"POD no mappings", &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD}, "f.uids: mode POD needs exactly one mapping, got 0"},
		{"POD 0 unmapped", &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: []*runtime.IDMapping{{ContainerId: 1, HostId: 1000, Length: 100000}}, Gids: one}, "f.uids[0]: container ID 0 must be mapped"},
		{"POD length 0", &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: one, Gids: []*runtime.IDMapping{{HostId: 1000}}}, "f.gids[0]: length must not be 0"},
		{"POD past the last ID", &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: []*runtime.IDMapping{{HostId: 1 << 31, Length: 1 << 31}}, Gids: one}, "run past"},
		{"NODE with mappings", &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE, Uids: one}, "f: mode NODE takes no uids"},
		{"CONTAINER", &runtime.UserNamespace{Mode: runtime.NamespaceMode_CONTAINER}, "f.mode CONTAINER is not supported"},
		{"TARGET", &runtime.UserNamespace{Mode: runtime.NamespaceMode_TARGET}, "f.mode TARGET is not supported"},
	} {
		err := ValidateUserns("f", c.u)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.want != "" && (err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v, want ErrInvalid with %q", c.name, err, c.want)
		}
	}
}

// TestUsernsModeUnset: unset options are the node's user namespace, not
// POD (the zero NamespaceMode).
func TestUsernsModeUnset(t *testing.T) {
	if m := UsernsMode(nil); m != runtime.NamespaceMode_NODE {
		t.Errorf("UsernsMode(nil) = %s, want NODE", m)
	}
	sb := &Sandbox{Config: &runtime.PodSandboxConfig{}}
	if _, _, ok := sb.UsernsRoot(); ok || sb.usernsMode() != runtime.NamespaceMode_NODE {
		t.Errorf("a pod without userns options has a user namespace of its own")
	}
}

// TestPodFilesOwnedByMappedRoot: where a tmpfs cannot be idmapped, a
// userns pod's /dev/shm is a 1777 tmpfs owned by its mapped root and its
// files are chowned to it; unmountShm undoes the mount.
func TestPodFilesOwnedByMappedRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root")
	}
	dir := t.TempDir()
	cfg := &runtime.PodSandboxConfig{Hostname: "p"}
	if err := writePodFiles(dir, cfg, "p", false); err != nil {
		t.Fatal(err)
	}
	if err := chownPodFiles(dir, 200000, 200001); err != nil {
		t.Fatal(err)
	}
	shm, err := mountShm(dir, 1<<20, shmOwner{set: true, uid: 200000, gid: 200001})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unmountShm(dir) })
	for _, p := range []string{shm, filepath.Join(dir, hostsFile), filepath.Join(dir, resolvConfFile), filepath.Join(dir, hostnameFile)} {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 200000 || st.Gid != 200001 {
			t.Errorf("%s owned by %d:%d, want the mapped root 200000:200001", p, st.Uid, st.Gid)
		}
		if p == shm && st.Mode&0o7777 != 0o1777 {
			t.Errorf("shm mode %o, want 1777", st.Mode&0o7777)
		}
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(shm, &fs); err != nil || fs.Type != 0x01021994 {
		t.Errorf("shm is not a tmpfs (type %x, %v)", fs.Type, err)
	}
	if err := unmountShm(dir); err != nil {
		t.Fatal(err)
	}
	if isMountPoint(t, shm) {
		t.Errorf("shm still mounted after unmountShm")
	}
}

// isMountPoint reports whether p is listed in this process's mountinfo.
func isMountPoint(t *testing.T, p string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == p {
			return true
		}
	}
	return false
}
