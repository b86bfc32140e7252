package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ctrCgroup is the container's cgroup path, from ContainerStatus verbose.
func (n *podNode) ctrCgroup(t *testing.T, id string) string {
	t.Helper()
	resp, err := n.runtime().ContainerStatus(context.Background(), &runtime.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		CgroupsPath string `json:"cgroups_path"`
	}
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil || info.CgroupsPath == "" {
		t.Fatalf("cgroup of %s: %v %q", id, err, resp.Info["info"])
	}
	return info.CgroupsPath
}

// crictl update changes the live cgroup and what ContainerStatus reports;
// the new limits survive a daemon restart. Bad input changes nothing.
func TestUpdateContainerResources(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	ctx := context.Background()
	pod := n.logPod("update")
	podID := n.run(t, pod)
	cfg := ctrConfig("web", "sleep", "3600")
	cfg.Linux.Resources = &runtime.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuShares: 512}
	id := n.create(t, podID, pod, cfg, true)
	cg := n.ctrCgroup(t, id)
	if got := memoryLimit(t, cg); got != fmt.Sprint(64<<20) {
		t.Fatalf("memory limit at create: %s", got)
	}
	if got := cpuQuota(t, cg); got != "-1" {
		t.Fatalf("cpu quota at create: %s", got)
	}

	crictl(t, n.daemon, "update", "--memory", fmt.Sprint(128<<20), "--cpu-quota", "50000", "--cpu-period", "100000", id[:12])
	if got := memoryLimit(t, cg); got != fmt.Sprint(128<<20) {
		t.Fatalf("memory limit after update: %s", got)
	}
	if got := cpuQuota(t, cg); got != "50000" {
		t.Fatalf("cpu quota after update: %s", got)
	}
	wantCPUShares(t, cg, 512) // not changed by an update that did not name them
	want := func(where string) {
		t.Helper()
		r := n.ctrStatus(t, id).GetResources().GetLinux()
		if r.GetMemoryLimitInBytes() != 128<<20 || r.GetCpuQuota() != 50000 || r.GetCpuPeriod() != 100000 || r.GetCpuShares() != 512 {
			t.Fatalf("ContainerStatus resources %s: %v", where, r)
		}
	}
	want("after the update")
	// The container still runs and can use the new limit.
	n.exec(t, id, "sh", "-c", "true")

	// Bad input: refused naming the field, nothing changes.
	for _, bad := range []*runtime.LinuxContainerResources{
		{MemoryLimitInBytes: -1}, {CpuQuota: -5}, {CpuShares: -1}, {CpuPeriod: 10}, {CpusetCpus: "zero"},
	} {
		_, err := n.runtime().UpdateContainerResources(ctx, &runtime.UpdateContainerResourcesRequest{ContainerId: id, Linux: bad})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "linux.") {
			t.Fatalf("update %v: %v", bad, err)
		}
	}
	_, err := n.runtime().UpdateContainerResources(ctx, &runtime.UpdateContainerResourcesRequest{ContainerId: "0123456789abcdef", Linux: &runtime.LinuxContainerResources{MemoryLimitInBytes: 1 << 30}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("update of an unknown container: %v", err)
	}
	if got := memoryLimit(t, cg); got != fmt.Sprint(128<<20) {
		t.Fatalf("memory limit after refused updates: %s", got)
	}
	want("after refused updates")

	n.restart(t)
	want("after a daemon restart")

	// A pod's cgroup takes the pod's new total.
	podCg := n.podCgroup(t, podID)
	if _, err := n.runtime().UpdatePodSandboxResources(ctx, &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: podID,
		Resources: &runtime.LinuxContainerResources{MemoryLimitInBytes: 256 << 20, CpuQuota: 80000, CpuPeriod: 100000}}); err != nil {
		t.Fatal(err)
	}
	if got := memoryLimit(t, podCg); got != fmt.Sprint(256<<20) {
		t.Fatalf("pod memory limit: %s", got)
	}
	if got := cpuQuota(t, podCg); got != "80000" {
		t.Fatalf("pod cpu quota: %s", got)
	}
	n.exec(t, id, "true") // devices untouched: the container still works
	_, err = n.runtime().UpdatePodSandboxResources(ctx, &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: podID,
		Resources: &runtime.LinuxContainerResources{MemoryLimitInBytes: -5}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "resources.memory_limit_in_bytes") {
		t.Fatalf("pod update with a negative limit: %v", err)
	}
	_, err = n.runtime().UpdatePodSandboxResources(ctx, &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: "fedcba9876543210",
		Resources: &runtime.LinuxContainerResources{MemoryLimitInBytes: 1 << 30}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("update of an unknown pod: %v", err)
	}

	// An exited container cannot be updated.
	if _, err := n.runtime().StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	_, err = n.runtime().UpdateContainerResources(ctx, &runtime.UpdateContainerResourcesRequest{ContainerId: id, Linux: &runtime.LinuxContainerResources{MemoryLimitInBytes: 1 << 30}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("update of an exited container: %v", err)
	}
	// Checkpointing is refused with the reason.
	_, err = n.runtime().CheckpointContainer(ctx, &runtime.CheckpointContainerRequest{ContainerId: id, Location: filepath.Join(n.dir, "ck.tar")})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "criu") {
		t.Fatalf("CheckpointContainer: %v", err)
	}
	n.removePod(t, podID)
}

