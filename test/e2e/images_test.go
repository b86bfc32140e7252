package e2e

import (
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const busybox = "registry.k8s.io/e2e-test-images/busybox:1.29-2"

// mirrorDaemon starts crid with the test bed's registries.conf, which
// mirrors critest's upstream registries to the local one.
func mirrorDaemon(t *testing.T, dir string) *daemon {
	t.Helper()
	return startDaemon(t, dir, "--registries-conf", filepath.Join(testbedDir, "registries.conf"))
}

func crictl(t *testing.T, d *daemon, args ...string) string {
	t.Helper()
	bin := filepath.Join(repoRoot, "_output", "bin", "crictl")
	ep := "unix://" + d.socket
	cmd := exec.Command(bin, append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "60s"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("crictl %v: %v\n%s%s", args, err, out, stderr.String())
	}
	return string(out)
}

func TestCrictlImageCommands(t *testing.T) {
	d := mirrorDaemon(t, newDirs(t))
	crictl(t, d, "pull", busybox)
	out := crictl(t, d, "images")
	mustContain(t, "crictl images", out, "registry.k8s.io/e2e-test-images/busybox", "1.29-2")
	out = crictl(t, d, "inspecti", busybox)
	mustContain(t, "crictl inspecti", out, `"repoTags"`, busybox, `"repoDigests"`, `"Cmd"`)
	out = crictl(t, d, "imagefsinfo")
	mustContain(t, "crictl imagefsinfo", out, "usedBytes", "inodesUsed")
	crictl(t, d, "rmi", busybox)
	if out := crictl(t, d, "images", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("images left after rmi: %q", out)
	}
}

func TestImageStatusByEveryName(t *testing.T) {
	d := mirrorDaemon(t, newDirs(t))
	ctx := context.Background()
	resp, err := d.images().PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}})
	if err != nil {
		t.Fatal(err)
	}
	byID, err := d.images().ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: resp.ImageRef}})
	if err != nil || byID.Image == nil {
		t.Fatalf("status by ID: %v %v", byID, err)
	}
	img := byID.Image
	if img.Id != resp.ImageRef || img.Size == 0 || len(img.RepoDigests) != 1 {
		t.Fatalf("image fields: %v", img)
	}
	for _, name := range []string{busybox, img.RepoDigests[0], strings.TrimPrefix(img.Id, "sha256:"), strings.TrimPrefix(img.Id, "sha256:")[:12]} {
		st, err := d.images().ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: name}})
		if err != nil || !proto.Equal(st.Image, img) {
			t.Fatalf("status by %q = %v, %v; want %v", name, st.GetImage(), err, img)
		}
	}
	st, err := d.images().ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: "registry.k8s.io/nothing:here"}})
	if err != nil || st.Image != nil {
		t.Fatalf("unknown image: %v, %v; want an empty response", st, err)
	}
	_, err = d.images().PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: "UPPER/case::bad"}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "UPPER/case::bad") {
		t.Fatalf("malformed reference: %v", err)
	}
	_, err = d.images().PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: "127.0.0.1:1/nothing:1"}})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("refused registry: %v", err)
	}
}

func TestImagesSurviveRestart(t *testing.T) {
	dir := newDirs(t)
	d := mirrorDaemon(t, dir)
	ctx := context.Background()
	for _, ref := range []string{busybox, "gcr.io/k8s-staging-cri-tools/test-image-user-uid"} {
		if _, err := d.images().PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}}); err != nil {
			t.Fatal(err)
		}
	}
	before, err := d.images().ListImages(ctx, &runtime.ListImagesRequest{})
	if err != nil || len(before.Images) != 2 {
		t.Fatalf("list: %v %v", before, err)
	}
	d.stop(syscall.SIGTERM, 5*time.Second)
	d = mirrorDaemon(t, dir)
	after, err := d.images().ListImages(ctx, &runtime.ListImagesRequest{})
	if err != nil || !proto.Equal(before, after) {
		t.Fatalf("after restart: %v, %v\nbefore: %v", after, err, before)
	}
}

func TestPullWithBasicAuth(t *testing.T) {
	addr := startAuthRegistry(t, "crid", "s3cret")
	dir := newDirs(t)
	registriesConf(t, dir, addr)
	d := startDaemon(t, dir)
	ctx := context.Background()
	ref := addr + "/e2e-test-images/busybox:1.29-2"

	_, err := d.images().PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}})
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
		t.Fatalf("pull without credentials: %v", err)
	}
	_, err = d.images().PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref},
		Auth: &runtime.AuthConfig{Username: "crid", Password: "wrong"}})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("pull with a wrong password: %v, want Unauthenticated", err)
	}
	if l, _ := d.images().ListImages(ctx, &runtime.ListImagesRequest{}); len(l.GetImages()) != 0 {
		t.Fatalf("failed pulls stored images: %v", l)
	}
	if _, err := d.images().PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref},
		Auth: &runtime.AuthConfig{Username: "crid", Password: "s3cret"}}); err != nil {
		t.Fatalf("pull with username/password: %v", err)
	}
	// The Docker config form: base64 of user:password.
	ref2 := addr + "/k8s-staging-cri-tools/test-image-user-uid:latest"
	if _, err := d.images().PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref2},
		Auth: &runtime.AuthConfig{Auth: base64.StdEncoding.EncodeToString([]byte("crid:s3cret"))}}); err != nil {
		t.Fatalf("pull with auth: %v", err)
	}
}

func TestKilledMidPullLeavesNothing(t *testing.T) {
	proxy := newStallingProxy(t)
	dir := newDirs(t)
	registriesConf(t, dir, proxy.addr)
	d := startDaemon(t, dir)
	ref := proxy.addr + "/e2e-test-images/busybox:1.29-2"

	pullErr := make(chan error, 1)
	go func() {
		_, err := d.images().PullImage(context.Background(), &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}})
		pullErr <- err
	}()
	select {
	case <-proxy.stalled:
	case err := <-pullErr:
		t.Fatalf("pull ended before stalling: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("pull never reached a blob")
	}
	tmp := filepath.Join(dir, "root", "images", "tmp")
	for i := 0; ; i++ {
		if entries, _ := os.ReadDir(tmp); len(entries) > 0 {
			break
		}
		if i == 100 {
			t.Fatal("expected a partial layer in the store's tmp dir mid-pull")
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.stop(syscall.SIGKILL, 5*time.Second)
	<-pullErr
	proxy.release()

	d = startDaemon(t, dir)
	ctx := context.Background()
	if l, err := d.images().ListImages(ctx, &runtime.ListImagesRequest{}); err != nil || len(l.Images) != 0 {
		t.Fatalf("after the crash: %v, %v; want no image", l, err)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Fatalf("debris left in %s: %v", tmp, entries)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "root", "images", "layers")); len(entries) != 0 {
		t.Fatalf("layers left without an image: %v", entries)
	}
	if _, err := d.images().PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}}); err != nil {
		t.Fatalf("pull after restart: %v", err)
	}
}
