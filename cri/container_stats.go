package cri

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/cgroupmgr"
	"github.com/crid-dev/crid/oci"
)

// ContainerStats reports one container's CPU, memory, swap and
// writable-layer usage.
func (s *runtimeService) ContainerStats(ctx context.Context, req *runtime.ContainerStatsRequest) (*runtime.ContainerStatsResponse, error) {
	c, err := s.opts.Containers.Get(ctx, req.ContainerId)
	if err != nil {
		return nil, toStatus(err)
	}
	return &runtime.ContainerStatsResponse{Stats: s.containerStats(c, true)}, nil
}

// ListContainerStats reports the stats of the containers matching the
// filter (ID or ID prefix, pod, labels): created, running and exited ones,
// as long as they exist. The samples are up to a stats period old.
func (s *runtimeService) ListContainerStats(ctx context.Context, req *runtime.ListContainerStatsRequest) (*runtime.ListContainerStatsResponse, error) {
	return &runtime.ListContainerStatsResponse{Stats: s.listContainerStats(ctx, req.GetFilter())}, nil
}

// StreamContainerStats is ListContainerStats in batches.
func (s *runtimeService) StreamContainerStats(req *runtime.StreamContainerStatsRequest, stream grpc.ServerStreamingServer[runtime.StreamContainerStatsResponse]) error {
	stats := s.listContainerStats(stream.Context(), req.GetFilter())
	return sendBatches(stats, func(b []*runtime.ContainerStats) error {
		return stream.Send(&runtime.StreamContainerStatsResponse{ContainerStats: b})
	})
}

func (s *runtimeService) listContainerStats(ctx context.Context, f *runtime.ContainerStatsFilter) []*runtime.ContainerStats {
	ctrs := s.opts.Containers.List(ctx, oci.Filter{ID: f.GetId(), SandboxID: f.GetPodSandboxId(), Selector: f.GetLabelSelector()})
	s.samples.warmContainers(ctrs, false)
	out := make([]*runtime.ContainerStats, 0, len(ctrs))
	for _, c := range ctrs {
		out = append(out, s.containerStats(c, false))
	}
	if f.GetId() == "" && f.GetPodSandboxId() == "" && len(f.GetLabelSelector()) == 0 {
		// The whole list: forget the samples of removed containers.
		keep := make(map[string]bool, len(ctrs))
		for _, c := range ctrs {
			keep[c.ID] = true
		}
		s.stats.containers.prune(keep)
	}
	return out
}

// containerStats reports one container, from fresh samples or kept ones.
// A container whose cgroup is gone (exited and cleaned up) reports its
// writable layer only.
func (s *runtimeService) containerStats(c *oci.Container, fresh bool) *runtime.ContainerStats {
	out := &runtime.ContainerStats{Attributes: &runtime.ContainerAttributes{
		Id: c.ID, Metadata: c.Config.Metadata, Labels: c.Config.Labels, Annotations: c.Config.Annotations,
	}}
	exited := c.State == oci.StateExited
	if st := s.cgroupStats(c.CgroupsPath, "containerID", c.ID, fresh, exited); st != nil {
		out.Cpu = s.stats.containers.cpuUsage(c.ID, s.freshCPU(&s.stats.containers, c.ID, st, c.CgroupsPath, fresh || exited))
		out.Memory = memoryUsage(st)
		out.Io = ioUsage(st)
		out.Swap = swapUsage(st)
	}
	if u, at, err := sample(s.samples.layers, c.ID, fresh, exited); err == nil {
		out.WritableLayer = &runtime.FilesystemUsage{
			Timestamp:  at.UnixNano(),
			FsId:       &runtime.FilesystemIdentifier{Mountpoint: u.Mountpoint},
			UsedBytes:  &runtime.UInt64Value{Value: u.Bytes},
			InodesUsed: &runtime.UInt64Value{Value: u.Inodes},
		}
	} else {
		klog.V(4).InfoS("No writable layer usage", "containerID", c.ID, "err", err)
	}
	return out
}

// cgroupStats reads a cgroup's stats (fresh, or as kept), nil when it
// does not exist; other failures are logged (with the pod's or container's
// ID as key) and give nil too, so one broken cgroup does not fail a whole
// list. settled: nothing runs in it any more.
func (s *runtimeService) cgroupStats(path, key, id string, fresh, settled bool) *cgroupmgr.Stats {
	if path == "" {
		return nil
	}
	st, _, err := sample(s.samples.cgroups, path, fresh, settled)
	if err != nil {
		if !errors.Is(err, cgroupmgr.ErrNoCgroup) {
			klog.ErrorS(err, "Reading cgroup stats", key, id)
		}
		return nil
	}
	return st
}

func memoryUsage(st *cgroupmgr.Stats) *runtime.MemoryUsage {
	m := st.Memory
	u := &runtime.MemoryUsage{
		Timestamp:       st.Timestamp.UnixNano(),
		WorkingSetBytes: &runtime.UInt64Value{Value: m.WorkingSet},
		UsageBytes:      &runtime.UInt64Value{Value: m.Usage},
		RssBytes:        &runtime.UInt64Value{Value: m.RSS},
		PageFaults:      &runtime.UInt64Value{Value: m.PageFaults},
		MajorPageFaults: &runtime.UInt64Value{Value: m.MajorPageFaults},
	}
	if m.Limit != 0 {
		u.AvailableBytes = &runtime.UInt64Value{Value: m.Available}
	}
	if st.PSI != nil {
		u.Psi = psiStats(st.PSI.Memory)
	}
	return u
}

