package e2e

import (
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A container's exit code and reason: Error for a non-zero exit,
// Completed for zero, OOMKilled when the memory limit kills it.
func TestContainerExitCodesAndReasons(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	pod := n.logPod("exits")
	podID := n.run(t, pod)
	oom := ctrConfig("oom", "dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1")
	oom.Linux.Resources.MemoryLimitInBytes = 32 << 20
	oom.Linux.Resources.MemorySwapLimitInBytes = 32 << 20
	for _, tc := range []struct {
		cfg    *runtime.ContainerConfig
		code   int32
		reason string
	}{
		{ctrConfig("fails", "sh", "-c", "exit 3"), 3, "Error"},
		{ctrConfig("succeeds", "true"), 0, "Completed"},
		{oom, 137, "OOMKilled"},
	} {
		id := n.create(t, podID, pod, tc.cfg, true)
		st := n.waitExited(t, id, 20*time.Second)
		if st.ExitCode != tc.code || st.Reason != tc.reason {
			t.Errorf("%s: exit %d reason %q message %q, want %d %q", tc.cfg.Metadata.Name, st.ExitCode, st.Reason, st.Message, tc.code, tc.reason)
		}
		if st.FinishedAt == 0 || st.FinishedAt < st.StartedAt {
			t.Errorf("%s: started %d finished %d", tc.cfg.Metadata.Name, st.StartedAt, st.FinishedAt)
		}
	}
	n.removePod(t, podID)
}
