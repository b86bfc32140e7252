package e2e

import (
	"context"
	"os"
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// startContainer creates and starts a busybox container running cmd in a
// pod, pulling the image first.
func (n *podNode) startContainer(t *testing.T, podID string, pod *runtime.PodSandboxConfig, name string, cmd ...string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := n.images().PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}}); err != nil {
		t.Fatal(err)
	}
	resp, err := n.runtime().CreateContainer(ctx, &runtime.CreateContainerRequest{
		PodSandboxId:  podID,
		SandboxConfig: pod,
		Config: &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: name},
			Image:    &runtime.ImageSpec{Image: busybox},
			Command:  cmd,
		},
	})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v\n%s", name, err, n.log)
	}
	if _, err := n.runtime().StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
		t.Fatalf("StartContainer %s: %v", name, err)
	}
	return resp.ContainerId
}

func (n *podNode) exec(t *testing.T, id string, cmd ...string) string {
	t.Helper()
	resp, err := n.runtime().ExecSync(context.Background(), &runtime.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 10})
	if err != nil || resp.ExitCode != 0 {
		t.Fatalf("exec %v in %s: %v, exit %d, stderr %q", cmd, id, err, resp.GetExitCode(), resp.GetStderr())
	}
	return strings.TrimSpace(string(resp.Stdout))
}

// Two containers of one pod share its hostname, network (so its IP) and
// IPC namespace, and its /dev/shm.
func TestContainersShareThePod(t *testing.T) {
	n := newPodNode(t)
	cfg := podConfig("shared")
	cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtime.NamespaceMode_POD
	id := n.run(t, cfg)
	a := n.startContainer(t, id, cfg, "a", "sleep", "3600")
	b := n.startContainer(t, id, cfg, "b", "sleep", "3600")
	for _, probe := range [][]string{
		{"hostname"},
		{"readlink", "/proc/self/ns/net"},
		{"readlink", "/proc/self/ns/ipc"},
		{"readlink", "/proc/self/ns/uts"},
		{"sh", "-c", "ip -4 -o addr show eth0 | awk '{print $4}'"},
	} {
		if x, y := n.exec(t, a, probe...), n.exec(t, b, probe...); x != y || x == "" {
			t.Errorf("%v: container a says %q, b says %q", probe, x, y)
		}
	}
	if h := n.exec(t, a, "hostname"); h != "shared" {
		t.Errorf("hostname %q, want the pod's", h)
	}
	if ip := n.exec(t, a, "sh", "-c", "ip -4 -o addr show eth0 | awk '{print $4}'"); !strings.HasPrefix(ip, n.status(t, id).Network.Ip+"/") {
		t.Errorf("container IP %q is not the pod's %s", ip, n.status(t, id).Network.Ip)
	}
	n.exec(t, a, "sh", "-c", "echo via-shm > /dev/shm/note")
	if got := n.exec(t, b, "cat", "/dev/shm/note"); got != "via-shm" {
		t.Errorf("/dev/shm not shared: %q", got)
	}
	// One PID namespace: b sees a's sleep, and the pause process as PID 1.
	if ps := n.exec(t, b, "ps"); strings.Count(ps, "sleep 3600") != 2 || !strings.Contains(ps, "/pause") {
		t.Errorf("shared PID namespace, ps in b:\n%s", ps)
	}
	if _, err := n.runtime().RemovePodSandbox(context.Background(), &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if s := n.hostState(t); s != (hostState{}) {
		t.Fatalf("left behind: %+v", s)
	}
}

// A container of a host-network pod sees the node's interfaces.
func TestHostNetworkContainerSeesHostInterfaces(t *testing.T) {
	n := newPodNode(t)
	cfg := podConfig("hostnet-ctr")
	cfg.Linux.SecurityContext.NamespaceOptions.Network = runtime.NamespaceMode_NODE
	cfg.Hostname = ""
	id := n.run(t, cfg)
	c := n.startContainer(t, id, cfg, "c", "sleep", "3600")
	hostNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if got := n.exec(t, c, "readlink", "/proc/self/ns/net"); got != hostNS {
		t.Fatalf("container netns %s, host's %s", got, hostNS)
	}
	links := n.exec(t, c, "cat", "/proc/net/dev")
	hostLinks, _ := os.ReadFile("/proc/net/dev")
	for _, l := range strings.Split(string(hostLinks), "\n")[2:] {
		// veths come and go with other pods; the node's own links stay.
		if name, _, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && !strings.HasPrefix(name, "veth") && !strings.Contains(links, name+":") {
			t.Errorf("host interface %s not visible in the container", name)
		}
	}
	if _, err := n.runtime().RemovePodSandbox(context.Background(), &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
}

// kubelet sends a zero hugepage limit for every page size the node has; on
// a node without a hugetlb controller the limit is dropped, not an error.
func TestHugepageLimitWithoutController(t *testing.T) {
	n := newPodNode(t)
	cfg := podConfig("huge")
	id := n.run(t, cfg)
	ctx := context.Background()
	if _, err := n.images().PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}}); err != nil {
		t.Fatal(err)
	}
	resp, err := n.runtime().CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: id, SandboxConfig: cfg, Config: &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: "huge"},
		Image:    &runtime.ImageSpec{Image: busybox},
		Command:  []string{"sleep", "3600"},
		Linux: &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{
			HugepageLimits: []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 0}},
		}},
	}})
	if err != nil {
		t.Fatalf("CreateContainer with a zero hugepage limit: %v", err)
	}
	if _, err := n.runtime().StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
		t.Fatal(err)
	}
	if cgroupV2() {
		// v2 always has the controller: the limit is applied.
		if got := cgroupFile(t, "hugetlb", n.ctrCgroup(t, resp.ContainerId), "hugetlb.2MB.max"); got != "0" {
			t.Errorf("hugetlb.2MB.max = %q, want 0", got)
		}
	}
	if _, err := n.runtime().RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if s := n.hostState(t); s != (hostState{}) {
		t.Fatalf("left behind: %+v", s)
	}
}
