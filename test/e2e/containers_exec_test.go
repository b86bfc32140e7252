package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ExecSync with a timeout returns once it passes and kills the command.
func TestExecSyncTimeoutKills(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	pod := n.logPod("exec-timeout")
	podID := n.run(t, pod)
	id := n.create(t, podID, pod, ctrConfig("c", "sleep", "3600"), true)
	start := time.Now()
	resp, err := n.runtime().ExecSync(context.Background(), &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"sleep", "10"}, Timeout: 1})
	d := time.Since(start)
	if d > 2500*time.Millisecond || d < 900*time.Millisecond {
		t.Errorf("ExecSync sleep 10 with timeout 1 returned after %s", d)
	}
	if err == nil && resp.ExitCode == 0 {
		t.Errorf("timed-out ExecSync reported success: %v", resp)
	}
	t.Logf("timed-out ExecSync: %v, exit %d, stderr %q", err, resp.GetExitCode(), resp.GetStderr())
	if ps := n.exec(t, id, "ps"); strings.Count(ps, "sleep 10") != 0 {
		t.Errorf("the timed-out command still runs:\n%s", ps)
	}
	n.removePod(t, podID)
}
