package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// run_as_username resolves in the image's passwd; readonly_rootfs makes
// the root read-only; the writable layer goes with RemoveContainer.
func TestContainerUserAndRootfs(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	ctx := context.Background()
	pod := n.logPod("user")
	podID := n.run(t, pod)

	cfg := ctrConfig("www", "sleep", "3600")
	cfg.Linux.SecurityContext.RunAsUsername = "www-data"
	www := n.create(t, podID, pod, cfg, true)
	if uid := n.exec(t, www, "id", "-u"); uid != "33" {
		t.Errorf("run_as_username www-data: id -u = %q, want 33", uid)
	}
	if u := n.ctrStatus(t, www).GetUser().GetLinux(); u.GetUid() != 33 {
		t.Errorf("status user: %v", u)
	}
	layer := filepath.Join(n.dir, "root", "rootfs", www)
	if _, err := os.Stat(layer); err != nil {
		t.Fatalf("no writable layer dir for a running container: %v", err)
	}
	n.exec(t, www, "touch", "/tmp/written")

	cfg = ctrConfig("ro", "sleep", "3600")
	cfg.Linux.SecurityContext.ReadonlyRootfs = true
	ro := n.create(t, podID, pod, cfg, true)
	resp, err := n.runtime().ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: ro, Cmd: []string{"touch", "/x"}, Timeout: 10})
	if err != nil || resp.ExitCode == 0 {
		t.Errorf("touch /x on a read-only rootfs: %v, exit %d", err, resp.GetExitCode())
	}

	for _, id := range []string{www, ro} {
		if _, err := n.runtime().StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id, Timeout: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.runtime().RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: www}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(layer); !os.IsNotExist(err) {
		t.Errorf("writable layer %s after RemoveContainer: %v", layer, err)
	}
	if _, err := os.Stat(filepath.Join(n.dir, "root", "rootfs", ro)); err != nil {
		t.Errorf("the other container's layer went too: %v", err)
	}
	n.removePod(t, podID)
}
