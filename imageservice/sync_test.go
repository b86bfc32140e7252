package imageservice

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Each unpacked layer is synced whole, layer.json included, while it is
// still in tmp: never after its chain ID names it.
func TestLayersSyncedBeforeVisible(t *testing.T) {
	e := newEnv(t)
	img := basicImage(t, imageSpec{})
	e.reg.push("app", "v1", img)
	var (
		mu     sync.Mutex // layers unpack concurrently
		synced []string
	)
	layerSync = func(dir string) error {
		if filepath.Dir(dir) != filepath.Join(e.root, "tmp") {
			t.Errorf("synced %s, not a dir in tmp", dir)
		}
		b, err := os.ReadFile(filepath.Join(dir, layerMetaFile))
		if err != nil {
			t.Errorf("synced before layer.json was written: %v", err)
			return syncFS(dir)
		}
		var m layerMeta
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(e.layerDir(m.ChainID)); err == nil {
			t.Errorf("layer %s visible before its sync", m.ChainID)
		}
		if _, err := os.Stat(filepath.Join(dir, "diff", "etc")); err != nil {
			t.Errorf("synced an incomplete layer: %v", err)
		}
		mu.Lock()
		synced = append(synced, dir)
		mu.Unlock()
		return syncFS(dir)
	}
	t.Cleanup(func() { layerSync = syncFS })
	e.mustPull(t, e.reg.ref("app:v1"))
	if len(synced) != len(img.layers) {
		t.Fatalf("%d syncs for %d layers", len(synced), len(img.layers))
	}
}

// A failed sync (a write-back error) fails the pull, leaving nothing.
func TestLayerSyncErrorFailsPull(t *testing.T) {
	e := newEnv(t)
	e.reg.push("app", "v1", basicImage(t, imageSpec{}))
	errEIO := errors.New("write-back error")
	layerSync = func(string) error { return errEIO }
	t.Cleanup(func() { layerSync = syncFS })
	if _, err := e.svc.Pull(context.Background(), e.reg.ref("app:v1"), nil); !errors.Is(err, errEIO) {
		t.Fatalf("pull: %v, want the sync's error", err)
	}
	e.assertEmptyStore(t)
}

func TestSyncFS(t *testing.T) {
	if err := syncFS(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := syncFS(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("syncFS of a missing dir succeeded")
	}
}
