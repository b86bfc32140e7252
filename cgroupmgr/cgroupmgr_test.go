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
