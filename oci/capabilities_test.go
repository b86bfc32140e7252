package oci

import (
	"slices"
	"testing"
)

// The daemon's own capabilities are what "ALL" and privileged containers
// get: on these nodes CAP_SYS_RESOURCE is not among them.
func TestHostCapabilities(t *testing.T) {
	held, err := HostCapabilities()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(held, "CAP_SYS_ADMIN") || !slices.Contains(held, "CAP_CHOWN") {
		t.Fatalf("root's capabilities lack the basics: %v", held)
	}
	for _, c := range held {
		if len(c) < 5 || c[:4] != "CAP_" {
			t.Fatalf("badly named capability %q", c)
		}
	}
}
