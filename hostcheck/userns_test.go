package hostcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUsernsSupport runs the daemon's start-up probe on this machine's
// kernel (6.18: idmapped tmpfs and overlays of idmapped layers) and checks
// it leaves nothing in its directory; under a 0700 directory it refuses,
// saying which.
func TestUsernsSupport(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root")
	}
	dir := t.TempDir()
	// t.TempDir's parent is 0700: no mapped root could pass it.
	if err := UsernsSupport(dir); err == nil || !strings.Contains(err.Error(), "cannot be passed through by others") {
		t.Fatalf("UsernsSupport under a 0700 dir: %v, want the refusal", err)
	}
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := UsernsSupport(dir); err != nil {
		t.Fatalf("UsernsSupport: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("the probe left %d entries in %s", len(entries), dir)
	}
}

// TestCanIdmap tries bind sources as CreateContainer does for a
// user-namespaced pod: a scratch directory can be idmapped here (6.18),
// sysfs never can, and the refusal names the source.
func TestCanIdmap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root")
	}
	fd, release, err := mappedUserns()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	userns := fmt.Sprintf("/proc/self/fd/%d", fd)
	if err := CanIdmap(t.TempDir(), userns, true); err != nil {
		t.Errorf("CanIdmap of a scratch dir: %v", err)
	}
	err = CanIdmap("/sys/kernel", userns, true)
	if err == nil || !strings.Contains(err.Error(), "/sys/kernel") || !strings.Contains(err.Error(), "cannot idmap") {
		t.Errorf("CanIdmap of sysfs: %v, want a refusal naming /sys/kernel", err)
	}
	if err := CanIdmap(t.TempDir(), "/nonexistent/ns", false); err == nil || !strings.Contains(err.Error(), "user namespace") {
		t.Errorf("CanIdmap through a missing namespace: %v", err)
	}
}
