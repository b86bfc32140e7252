package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// localBusybox is the test bed's busybox named at the plain-HTTP registry
// itself, as a user of `make run` would.
const localBusybox = testRegistry + "/e2e-test-images/busybox:1.29-2"

// With no registries.conf written by hand (crid's default paths, which this
// machine does not have), crictl pulls from the plain-HTTP registry on
// 127.0.0.1: loopback registries need no configuration.
func TestPullWithDefaultRegistriesConfig(t *testing.T) {
	for _, p := range []string{"/etc/crid/registries.conf", "/etc/crid/registries.conf.d", "/etc/containers/registries.conf", "/etc/containers/registries.conf.d"} {
		if _, err := os.Stat(p); err == nil {
			t.Logf("note: this machine has %s; the defaults read it", p)
		}
	}
	dir := newDirs(t)
	// The flags repeat the defaults, overriding baseArgs' private paths.
	d := startDaemon(t, dir, "--registries-conf", "/etc/crid/registries.conf", "--containers-registries-conf", "/etc/containers/registries.conf")
	crictl(t, d, "pull", localBusybox)
	mustContain(t, "crictl images", crictl(t, d, "images"), testRegistry+"/e2e-test-images/busybox", "1.29-2")
	// What `make run` shows once crid listens: the crictl lines for it.
	ep := "unix://" + d.socket
	mustContain(t, "crid's start-up output", d.log.String(),
		"crictl --runtime-endpoint "+ep+" --image-endpoint "+ep+" version",
		"crictl --runtime-endpoint "+ep+" --image-endpoint "+ep+" info")
}

// A file named explicitly and missing stops crid at start, naming the key.
func TestNamedRegistriesConfMissing(t *testing.T) {
	dir := newDirs(t)
	writeFile(t, filepath.Join(dir, "crid.toml"), "")
	missing := filepath.Join(dir, "no-such", "registries.conf")
	code, out := runCrid(t, append(baseArgs(dir), "--registries-conf", missing)...)
	if code == 0 {
		t.Fatalf("crid started with a missing registries file named by flag:\n%s", out)
	}
	mustContain(t, "start-up error", out, "image.registries_conf", missing)
	// The same named in the file (baseArgs' flag dropped so the file counts).
	writeFile(t, filepath.Join(dir, "crid.toml"), fmt.Sprintf("[image]\nregistries_conf = %q\n", missing))
	var args []string
	for _, a := range baseArgs(dir) {
		if !strings.HasPrefix(a, "--registries-conf=") {
			args = append(args, a)
		}
	}
	code, out = runCrid(t, args...)
	if code == 0 {
		t.Fatalf("crid started with a missing registries file named in its config:\n%s", out)
	}
	mustContain(t, "start-up error", out, "image.registries_conf", missing)
}

// Every class of pull failure reaches the client as the gRPC code it can
// act on, with a message naming the registry and the reference.
func TestPullErrorCodes(t *testing.T) {
	auth := startAuthRegistry(t, "crid", "s3cret")
	stopped := freeAddr(t)
	d := startDaemon(t, newDirs(t))
	for _, tc := range []struct {
		name, ref, registry string
		auth                *runtime.AuthConfig
		want                codes.Code
	}{
		{"unknown tag", testRegistry + "/e2e-test-images/busybox:no-such-tag", testRegistry, nil, codes.NotFound},
		{"unknown repository", testRegistry + "/no/such-repo:1", testRegistry, nil, codes.NotFound},
		{"unknown digest", testRegistry + "/e2e-test-images/busybox@sha256:" + strings.Repeat("0", 64), testRegistry, nil, codes.NotFound},
		{"no credentials", auth + "/e2e-test-images/busybox:1.29-2", auth, nil, codes.Unauthenticated},
		{"wrong password", auth + "/e2e-test-images/busybox:1.29-2", auth, &runtime.AuthConfig{Username: "crid", Password: "wrong"}, codes.Unauthenticated},
		{"stopped port", stopped + "/e2e-test-images/busybox:1.29-2", stopped, nil, codes.Unavailable},
		{"unresolvable host", "no-such-registry.invalid/e2e-test-images/busybox:1.29-2", "no-such-registry.invalid", nil, codes.Unavailable},
		{"malformed reference", "UPPER/case::bad", "", nil, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := d.images().PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: tc.ref}, Auth: tc.auth})
			if status.Code(err) != tc.want {
				t.Fatalf("pull %s: %v, want %s", tc.ref, err, tc.want)
			}
			if msg := status.Convert(err).Message(); !strings.Contains(msg, tc.registry) || !strings.Contains(msg, tc.ref) {
				t.Errorf("message %q does not name the registry %q and the reference %q", msg, tc.registry, tc.ref)
			}
		})
	}
	if l, err := d.images().ListImages(context.Background(), &runtime.ListImagesRequest{}); err != nil || len(l.Images) != 0 {
		t.Fatalf("failed pulls left images: %v %v", l, err)
	}
}

