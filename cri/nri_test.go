package cri

import (
	"slices"
	"testing"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/oci"
	"github.com/crid-dev/crid/podsandbox"
)

func TestOverlayResourcesSetsOnlyWhatNRISets(t *testing.T) {
	dst := &runtime.LinuxContainerResources{
		CpuShares: 512, CpuQuota: 20000, CpuPeriod: 100000, MemoryLimitInBytes: 128 << 20, CpusetCpus: "0-1",
		HugepageLimits: []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 0}},
		Unified:        map[string]string{"memory.high": "max"},
	}
	overlayResources(dst, &api.LinuxResources{
		Cpu:            &api.LinuxCPU{Shares: api.UInt64(uint64(333)), Quota: api.Int64(int64(-1)), Mems: "0"},
		Memory:         &api.LinuxMemory{Limit: api.Int64(int64(64 << 20))},
		HugepageLimits: []*api.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}, {PageSize: "1GB", Limit: 0}},
		Unified:        map[string]string{"pids.max": "100"},
	})
	if dst.CpuShares != 333 || dst.CpuQuota != -1 || dst.CpuPeriod != 100000 || dst.CpusetCpus != "0-1" || dst.CpusetMems != "0" {
		t.Errorf("cpu fields: %v", dst)
	}
	if dst.MemoryLimitInBytes != 64<<20 || dst.MemorySwapLimitInBytes != 0 {
		t.Errorf("memory fields: %v", dst)
	}
	if len(dst.HugepageLimits) != 2 || dst.HugepageLimits[0].Limit != 4<<20 || dst.HugepageLimits[1].PageSize != "1GB" {
		t.Errorf("hugepages: %v", dst.HugepageLimits)
	}
	if dst.Unified["memory.high"] != "max" || dst.Unified["pids.max"] != "100" {
		t.Errorf("unified: %v", dst.Unified)
	}
	overlayResources(dst, nil) // nothing to do, no panic
}

func TestNRIViews(t *testing.T) {
	sb := &podsandbox.Sandbox{
		ID: "p1",
		Config: &runtime.PodSandboxConfig{
			Metadata:    &runtime.PodSandboxMetadata{Name: "web", Namespace: "ns", Uid: "u1"},
			Labels:      map[string]string{"app": "web"},
			Annotations: map[string]string{"a": "1"},
			Linux:       &runtime.LinuxPodSandboxConfig{Resources: &runtime.LinuxContainerResources{CpuShares: 1024}},
		},
		RuntimeHandler: "runc", InfraPid: 42, IPs: []string{"10.0.0.2"}, CgroupParent: "/kubepods/pod1",
		Namespaces: map[string]string{"net": "/run/crid/sandboxes/p1/ns/net"},
	}
	pod := nriPod(sb)
	if pod.Id != "p1" || pod.Name != "web" || pod.Namespace != "ns" || pod.Uid != "u1" || pod.Pid != 42 ||
		pod.Labels["app"] != "web" || pod.Annotations["a"] != "1" || !slices.Equal(pod.Ips, []string{"10.0.0.2"}) {
		t.Errorf("pod view: %v", pod)
	}
	if pod.Linux.CgroupParent != "/kubepods/pod1" || pod.Linux.PodResources.GetCpu().GetShares().GetValue() != 1024 || pod.Linux.PodOverhead != nil {
		t.Errorf("pod linux view: %v", pod.Linux)
	}
	if len(pod.Linux.Namespaces) != 1 || pod.Linux.Namespaces[0].Type != "network" {
		t.Errorf("pod namespaces: %v", pod.Linux.Namespaces)
	}

	adj := 100
	ctr := &oci.Container{
		ID: "c1", SandboxID: "p1", State: oci.StateExited, ExitCode: 3, Reason: "Error",
		Config:    &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "app"}, Labels: map[string]string{"l": "v"}},
		Process:   &specs.Process{Args: []string{"sh"}, Env: []string{"A=1"}, User: specs.User{UID: 1000, GID: 1000}, OOMScoreAdj: &adj},
		Resources: &runtime.LinuxContainerResources{MemoryLimitInBytes: 64 << 20},
	}
	c := nriContainer(ctr)
	if c.Id != "c1" || c.PodSandboxId != "p1" || c.Name != "app" || c.State != api.ContainerState_CONTAINER_STOPPED ||
		c.ExitCode != 3 || c.StatusReason != "Error" || c.User.Uid != 1000 || c.Linux.OomScoreAdj.GetValue() != 100 ||
		c.Linux.Resources.GetMemory().GetLimit().GetValue() != 64<<20 || !slices.Equal(c.Env, []string{"A=1"}) {
		t.Errorf("container view: %v", c)
	}

	spec := &specs.Spec{
		Process:     &specs.Process{Args: []string{"sleep", "1"}, Env: []string{"B=2"}},
		Mounts:      []specs.Mount{{Destination: "/etc/hosts", Type: "bind", Source: "/h"}},
		Annotations: map[string]string{"io.kubernetes.cri.container-name": "app"},
		Linux:       &specs.Linux{CgroupsPath: "/kubepods/pod1/c2", Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}}},
	}
	cs := nriContainerFromSpec("c2", "p1", &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "app"}}, spec)
	if cs.Id != "c2" || cs.Name != "app" || len(cs.Mounts) != 1 || cs.Linux.CgroupsPath != "/kubepods/pod1/c2" ||
		len(cs.Linux.Namespaces) != 1 || !slices.Equal(cs.Args, []string{"sleep", "1"}) || cs.Annotations["io.kubernetes.cri.container-name"] != "app" {
		t.Errorf("view from the spec: %v", cs)
	}
}

func TestIDQueueKeepsOrderAndEnds(t *testing.T) {
	q := newIDQueue()
	done := make(chan []string)
	go func() {
		var got []string
		for id, ok := q.pop(); ok; id, ok = q.pop() {
			got = append(got, id)
		}
		done <- got
	}()
	for _, id := range []string{"a", "b", "c"} {
		q.push(id)
	}
	q.close()
	if got := <-done; !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("popped %v", got)
	}
}
