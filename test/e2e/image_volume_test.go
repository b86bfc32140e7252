package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Image volumes (KEP-4639): a CRI mount naming an image gets the image's
// layers read-only, or a sub path inside them.

// volumeRepo holds this file's images in the shared registry.
const volumeRepo = "crid-e2e/image-volume"

// tarEntry is one entry of a layer: a file, a directory (name ending in
// "/") or, with link set, a symlink.
type tarEntry struct {
	name, body, link string
}

func makeTarLayer(t *testing.T, entries ...tarEntry) e2eLayer {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, e := range entries {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: 0o644, Size: int64(len(e.body)), ModTime: time.Unix(1700000000, 0)}
		switch {
		case e.link != "":
			h.Typeflag, h.Linkname, h.Mode, h.Size = tar.TypeSymlink, e.link, 0o777, 0
		case strings.HasSuffix(e.name, "/"):
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return e2eLayer{blob: gz.Bytes(), digest: sha256Digest(gz.Bytes()), diffID: sha256Digest(raw.Bytes())}
}

// pushVolumeImage pushes a two-layer image (so crid mounts it as an
// overlay without upper dir): the second layer adds a file, whites one
// out, and carries symlinks that point at /data, climb out with "..", or
// name a host path the image does not hold.
func pushVolumeImage(t *testing.T) string {
	t.Helper()
	l1 := makeTarLayer(t,
		tarEntry{name: "data/"},
		tarEntry{name: "data/a.txt", body: "layer one\n"},
		tarEntry{name: "data/gone.txt", body: "whited out above\n"},
		tarEntry{name: "etc/"},
		tarEntry{name: "etc/passwd", body: "volume-passwd\n"},
	)
	l2 := makeTarLayer(t,
		tarEntry{name: "data/"},
		tarEntry{name: "data/b.txt", body: "layer two\n"},
		tarEntry{name: "data/.wh.gone.txt"},
		tarEntry{name: "abs-link", link: "/data"},
		tarEntry{name: "climb-link", link: "../../../../../../../etc"},
		tarEntry{name: "host-link", link: "/proc/1/root/etc"},
	)
	config := imageConfig(t, "layers", l1.diffID, l2.diffID)
	for _, l := range []e2eLayer{l1, l2} {
		registryPushBlob(t, volumeRepo, l.blob)
	}
	cd := registryPushBlob(t, volumeRepo, config)
	registryPushManifest(t, volumeRepo, "v1", mtManifest, manifestFor(t, cd, len(config), l1, l2))
	return testRegistry + "/" + volumeRepo + ":v1"
}

// pullRef pulls image and returns the ref PullImage gives.
func (n *podNode) pullRef(t *testing.T, image string) string {
	t.Helper()
	resp, err := n.images().PullImage(context.Background(), &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: image}})
	if err != nil {
		t.Fatalf("PullImage %s: %v", image, err)
	}
	return resp.ImageRef
}

// volumeMounts lists the mounts under the daemon's image volume dirs.
func (n *podNode) volumeMounts(t *testing.T) []string {
	t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], filepath.Join(n.dir, "root", "rootfs")+"/") && strings.Contains(f[4], "/volumes/") {
			out = append(out, f[4])
		}
	}
	return out
}

func imageMount(path, image, subPath string) *runtime.Mount {
	return &runtime.Mount{ContainerPath: path, Readonly: true, Image: &runtime.ImageSpec{Image: image, UserSpecifiedImage: image}, ImageSubPath: subPath}
}

