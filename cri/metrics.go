package cri

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/cgroupmgr"
	"github.com/crid-dev/crid/imageservice"
	"github.com/crid-dev/crid/oci"
	"github.com/crid-dev/crid/podsandbox"
)

// CRI metrics carry the names and labels of cAdvisor's container metrics,
// so that kubelet can serve /metrics/cadvisor from them. Every series has
// the base labels: pod name, pod namespace, container name (empty for the
// pod's own cgroup), id (the cgroup path, as cAdvisor's "id") and image.
// Values are CRI's UInt64: metrics in seconds are whole seconds.
var baseLabelKeys = []string{"pod", "namespace", "container", "id", "image"}

type metricDesc struct {
	name, help string
	// extra are the labels after the base ones.
	extra []string
	typ   runtime.MetricType
}

const (
	counter = runtime.MetricType_COUNTER
	gauge   = runtime.MetricType_GAUGE
)

var (
	netLabels      = []string{"interface"}
	fsLabels       = []string{"device"}
	failureLabels  = []string{"failure_type", "scope"}
	blkioLabels    = []string{"device", "major", "minor", "operation"}
	cpuTotalLabels = []string{"cpu"}
)

// metricDescs are the metrics crid reports. Pressure (PSI, v2 only),
// hugetlb and ulimit metrics are not among them.
var metricDescs = []metricDesc{
	{"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", cpuTotalLabels, counter},
	{"container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", nil, counter},
	{"container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", nil, counter},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", nil, counter},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", nil, counter},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", nil, counter},

	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", nil, gauge},
	{"container_memory_working_set_bytes", "Current working set in bytes.", nil, gauge},
	{"container_memory_rss", "Size of RSS in bytes.", nil, gauge},
	{"container_memory_cache", "Number of bytes of page cache memory.", nil, gauge},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes.", nil, gauge},
	{"container_memory_swap", "Container swap usage in bytes.", nil, gauge},
	{"container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", nil, gauge},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes", nil, gauge},
	{"container_memory_failcnt", "Number of memory usage hits limits", nil, counter},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures.", failureLabels, counter},
	{"container_oom_events_total", "Count of out of memory events observed for the container", nil, counter},

	{"container_network_receive_bytes_total", "Cumulative count of bytes received", netLabels, counter},
	{"container_network_receive_packets_total", "Cumulative count of packets received", netLabels, counter},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving", netLabels, counter},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving", netLabels, counter},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", netLabels, counter},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted", netLabels, counter},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting", netLabels, counter},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting", netLabels, counter},

	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", fsLabels, gauge},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", fsLabels, gauge},
	{"container_fs_inodes_total", "Number of Inodes", fsLabels, gauge},
	{"container_fs_inodes_free", "Number of available Inodes", fsLabels, gauge},
	{"container_fs_reads_bytes_total", "Cumulative count of bytes read", fsLabels, counter},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written", fsLabels, counter},
	{"container_fs_reads_total", "Cumulative count of reads completed", fsLabels, counter},
	{"container_fs_writes_total", "Cumulative count of writes completed", fsLabels, counter},
	{"container_blkio_device_usage_total", "Blkio Device bytes usage", blkioLabels, counter},

	{"container_processes", "Number of processes running inside the container.", nil, gauge},
	{"container_threads", "Number of threads running inside the container", nil, gauge},
	{"container_threads_max", "Maximum number of threads allowed inside the container, infinity if value is zero", nil, gauge},
	{"container_file_descriptors", "Number of open file descriptors for the container.", nil, gauge},
	{"container_sockets", "Number of open sockets for the container.", nil, gauge},

	{"container_spec_cpu_period", "CPU period of the container.", nil, gauge},
	{"container_spec_cpu_quota", "CPU quota of the container.", nil, gauge},
	{"container_spec_cpu_shares", "CPU share of the container.", nil, gauge},
	{"container_spec_memory_limit_bytes", "Memory limit for the container.", nil, gauge},
	{"container_spec_memory_reservation_limit_bytes", "Memory reservation limit for the container.", nil, gauge},
	{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", nil, gauge},

	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", nil, gauge},
	{"container_last_seen", "Last time a container was seen by the exporter", nil, gauge},
}

