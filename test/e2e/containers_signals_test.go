package e2e

import (
	"strconv"
	"strings"
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
		mask, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(out, "SigIgn:")), 16, 64)
		if code != 0 || err != nil {
			t.Fatalf("%s: %q (exit %d): %v", probe, out, code, err)
		}
		// Signals 1-31, the ones programs use by name; 32 and 33 are
		// glibc's own (SIGRTMIN is 34 for applications).
		if std := mask & (1<<31 - 1); std != 0 {
			t.Errorf("%s: %q: standard signals ignored (mask %#x; SIGHUP is 0x1, SIGPIPE 0x1000)", probe, out, std)
		}
	}
}