// An image volume shows the image's merged layers read-only (whiteouts
// applied), a sub path shows what it names inside the image, a symlink
// sub path resolves inside the image however far it climbs, binaries in
// it run, ContainerStatus reports the image's ref, and the image cannot
// be removed while mounted — also after a daemon restart — but can once
// the container is gone, which leaves no mount behind.
func TestImageVolume(t *testing.T) {
	n := newPodNode(t)
	ctx := context.Background()
	volImage := pushVolumeImage(t)
	volRef := n.pullRef(t, volImage)
	bbRef := n.pullRef(t, busybox)
	pod := n.logPod("imgvol")
	podID := n.run(t, pod)

	cfg := ctrConfig("vol", "sleep", "3600")
	cfg.Mounts = []*runtime.Mount{
		imageMount("/vol", volImage, ""),
		imageMount("/sub", volImage, "data"),
		imageMount("/abs", volImage, "abs-link"),
		imageMount("/climb", volImage, "climb-link"),
		imageMount("/file", volImage, "etc/passwd"),
		imageMount("/bb", bbRef, ""),                                                            // by the ref PullImage returned, as kubelet names it
		{ContainerPath: "/by-ref", Readonly: true, Image: &runtime.ImageSpec{ImageRef: volRef}}, // image_ref alone
	}
	id := n.create(t, podID, pod, cfg, true)

	for cmd, want := range map[string]string{
		"cat /vol/data/a.txt /vol/data/b.txt": "layer one\nlayer two",
		"ls /sub":                             "a.txt\nb.txt",
		"cat /abs/b.txt":                      "layer two",
		"cat /climb/passwd":                   "volume-passwd",
		"cat /file":                           "volume-passwd",
		"cat /by-ref/data/b.txt":              "layer two",
		"/bb/bin/echo runs from the volume":   "runs from the volume",
	} {
		if got := n.exec(t, id, "sh", "-c", cmd); got != want {
			t.Errorf("%s: %q, want %q", cmd, got, want)
		}
	}
	if _, _, code := n.execResult(t, id, "test", "-e", "/vol/data/gone.txt"); code == 0 {
		t.Error("/vol/data/gone.txt is visible: the upper layer's whiteout was not applied")
	}
	for _, p := range []string{"/vol/new", "/sub/new", "/bb/new"} {
		_, stderr, code := n.execResult(t, id, "touch", p)
		if code == 0 || !strings.Contains(stderr, "Read-only file system") {
			t.Errorf("touch %s: exit %d, %q; want a read-only file system", p, code, stderr)
		}
	}

	st := n.ctrStatus(t, id)
	refs := map[string]string{}
	for _, m := range st.Mounts {
		refs[m.ContainerPath] = m.GetImage().GetImageRef()
		if m.ContainerPath == "/vol" && (m.GetImage().GetImage() != volImage || m.GetImage().GetUserSpecifiedImage() != volImage) {
			t.Errorf("status of /vol names image %+v, want %s as given", m.GetImage(), volImage)
		}
	}
	if refs["/vol"] != volRef || refs["/sub"] != volRef || refs["/by-ref"] != volRef || refs["/bb"] != bbRef {
		t.Errorf("status mounts' image_ref: %v; want %s for the volume image, %s for busybox", refs, volRef, bbRef)
	}

	removeInUse := func(when string) {
		t.Helper()
		_, err := n.images().RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: volImage}})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), "image volume") {
			t.Fatalf("%s: RemoveImage of a mounted image: %v; want FailedPrecondition naming container %s", when, err, id)
		}
		if resp, err := n.images().ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: volImage}}); err != nil || resp.Image == nil {
			t.Fatalf("%s: a refused RemoveImage removed the image: %v", when, err)
		}
	}
	removeInUse("running")
	if got := len(n.volumeMounts(t)); got != len(cfg.Mounts) {
		t.Fatalf("%d image volume mounts on the host, want %d", got, len(cfg.Mounts))
	}
	n.restart(t)
	removeInUse("after a daemon restart")
	if got := n.exec(t, id, "cat", "/sub/a.txt"); got != "layer one" {
		t.Errorf("after a restart /sub/a.txt = %q", got)
	}

	if _, err := n.runtime().StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.runtime().RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if m := n.volumeMounts(t); len(m) != 0 {
		t.Fatalf("image volumes still mounted after RemoveContainer: %v", m)
	}
	if _, err := n.images().RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: volImage}}); err != nil {
		t.Fatalf("RemoveImage once no container mounts it: %v", err)
	}
	n.removePod(t, podID)
}