var descByName = func() map[string]*metricDesc {
	m := make(map[string]*metricDesc, len(metricDescs))
	for i := range metricDescs {
		m[metricDescs[i].name] = &metricDescs[i]
	}
	return m
}()

// ListMetricDescriptors lists the metrics ListPodSandboxMetrics reports.
func (s *runtimeService) ListMetricDescriptors(context.Context, *runtime.ListMetricDescriptorsRequest) (*runtime.ListMetricDescriptorsResponse, error) {
	resp := &runtime.ListMetricDescriptorsResponse{}
	for _, d := range metricDescs {
		resp.Descriptors = append(resp.Descriptors, &runtime.MetricDescriptor{
			Name: d.name, Help: d.help, LabelKeys: append(append([]string{}, baseLabelKeys...), d.extra...),
		})
	}
	return resp, nil
}

// ListPodSandboxMetrics reports the metrics of every ready pod and of its
// containers that have a cgroup, from samples up to a stats period old.
func (s *runtimeService) ListPodSandboxMetrics(ctx context.Context, _ *runtime.ListPodSandboxMetricsRequest) (*runtime.ListPodSandboxMetricsResponse, error) {
	return &runtime.ListPodSandboxMetricsResponse{PodMetrics: s.podMetrics(ctx)}, nil
}

// StreamPodSandboxMetrics is ListPodSandboxMetrics in batches.
func (s *runtimeService) StreamPodSandboxMetrics(_ *runtime.StreamPodSandboxMetricsRequest, stream grpc.ServerStreamingServer[runtime.StreamPodSandboxMetricsResponse]) error {
	return sendBatches(s.podMetrics(stream.Context()), func(b []*runtime.PodSandboxMetrics) error {
		return stream.Send(&runtime.StreamPodSandboxMetricsResponse{PodSandboxMetrics: b})
	})
}

func (s *runtimeService) podMetrics(ctx context.Context) []*runtime.PodSandboxMetrics {
	ready := podsandbox.StateReady
	sbs := s.opts.Sandboxes.List(podsandbox.Filter{State: &ready})
	fs := s.containerFs()
	byPod := s.containersByPod(ctx, "")
	s.samples.warm(sbs, byPod, true)
	out := make([]*runtime.PodSandboxMetrics, 0, len(sbs))
	for _, sb := range sbs {
		if ctx.Err() != nil {
			break
		}
		out = append(out, s.sandboxMetrics(sb, byPod[sb.ID], fs))
	}
	return out
}

// metricSet collects one cgroup's series under its base labels.
type metricSet struct {
	base []string
	out  []*runtime.Metric
}

func newMetricSet(sb *podsandbox.Sandbox, container, id, image string) *metricSet {
	md := sb.Config.GetMetadata()
	if dir, err := cgroupmgr.Dir(id); err == nil {
		id = dir // cAdvisor's id is the cgroup's directory (a systemd slice or scope expanded)
	}
	return &metricSet{base: []string{md.GetName(), md.GetNamespace(), container, id, image}}
}

// add appends one series; extra label values follow the descriptor's.
func (m *metricSet) add(name string, v uint64, extra ...string) {
	d := descByName[name]
	if d == nil || len(extra) != len(d.extra) {
		klog.ErrorS(nil, "Metric does not match its descriptor", "metric", name, "labels", extra)
		return
	}
	m.out = append(m.out, &runtime.Metric{
		Name: name, MetricType: d.typ,
		LabelValues: append(append(make([]string, 0, len(m.base)+len(extra)), m.base...), extra...),
		Value:       &runtime.UInt64Value{Value: v},
	})
}

