package e2e

import (
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A container's process and an exec into it start with no signal ignored,
// as under runc or containerd: crid-monitor, their ancestor, must not hand
// down the SIG_IGN it would need for SIGHUP or SIGPIPE (an ignored signal
// survives exec). Ignored SIGPIPE would turn `yes | head` into write errors,
// ignored SIGHUP would make `kill -HUP` a no-op for a process that relies
// on the default.
func TestContainerSignalsNotIgnored(t *testing.T) {
	n := newPodNode(t)
	cfg := podConfig("signals")
	cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtime.NamespaceMode_CONTAINER
	id := n.run(t, cfg)
	ctr := n.startContainer(t, id, cfg, "sleeper", "sleep", "3600")
	for _, probe := range []string{"/proc/1/status", "/proc/self/status"} {
		out, _, code := n.execResult(t, ctr, "grep", "SigIgn", probe)
		if code != 0 || out != "SigIgn:\t0000000000000000" {
			t.Errorf("%s: %q (exit %d), want no signal ignored", probe, out, code)
		}
	}
}
