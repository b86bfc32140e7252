package oci

import (
	"errors"
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A name held by an attempt stuck in a step is refused with the attempt,
// its start and its step; released, it can be taken again.
func TestReserveNamesTheStuckAttempt(t *testing.T) {
	c := &Containers{m: map[string]*Container{}, names: map[string]string{}, busy: map[string]bool{}, creating: map[string]*createAttempt{}}
	md := &runtime.ContainerMetadata{Name: "web"}
	first, err := c.Reserve("pod1", md, "id1")
	if err != nil {
		t.Fatal(err)
	}
	first.Step("build the spec (bind-mount sources looked up on the host)")
	_, err = c.Reserve("pod1", md, "id2")
	if !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("second reservation: %v, want ErrAlreadyExists", err)
	}
	for _, want := range []string{"being created by an attempt (container id1)", "started at", "bind-mount sources"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
	}
	if _, err := c.Reserve("pod2", md, "id3"); err != nil {
		t.Fatalf("the same name in another pod: %v", err)
	}
	first.Release()
	first.Release() // the deferred one after an explicit one: harmless
	if _, err := c.Reserve("pod1", md, "id4"); err != nil {
		t.Fatalf("after release: %v", err)
	}
	if c.busy["id1"] || c.creating[nameKey("pod1", md)].id != "id4" {
		t.Fatalf("release left id1 behind: busy %v, creating %+v", c.busy, c.creating)
	}
}