func (s *runtimeService) sandboxMetrics(sb *podsandbox.Sandbox, ctrs []*oci.Container, fs containerFs) *runtime.PodSandboxMetrics {
	pm := &runtime.PodSandboxMetrics{PodSandboxId: sb.ID}
	pod := newMetricSet(sb, "", sb.CgroupParent, "")
	if st := s.cgroupStats(sb.CgroupParent, "podSandboxID", sb.ID, false, false); st != nil {
		pod.cpu(st)
		pod.memory(st)
		pod.add("container_processes", st.Pids.Current)
	}
	ifs, _ := s.podInterfaces(sb, false)
	for _, i := range ifs {
		pod.add("container_network_receive_bytes_total", i.RxBytes, i.Name)
		pod.add("container_network_receive_packets_total", i.RxPackets, i.Name)
		pod.add("container_network_receive_packets_dropped_total", i.RxDropped, i.Name)
		pod.add("container_network_receive_errors_total", i.RxErrors, i.Name)
		pod.add("container_network_transmit_bytes_total", i.TxBytes, i.Name)
		pod.add("container_network_transmit_packets_total", i.TxPackets, i.Name)
		pod.add("container_network_transmit_packets_dropped_total", i.TxDropped, i.Name)
		pod.add("container_network_transmit_errors_total", i.TxErrors, i.Name)
	}
	pm.Metrics = pod.out
	for _, c := range ctrs {
		if cm := s.containerMetrics(sb, c, fs); cm != nil {
			pm.ContainerMetrics = append(pm.ContainerMetrics, cm)
		}
	}
	return pm
}

// containerMetrics reports a container with a cgroup (created or
// running); nil for one whose cgroup is gone.
func (s *runtimeService) containerMetrics(sb *podsandbox.Sandbox, c *oci.Container, fs containerFs) *runtime.ContainerMetrics {
	exited := c.State == oci.StateExited
	st := s.cgroupStats(c.CgroupsPath, "containerID", c.ID, false, exited)
	if st == nil {
		return nil
	}
	m := newMetricSet(sb, c.Config.GetMetadata().GetName(), c.CgroupsPath, c.ImageName)
	m.cpu(st)
	m.memory(st)
	mem := st.Memory
	m.add("container_memory_failures_total", mem.PageFaults, "pgfault", "container")
	m.add("container_memory_failures_total", mem.MajorPageFaults, "pgmajfault", "container")
	// A container's cgroup is a leaf: its own and its tree's counts agree.
	m.add("container_memory_failures_total", mem.PageFaults, "pgfault", "hierarchy")
	m.add("container_memory_failures_total", mem.MajorPageFaults, "pgmajfault", "hierarchy")

	ps, _, err := sample(s.samples.procs, c.CgroupsPath, false, exited)
	if err != nil {
		klog.V(4).InfoS("Counting container processes", "containerID", c.ID, "err", err)
	}
	m.add("container_processes", ps.Processes)
	m.add("container_threads", ps.Threads)
	m.add("container_threads_max", st.Pids.Limit)
	m.add("container_file_descriptors", ps.FileDescriptors)
	m.add("container_sockets", ps.Sockets)

	m.add("container_spec_cpu_period", st.Spec.CPUPeriod)
	m.add("container_spec_cpu_shares", st.Spec.CPUShares)
	if st.Spec.CPUQuota > 0 {
		m.add("container_spec_cpu_quota", uint64(st.Spec.CPUQuota))
	}
	m.add("container_spec_memory_limit_bytes", st.Spec.MemoryLimit)
	m.add("container_spec_memory_reservation_limit_bytes", st.Spec.MemoryReservation)
	m.add("container_spec_memory_swap_limit_bytes", st.Spec.MemorySwapLimit)

	start := c.StartedAt
	if start == 0 {
		start = c.CreatedAt
	}
	m.add("container_start_time_seconds", uint64(max(start, 0)/int64(time.Second)))
	m.add("container_last_seen", uint64(st.Timestamp.Unix()))

	if u, _, err := sample(s.samples.layers, c.ID, false, exited); err == nil {
		m.add("container_fs_usage_bytes", u.Bytes, fs.device)
		m.add("container_fs_limit_bytes", fs.capacity.Bytes, fs.device)
		m.add("container_fs_inodes_total", fs.capacity.Inodes, fs.device)
		m.add("container_fs_inodes_free", fs.capacity.FreeInodes, fs.device)
	}
	for _, io := range st.IO {
		dev := deviceName(io.Major, io.Minor)
		m.add("container_fs_reads_bytes_total", io.ReadBytes, dev)
		m.add("container_fs_writes_bytes_total", io.WriteBytes, dev)
		m.add("container_fs_reads_total", io.Reads, dev)
		m.add("container_fs_writes_total", io.Writes, dev)
		maj, mnr := strconv.FormatUint(io.Major, 10), strconv.FormatUint(io.Minor, 10)
		m.add("container_blkio_device_usage_total", io.ReadBytes, dev, maj, mnr, "Read")
		m.add("container_blkio_device_usage_total", io.WriteBytes, dev, maj, mnr, "Write")
	}
	return &runtime.ContainerMetrics{ContainerId: c.ID, Metrics: m.out}
}