// Bad image volumes fail CreateContainer with the code and field they
// deserve and leave nothing behind: no container, no rootfs, no mount —
// also when an earlier volume of the same container was already mounted.
func TestImageVolumeBadInput(t *testing.T) {
	n := newPodNode(t)
	ctx := context.Background()
	volImage := pushVolumeImage(t)
	n.pull(t, volImage)
	n.pullBusybox(t)
	pod := n.logPod("imgvol-bad")
	podID := n.run(t, pod)

	missing := testRegistry + "/" + volumeRepo + ":never-pulled"
	missingID := "sha256:" + strings.Repeat("0", 64)
	rw := imageMount("/vol", volImage, "")
	rw.Readonly = false
	withHost := imageMount("/vol", volImage, "")
	withHost.HostPath = t.TempDir()
	for _, tc := range []struct {
		name   string
		mounts []*runtime.Mount
		code   codes.Code
		want   []string
	}{
		{"read-write", []*runtime.Mount{rw}, codes.InvalidArgument, []string{"mounts[0].readonly"}},
		{"host path too", []*runtime.Mount{withHost}, codes.InvalidArgument, []string{"mounts[0].host_path"}},
		{"empty image", []*runtime.Mount{{ContainerPath: "/vol", Readonly: true, Image: &runtime.ImageSpec{}}}, codes.InvalidArgument, []string{"mounts[0].image.image and image_ref are empty"}},
		{"missing image", []*runtime.Mount{imageMount("/vol", missing, "")}, codes.NotFound, []string{"config.mounts[0].image.image", missing}},
		{"missing image_ref", []*runtime.Mount{{ContainerPath: "/vol", Readonly: true, Image: &runtime.ImageSpec{Image: volImage, ImageRef: missingID}}}, codes.NotFound, []string{"config.mounts[0].image.image_ref", missingID}},
		{"dot-dot sub path", []*runtime.Mount{imageMount("/vol", volImage, "../etc")}, codes.InvalidArgument, []string{"config.mounts[0].image_sub_path", "../etc"}},
		{"absolute sub path", []*runtime.Mount{imageMount("/vol", volImage, "/etc")}, codes.InvalidArgument, []string{"config.mounts[0].image_sub_path"}},
		{"sub path not in the image", []*runtime.Mount{imageMount("/vol", volImage, "nothing/here")}, codes.InvalidArgument, []string{"config.mounts[0].image_sub_path", "does not exist"}},
		{"symlink to a host path", []*runtime.Mount{imageMount("/vol", volImage, "host-link")}, codes.InvalidArgument, []string{"config.mounts[0].image_sub_path"}},
		{"second volume bad", []*runtime.Mount{imageMount("/ok", volImage, "data"), imageMount("/vol", volImage, "data/a.txt/x")}, codes.InvalidArgument, []string{"config.mounts[1].image_sub_path"}},
		{"second volume missing", []*runtime.Mount{imageMount("/ok", volImage, ""), imageMount("/vol", missing, "")}, codes.NotFound, []string{"config.mounts[1].image", missing}},
	} {
		cfg := ctrConfig("bad", "sleep", "3600")
		cfg.Mounts = tc.mounts
		_, err := n.runtime().CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod, Config: cfg})
		if status.Code(err) != tc.code {
			t.Errorf("%s: %v; want %s", tc.name, err, tc.code)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v; want it to say %q", tc.name, err, w)
			}
		}
		if c, r, m := n.ctrRecords(), n.rootfsDirs(), n.volumeMounts(t); c != 0 || r != 0 || len(m) != 0 {
			t.Fatalf("%s: left %d container records, %d rootfs dirs, mounts %v", tc.name, c, r, m)
		}
	}
	// The refusals reserved nothing: the same name is created now.
	cfg := ctrConfig("bad", "sleep", "3600")
	cfg.Mounts = []*runtime.Mount{imageMount("/vol", volImage, "data")}
	id := n.create(t, podID, pod, cfg, true)
	if got := n.exec(t, id, "cat", "/vol/a.txt"); got != "layer one" {
		t.Errorf("/vol/a.txt = %q", got)
	}
	// Removing the pod removes the container and its volumes.
	if _, err := n.runtime().StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	n.removePod(t, podID)
	if m := n.volumeMounts(t); len(m) != 0 {
		t.Fatalf("image volumes still mounted after RemovePodSandbox: %v", m)
	}
}

