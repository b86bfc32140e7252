package e2e

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestCreateContainerUnknownCapability(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	pod := n.logPod("badcap")
	podID := n.run(t, pod)
	cfg := ctrConfig("bad", "sleep", "3600")
	cfg.Linux.SecurityContext.Capabilities = &runtime.Capability{AddCapabilities: []string{"CAP_NOT_A_THING"}}
	_, err := n.runtime().CreateContainer(context.Background(), &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod, Config: cfg})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "add_capabilities") {
		t.Errorf("unknown capability: %v, want InvalidArgument naming add_capabilities", err)
	}
	if r, c := n.rootfsDirs(), n.ctrRecords(); r != 0 || c != 0 {
		t.Errorf("unknown capability left %d rootfs dirs, %d records", r, c)
	}
	n.removePod(t, podID)
}