// ioUsage reports I/O pressure; nil where the kernel gives no PSI (v1).
func ioUsage(st *cgroupmgr.Stats) *runtime.IoUsage {
	if st.PSI == nil {
		return nil
	}
	return &runtime.IoUsage{Timestamp: st.Timestamp.UnixNano(), Psi: psiStats(st.PSI.IO)}
}

func psiStats(p cgroupmgr.Pressure) *runtime.PsiStats {
	line := func(d cgroupmgr.PressureData) *runtime.PsiData {
		return &runtime.PsiData{Total: d.TotalNanos, Avg10: d.Avg10, Avg60: d.Avg60, Avg300: d.Avg300}
	}
	return &runtime.PsiStats{Some: line(p.Some), Full: line(p.Full)}
}

// swapUsage reports swap in use and, when memory and memory+swap are both
// limited, the swap still available.
func swapUsage(st *cgroupmgr.Stats) *runtime.SwapUsage {
	u := &runtime.SwapUsage{Timestamp: st.Timestamp.UnixNano(), SwapUsageBytes: &runtime.UInt64Value{Value: st.Memory.Swap}}
	if mem, memsw := st.Spec.MemoryLimit, st.Spec.MemorySwapLimit; mem != 0 && memsw > mem {
		avail := uint64(0)
		if limit := memsw - mem; limit > st.Memory.Swap {
			avail = limit - st.Memory.Swap
		}
		u.SwapAvailableBytes = &runtime.UInt64Value{Value: avail}
	}
	return u
}

// statsState is what stats keep between calls: the last CPU sample of
// each container and pod, from which usage_nano_cores is computed.
type statsState struct {
	containers, pods cpuSamples
}

// cpuSamples keeps the last cumulative CPU usage seen per ID, as
// containerd does: usage_nano_cores is the rate between two samples.
type cpuSamples struct {
	mu   sync.Mutex
	last map[string]cpuSample
}

type cpuSample struct {
	usage uint64
	at    int64
	// rate is usage_nano_cores between this sample and the one before,
	// if there was one: a list answering from a kept sample gets the same
	// sample again and reports the same rate.
	rate    uint64
	hasRate bool
}

// cpuUsage builds a CpuUsage from st and records it as id's latest sample.
// usage_nano_cores is left unset on the first sample (kubelet then
// computes it itself).
func (c *cpuSamples) cpuUsage(id string, st *cgroupmgr.Stats) *runtime.CpuUsage {
	u := &runtime.CpuUsage{
		Timestamp:            st.Timestamp.UnixNano(),
		UsageCoreNanoSeconds: &runtime.UInt64Value{Value: st.CPU.UsageNanos},
	}
	if nc, ok := c.sample(id, st.CPU.UsageNanos, u.Timestamp); ok {
		u.UsageNanoCores = &runtime.UInt64Value{Value: nc}
	}
	if st.PSI != nil {
		u.Psi = psiStats(st.PSI.CPU)
	}
	return u
}

// cpuReuse is how long a CPU reading serves the lists: kubelet's lists of
// pods and of containers come back to back and share one reading of each
// cgroup, while crictl stats' two lists, a second apart, get two.
const cpuReuse = 500 * time.Millisecond

// freshCPU returns st, a kept sample, with the cgroup's CPU usage and
// timestamp read anew (one file), or as read for id within cpuReuse: a
// rate needs two calls' timestamps to differ (crictl stats divides by
// their difference), and CPU is what kubelet computes a rate from. The
// rest (memory, I/O, pressure) stays as kept. st itself is returned when
// it is fresh already (done) or the read fails.
func (s *runtimeService) freshCPU(samples *cpuSamples, id string, st *cgroupmgr.Stats, path string, done bool) *cgroupmgr.Stats {
	if done {
		return st
	}
	cp := *st
	if n, at, ok := samples.recent(id, time.Now().Add(-cpuReuse)); ok {
		cp.CPU.UsageNanos, cp.Timestamp = n, at
		return &cp
	}
	n, at, err := s.opts.Cgroups.CPUUsage(path)
	if err != nil {
		return st
	}
	cp.CPU.UsageNanos, cp.Timestamp = n, at
	return &cp
}

// recent returns id's latest CPU sample if it was taken after since.
func (c *cpuSamples) recent(id string, since time.Time) (uint64, time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev, ok := c.last[id]
	if !ok || prev.at <= since.UnixNano() {
		return 0, time.Time{}, false
	}
	return prev.usage, time.Unix(0, prev.at), true
}

// sample records (usage, at) for id and returns the rate in nanocores
// since the previous sample, if there is one to compare with. The latest
// sample seen again gives the rate it gave the first time.
func (c *cpuSamples) sample(id string, usage uint64, at int64) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[string]cpuSample{}
	}
	prev, ok := c.last[id]
	if ok && at == prev.at && usage == prev.usage {
		return prev.rate, prev.hasRate
	}
	if ok && at <= prev.at {
		return 0, false // out of order: keep the newer sample
	}
	next := cpuSample{usage: usage, at: at}
	if ok && usage >= prev.usage { // else the cgroup was recreated
		next.rate, next.hasRate = uint64(float64(usage-prev.usage)/float64(at-prev.at)*float64(time.Second)), true
	}
	c.last[id] = next
	return next.rate, next.hasRate
}

// prune forgets every ID not in keep.
func (c *cpuSamples) prune(keep map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.last {
		if !keep[id] {
			delete(c.last, id)
		}
	}
}
