package imageservice

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Each class of pull failure, produced for real by containers/image against
// a registry on this machine, is classified, and its message names the
// registry and the reference.
func TestPullErrorClasses(t *testing.T) {
	e := newEnv(t)
	e.reg.push("app", "v1", basicImage(t, imageSpec{}))
	other := basicImage(t, imageSpec{arch: "s390x", label: "other arch"})
	e.reg.pushList("app", "s390x-only", false, other)

	// A registry that answers every request with one status and error code.
	answering := func(status int, code string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
			if r.URL.Path == "/v2/" {
				return
			}
			writeRegistryError(w, status, code, "test registry says "+code)
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	denied := answering(http.StatusForbidden, "DENIED")
	unavailable := answering(http.StatusServiceUnavailable, "UNAVAILABLE")
	closed := func() string {
		srv := httptest.NewServer(http.NotFoundHandler())
		addr := strings.TrimPrefix(srv.URL, "http://")
		srv.Close()
		return addr
	}()

	for _, tc := range []struct {
		name, ref string
		want      error
	}{
		{"unknown tag", e.reg.ref("app:v2"), ErrNotInRegistry},
		{"unknown repository", e.reg.ref("nothing/here:v1"), ErrNotInRegistry},
		{"unknown digest", e.reg.ref("app@sha256:" + strings.Repeat("ab", 32)), ErrNotInRegistry},
		{"no image for this platform", e.reg.ref("app:s390x-only"), ErrNotInRegistry},
		{"credentials refused", denied + "/app:v1", ErrDenied},
		{"registry says unavailable", unavailable + "/app:v1", ErrUnavailable},
		{"connection refused", closed + "/app:v1", ErrUnavailable},
		{"unresolvable host", "no-such-registry.invalid/app:v1", ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.Pull(context.Background(), tc.ref, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("pull %s: %v, want %v", tc.ref, err, tc.want)
			}
			named, perr := parseReference(tc.ref)
			if perr != nil {
				t.Fatal(perr)
			}
			host, _, _ := strings.Cut(tc.ref, "/")
			if msg := err.Error(); !strings.Contains(msg, named.String()) || !strings.Contains(msg, "registry "+host) {
				t.Errorf("message %q does not name the reference %s and the registry %s", msg, named, host)
			}
			for _, other := range []error{ErrNotInRegistry, ErrDenied, ErrUnavailable, ErrUnauthorized, ErrRegistryTLS, ErrNoSpace} {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("error %q is also %v", err, other)
				}
			}
		})
	}
	e.assertEmptyStore(t)
}

func TestPullUnauthorizedClass(t *testing.T) {
	e := newEnv(t)
	e.reg.push("app", "v1", basicImage(t, imageSpec{}))
	e.reg.requireAuth("alice", "s3cret")
	for _, auth := range []*Auth{nil, {Username: "alice", Password: "wrong"}} {
		_, err := e.svc.Pull(context.Background(), e.reg.ref("app:v1"), auth)
		if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "registry "+e.reg.host) {
			t.Fatalf("pull with %+v: %v, want ErrUnauthorized naming the registry", auth, err)
		}
	}
}

