package cgroupmgr

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	m, err := New("cgroupfs")
	if err != nil || m.Driver() != Cgroupfs {
		t.Fatalf("cgroupfs: %v %v", m, err)
	}
	if _, err := New("cgroupv1"); err == nil || !strings.Contains(err.Error(), "cgroupv1") {
		t.Fatalf("unknown driver: %v", err)
	}
	_, err = New("systemd")
	_, statErr := os.Stat("/run/systemd/system")
	if systemdRuns := statErr == nil; systemdRuns != (err == nil) {
		t.Fatalf("systemd driver: err=%v but systemd running=%v", err, systemdRuns)
	}
}

func TestMode(t *testing.T) {
	switch m := Mode(); m {
	case "v1", "v2", "hybrid":
	default:
		t.Fatalf("mode %q", m)
	}
}

func TestPaths(t *testing.T) {
	fsm := &Manager{driver: Cgroupfs}
	sd := &Manager{driver: Systemd}
	for _, tc := range []struct {
		m      *Manager
		parent string
		ok     bool
	}{
		{fsm, "/kubepods/besteffort/pod1", true},
		{fsm, "kubepods/pod1", false},
		{fsm, "/kubepods/../x", false},
		{sd, "kubepods-besteffort-pod1.slice", true},
		{sd, "/test.slice", true}, // critest's: the base name counts, as in containerd and CRI-O
		{sd, "/kubepods/pod1", false},
		{sd, "kubepods--pod1.slice", false},
		{sd, "-kubepods.slice", false},
		{sd, "kubepods-.slice", false},
		{sd, ".slice", false},
		{sd, "", false},
		{sd, "a.slice:crid:x", false},
	} {
		if err := tc.m.ValidateParent(tc.parent); (err == nil) != tc.ok {
			t.Errorf("%s ValidateParent(%q) = %v", tc.m.driver, tc.parent, err)
		}
	}
	if got, err := sd.NormalizeParent("/test.slice"); got != "test.slice" || err != nil {
		t.Errorf("systemd NormalizeParent(/test.slice) = %q, %v", got, err)
	}
	if err := sd.ValidateParent("/kubepods/pod1"); !errors.Is(err, ErrInvalidParent) || !strings.Contains(err.Error(), ".slice") {
		t.Errorf("systemd parent error %v: want ErrInvalidParent naming .slice", err)
	}
	if got := fsm.ContainerPath("/kubepods/pod1", "abc"); got != "/kubepods/pod1/abc" {
		t.Errorf("cgroupfs container path %q", got)
	}
	if got := sd.ContainerPath("kubepods-pod1.slice", "abc"); got != "kubepods-pod1.slice:crid:abc" {
		t.Errorf("systemd container path %q", got)
	}
	if got := fsm.DefaultPodParent("/crid", "abc"); got != "/crid/pod-abc" {
		t.Errorf("cgroupfs default pod parent %q", got)
	}
	if got := sd.DefaultPodParent("crid.slice", "abc"); got != "crid-podabc.slice" {
		t.Errorf("systemd default pod parent %q", got)
	}
}

func TestCreateRemove(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root")
	}
	m, p := testCgroup(t)
	if err := m.Create(p + "/pod"); err != nil {
		t.Fatal(err)
	}
	if !m.Exists(p + "/pod") {
		t.Fatal("cgroup not created")
	}
	if err := m.Remove(p + "/pod"); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(p); err != nil {
		t.Fatal(err)
	}
	if m.Exists(p) {
		t.Fatal("cgroup not removed")
	}
	if err := m.Remove(p); err != nil {
		t.Fatalf("removing a missing cgroup: %v", err)
	}
}

// testCgroup is a cgroupfs manager and a cgroup path named after the test,
// removed at its end.
func testCgroup(t *testing.T) (*Manager, string) {
	t.Helper()
	m, err := New("cgroupfs")
	if err != nil {
		t.Fatal(err)
	}
	p := "/crid-unit-test-" + strings.ReplaceAll(t.Name(), "/", "-")
	t.Cleanup(func() { _ = m.Remove(p) })
	return m, p
}

// TestConfigForms checks how a recorded path maps onto opencontainers
// cgroup configs and directories: a systemd slice must be placed under the
// slice its name nests in, or the library would look for it under
// system.slice.
func TestConfigForms(t *testing.T) {
	for _, tc := range []struct {
		path, parent, prefix, name, dir string
		systemd                         bool
	}{
		{path: "/crid/pod-1/abc", dir: "/crid/pod-1/abc"},
		{path: "crid-pod1.slice", systemd: true, parent: "crid.slice", name: "crid-pod1.slice", dir: "/crid.slice/crid-pod1.slice"},
		{path: "test.slice", systemd: true, parent: "-.slice", name: "test.slice", dir: "/test.slice"},
		{path: "kubepods-besteffort-pod1.slice:crid:abc", systemd: true, parent: "kubepods-besteffort-pod1.slice", prefix: "crid", name: "abc",
			dir: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/crid-abc.scope"},
	} {
		cg, err := Config(tc.path)
		if err != nil {
			t.Fatalf("Config(%q): %v", tc.path, err)
		}
		if cg.Systemd != tc.systemd || cg.Parent != tc.parent || cg.ScopePrefix != tc.prefix || (tc.systemd && cg.Name != tc.name) || (!tc.systemd && cg.Path != tc.path) {
			t.Errorf("Config(%q) = %+v", tc.path, cg)
		}
		if IsSystemdPath(tc.path) != tc.systemd {
			t.Errorf("IsSystemdPath(%q) = %v", tc.path, !tc.systemd)
		}
		if dir, err := Dir(tc.path); err != nil || dir != tc.dir {
			t.Errorf("Dir(%q) = %q, %v; want %q", tc.path, dir, err, tc.dir)
		}
	}
	for _, bad := range []string{"", "crid", "crid/pod", "a--b.slice", "a.slice:crid", "a.slice:crid:", "a.slice::x", "a.slice:crid:x/y", "nota:crid:x"} {
		if _, err := Config(bad); err == nil {
			t.Errorf("Config(%q) accepted", bad)
		}
		if IsSystemdPath(bad) {
			t.Errorf("IsSystemdPath(%q) = true", bad)
		}
	}
}
