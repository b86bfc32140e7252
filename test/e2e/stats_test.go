package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const mib = 1 << 20

func (n *podNode) ctrStats(t *testing.T, id string) *runtime.ContainerStats {
	t.Helper()
	resp, err := n.runtime().ContainerStats(context.Background(), &runtime.ContainerStatsRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ContainerStats %s: %v", id, err)
	}
	return resp.Stats
}

func (n *podNode) podStats(t *testing.T, id string) *runtime.PodSandboxStats {
	t.Helper()
	resp, err := n.runtime().PodSandboxStats(context.Background(), &runtime.PodSandboxStatsRequest{PodSandboxId: id})
	if err != nil {
		t.Fatalf("PodSandboxStats %s: %v", id, err)
	}
	return resp.Stats
}

func (n *podNode) listCtrStats(t *testing.T, f *runtime.ContainerStatsFilter) map[string]*runtime.ContainerStats {
	t.Helper()
	resp, err := n.runtime().ListContainerStats(context.Background(), &runtime.ListContainerStatsRequest{Filter: f})
	if err != nil {
		t.Fatalf("ListContainerStats %v: %v", f, err)
	}
	out := map[string]*runtime.ContainerStats{}
	for _, s := range resp.Stats {
		out[s.Attributes.Id] = s
	}
	return out
}

