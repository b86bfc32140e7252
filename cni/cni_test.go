package cni

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const bridgeList = `{"cniVersion":"1.0.0","name":"%s","plugins":[{"type":"bridge","bridge":"cni0"},{"type":"portmap","capabilities":{"portMappings":true}}]}`

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestReady(t *testing.T) {
	confDir, binDir := t.TempDir(), t.TempDir()
	m := New(confDir, []string{binDir}, t.TempDir())

	if err := m.Ready(); err == nil || !strings.Contains(err.Error(), "no network config found") {
		t.Fatalf("empty conf dir: %v", err)
	}
	write(t, filepath.Join(confDir, "10-a.conflist"), strings.Replace(bridgeList, "%s", "net-a", 1))
	write(t, filepath.Join(confDir, "20-b.conflist"), strings.Replace(bridgeList, "%s", "net-b", 1))
	if err := m.Ready(); err == nil || !strings.Contains(err.Error(), `plugin "bridge" not found`) {
		t.Fatalf("missing plugins: %v", err)
	}
	write(t, filepath.Join(binDir, "bridge"), "#!/bin/sh\n")
	write(t, filepath.Join(binDir, "portmap"), "#!/bin/sh\n")
	if err := m.Ready(); err != nil {
		t.Fatalf("ready: %v", err)
	}
	list, err := m.DefaultNetwork()
	if err != nil || list.Name != "net-a" {
		t.Fatalf("default network = %v, %v; want the lexically first", list, err)
	}
}

func TestBrokenConfigFallsThrough(t *testing.T) {
	confDir := t.TempDir()
	m := New(confDir, []string{t.TempDir()}, t.TempDir())
	write(t, filepath.Join(confDir, "00-broken.conflist"), "{not json")
	if _, err := m.DefaultNetwork(); err == nil || !strings.Contains(err.Error(), "00-broken.conflist") {
		t.Fatalf("only a broken config: %v", err)
	}
	write(t, filepath.Join(confDir, "10-good.conf"), strings.Replace(bridgeList, "%s", "good", 1))
	list, err := m.DefaultNetwork()
	if err != nil || list.Name != "good" || len(list.Plugins) != 2 {
		t.Fatalf("a loadable config after a broken one: %v %v", list, err)
	}
}
