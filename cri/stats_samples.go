package cri

import (
	"context"
	goruntime "runtime"
	"time"

	"github.com/crid-dev/crid/cgroupmgr"
	"github.com/crid-dev/crid/imageservice"
	"github.com/crid-dev/crid/oci"
	"github.com/crid-dev/crid/podsandbox"
	"github.com/crid-dev/crid/samplecache"
)

// statSamples are what the stats lists read: samples kept and retaken in
// the background (config [stats] period), so that a list at 1,000 pods is
// a lookup per item. The single ContainerStats and PodSandboxStats take
// fresh samples, and keep them for the lists.
type statSamples struct {
	period time.Duration
	// cgroups and procs are by cgroup path, layers by container ID,
	// nets by the pod's network namespace path.
	cgroups *samplecache.Cache[*cgroupmgr.Stats]
	procs   *samplecache.Cache[cgroupmgr.ProcessStats]
	layers  *samplecache.Cache[imageservice.FsUsage]
	nets    *samplecache.Cache[[]podsandbox.InterfaceStats]
}

func newStatSamples(opts Options) *statSamples {
	p := opts.Config.Stats.Period.Std()
	return &statSamples{
		period:  p,
		cgroups: samplecache.New(p, opts.Cgroups.Stats),
		procs:   samplecache.New(p, opts.Cgroups.Processes),
		layers:  samplecache.New(p, opts.Images.ContainerUsage),
		nets:    samplecache.New(p, podsandbox.NetworkStats),
	}
}

// run retakes the samples until ctx ends.
func (s *statSamples) run(ctx context.Context) {
	samplecache.Run(ctx, s.period, s.cgroups, s.procs, s.layers, s.nets)
}

// sample reads key through c: anew when fresh (a single stats RPC),
// otherwise the kept sample. settled says what key names no longer
// changes (an exited container, a stopped pod).
func sample[V any](c *samplecache.Cache[V], key string, fresh, settled bool) (V, time.Time, error) {
	if fresh {
		return c.Fresh(key, settled)
	}
	return c.Get(key, settled)
}

// warmWorkers is how many samples a list takes at once for the keys the
// caches do not hold yet (a list after a restart holds none).
var warmWorkers = max(2, goruntime.NumCPU())

// warmContainers takes, in parallel, the samples a list of ctrs will ask
// for that are not kept yet; procs too for the metrics.
func (s *statSamples) warmContainers(ctrs []*oci.Container, procs bool) {
	paths := make([]string, 0, len(ctrs))
	ids := make([]string, 0, len(ctrs))
	for _, c := range ctrs {
		if c.CgroupsPath != "" {
			paths = append(paths, c.CgroupsPath)
		}
		ids = append(ids, c.ID)
	}
	s.cgroups.Warm(paths, warmWorkers)
	s.layers.Warm(ids, warmWorkers)
	if procs {
		s.procs.Warm(paths, warmWorkers)
	}
}

// warm takes what a list of pods sbs, with their containers by pod, will
// ask for (procs too for the metrics).
func (s *statSamples) warm(sbs []*podsandbox.Sandbox, byPod map[string][]*oci.Container, procs bool) {
	s.warmPods(sbs)
	var ctrs []*oci.Container
	for _, sb := range sbs {
		ctrs = append(ctrs, byPod[sb.ID]...)
	}
	s.warmContainers(ctrs, procs)
}

// warmPods is warmContainers for pods: their cgroups and networks.
func (s *statSamples) warmPods(sbs []*podsandbox.Sandbox) {
	paths := make([]string, 0, len(sbs))
	var nets []string
	for _, sb := range sbs {
		if sb.CgroupParent != "" {
			paths = append(paths, sb.CgroupParent)
		}
		if ns := sb.NetNS(); ns != "" && !sb.HostNetwork() && sb.State == podsandbox.StateReady {
			nets = append(nets, ns)
		}
	}
	s.cgroups.Warm(paths, warmWorkers)
	s.nets.Warm(nets, warmWorkers)
}
