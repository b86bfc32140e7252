package oci

import (
	"slices"
	"sync"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/records"
)

// fakeRootfs records what Containers asks of the image store.
type fakeRootfs struct {
	mu                 sync.Mutex
	removed, unmounted []string
}

func (f *fakeRootfs) UnmountRootfs(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, id)
	return nil
}

func (f *fakeRootfs) UnmountRootfsKeepLayer(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unmounted = append(f.unmounted, id)
	return nil
}

// An exit, however often it is observed, unmounts the container's rootfs
// once and keeps its layer; a running container's is left alone.
func TestExitUnmountsTheRootfsOnce(t *testing.T) {
	store, err := records.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	fr := &fakeRootfs{}
	c := &Containers{records: store, rootfs: fr, m: map[string]*Container{}, names: map[string]string{}, busy: map[string]bool{}}
	add := func(id string) *Container {
		ctr := &Container{ID: id, State: StateRunning, Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: id}}}
		c.m[id] = ctr
		return ctr
	}
	done := add("done")
	add("alive")
	c.setExit(done, &Exit{Code: 0, FinishedAt: time.Now()})
	c.setExit(done, &Exit{Code: 0, FinishedAt: time.Now()}) // seen again
	if !slices.Equal(fr.unmounted, []string{"done"}) || len(fr.removed) != 0 {
		t.Fatalf("unmounted %v, removed %v; want only done's rootfs unmounted, once, and nothing removed", fr.unmounted, fr.removed)
	}
}
