package hostcheck

import (
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
