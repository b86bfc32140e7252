package hostcheck

import (
	"os"
	"testing"
)

// TestUsernsSupport runs the daemon's start-up probe on this machine's
// kernel (6.18: idmapped tmpfs and overlays of idmapped layers) and checks
// it leaves nothing in its directory.
func TestUsernsSupport(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root")
	}
	dir := t.TempDir()
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