// podCgroup is the pod's cgroup parent, from PodSandboxStatus verbose.
func (n *podNode) podCgroup(t *testing.T, id string) string {
	t.Helper()
	resp, err := n.runtime().PodSandboxStatus(context.Background(), &runtime.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		CgroupParent string `json:"cgroup_parent"`
	}
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil || info.CgroupParent == "" {
		t.Fatalf("cgroup of pod %s: %v", id, err)
	}
	return info.CgroupParent
}

// UpdateRuntimeConfig's pod CIDR shows in Status, survives a restart and
// reaches a network whose plugin declares the ipRanges capability: the
// next pod gets an address from it.
func TestUpdateRuntimeConfigPodCIDR(t *testing.T) {
	n := newPodNode(t)
	ctx := context.Background()
	cidr := fmt.Sprintf("10.243.%d.0/24", rand.IntN(250)+1)
	// host-local adds the ipRanges range sets to its own: the network
	// names none, so the pod CIDR is the only one.
	writeFile(t, filepath.Join(n.dir, "net.d", "10-e2e.conflist"), fmt.Sprintf(`{
  "cniVersion": "1.0.0", "name": "crid-e2e",
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "capabilities": {"ipRanges": true},
     "ipam": {"type": "host-local", "dataDir": %q}},
    {"type": "loopback"}
  ]}`, n.bridge, filepath.Join(n.dir, "ipam")))

	_, err := n.runtime().UpdateRuntimeConfig(ctx, &runtime.UpdateRuntimeConfigRequest{RuntimeConfig: &runtime.RuntimeConfig{
		NetworkConfig: &runtime.NetworkConfig{PodCidr: "10.243.0.0/33"}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "pod_cidr") {
		t.Fatalf("invalid CIDR: %v", err)
	}
	crictlCIDR := func() string {
		t.Helper()
		var info struct {
			RuntimeConfig struct {
				PodCIDR string `json:"podCIDR"`
			} `json:"runtimeConfig"`
		}
		out := crictl(t, n.daemon, "info")
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			t.Fatalf("crictl info: %v\n%s", err, out)
		}
		return info.RuntimeConfig.PodCIDR
	}
	if got := crictlCIDR(); got != "" {
		t.Fatalf("pod CIDR before any update: %q", got)
	}
	if _, err := n.runtime().UpdateRuntimeConfig(ctx, &runtime.UpdateRuntimeConfigRequest{RuntimeConfig: &runtime.RuntimeConfig{
		NetworkConfig: &runtime.NetworkConfig{PodCidr: cidr}}}); err != nil {
		t.Fatal(err)
	}
	if got := crictlCIDR(); got != cidr {
		t.Fatalf("crictl info podCIDR = %q, want %q", got, cidr)
	}
	n.restart(t)
	if got := crictlCIDR(); got != cidr {
		t.Fatalf("after restart podCIDR = %q, want %q", got, cidr)
	}
	cfg := podConfig("cidr")
	id := n.run(t, cfg)
	ip := net.ParseIP(n.status(t, id).GetNetwork().GetIp())
	_, want, _ := net.ParseCIDR(cidr)
	if ip == nil || !want.Contains(ip) {
		t.Fatalf("pod IP %v is not in the pod CIDR %s", ip, cidr)
	}
	if _, err := n.runtime().RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if s := n.hostState(t); s.veths != 0 || s.pins != 0 || s.mounts != 0 {
		t.Fatalf("left behind: %+v", s)
	}
}
