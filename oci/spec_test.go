package oci

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestDefaultSpec(t *testing.T) {
	s := DefaultSpec()
	if s.Process.Capabilities == nil || len(s.Process.Capabilities.Bounding) != 14 ||
		!slices.Contains(s.Process.Capabilities.Effective, "CAP_NET_BIND_SERVICE") ||
		slices.Contains(s.Process.Capabilities.Bounding, "CAP_SYS_ADMIN") {
		t.Fatalf("capabilities %+v", s.Process.Capabilities)
	}
	var dests []string
	for _, m := range s.Mounts {
		dests = append(dests, m.Destination)
	}
	for _, d := range []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"} {
		if !slices.Contains(dests, d) {
			t.Fatalf("mount %s missing from %v", d, dests)
		}
	}
	for _, m := range s.Mounts {
		if (m.Type == "sysfs" || m.Type == "cgroup") && !slices.Contains(m.Options, "ro") {
			t.Fatalf("%s not read-only", m.Destination)
		}
	}
	if !slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") || !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
		t.Fatal("masked/readonly paths")
	}
	if len(s.Linux.Namespaces) != 5 || s.Linux.Resources.Devices[0].Allow {
		t.Fatalf("namespaces %v devices %v", s.Linux.Namespaces, s.Linux.Resources.Devices)
	}
	// Each call is independent: callers mutate what they get.
	s.Process.Capabilities.Bounding[0] = "X"
	if DefaultSpec().Process.Capabilities.Bounding[0] == "X" {
		t.Fatal("DefaultSpec shares state between calls")
	}
}

func TestNamespaces(t *testing.T) {
	s := DefaultSpec()
	s.Hostname = "pod"
	SetNamespace(s, specs.NetworkNamespace, "/run/crid/netns/x")
	SetNamespace(s, specs.UTSNamespace, "/run/crid/utsns/x")
	if s.Hostname != "" {
		t.Fatal("joining a UTS namespace must clear the hostname")
	}
	RemoveNamespace(s, specs.PIDNamespace)
	SetNamespace(s, specs.CgroupNamespace, "")
	got := map[specs.LinuxNamespaceType]string{}
	for _, n := range s.Linux.Namespaces {
		if _, dup := got[n.Type]; dup {
			t.Fatalf("duplicate namespace %s", n.Type)
		}
		got[n.Type] = n.Path
	}
	if got[specs.NetworkNamespace] != "/run/crid/netns/x" || got[specs.UTSNamespace] != "/run/crid/utsns/x" {
		t.Fatalf("%v", got)
	}
	if _, ok := got[specs.PIDNamespace]; ok {
		t.Fatal("pid namespace not removed")
	}
	if _, ok := got[specs.CgroupNamespace]; !ok {
		t.Fatal("cgroup namespace not added")
	}
}

func TestPrivilegedGetsOnlyHeldCapabilities(t *testing.T) {
	held, err := HostCapabilities()
	if err != nil {
		t.Fatal(err)
	}
	s := DefaultSpec()
	if err := SetPrivileged(s); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Process.Capabilities.Bounding, held) || len(s.Linux.MaskedPaths) != 0 || !s.Linux.Resources.Devices[0].Allow {
		t.Fatalf("privileged spec %+v", s.Process.Capabilities)
	}
	for _, m := range s.Mounts {
		if m.Type == "sysfs" && slices.Contains(m.Options, "ro") {
			t.Fatal("sysfs still read-only")
		}
	}
}
