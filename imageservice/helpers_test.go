package imageservice

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crid-dev/crid/records"
)

// testArch is the architecture the service resolves manifest lists to.
var testArch = runtime.GOARCH

func TestMain(m *testing.M) {
	// containers/image falls back to the host's credential files when a
	// pull carries none: point every lookup at an empty directory so the
	// tests see only the credentials they pass.
	home, err := os.MkdirTemp("", "imageservice-test-home-")
	if err != nil {
		panic(err)
	}
	for _, k := range []string{"HOME", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "DOCKER_CONFIG"} {
		os.Setenv(k, home)
	}
	os.Setenv("REGISTRY_AUTH_FILE", filepath.Join(home, "auth.json"))
	code := m.Run()
	os.RemoveAll(home)
	if leaked := leakedGoroutines(); code == 0 && leaked != "" {
		fmt.Fprintf(os.Stderr, "goroutines of the package left running after the tests:\n%s\n", leaked)
		code = 1
	}
	os.Exit(code)
}

// leakedGoroutines returns the stacks of goroutines still running code of
// this package (the fake registry's handlers, pulls, flights) once the
// tests are done, after giving them a moment to wind down.
func leakedGoroutines() string {
	deadline := time.Now().Add(3 * time.Second)
	for {
		buf := make([]byte, 4<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "crid/imageservice.") && !strings.Contains(g, "imageservice.leakedGoroutines") && !strings.Contains(g, "imageservice.TestMain") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testEnv is one image store in a temporary directory beside a canary
// directory that no pull may touch, pulling from one fake registry.
type testEnv struct {
	base       string // t.TempDir(): holds root, records and canary
	root       string
	recordsDir string
	canary     string
	reg        *fakeRegistry
	opts       Options
	svc        *Service
}

const testProgressTimeout = 30 * time.Second

// testLimits are the daemon's defaults but for a 1 GiB layer size.
var testLimits = Limits{FetchesPerPull: 3, FetchesTotal: 12, MaxLayers: 500, MaxLayerBytes: 1 << 30, MaxLayerFiles: 1_000_000}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	e := &testEnv{base: t.TempDir(), reg: newFakeRegistry(t)}
	e.root = filepath.Join(e.base, "root")
	e.recordsDir = filepath.Join(e.base, "records")
	e.canary = filepath.Join(e.base, "canary")
	if err := os.MkdirAll(e.canary, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.canary, "secret"), []byte("canary"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.opts = Options{
		Root:            e.root,
		RootfsDir:       filepath.Join(e.base, "rootfs"),
		RegistriesConf:  e.reg.registriesConf(t),
		SandboxImage:    e.reg.ref("pause:3.10"),
		ProgressTimeout: testProgressTimeout,
		UserAgent:       "test",
		Limits:          testLimits,
	}
	e.svc = e.open(t)
	return e
}

// open returns a new Service on the env's root and records directory, as a
// restarted daemon would.
func (e *testEnv) open(t *testing.T) *Service {
	t.Helper()
	rs, err := records.Open(e.recordsDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	opts := e.opts
	opts.Records = rs
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (e *testEnv) mustPull(t *testing.T, ref string) *Image {
	t.Helper()
	img, err := e.svc.Pull(context.Background(), ref, nil)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	if img == nil {
		t.Fatalf("pull %s: nil image and nil error", ref)
	}
	return img
}

func (e *testEnv) mustGet(t *testing.T, name string) *Image {
	t.Helper()
	img, err := e.svc.Get(name)
	if err != nil {
		t.Fatalf("Get(%q): %v", name, err)
	}
	if img == nil {
		t.Fatalf("Get(%q): not found", name)
	}
	return img
}

func (e *testEnv) assertAbsent(t *testing.T, name string) {
	t.Helper()
	img, err := e.svc.Get(name)
	if err != nil || img != nil {
		t.Fatalf("Get(%q) = %v, %v; want nil, nil", name, img, err)
	}
}

func (e *testEnv) layerDir(chain Digest) string {
	return filepath.Join(e.root, "layers", chain.Hex())
}

// layerNames lists the directories under <root>/layers.
func (e *testEnv) layerNames(t *testing.T) []string {
	t.Helper()
	return dirNames(t, filepath.Join(e.root, "layers"))
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func hexes(ds ...Digest) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Hex())
	}
	slices.Sort(out)
	return out
}

func (e *testEnv) assertLayers(t *testing.T, want ...Digest) {
	t.Helper()
	got := e.layerNames(t)
	slices.Sort(got)
	if w := hexes(want...); !slices.Equal(got, w) {
		t.Fatalf("layer dirs = %v, want %v", got, w)
	}
}

// assertEmptyStore checks that a failed pull left nothing: no image, no
// layer, no config blob, and an empty tmp dir.
func (e *testEnv) assertEmptyStore(t *testing.T) {
	t.Helper()
	imgs, err := e.svc.List("")
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 0 {
		t.Errorf("images listed after a failed pull: %v", imgs)
	}
	if l := e.layerNames(t); len(l) != 0 {
		t.Errorf("layer dirs after a failed pull: %v", l)
	}
	if tmp := dirNames(t, filepath.Join(e.root, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp dir not empty after a failed pull: %v", tmp)
	}
	var blobs []string
	_ = filepath.WalkDir(filepath.Join(e.root, "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			blobs = append(blobs, p)
		}
		return nil
	})
	if len(blobs) != 0 {
		t.Errorf("blobs stored after a failed pull: %v", blobs)
	}
	if recs, _ := os.ReadDir(filepath.Join(e.recordsDir, recordKind)); len(recs) != 0 {
		t.Errorf("image records written after a failed pull: %d", len(recs))
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitChan(t *testing.T, what string, timeout time.Duration, c <-chan struct{}) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(timeout):
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

func isNotExist(t *testing.T, p string) bool {
	t.Helper()
	_, err := os.Lstat(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err != nil
}

// testID returns a container ID of the form crid makes (64 hex digits)
// derived from name.
func testID(name string) string { return sha256Of([]byte(name)).Hex() }
