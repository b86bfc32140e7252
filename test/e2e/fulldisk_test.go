package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// mountTmpfs mounts a size-limited tmpfs at dir (made if missing): a
// filesystem a test can fill. It is unmounted when the test ends, after
// the daemon and its monitor are gone (cleanupDir unmounts whatever is
// left under the test's directory, deepest first, and removes it).
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0711"); err != nil {
		t.Fatalf("mount tmpfs at %s: %v", dir, err)
	}
}

// newPodNodeOn is newPodNode with setup run on the test's directory before
// the daemon starts: mounts, more configuration appended to crid.toml.
func newPodNodeOn(t *testing.T, setup func(dir string)) *podNode {
	t.Helper()
	dir := newDirs(t)
	n := &podNode{dir: dir}
	n.writeConfig(t)
	setup(dir)
	n.daemon = startDaemonEnv(t, dir, nil, n.args()...)
	return n
}

// appendConfig adds TOML to the test's crid.toml.
func appendConfig(t *testing.T, dir, toml string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "crid.toml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("\n" + toml + "\n"); err != nil {
		t.Fatal(err)
	}
}

// removePodOnFs is removePod for a node with the test's own mounts under
// its directory: those stay, nothing else may.
func (n *podNode) removePodOnFs(t *testing.T, podID string, ownMounts int) {
	t.Helper()
	if _, err := n.runtime().RemovePodSandbox(context.Background(), &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	if s := n.hostState(t); s != (hostState{mounts: ownMounts}) {
		t.Fatalf("left behind (besides the test's %d mounts): %+v", ownMounts, s)
	}
	if c := n.ctrRecords(); c != 0 {
		t.Fatalf("%d container records left behind", c)
	}
}