func (m *metricSet) cpu(st *cgroupmgr.Stats) {
	sec := func(ns uint64) uint64 { return ns / uint64(time.Second) }
	m.add("container_cpu_usage_seconds_total", sec(st.CPU.UsageNanos), "total")
	m.add("container_cpu_user_seconds_total", sec(st.CPU.UserNanos))
	m.add("container_cpu_system_seconds_total", sec(st.CPU.SystemNanos))
	m.add("container_cpu_cfs_periods_total", st.CPU.Periods)
	m.add("container_cpu_cfs_throttled_periods_total", st.CPU.ThrottledPeriods)
	m.add("container_cpu_cfs_throttled_seconds_total", sec(st.CPU.ThrottledNanos))
}

func (m *metricSet) memory(st *cgroupmgr.Stats) {
	mem := st.Memory
	m.add("container_memory_usage_bytes", mem.Usage)
	m.add("container_memory_working_set_bytes", mem.WorkingSet)
	m.add("container_memory_rss", mem.RSS)
	m.add("container_memory_cache", mem.Cache)
	m.add("container_memory_mapped_file", mem.MappedFile)
	m.add("container_memory_swap", mem.Swap)
	m.add("container_memory_kernel_usage", mem.Kernel)
	m.add("container_memory_max_usage_bytes", mem.MaxUsage)
	m.add("container_memory_failcnt", mem.Failcnt)
	m.add("container_oom_events_total", mem.OOMKills)
}

// containerFs is the filesystem holding the writable layers, read once
// per metrics call.
type containerFs struct {
	device   string
	capacity imageservice.FsCapacity
}

func (s *runtimeService) containerFs() containerFs {
	c, err := s.opts.Images.ContainerFsCapacity()
	if err != nil {
		klog.ErrorS(err, "Reading the container filesystem's capacity")
	}
	fs := containerFs{device: c.Mountpoint, capacity: c}
	var st unix.Stat_t
	if c.Mountpoint != "" && unix.Stat(c.Mountpoint, &st) == nil {
		fs.device = deviceName(uint64(unix.Major(st.Dev)), uint64(unix.Minor(st.Dev)))
	}
	return fs
}

// deviceName names a block device as cAdvisor does ("/dev/sda1"), from
// /sys/dev/block; "major:minor" when it is not a block device.
func deviceName(major, minor uint64) string {
	id := fmt.Sprintf("%d:%d", major, minor)
	if l, err := os.Readlink(filepath.Join("/sys/dev/block", id)); err == nil {
		return "/dev/" + filepath.Base(l)
	}
	return id
}
