package cri

import (
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/cgroupmgr"
	"github.com/crid-dev/crid/podsandbox"
)

func TestCPUSamplesNanoCores(t *testing.T) {
	var c cpuSamples
	t0 := time.Unix(1000, 0).UnixNano()
	if _, ok := c.sample("a", 5e9, t0); ok {
		t.Fatal("a rate from the first sample")
	}
	// 1.5 s of CPU in 2 s: 0.75 cores.
	if nc, ok := c.sample("a", 6.5e9, t0+2e9); !ok || nc != 750_000_000 {
		t.Fatalf("rate %d, %v; want 750000000", nc, ok)
	}
	// The same sample again (a list answering from a kept sample): the
	// same rate, not none.
	if nc, ok := c.sample("a", 6.5e9, t0+2e9); !ok || nc != 750_000_000 {
		t.Fatalf("the kept sample again: rate %d, %v; want 750000000", nc, ok)
	}
	// An older sample arriving late changes nothing.
	if _, ok := c.sample("a", 6e9, t0+1e9); ok {
		t.Fatal("rate from an out-of-order sample")
	}
	// Usage going down means a new cgroup: start over.
	if _, ok := c.sample("a", 1e9, t0+3e9); ok {
		t.Fatal("rate across a reset")
	}
	// Hours of CPU on many cores does not overflow.
	if nc, ok := c.sample("a", 1e9+3600*64e9, t0+3e9+3600e9); !ok || nc != 64e9 {
		t.Fatalf("rate %d, %v; want 64 cores", nc, ok)
	}
	// recent: the latest sample, if taken after the bound.
	if n, at, ok := c.recent("a", time.Unix(0, t0+3e9+3600e9-1)); !ok || n != 1e9+3600*64e9 || at.UnixNano() != t0+3e9+3600e9 {
		t.Fatalf("recent: %d at %v, %v", n, at, ok)
	}
	if _, _, ok := c.recent("a", time.Unix(0, t0+3e9+3600e9)); ok {
		t.Fatal("recent: a sample not after the bound")
	}
	if _, _, ok := c.recent("nope", time.Unix(0, 0)); ok {
		t.Fatal("recent: a sample of an unknown ID")
	}
	c.sample("b", 1, t0)
	c.prune(map[string]bool{"b": true})
	if _, ok := c.last["a"]; ok || len(c.last) != 1 {
		t.Fatalf("prune kept %v", c.last)
	}
	st := &cgroupmgr.Stats{Timestamp: time.Unix(0, t0+10e9), CPU: cgroupmgr.CPUStats{UsageNanos: 1 + 1e9}}
	u := c.cpuUsage("b", st)
	if u.Timestamp != t0+10e9 || u.UsageCoreNanoSeconds.GetValue() != 1+1e9 || u.UsageNanoCores.GetValue() != 1e8 {
		t.Fatalf("cpu usage %v", u)
	}
}

func TestMemoryAndSwapUsage(t *testing.T) {
	st := &cgroupmgr.Stats{Timestamp: time.Unix(1, 0), Memory: cgroupmgr.MemoryStats{
		Usage: 100 << 20, WorkingSet: 60 << 20, RSS: 50 << 20, PageFaults: 7, MajorPageFaults: 1, Swap: 1 << 20,
	}}
	m := memoryUsage(st)
	if m.AvailableBytes != nil || m.WorkingSetBytes.GetValue() != 60<<20 || m.UsageBytes.GetValue() != 100<<20 ||
		m.RssBytes.GetValue() != 50<<20 || m.PageFaults.GetValue() != 7 || m.MajorPageFaults.GetValue() != 1 {
		t.Fatalf("unlimited memory usage %v", m)
	}
	if s := swapUsage(st); s.SwapAvailableBytes != nil || s.SwapUsageBytes.GetValue() != 1<<20 {
		t.Fatalf("unlimited swap %v", s)
	}
	st.Memory.Limit, st.Memory.Available = 64<<20, 4<<20
	st.Spec.MemoryLimit, st.Spec.MemorySwapLimit = 64<<20, 80<<20
	if m := memoryUsage(st); m.AvailableBytes.GetValue() != 4<<20 {
		t.Fatalf("limited memory usage %v", m)
	}
	if s := swapUsage(st); s.SwapAvailableBytes.GetValue() != 15<<20 {
		t.Fatalf("limited swap %v", s)
	}
}

// critestMetrics are the names critest v1.37.0 expects (pkg/validate
// expectedMetricDescriptorNames) less those it lists as not implemented
// by runtimes yet (pressure, hugetlb, ulimits, cpu quota, memory
// reservation).
var critestMetrics = []string{
	"container_blkio_device_usage_total", "container_cpu_cfs_periods_total", "container_cpu_cfs_throttled_periods_total",
	"container_cpu_cfs_throttled_seconds_total", "container_cpu_system_seconds_total", "container_cpu_usage_seconds_total",
	"container_cpu_user_seconds_total", "container_file_descriptors", "container_fs_inodes_free", "container_fs_inodes_total",
	"container_fs_limit_bytes", "container_fs_reads_bytes_total", "container_fs_reads_total", "container_fs_usage_bytes",
	"container_fs_writes_bytes_total", "container_fs_writes_total", "container_last_seen", "container_memory_cache",
	"container_memory_failcnt", "container_memory_failures_total", "container_memory_kernel_usage", "container_memory_mapped_file",
	"container_memory_max_usage_bytes", "container_memory_rss", "container_memory_swap", "container_memory_usage_bytes",
	"container_memory_working_set_bytes", "container_network_receive_bytes_total", "container_network_receive_errors_total",
	"container_network_receive_packets_dropped_total", "container_network_receive_packets_total",
	"container_network_transmit_bytes_total", "container_network_transmit_errors_total",
	"container_network_transmit_packets_dropped_total", "container_network_transmit_packets_total", "container_oom_events_total",
	"container_processes", "container_sockets", "container_spec_cpu_period", "container_spec_cpu_shares",
	"container_spec_memory_limit_bytes", "container_spec_memory_swap_limit_bytes", "container_start_time_seconds",
	"container_threads", "container_threads_max",
}

func TestMetricDescriptors(t *testing.T) {
	resp, err := (&runtimeService{Server: &Server{}}).ListMetricDescriptors(t.Context(), &runtime.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, d := range resp.Descriptors {
		if seen[d.Name] {
			t.Errorf("%s described twice", d.Name)
		}
		seen[d.Name] = true
		if d.Help == "" || len(d.LabelKeys) < len(baseLabelKeys) {
			t.Errorf("%s: help %q, labels %v", d.Name, d.Help, d.LabelKeys)
		}
	}
	for _, name := range critestMetrics {
		if !seen[name] {
			t.Errorf("%s is not described", name)
		}
	}
	// A series whose labels do not match its descriptor is dropped, never
	// sent with the wrong shape.
	sb := &podsandbox.Sandbox{Config: &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "p", Namespace: "ns"}}}
	m := newMetricSet(sb, "c", "/crid/pod/c", "busybox")
	m.add("container_memory_rss", 1)
	m.add("container_memory_rss", 1, "extra")
	m.add("container_network_receive_bytes_total", 2, "eth0")
	m.add("no_such_metric", 3)
	if len(m.out) != 2 {
		t.Fatalf("series %v", m.out)
	}
	for _, s := range m.out {
		d := descByName[s.Name]
		if len(s.LabelValues) != len(baseLabelKeys)+len(d.extra) || s.MetricType != d.typ || s.LabelValues[0] != "p" || s.LabelValues[2] != "c" {
			t.Errorf("series %v", s)
		}
	}
}
