package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A container's stdout and stderr land in a CRI-format log at the pod's
// log_directory + the container's log_path, a line over 16 KiB split into
// P entries ended by an F; ReopenContainerLog starts a fresh file at the
// same path after a rename; crictl logs reads it.
func TestContainerLogFormatSplitAndReopen(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	pod := n.logPod("logs")
	podID := n.run(t, pod)
	cfg := ctrConfig("writer", "sh", "-c", `echo out1; echo err1 >&2; head -c 20000 /dev/zero | tr '\0' a; echo; echo out2;
while true; do if [ -e /tmp/next ]; then echo after-reopen; echo err-after >&2; rm /tmp/next; fi; sleep 0.1; done`)
	id := n.create(t, podID, pod, cfg, true)
	path := filepath.Join(pod.LogDirectory, cfg.LogPath)
	if st := n.ctrStatus(t, id); st.LogPath != path {
		t.Errorf("status log_path %q, want %q", st.LogPath, path)
	}
	waitLog(t, path, "out2", 10*time.Second)
	waitLog(t, path, "err1", 2*time.Second)

	entries := readCRILog(t, path)
	partials := 0
	for _, e := range entries {
		if e.tag == "P" {
			partials++
			if len(e.text) > 16<<10 {
				t.Errorf("partial entry of %d bytes, over the 16 KiB max line", len(e.text))
			}
		}
		if time.Since(e.time) > time.Minute || time.Until(e.time) > time.Minute {
			t.Errorf("entry timestamp %s is not now", e.time)
		}
	}
	if partials == 0 {
		t.Errorf("the 20000-byte line was not split into P entries")
	}
	long := strings.Repeat("a", 20000)
	lines := fullLines(entries)
	if got := lines["stdout"]; len(got) != 3 || got[0] != "out1" || got[1] != long || got[2] != "out2" {
		t.Errorf("stdout lines: %d lines, %.100q", len(got), got)
	}
	if got := lines["stderr"]; len(got) != 1 || got[0] != "err1" {
		t.Errorf("stderr lines: %q", got)
	}
	out := crictl(t, n.daemon, "logs", id)
	mustContain(t, "crictl logs", out, "out1\n", long+"\n", "out2\n")

	// kubelet's rotation: rename, then reopen.
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if _, err := n.runtime().ReopenContainerLog(context.Background(), &runtime.ReopenContainerLogRequest{ContainerId: id}); err != nil {
		t.Fatalf("ReopenContainerLog: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no fresh log at %s after reopen: %v", path, err)
	}
	n.exec(t, id, "touch", "/tmp/next")
	waitLog(t, path, "after-reopen", 10*time.Second)
	waitLog(t, path, "err-after", 2*time.Second)
	if lines := fullLines(readCRILog(t, path)); len(lines["stdout"]) != 1 || lines["stdout"][0] != "after-reopen" {
		t.Errorf("fresh log stdout: %q", lines["stdout"])
	}
	if b, _ := os.ReadFile(rotated); strings.Contains(string(b), "after-reopen") || !strings.Contains(string(b), "out2") {
		t.Errorf("rotated file got new lines or lost old ones:\n%.300s", b)
	}
	out = crictl(t, n.daemon, "logs", id)
	mustContain(t, "crictl logs after reopen", out, "after-reopen")
	n.removePod(t, podID)
}