// Errors that are not the registry's: the disk, TLS, and those that carry
// a class of their own already.
func TestPullClassOfLocalErrors(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	_, tlsErr := tls.Dial("tcp", srv.Listener.Addr().String(), &tls.Config{})
	if tlsErr == nil {
		t.Fatal("a TLS handshake with an unknown CA succeeded")
	}
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"ENOSPC", fmt.Errorf("unpack: %w", &fs.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}), ErrNoSpace},
		{"EDQUOT", fmt.Errorf("unpack: %w", &os.LinkError{Op: "link", Old: "a", New: "b", Err: syscall.EDQUOT}), ErrNoSpace},
		{"unknown CA", fmt.Errorf("pinging: %w", tlsErr), ErrRegistryTLS},
		{"HTTP answer to HTTPS", errors.New(`Get "https://r/v2/": http: server gave HTTP response to HTTPS client`), ErrRegistryTLS},
		{"limit", fmt.Errorf("layer: %w", ErrTooLarge), nil},
		{"watchdog", &ErrNoProgress{Registry: "r"}, nil},
		{"cancelled", fmt.Errorf("get: %w", context.Canceled), nil},
		{"unexplained", errors.New("something else"), nil},
	} {
		if got := pullClass(tc.err); got != tc.want {
			t.Errorf("%s: pullClass(%q) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// A blocked registry is refused before any request.
func TestPullBlockedRegistry(t *testing.T) {
	e := newEnv(t)
	e.reg.push("app", "v1", basicImage(t, imageSpec{}))
	conf := filepath.Join(t.TempDir(), "registries.conf")
	writeTestFile(t, conf, fmt.Sprintf("[[registry]]\nlocation = %q\nblocked = true\n", e.reg.host))
	e.opts.RegistriesConf = conf
	svc := e.open(t)
	_, err := svc.Pull(context.Background(), e.reg.ref("app:v1"), nil)
	if !errors.Is(err, ErrBlocked) {
		t.Fatalf("pull from a blocked registry: %v, want ErrBlocked", err)
	}
	if n := e.reg.manifestGetCount("app", "v1"); n != 0 {
		t.Errorf("the blocked registry was asked for the manifest %d times", n)
	}
}

// With no registries configuration at all, a registry on a loopback
// address is reached over plain HTTP.
func TestPullLoopbackWithoutConfig(t *testing.T) {
	e := newEnv(t)
	img := basicImage(t, imageSpec{})
	e.reg.push("app", "v1", img)
	for _, tc := range []struct{ name, own, wide string }{
		{"no files named", "", ""},
		{"files named but absent", filepath.Join(t.TempDir(), "registries.conf"), filepath.Join(t.TempDir(), "containers", "registries.conf")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.opts.RegistriesConf, e.opts.ContainersRegistriesConf = tc.own, tc.wide
			svc := e.open(t)
			got, err := svc.Pull(context.Background(), e.reg.ref("app:v1"), nil)
			if err != nil {
				t.Fatalf("pull from a loopback registry with no configuration: %v", err)
			}
			if got.ID != img.id() {
				t.Fatalf("pulled %s, want %s", got.ID, img.id())
			}
		})
	}
	// "localhost" is loopback too, whatever port.
	_, port, _ := strings.Cut(e.reg.host, ":")
	e.opts.RegistriesConf, e.opts.ContainersRegistriesConf = "", ""
	svc := e.open(t)
	if _, err := svc.Pull(context.Background(), "localhost:"+port+"/app:v1", nil); err != nil {
		t.Fatalf("pull from localhost:%s: %v", port, err)
	}
}

// Which registries.conf a pull reads: crid's own file or .d directory if
// either exists, else the containers-wide pair, else nothing.
func TestRegistriesConfFallback(t *testing.T) {
	e := newEnv(t)
	img := basicImage(t, imageSpec{})
	e.reg.push("k8s/app", "v1", img)
	// An upstream that cannot resolve, mirrored by the fake registry.
	mirror := fmt.Sprintf("[[registry]]\nprefix = \"unresolvable.invalid\"\nlocation = \"unresolvable.invalid\"\n\n[[registry.mirror]]\nlocation = %q\ninsecure = true\n", e.reg.host+"/k8s")
	const ref = "unresolvable.invalid/app:v1"

	own := filepath.Join(t.TempDir(), "registries.conf")
	wide := filepath.Join(t.TempDir(), "registries.conf")
	writeTestFile(t, wide, mirror)
	e.opts.RegistriesConf, e.opts.ContainersRegistriesConf = own, wide

	// crid's file absent: the containers-wide one maps the host.
	svc := e.open(t)
	if _, err := svc.Pull(context.Background(), ref, nil); err != nil {
		t.Fatalf("pull through the containers-wide mirror: %v", err)
	}
	if err := svc.Remove(ref); err != nil {
		t.Fatal(err)
	}
	// crid's own .d directory alone wins over the containers-wide file:
	// an empty drop-in means no mirror, so the pull goes upstream and fails.
	writeTestFile(t, filepath.Join(own+".d", "empty.conf"), "")
	e.opts.ContainersRegistriesConf = wide
	_, err := e.open(t).Pull(context.Background(), ref, nil)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("with crid's own (empty) drop-in directory the pull went %v, want the unresolvable upstream (ErrUnavailable)", err)
	}
	// crid's own file with the mirror in it.
	writeTestFile(t, own, strings.ReplaceAll(mirror, "unresolvable.invalid", "unresolvable2.invalid"))
	if _, err := e.open(t).Pull(context.Background(), "unresolvable2.invalid/app:v1", nil); err != nil {
		t.Fatalf("pull through crid's own mirror: %v", err)
	}
}

func writeTestFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