// A create that fails after its image volumes are mounted (here in the
// monitor, by a fault point) unmounts them and leaves the image free.
func TestImageVolumeFailedCreate(t *testing.T) {
	n := newPodNode(t, "CRID_FAILPOINTS=monitor.create=error")
	ctx := context.Background()
	volImage := pushVolumeImage(t)
	n.pull(t, volImage)
	n.pullBusybox(t)
	pod := n.logPod("imgvol-fail")
	podID := n.run(t, pod)
	cfg := ctrConfig("vol", "sleep", "3600")
	cfg.Mounts = []*runtime.Mount{imageMount("/vol", volImage, ""), imageMount("/sub", volImage, "data")}
	_, err := n.runtime().CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod, Config: cfg})
	if err == nil || !strings.Contains(err.Error(), "injected fault") {
		t.Fatalf("CreateContainer with monitor.create failing: %v; want the injected fault", err)
	}
	if c, r, m := n.ctrRecords(), n.rootfsDirs(), n.volumeMounts(t); c != 0 || r != 0 || len(m) != 0 {
		t.Fatalf("failed create left %d container records, %d rootfs dirs, mounts %v", c, r, m)
	}
	if _, err := n.images().RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: volImage}}); err != nil {
		t.Fatalf("RemoveImage after a failed create: %v", err)
	}
	if _, err := n.runtime().StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	n.removePod(t, podID)
}

// A daemon killed inside CreateContainer after mounting the image volumes
// and before recording the container (fault point create.mounted=kill)
// leaves mounts and marks; the next start removes them, so the image is
// free and the pod removable with nothing left.
func TestImageVolumeCrashInCreate(t *testing.T) {
	n := newPodNode(t, "CRID_FAILPOINTS=create.mounted=kill")
	ctx := context.Background()
	volImage := pushVolumeImage(t)
	n.pull(t, volImage)
	n.pullBusybox(t)
	pod := n.logPod("imgvol-crash")
	podID := n.run(t, pod)
	cfg := ctrConfig("vol", "sleep", "3600")
	cfg.Mounts = []*runtime.Mount{imageMount("/vol", volImage, ""), imageMount("/sub", volImage, "data")}
	if _, err := n.runtime().CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod, Config: cfg}); err == nil {
		t.Fatal("CreateContainer succeeded through a killed daemon")
	}
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("crid still runs after create.mounted=kill")
	}
	if m := n.volumeMounts(t); len(m) != 2 {
		t.Fatalf("the crash left %d image volume mounts, want the 2 it made (else this test proves nothing)", len(m))
	}
	n.daemon = startDaemon(t, n.dir, n.args()...)
	if m := n.volumeMounts(t); len(m) != 0 {
		t.Fatalf("image volumes still mounted after a restart: %v", m)
	}
	if r := n.rootfsDirs(); r != 0 {
		t.Fatalf("%d rootfs dirs left after a restart", r)
	}
	if _, err := n.images().RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: volImage}}); err != nil {
		t.Fatalf("RemoveImage after the restart: %v", err)
	}
	if _, err := n.runtime().StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	n.removePod(t, podID)
}
