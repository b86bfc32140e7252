package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testRegistry is the test bed's registry (hack/test-images.sh): the
// critest look-alike images on 127.0.0.1:5000, filesystem storage in
// testbedDir/registry/data.
const testRegistry = "127.0.0.1:5000"

var (
	repoRoot   string
	testbedDir string
)

// ensureTestImages builds and serves the test images; it returns a stop
// function that stops the registry when this run started it.
func ensureTestImages() (func(), error) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return nil, fmt.Errorf("find repo root: %w", err)
	}
	repoRoot = strings.TrimSpace(string(out))
	// hack/test-images.sh honours CRID_TESTBED_DIR (a shared test bed for
	// several worktrees); so must the tests that read its registries.conf.
	testbedDir = os.Getenv("CRID_TESTBED_DIR")
	if testbedDir == "" {
		testbedDir = filepath.Join(repoRoot, "_output", "testbed")
	}
	wasUp := registryAnswers(testRegistry)
	cmd := exec.Command("bash", filepath.Join(repoRoot, "hack", "test-images.sh"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("hack/test-images.sh: %w", err)
	}
	return func() {
		if !wasUp {
			_ = exec.Command("bash", filepath.Join(repoRoot, "hack", "registry.sh"), "stop").Run()
		}
	}, nil
}

func registryAnswers(addr string) bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/v2/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized
}

// registriesConf writes a containers-registries.conf marking each address
// as a plain-HTTP registry.
func registriesConf(t *testing.T, dir string, addrs ...string) {
	t.Helper()
	var b strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&b, "[[registry]]\nlocation = %q\ninsecure = true\n\n", a)
	}
	writeFile(t, filepath.Join(dir, "registries.conf"), b.String())
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startAuthRegistry runs a second docker-registry that requires basic auth
// and serves the test bed's images as a pull-through cache of it.
func startAuthRegistry(t *testing.T, user, pass string) string {
	t.Helper()
	dir := newDirs(t)
	htpasswd, err := exec.Command("htpasswd", "-Bbn", user, pass).Output()
	if err != nil {
		t.Fatalf("htpasswd: %v", err)
	}
	writeFile(t, filepath.Join(dir, "htpasswd"), string(htpasswd))
	addr := freeAddr(t)
	writeFile(t, filepath.Join(dir, "config.yml"), fmt.Sprintf(`version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: %s/data
http:
  addr: %s
auth:
  htpasswd:
    realm: crid-e2e
    path: %s/htpasswd
proxy:
  remoteurl: http://%s
`, dir, addr, dir, testRegistry))
	cmd := exec.Command("docker-registry", "serve", filepath.Join(dir, "config.yml"))
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for i := 0; !registryAnswers(addr); i++ {
		if i > 100 {
			t.Fatalf("auth registry on %s did not come up", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return addr
}

// stallingProxy forwards to the test registry but holds every blob
// response after its first bytes until release is called, so a pull can be
// caught in the middle of a layer.
type stallingProxy struct {
	addr    string
	stalled chan struct{} // closed when the first blob stalls
	release func()
	once    sync.Once
	served  atomic.Int64
}

func newStallingProxy(t *testing.T) *stallingProxy {
	t.Helper()
	target, _ := url.Parse("http://" + testRegistry)
	p := &stallingProxy{stalled: make(chan struct{})}
	releaseCh := make(chan struct{})
	var releaseOnce sync.Once
	p.release = func() { releaseOnce.Do(func() { close(releaseCh) }) }
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		if strings.Contains(resp.Request.URL.Path, "/blobs/") && resp.Request.Method == http.MethodGet {
			resp.Body = &stallingBody{rc: resp.Body, p: p, release: releaseCh, ctx: resp.Request.Context()}
		}
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(func() {
		p.release()
		srv.Close()
	})
	p.addr = strings.TrimPrefix(srv.URL, "http://")
	return p
}

type stallingBody struct {
	rc      io.ReadCloser
	p       *stallingProxy
	release chan struct{}
	ctx     context.Context
	read    int
}

func (b *stallingBody) Read(buf []byte) (int, error) {
	if b.read >= 32<<10 {
		b.p.once.Do(func() { close(b.p.stalled) })
		select {
		case <-b.release:
		case <-b.ctx.Done():
			return 0, b.ctx.Err()
		}
	}
	if len(buf) > 8<<10 {
		buf = buf[:8<<10]
	}
	n, err := b.rc.Read(buf)
	b.read += n
	b.p.served.Add(int64(n))
	return n, err
}

func (b *stallingBody) Close() error { return b.rc.Close() }
