package nri

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const testCDISpec = `cdiVersion: "0.6.0"
kind: "crid.test/device"
devices:
  - name: one
    containerEdits:
      env: ["CDI_DEVICE=one"]
      mounts:
        - hostPath: /var/lib/one
          containerPath: /dev-one
          options: ["ro", "bind"]
containerEdits:
  env: ["CDI_VENDOR=crid"]
`

// A plugin's CDI device is resolved from the spec dirs and its edits land
// in the spec; an unknown one fails with its name.
func TestInjectCDI(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "crid-test.yaml"), []byte(testCDISpec), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.CDISpecDirs = []string{filepath.Join(dir, "absent"), dir}
	n := New(cfg, "crid", "test")

	s := baseSpec()
	adj := &api.ContainerAdjustment{}
	adj.AddCDIDevice(&api.CDIDevice{Name: "crid.test/device=one"})
	if err := AdjustSpec(s, adj, n.InjectCDI); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CDI_DEVICE=one", "CDI_VENDOR=crid"} {
		if !slices.Contains(s.Process.Env, want) {
			t.Errorf("env %v lacks %s", s.Process.Env, want)
		}
	}
	if !slices.ContainsFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/dev-one" && m.Source == "/var/lib/one" }) {
		t.Errorf("the device's mount is missing: %v", s.Mounts)
	}

	bad := &api.ContainerAdjustment{}
	bad.AddCDIDevice(&api.CDIDevice{Name: "crid.test/device=two"})
	err := AdjustSpec(baseSpec(), bad, n.InjectCDI)
	if err == nil || !strings.Contains(err.Error(), "crid.test/device=two") || !strings.Contains(err.Error(), "nri.cdi_spec_dirs") {
		t.Fatalf("unknown CDI device: error %v, want it named with the key", err)
	}
}