// Stats track a known workload: a container holding 48 MiB in tmpfs shows
// at least that working set; an exec that burns one second of CPU (its own
// and its children's ticks, counted by the shell without forking) adds
// about a second of usage; a pod-network pod's eth0 counts a ping; files
// written show in the writable layer; filters select what CRI says.
func TestStatsTrackWorkload(t *testing.T) {
	n := newPodNode(t)
	ctx := context.Background()
	n.pullBusybox(t)
	pod := n.logPod("stats")
	podID := n.run(t, pod)

	const fill = 48
	memCfg := ctrConfig("mem", "sh", "-c", fmt.Sprintf("head -c %dm /dev/zero > /dev/shm/fill && sleep 3600", fill))
	memCfg.Labels = map[string]string{"role": "mem"}
	mem := n.create(t, podID, pod, memCfg, true)
	cpuCfg := ctrConfig("cpu", "sleep", "3600")
	cpuCfg.Labels = map[string]string{"role": "cpu"}
	cpu := n.create(t, podID, pod, cpuCfg, true)
	idleCfg := ctrConfig("idle", "sleep", "3600")
	idleCfg.Labels = map[string]string{"role": "idle"}
	idle := n.create(t, podID, pod, idleCfg, false)

	// Working set.
	deadline := time.Now().Add(30 * time.Second)
	var ws uint64
	for {
		st := n.ctrStats(t, mem)
		ws = st.GetMemory().GetWorkingSetBytes().GetValue()
		if ws >= fill*mib {
			if st.Memory.UsageBytes.GetValue() < ws || st.Memory.Timestamp == 0 || st.Memory.AvailableBytes != nil {
				t.Fatalf("memory stats %v", st.Memory)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("working set %d bytes after %s, want at least %d MiB", ws, 30*time.Second, fill)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("working set with %d MiB in tmpfs: %.1f MiB", fill, float64(ws)/mib)

	// CPU.
	before := n.ctrStats(t, cpu).Cpu
	burn := `while :; do read -r a b c d e f g h i j k l m u s cu cs rest < /proc/$$/stat; [ $((u+s+cu+cs)) -ge 100 ] && break; done`
	n.exec(t, cpu, "sh", "-c", burn)
	after := n.ctrStats(t, cpu).Cpu
	delta := after.UsageCoreNanoSeconds.GetValue() - before.UsageCoreNanoSeconds.GetValue()
	wall := time.Duration(after.Timestamp - before.Timestamp)
	t.Logf("CPU burn of 1 s: usage +%s over %s, usage_nano_cores %d", time.Duration(delta), wall, after.UsageNanoCores.GetValue())
	if delta < 950*uint64(time.Millisecond) || delta > 1600*uint64(time.Millisecond) {
		t.Fatalf("usage grew %s for a 1 s burn", time.Duration(delta))
	}
	if nc := after.UsageNanoCores; nc == nil || nc.Value < uint64(float64(delta)/wall.Seconds()*0.8) || nc.Value > uint64(float64(delta)/wall.Seconds()*1.2) {
		t.Fatalf("usage_nano_cores %v, want about %.0f", nc, float64(delta)/wall.Seconds())
	}

	// Pressure stall information: from the v2 pressure files, none on v1.
	if st := n.ctrStats(t, cpu); cgroupV2() {
		if st.Cpu.GetPsi().GetSome() == nil || st.Memory.GetPsi().GetFull() == nil || st.Io.GetPsi().GetSome() == nil {
			t.Fatalf("cgroup v2 stats without PSI: cpu %v memory %v io %v", st.Cpu.GetPsi(), st.Memory.GetPsi(), st.Io)
		}
		if st.Cpu.Psi.Some.Total == 0 && st.Cpu.Psi.Some.Avg10 == 0 && after.GetPsi().GetSome().GetTotal() == 0 {
			t.Logf("no CPU pressure recorded during the burn")
		}
	} else if st.Cpu.GetPsi() != nil || st.Io != nil {
		t.Fatalf("PSI on a v1 host: cpu %v io %v", st.Cpu.GetPsi(), st.Io)
	}

	// Writable layer.
	layerBefore := n.ctrStats(t, cpu).WritableLayer
	n.exec(t, cpu, "sh", "-c", "mkdir -p /var/blob && dd if=/dev/zero of=/var/blob/a bs=1M count=5 2>/dev/null && sync")
	layer := n.ctrStats(t, cpu).WritableLayer
	if layer.GetFsId().GetMountpoint() == "" || layer.UsedBytes.GetValue() < layerBefore.GetUsedBytes().GetValue()+5*mib ||
		layer.InodesUsed.GetValue() < layerBefore.GetInodesUsed().GetValue()+2 {
		t.Fatalf("writable layer %v after writing 5 MiB, was %v", layer, layerBefore)
	}

	// Network: ping the bridge (the pod's gateway) from the pod.
	gw := strings.TrimSuffix(n.subnet, "0/24") + "1"
	net0 := n.podStats(t, podID).Linux.Network
	n.exec(t, cpu, "ping", "-c", "3", "-W", "2", gw)
	p := n.podStats(t, podID)
	net1 := p.Linux.Network
	if net0.GetDefaultInterface().GetName() != "eth0" || net1.GetDefaultInterface().GetName() != "eth0" {
		t.Fatalf("default interface %v", net1)
	}
	dtx := net1.DefaultInterface.TxBytes.GetValue() - net0.DefaultInterface.TxBytes.GetValue()
	drx := net1.DefaultInterface.RxBytes.GetValue() - net0.DefaultInterface.RxBytes.GetValue()
	t.Logf("eth0 after 3 pings: +%d bytes out, +%d in", dtx, drx)
	if dtx < 3*98 || drx < 3*98 {
		t.Fatalf("eth0 counted +%d bytes out, +%d in for 3 pings of 98-byte frames", dtx, drx)
	}

	// Pod stats: its cgroup holds all three containers.
	if p.Attributes.Id != podID || p.Linux.Cpu.GetUsageCoreNanoSeconds().GetValue() < after.UsageCoreNanoSeconds.GetValue() ||
		p.Linux.Memory.GetWorkingSetBytes().GetValue() < fill*mib || p.Linux.Process.GetProcessCount().GetValue() < 2 {
		t.Fatalf("pod stats %v", p.Linux)
	}
	inPod := map[string]bool{}
	for _, c := range p.Linux.Containers {
		inPod[c.Attributes.Id] = true
	}
	if !inPod[mem] || !inPod[cpu] || !inPod[idle] || len(inPod) != 3 {
		t.Fatalf("pod stats hold containers %v", inPod)
	}

	// Filters: created containers are listed; ID prefixes, pods and
	// labels select.
	if all := n.listCtrStats(t, nil); len(all) != 3 || all[idle] == nil {
		t.Fatalf("list without filter: %d containers", len(all))
	}
	if got := n.listCtrStats(t, &runtime.ContainerStatsFilter{Id: cpu[:12]}); len(got) != 1 || got[cpu] == nil {
		t.Fatalf("filter by ID prefix: %v", got)
	}
	if got := n.listCtrStats(t, &runtime.ContainerStatsFilter{LabelSelector: map[string]string{"role": "idle"}}); len(got) != 1 || got[idle] == nil {
		t.Fatalf("filter by label: %v", got)
	}
	if got := n.listCtrStats(t, &runtime.ContainerStatsFilter{PodSandboxId: podID, LabelSelector: map[string]string{"role": "none"}}); len(got) != 0 {
		t.Fatalf("filter matching nothing: %v", got)
	}
	if _, err := n.runtime().ContainerStats(ctx, &runtime.ContainerStatsRequest{ContainerId: "nope"}); err == nil {
		t.Fatal("stats of an unknown container")
	}

	// Metrics: the cAdvisor names kubelet serves, with the pod's labels.
	descs, err := n.runtime().ListMetricDescriptors(ctx, &runtime.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]int{}
	for _, d := range descs.Descriptors {
		keys[d.Name] = len(d.LabelKeys)
	}
	ms, err := n.runtime().ListPodSandboxMetrics(ctx, &runtime.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var podMetrics *runtime.PodSandboxMetrics
	for _, m := range ms.PodMetrics {
		if m.PodSandboxId == podID {
			podMetrics = m
		}
	}
	if podMetrics == nil {
		t.Fatal("no metrics for the pod")
	}
	found := map[string]uint64{}
	check := func(m *runtime.Metric, ctr string) {
		if keys[m.Name] != len(m.LabelValues) {
			t.Errorf("%s has %d labels, its descriptor %d", m.Name, len(m.LabelValues), keys[m.Name])
		}
		if m.LabelValues[0] != "stats" || m.LabelValues[1] != "e2e" {
			t.Errorf("%s labels %v", m.Name, m.LabelValues)
		}
		found[ctr+"/"+m.Name+"/"+strings.Join(m.LabelValues[5:], ",")] = m.Value.GetValue()
	}
	for _, m := range podMetrics.Metrics {
		check(m, "")
	}
	for _, cm := range podMetrics.ContainerMetrics {
		for _, m := range cm.Metrics {
			check(m, cm.ContainerId)
		}
	}
	if v := found[mem+"/container_memory_working_set_bytes/"]; v < fill*mib {
		t.Errorf("container_memory_working_set_bytes of mem: %d", v)
	}
	if v := found[cpu+"/container_cpu_usage_seconds_total/total"]; v < 1 {
		t.Errorf("container_cpu_usage_seconds_total of cpu: %d", v)
	}
	if v := found["/container_network_transmit_bytes_total/eth0"]; v < dtx {
		t.Errorf("container_network_transmit_bytes_total of eth0: %d", v)
	}
	// The shell execs its last command: sleep is the one process.
	if p, th, fds := found[mem+"/container_processes/"], found[mem+"/container_threads/"], found[mem+"/container_file_descriptors/"]; p != 1 || th < p || fds < 3 {
		t.Errorf("mem has %d processes, %d threads, %d fds; want 1, ≥1, ≥3 (stdio)", p, th, fds)
	}

	// The Stream variants send the same lists.
	cs, err := n.runtime().StreamContainerStats(ctx, &runtime.StreamContainerStatsRequest{Filter: &runtime.ContainerStatsFilter{PodSandboxId: podID}})
	if err != nil {
		t.Fatal(err)
	}
	streamed := 0
	for r, err := cs.Recv(); err == nil; r, err = cs.Recv() {
		streamed += len(r.ContainerStats)
	}
	ps, err := n.runtime().StreamPodSandboxStats(ctx, &runtime.StreamPodSandboxStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pods := 0
	for r, err := ps.Recv(); err == nil; r, err = ps.Recv() {
		pods += len(r.PodSandboxStats)
	}
	pms, err := n.runtime().StreamPodSandboxMetrics(ctx, &runtime.StreamPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	metricPods := 0
	for r, err := pms.Recv(); err == nil; r, err = pms.Recv() {
		metricPods += len(r.PodSandboxMetrics)
	}
	if streamed != 3 || pods != 1 || metricPods != 1 {
		t.Fatalf("streamed %d container stats, %d pod stats, %d pod metrics; want 3, 1, 1", streamed, pods, metricPods)
	}

	// crictl stats and statsp show them.
	out := crictl(t, n.daemon, "stats", "--seconds", "1")
	mustContain(t, "crictl stats", out, "CONTAINER", "mem", "cpu", cpu[:13])
	out = crictl(t, n.daemon, "statsp", "--seconds", "1")
	mustContain(t, "crictl statsp", out, "POD", "stats", podID[:13])
	var js struct {
		Stats []struct {
			Linux struct {
				Network struct {
					DefaultInterface struct{ Name string } `json:"defaultInterface"`
				} `json:"network"`
			} `json:"linux"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(crictl(t, n.daemon, "statsp", "-o", "json", "--id", podID)), &js); err != nil || len(js.Stats) != 1 || js.Stats[0].Linux.Network.DefaultInterface.Name != "eth0" {
		t.Fatalf("crictl statsp -o json: %+v, %v", js, err)
	}

	n.removePod(t, podID)
	if got := n.listCtrStats(t, nil); len(got) != 0 {
		t.Fatalf("stats of removed containers: %v", got)
	}
}

// A host-network pod has no network stats of its own (as with
// containerd); its cgroup stats are still there.
func TestStatsHostNetworkPod(t *testing.T) {
	n := newPodNode(t)
	pod := n.logPod("hoststats")
	pod.Linux.SecurityContext.NamespaceOptions.Network = runtime.NamespaceMode_NODE
	podID := n.run(t, pod)
	n.pullBusybox(t)
	n.create(t, podID, pod, ctrConfig("c", "sleep", "3600"), true)
	p := n.podStats(t, podID)
	if p.Linux.Network != nil {
		t.Fatalf("host-network pod has network stats %v", p.Linux.Network)
	}
	if p.Linux.Cpu == nil || p.Linux.Memory == nil || len(p.Linux.Containers) != 1 {
		t.Fatalf("pod stats %v", p.Linux)
	}
	resp, err := n.runtime().ListPodSandboxMetrics(context.Background(), &runtime.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, pm := range resp.PodMetrics {
		for _, m := range pm.Metrics {
			if strings.HasPrefix(m.Name, "container_network_") {
				t.Fatalf("host-network pod has network metric %v", m)
			}
		}
	}
	n.removePod(t, podID)
}

// statsPeriodNode is a node with [stats] period set, one pod named pod
// and in it one running container.
func statsPeriodNode(t *testing.T, period, pod string) (n *podNode, podID, ctrID string) {
	t.Helper()
	n = newPodNodeOn(t, func(dir string) { appendConfig(t, dir, "[stats]\nperiod = \""+period+"\"") })
	n.pullBusybox(t)
	cfg := n.logPod(pod)
	podID = n.run(t, cfg)
	return n, podID, n.create(t, podID, cfg, ctrConfig("w", "sleep", "3600"), true)
}

// The stats lists answer from samples kept between calls ([stats] period)
// rather than reading every cgroup and walking every writable layer on
// each list; the single ContainerStats samples anew and keeps what it read
// for the lists. With a period of an hour nothing is retaken in the
// background while the test runs.
func TestStatsListsAnswerFromKeptSamples(t *testing.T) {
	n, podID, id := statsPeriodNode(t, "1h", "kept")
	listed := func() uint64 {
		return n.listCtrStats(t, nil)[id].GetWritableLayer().GetUsedBytes().GetValue()
	}
	before := listed()
	n.exec(t, id, "sh", "-c", "dd if=/dev/zero of=/blob bs=1M count=5 2>/dev/null && sync")
	if got := listed(); got != before {
		t.Fatalf("ListContainerStats after writing 5 MiB: %d bytes, want the kept sample's %d", got, before)
	}
	fresh := n.ctrStats(t, id).GetWritableLayer().GetUsedBytes().GetValue()
	if fresh < before+5*mib {
		t.Fatalf("ContainerStats after writing 5 MiB: %d bytes, was %d", fresh, before)
	}
	if got := listed(); got != fresh {
		t.Fatalf("ListContainerStats after ContainerStats: %d bytes, want its fresh sample's %d", got, fresh)
	}
	n.removePod(t, podID)
}

// With a short period the lists follow the workload on their own: the
// background pass retakes the samples they asked for.
func TestStatsSamplesRetakenInTheBackground(t *testing.T) {
	n, podID, id := statsPeriodNode(t, "1s", "retaken")
	before := n.listCtrStats(t, nil)[id].GetWritableLayer().GetUsedBytes().GetValue()
	n.exec(t, id, "sh", "-c", "dd if=/dev/zero of=/blob bs=1M count=5 2>/dev/null && sync")
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := n.listCtrStats(t, nil)[id]
		if st.GetWritableLayer().GetUsedBytes().GetValue() >= before+5*mib {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ListContainerStats still says %d bytes 30 s after writing 5 MiB (was %d)", st.GetWritableLayer().GetUsedBytes().GetValue(), before)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The pod's list too: its cgroup sample is retaken, later each time.
	podCPUAt := func() int64 {
		p, err := n.runtime().ListPodSandboxStats(context.Background(), &runtime.ListPodSandboxStatsRequest{})
		if err != nil || len(p.Stats) != 1 {
			t.Fatalf("ListPodSandboxStats: %v, %v", p, err)
		}
		return p.Stats[0].GetLinux().GetCpu().GetTimestamp()
	}
	first := podCPUAt()
	for podCPUAt() <= first {
		if time.Now().After(deadline) {
			t.Fatalf("ListPodSandboxStats: the pod's CPU sample of %s was never retaken", time.Unix(0, first))
		}
		time.Sleep(200 * time.Millisecond)
	}
	n.removePod(t, podID)
}
