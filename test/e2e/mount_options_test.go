package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// mountOptionsIn returns the per-mount options of the mount at path as the
// container's /proc/self/mountinfo shows it, or nil when nothing is
// mounted there.
func (n *podNode) mountOptionsIn(t *testing.T, id, path string) []string {
	t.Helper()
	var opts []string
	for _, l := range strings.Split(n.exec(t, id, "cat", "/proc/self/mountinfo"), "\n") {
		if f := strings.Fields(l); len(f) > 5 && f[4] == path {
			opts = strings.Split(f[5], ",") // the last mount at path is on top
		}
	}
	return opts
}

// Mount.mount_options (KEP-5855) are advertised and in effect in the
// container: noexec stops a script, ro a write, and mountinfo shows each
// option on its mount — and only there; an image volume takes them too.
func TestMountOptions(t *testing.T) {
	n := newPodNode(t)
	ctx := context.Background()
	st, err := n.runtime().Status(ctx, &runtime.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if !st.GetFeatures().GetMountOptions() {
		t.Fatalf("RuntimeFeatures.mount_options not advertised: %+v", st.GetFeatures())
	}
	mustContain(t, "Status info mountOptions", st.Info["mountOptions"], "nosuid", "nodev", "noexec", "noatime")

	host := filepath.Join(n.dir, "volume")
	writeFile(t, filepath.Join(host, "run.sh"), "#!/bin/sh\necho ran\n")
	if err := os.Chmod(filepath.Join(host, "run.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	bbRef := n.pullRef(t, busybox)
	pod := n.logPod("mountopts")
	podID := n.run(t, pod)
	cfg := ctrConfig("opts", "sleep", "3600")
	img := imageMount("/img", bbRef, "")
	img.MountOptions = []string{"noexec"}
	cfg.Mounts = []*runtime.Mount{
		{ContainerPath: "/plain", HostPath: host},
		{ContainerPath: "/opts", HostPath: host, MountOptions: []string{"noexec", "nosuid", "nodev", "noatime"}},
		{ContainerPath: "/ro", HostPath: host, MountOptions: []string{"ro", "nodiratime"}},
		img,
	}
	id := n.create(t, podID, pod, cfg, true)

	for path, want := range map[string][]string{
		"/opts": {"rw", "noexec", "nosuid", "nodev", "noatime"},
		"/ro":   {"ro", "nodiratime"},
		"/img":  {"ro", "noexec"},
	} {
		got := n.mountOptionsIn(t, id, path)
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("%s: mountinfo options %v lack %q", path, got, w)
			}
		}
	}
	if got := n.mountOptionsIn(t, id, "/plain"); got == nil || slices.Contains(got, "noexec") || slices.Contains(got, "ro") || slices.Contains(got, "noatime") {
		t.Errorf("/plain: mountinfo options %v; want the defaults, without another mount's options", got)
	}
	if got := n.exec(t, id, "/plain/run.sh"); got != "ran" {
		t.Errorf("/plain/run.sh: %q", got)
	}
	for _, p := range []string{"/opts/run.sh", "/img/bin/echo"} {
		if _, stderr, code := n.execResult(t, id, "sh", "-c", p+" x"); code == 0 || !strings.Contains(stderr, "Permission denied") {
			t.Errorf("%s on a noexec mount: exit %d, %q; want permission denied", p, code, stderr)
		}
	}
	if _, stderr, code := n.execResult(t, id, "touch", "/ro/new"); code == 0 || !strings.Contains(stderr, "Read-only file system") {
		t.Errorf("touch /ro/new: exit %d, %q; want a read-only file system", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(host, "new")); !os.IsNotExist(err) {
		t.Errorf("a write through the ro mount reached the host: %v", err)
	}

	// Unknown or loosening options: InvalidArgument naming the field,
	// nothing left behind.
	for _, opts := range [][]string{{"exec"}, {"suid"}, {"rw"}, {"rshared"}, {"bind"}, {"size=1m"}, {""}, {"noatime", "strictatime"}, {"nodev", "NOEXEC"}} {
		bad := ctrConfig("bad", "sleep", "3600")
		bad.Mounts = []*runtime.Mount{{ContainerPath: "/opts", HostPath: host, MountOptions: opts}}
		_, err := n.runtime().CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod, Config: bad})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "mounts[0].mount_options") {
			t.Errorf("mount_options %q: %v; want InvalidArgument naming mounts[0].mount_options", opts, err)
		}
	}
	if c, r := n.ctrRecords(), n.rootfsDirs(); c != 1 || r != 1 {
		t.Fatalf("refused creates left %d container records and %d rootfs dirs (want only the good container's)", c, r)
	}
	if _, err := n.runtime().StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	n.removePod(t, podID)
}
