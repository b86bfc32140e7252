package cri

import (
	"context"
	"time"

	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/oci"
	"github.com/crid-dev/crid/podsandbox"
)

// PodSandboxStats reports a pod's usage: its cgroup's CPU, memory and
// processes, its network namespace's interfaces, and its containers.
func (s *runtimeService) PodSandboxStats(ctx context.Context, req *runtime.PodSandboxStatsRequest) (*runtime.PodSandboxStatsResponse, error) {
	sb, err := s.opts.Sandboxes.Get(req.PodSandboxId)
	if err != nil {
		return nil, toStatus(err)
	}
	return &runtime.PodSandboxStatsResponse{Stats: s.sandboxStats(sb, s.containersByPod(ctx, sb.ID)[sb.ID], true)}, nil
}

// ListPodSandboxStats reports the stats of the pods matching the filter
// (ID or ID prefix, labels). The samples are up to a stats period old.
func (s *runtimeService) ListPodSandboxStats(ctx context.Context, req *runtime.ListPodSandboxStatsRequest) (*runtime.ListPodSandboxStatsResponse, error) {
	return &runtime.ListPodSandboxStatsResponse{Stats: s.listSandboxStats(ctx, req.GetFilter())}, nil
}

// StreamPodSandboxStats is ListPodSandboxStats in batches.
func (s *runtimeService) StreamPodSandboxStats(req *runtime.StreamPodSandboxStatsRequest, stream grpc.ServerStreamingServer[runtime.StreamPodSandboxStatsResponse]) error {
	stats := s.listSandboxStats(stream.Context(), req.GetFilter())
	return sendBatches(stats, func(b []*runtime.PodSandboxStats) error {
		return stream.Send(&runtime.StreamPodSandboxStatsResponse{PodSandboxStats: b})
	})
}

func (s *runtimeService) listSandboxStats(ctx context.Context, f *runtime.PodSandboxStatsFilter) []*runtime.PodSandboxStats {
	sbs := s.opts.Sandboxes.List(podsandbox.Filter{ID: f.GetId(), Selector: f.GetLabelSelector()})
	byPod := s.containersByPod(ctx, "")
	s.samples.warm(sbs, byPod, false)
	out := make([]*runtime.PodSandboxStats, 0, len(sbs))
	for _, sb := range sbs {
		out = append(out, s.sandboxStats(sb, byPod[sb.ID], false))
	}
	if f.GetId() == "" && len(f.GetLabelSelector()) == 0 {
		keep := make(map[string]bool, len(sbs))
		for _, sb := range sbs {
			keep[sb.ID] = true
		}
		s.stats.pods.prune(keep)
	}
	return out
}

// containersByPod lists the containers of pod (every pod's when empty),
// by pod, with one pass over the containers: a list per pod made the stats
// of every pod O(pods × containers).
func (s *runtimeService) containersByPod(ctx context.Context, pod string) map[string][]*oci.Container {
	out := map[string][]*oci.Container{}
	for _, c := range s.opts.Containers.List(ctx, oci.Filter{SandboxID: pod}) {
		if pod == "" || c.SandboxID == pod { // the filter is a prefix
			out[c.SandboxID] = append(out[c.SandboxID], c)
		}
	}
	return out
}

// sandboxStats reports pod sb with its containers ctrs, from fresh samples
// or kept ones.
func (s *runtimeService) sandboxStats(sb *podsandbox.Sandbox, ctrs []*oci.Container, fresh bool) *runtime.PodSandboxStats {
	linux := &runtime.LinuxPodSandboxStats{}
	stopped := sb.State != podsandbox.StateReady
	if st := s.cgroupStats(sb.CgroupParent, "podSandboxID", sb.ID, fresh, stopped); st != nil {
		linux.Cpu = s.stats.pods.cpuUsage(sb.ID, s.freshCPU(&s.stats.pods, sb.ID, st, sb.CgroupParent, fresh || stopped))
		linux.Memory = memoryUsage(st)
		linux.Io = ioUsage(st)
		// pids.current: every task of the pod, as containerd reports.
		linux.Process = &runtime.ProcessUsage{Timestamp: st.Timestamp.UnixNano(), ProcessCount: &runtime.UInt64Value{Value: st.Pids.Current}}
	}
	linux.Network = s.networkUsage(sb, fresh)
	for _, c := range ctrs {
		linux.Containers = append(linux.Containers, s.containerStats(c, fresh))
	}
	return &runtime.PodSandboxStats{
		Attributes: &runtime.PodSandboxAttributes{Id: sb.ID, Metadata: sb.Config.Metadata, Labels: sb.Config.Labels, Annotations: sb.Config.Annotations},
		Linux:      linux,
	}
}

// networkUsage reads the pod's interfaces, eth0 as the default one. A
// host-network pod (no namespace of its own) has none, as with containerd.
func (s *runtimeService) networkUsage(sb *podsandbox.Sandbox, fresh bool) *runtime.NetworkUsage {
	ifs, at := s.podInterfaces(sb, fresh)
	if ifs == nil {
		return nil
	}
	u := &runtime.NetworkUsage{Timestamp: at.UnixNano()}
	for _, i := range ifs {
		iu := &runtime.NetworkInterfaceUsage{
			Name:    i.Name,
			RxBytes: &runtime.UInt64Value{Value: i.RxBytes}, RxErrors: &runtime.UInt64Value{Value: i.RxErrors},
			TxBytes: &runtime.UInt64Value{Value: i.TxBytes}, TxErrors: &runtime.UInt64Value{Value: i.TxErrors},
		}
		if i.Name == podsandbox.DefaultInterface {
			u.DefaultInterface = iu
		} else {
			u.Interfaces = append(u.Interfaces, iu)
		}
	}
	return u
}

// podInterfaces reads the counters of the pod's interfaces (fresh, or as
// kept) and when they were read; nil for a host-network or stopped pod, or
// a namespace that cannot be read (logged).
func (s *runtimeService) podInterfaces(sb *podsandbox.Sandbox, fresh bool) ([]podsandbox.InterfaceStats, time.Time) {
	ns := sb.NetNS()
	if ns == "" || sb.HostNetwork() || sb.State != podsandbox.StateReady {
		return nil, time.Time{}
	}
	ifs, at, err := sample(s.samples.nets, ns, fresh, false)
	if err != nil {
		klog.ErrorS(err, "Reading pod network stats", "podSandboxID", sb.ID)
		return nil, time.Time{}
	}
	if ifs == nil {
		ifs = []podsandbox.InterfaceStats{}
	}
	return ifs, at
}