// A blocked registry is refused with PermissionDenied, naming it.
func TestPullBlockedRegistry(t *testing.T) {
	dir := newDirs(t)
	writeFile(t, filepath.Join(dir, "registries.conf"), fmt.Sprintf("[[registry]]\nlocation = %q\nblocked = true\n", testRegistry))
	d := startDaemon(t, dir)
	_, err := d.images().PullImage(context.Background(), &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: localBusybox}})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), testRegistry) || !strings.Contains(err.Error(), "blocked") {
		t.Fatalf("pull from a blocked registry: %v, want PermissionDenied naming %s", err, testRegistry)
	}
}

// A pull whose registry stops sending fails with DeadlineExceeded once
// image.pull_progress_timeout passes without a byte.
func TestPullNoProgressDeadlineExceeded(t *testing.T) {
	proxy := newStallingProxy(t)
	t.Cleanup(proxy.release)
	dir := newDirs(t)
	writeFile(t, filepath.Join(dir, "crid.toml"), "[image]\npull_progress_timeout = \"1s\"\n")
	d := startDaemon(t, dir)
	ref := proxy.addr + "/e2e-test-images/busybox:1.29-2"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := d.images().PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}})
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), proxy.addr) {
		t.Fatalf("stalled pull: %v, want DeadlineExceeded naming %s", err, proxy.addr)
	}
}

// A pull that fills the disk fails with ResourceExhausted and leaves no
// layer behind: crid's root is a 1.5 MiB tmpfs, which holds the built-in
// infra (crid-pause, about 700 KB) but not busybox's layer (about 3 MB).
func TestPullDiskFullResourceExhausted(t *testing.T) {
	dir := newDirs(t)
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=1536k,mode=0711"); err != nil {
		t.Fatalf("mount a small tmpfs: %v", err)
	}
	d := startDaemon(t, dir)
	t.Cleanup(func() {
		d.kill()
		_ = unix.Unmount(root, unix.MNT_DETACH)
	})
	_, err := d.images().PullImage(context.Background(), &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: localBusybox}})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), testRegistry) || !strings.Contains(err.Error(), localBusybox) {
		t.Fatalf("pull onto a full disk: %v, want ResourceExhausted naming %s and %s", err, testRegistry, localBusybox)
	}
	if entries, _ := os.ReadDir(filepath.Join(root, "images", "layers")); len(entries) != 0 {
		t.Errorf("layers left by the failed pull: %v", entries)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(root, &st); err == nil {
		t.Logf("tmpfs after the failed pull: %d of %d blocks free", st.Bfree, st.Blocks)
	}
}

// A mirror named only in the containers-wide registries.conf (here a test
// file in place of /etc/containers/registries.conf) is honoured when crid
// has no file of its own: an unresolvable registry host maps to the test
// bed's registry.
func TestContainersRegistriesConfFallback(t *testing.T) {
	dir := newDirs(t)
	writeFile(t, filepath.Join(dir, "containers-registries.conf"), fmt.Sprintf(`[[registry]]
prefix = "registry.unresolvable.invalid"
location = "registry.unresolvable.invalid"

[[registry.mirror]]
location = %q
insecure = true
`, testRegistry))
	d := startDaemon(t, dir)
	const ref = "registry.unresolvable.invalid/e2e-test-images/busybox:1.29-2"
	crictl(t, d, "pull", ref)
	mustContain(t, "crictl images", crictl(t, d, "images"), "registry.unresolvable.invalid/e2e-test-images/busybox", "1.29-2")
}
