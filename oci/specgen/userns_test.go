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
