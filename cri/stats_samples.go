package cri

import (
	"context"
	"time"

	"github.com/crid-dev/crid/cgroupmgr"
	"github.com/crid-dev/crid/imageservice"
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
