package specgen

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestUsernsIdmapsBindMounts: a container of a pod with a user namespace
// joins it, and every bind mount (volumes, the pod's files, /dev/shm) is
// idmapped through it; without one, none is.
func TestUsernsIdmapsBindMounts(t *testing.T) {
	vol := t.TempDir()
	for _, userns := range []string{"/run/crid/sandboxes/p/ns/user", ""} {
		cfg := &runtime.ContainerConfig{Mounts: []*runtime.Mount{{ContainerPath: "/data", HostPath: vol}}}
		in := input(t, cfg)
		in.Pod = Pod{
			Namespaces: map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: "/ns/net"},
			Hosts:      vol, ResolvConf: vol, Hostname: vol, Shm: vol,
		}
		if userns != "" {
			in.Pod.Namespaces[specs.UserNamespace] = userns
		}
		s := build(t, in)
		joined := ""
		for _, n := range s.Linux.Namespaces {
			if n.Type == specs.UserNamespace {
				joined = n.Path
			}
		}
		if joined != userns {
			t.Errorf("user namespace %q joined, want %q", joined, userns)
		}
		binds := 0
		for _, m := range s.Mounts {
			if m.Type != "bind" {
				continue
			}
			binds++
			if got := slices.Contains(m.Options, "idmap"); got != (userns != "") {
				t.Errorf("userns %q: bind mount %s idmap = %v (options %v)", userns, m.Destination, got, m.Options)
			}
		}
		if binds != 5 {
			t.Errorf("%d bind mounts, want 5 (/data, hosts, resolv.conf, hostname, /dev/shm)", binds)
		}
	}
}

// TestUsernsFilesOwnedBoundWithoutIdmap: on a kernel that cannot idmap a
// tmpfs the pod's files and /dev/shm are owned by its mapped root and
// bound without idmap; a volume is still idmapped.
func TestUsernsFilesOwnedBoundWithoutIdmap(t *testing.T) {
	vol, files := t.TempDir(), t.TempDir()
	cfg := &runtime.ContainerConfig{Mounts: []*runtime.Mount{{ContainerPath: "/data", HostPath: vol}}}
	in := input(t, cfg)
	in.Pod = Pod{
		Namespaces: map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: "/ns/net", specs.UserNamespace: "/run/crid/sandboxes/p/ns/user"},
		Hosts:      files + "/hosts", ResolvConf: files + "/resolv.conf", Hostname: files + "/hostname", Shm: files + "/shm",
		FilesOwned: true,
	}
	s := build(t, in)
	want := map[string]bool{"/data": true, "/etc/hosts": false, "/etc/resolv.conf": false, "/etc/hostname": false, "/dev/shm": false}
	for _, m := range s.Mounts {
		if m.Type != "bind" {
			continue
		}
		w, ok := want[m.Destination]
		if !ok {
			t.Errorf("unexpected bind mount %s", m.Destination)
			continue
		}
		delete(want, m.Destination)
		if got := slices.Contains(m.Options, "idmap"); got != w {
			t.Errorf("bind mount %s (from %s) idmap = %v, want %v (options %v)", m.Destination, m.Source, got, w, m.Options)
		}
	}
	if len(want) != 0 {
		t.Errorf("bind mounts missing: %v", want)
	}
}
