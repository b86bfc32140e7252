package cgroupmgr

import (
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
		{sd, "/kubepods/pod1", false},
	} {
		if err := tc.m.ValidateParent(tc.parent); (err == nil) != tc.ok {
			t.Errorf("%s ValidateParent(%q) = %v", tc.m.driver, tc.parent, err)
		}
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
	m, err := New("cgroupfs")
	if err != nil {
		t.Fatal(err)
	}
	p := "/crid-unit-test-" + strings.ReplaceAll(t.Name(), "/", "-")
	t.Cleanup(func() { _ = m.Remove(p) })
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
