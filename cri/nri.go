package cri

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/events"
	"github.com/crid-dev/crid/nri"
	"github.com/crid-dev/crid/oci"
	"github.com/crid-dev/crid/oci/specgen"
	"github.com/crid-dev/crid/panicguard"
	"github.com/crid-dev/crid/podsandbox"
)

// nriBridge is the CRI layer's side of NRI: it converts pods and
// containers into NRI's view, calls the plugins at each point of the
// lifecycle, applies the updates they ask for, and makes sure each
// container's stop reaches them once, whether a CRI call or the
// container's own exit stopped it.
type nriBridge struct {
	s *Server
	n *nri.NRI

	// stopMu serializes stop deliveries; stopped holds, for each
	// container whose stop the plugins got, its pod's ID.
	stopMu  sync.Mutex
	stopped map[string]string

	// The exit relay (startExitRelay) and its end.
	sub  *events.Subscription
	done chan struct{}
}

func newNRIBridge(s *Server, n *nri.NRI) *nriBridge {
	return &nriBridge{s: s, n: n, stopped: map[string]string{}}
}

// StartNRI starts NRI (when configured on): the pod lifecycle is wired
// to the plugins, pre-installed plugins are started and the socket
// listens. Call it after New and before Serve.
func (s *Server) StartNRI() error {
	b := s.nri
	if !b.n.Enabled() {
		return nil
	}
	s.opts.Sandboxes.SetLifecycle(podLifecycle{b})
	b.startExitRelay()
	if err := b.n.Start(nriDomain{b}); err != nil {
		b.stopExitRelay()
		return err
	}
	return nil
}

// StopNRI disconnects the plugins and ends the ones crid started.
func (s *Server) StopNRI() {
	s.nri.n.Stop()
	s.nri.stopExitRelay()
}

// startExitRelay tells the plugins about containers that exit on their
// own. Events are taken off the broadcaster at once (so it never drops
// this subscriber for being slow) and delivered in order by a worker, as
// a plugin may take up to its request timeout per event.
func (b *nriBridge) startExitRelay() {
	if b.s.opts.Events == nil {
		return
	}
	b.sub = b.s.opts.Events.Subscribe("nri-exit-relay", 256)
	b.done = make(chan struct{})
	q := newIDQueue()
	panicguard.Go("nri exit relay", func() {
		defer q.close()
		for ev := range b.sub.Events() {
			if ev.Type == events.ContainerStopped && !ev.Sandbox() {
				q.push(ev.ContainerID)
			}
		}
	})
	panicguard.Go("nri exit delivery", func() {
		defer close(b.done)
		for id, ok := q.pop(); ok; id, ok = q.pop() {
			b.deliverStop(context.Background(), id)
		}
	})
}

func (b *nriBridge) stopExitRelay() {
	if b.sub == nil {
		return
	}
	b.sub.Close()
	<-b.done
	b.sub = nil
}

// deliverStop tells the plugins that an exited container stopped, once.
func (b *nriBridge) deliverStop(ctx context.Context, id string) {
	if !b.n.Active() {
		return
	}
	b.stopMu.Lock()
	if _, done := b.stopped[id]; done {
		b.stopMu.Unlock()
		return
	}
	// Looked up under stopMu: a container removed meanwhile is gone here,
	// so its stop never reaches the plugins after its removal.
	ctr, err := b.s.opts.Containers.Get(ctx, id)
	if err != nil || ctr.State != oci.StateExited {
		b.stopMu.Unlock()
		return
	}
	b.stopped[id] = ctr.SandboxID
	updates, err := b.n.StopContainer(ctx, b.podOf(ctr.SandboxID), nriContainer(ctr))
	b.stopMu.Unlock()
	if err != nil {
		klog.ErrorS(err, "NRI plugins failed to handle a container's stop", "containerID", id)
	}
	b.applyUpdates(ctx, updates)
}

// forget drops the stop bookkeeping of removed containers.
func (b *nriBridge) forget(match func(id, sandboxID string) bool) {
	b.stopMu.Lock()
	defer b.stopMu.Unlock()
	maps.DeleteFunc(b.stopped, match)
}

// podOf is NRI's view of a pod, or of its ID alone when it is gone.
func (b *nriBridge) podOf(sandboxID string) *api.PodSandbox {
	sb, err := b.s.opts.Sandboxes.Get(sandboxID)
	if err != nil {
		return &api.PodSandbox{Id: sandboxID}
	}
	return nriPod(sb)
}

// createContainer runs the plugins' CreateContainer for a container about
// to be created from spec: their adjustment is applied to spec, and the
// config to record gets the resources they set. It returns that config
// and the updates they asked for other containers.
func (b *nriBridge) createContainer(ctx context.Context, sb *podsandbox.Sandbox, id string, cfg *runtime.ContainerConfig, spec *specs.Spec) (*runtime.ContainerConfig, []*api.ContainerUpdate, error) {
	if !b.n.Active() {
		return cfg, nil, nil
	}
	adjust, updates, err := b.n.CreateContainer(ctx, nriPod(sb), nriContainerFromSpec(id, sb.ID, cfg, spec))
	if err != nil {
		b.undoCreate(ctx, sb, id, cfg, spec) // plugins before the failing one saw it
		return nil, nil, err
	}
	if adjust == nil {
		return cfg, updates, nil
	}
	if err := nri.AdjustSpec(spec, adjust, b.n.InjectCDI); err != nil {
		b.undoCreate(ctx, sb, id, cfg, spec)
		return nil, nil, fmt.Errorf("%w: CreateContainer: %w", nri.ErrPlugin, err)
	}
	res, oom := adjust.GetLinux().GetResources(), adjust.GetLinux().GetOomScoreAdj()
	if res == nil && oom == nil {
		return cfg, updates, nil
	}
	cfg = proto.Clone(cfg).(*runtime.ContainerConfig)
	if cfg.Linux == nil {
		cfg.Linux = &runtime.LinuxContainerConfig{}
	}
	if cfg.Linux.Resources == nil {
		cfg.Linux.Resources = &runtime.LinuxContainerResources{}
	}
	overlayResources(cfg.Linux.Resources, res)
	if oom != nil {
		cfg.Linux.Resources.OomScoreAdj = int64(oom.GetValue())
	}
	return cfg, updates, nil
}

// undoCreate tells the plugins that a container they saw created will
// not exist after all.
func (b *nriBridge) undoCreate(ctx context.Context, sb *podsandbox.Sandbox, id string, cfg *runtime.ContainerConfig, spec *specs.Spec) {
	if !b.n.Active() {
		return
	}
	pod, ctr := nriPod(sb), nriContainerFromSpec(id, sb.ID, cfg, spec)
	ctr.State = api.ContainerState_CONTAINER_STOPPED
	if _, err := b.n.StopContainer(ctx, pod, ctr); err != nil {
		klog.ErrorS(err, "Telling NRI plugins a failed container stopped", "containerID", id)
	}
	if err := b.n.RemoveContainer(ctx, pod, ctr); err != nil {
		klog.ErrorS(err, "Telling NRI plugins a failed container is gone", "containerID", id)
	}
}

// postCreate tells the plugins a container exists, and applies the
// updates their CreateContainer asked for other containers.
func (b *nriBridge) postCreate(ctx context.Context, id string, updates []*api.ContainerUpdate) {
	if !b.n.Active() {
		return
	}
	b.applyUpdates(ctx, updates)
	if ctr, err := b.s.opts.Containers.Get(ctx, id); err == nil {
		if err := b.n.PostCreateContainer(ctx, b.podOf(ctr.SandboxID), nriContainer(ctr)); err != nil {
			klog.ErrorS(err, "NRI plugins failed to handle PostCreateContainer", "containerID", id)
		}
	}
}

// startContainer starts a created container, with the plugins told
// before (an error there fails the start; the container stays created)
// and after.
func (b *nriBridge) startContainer(ctx context.Context, idOrPrefix string) error {
	if !b.n.Active() {
		return b.s.opts.Containers.Start(ctx, idOrPrefix)
	}
	ctr, err := b.s.opts.Containers.Get(ctx, idOrPrefix)
	if err != nil {
		return err
	}
	if ctr.State != oci.StateCreated {
		return b.s.opts.Containers.Start(ctx, ctr.ID) // says why it cannot start
	}
	pod := b.podOf(ctr.SandboxID)
	if err := b.n.StartContainer(ctx, pod, nriContainer(ctr)); err != nil {
		return err
	}
	if err := b.s.opts.Containers.Start(ctx, ctr.ID); err != nil {
		return err
	}
	if ctr, err := b.s.opts.Containers.Get(ctx, ctr.ID); err == nil {
		if err := b.n.PostStartContainer(ctx, pod, nriContainer(ctr)); err != nil {
			klog.ErrorS(err, "NRI plugins failed to handle PostStartContainer", "containerID", ctr.ID)
		}
	}
	return nil
}

// stopContainer stops a container and tells the plugins before returning.
func (b *nriBridge) stopContainer(ctx context.Context, idOrPrefix string, timeout time.Duration) error {
	if !b.n.Active() {
		return b.s.opts.Containers.Stop(ctx, idOrPrefix, timeout)
	}
	ctr, err := b.s.opts.Containers.Get(ctx, idOrPrefix)
	if errors.Is(err, oci.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := b.s.opts.Containers.Stop(ctx, ctr.ID, timeout); err != nil {
		return err
	}
	b.deliverStop(ctx, ctr.ID)
	return nil
}

// removeContainer removes a container; the plugins see it stop (if it
// still ran) and then go.
func (b *nriBridge) removeContainer(ctx context.Context, idOrPrefix string) error {
	if !b.n.Active() {
		err := b.s.opts.Containers.Remove(ctx, idOrPrefix)
		if err == nil { // a stop the plugins got before they all left
			b.forget(func(id, _ string) bool { return strings.HasPrefix(id, idOrPrefix) })
		}
		return err
	}
	ctr, err := b.s.opts.Containers.Get(ctx, idOrPrefix)
	if errors.Is(err, oci.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := b.s.opts.Containers.Stop(ctx, ctr.ID, 0); err != nil {
		return err
	}
	b.deliverStop(ctx, ctr.ID)
	if ctr, err = b.s.opts.Containers.Get(ctx, ctr.ID); err != nil {
		return err
	}
	if err := b.s.opts.Containers.Remove(ctx, ctr.ID); err != nil {
		return err
	}
	b.forget(func(id, _ string) bool { return id == ctr.ID })
	if err := b.n.RemoveContainer(ctx, b.podOf(ctr.SandboxID), nriContainer(ctr)); err != nil {
		klog.ErrorS(err, "NRI plugins failed to handle RemoveContainer", "containerID", ctr.ID)
	}
	return nil
}

// removePodContainers stops a pod and removes its containers through
// removeContainer, so plugins see them stop and go before the pod does,
// in containerd's order: containers stopped, pod stopped, containers
// removed, pod removed.
func (b *nriBridge) removePodContainers(ctx context.Context, idOrPrefix string) error {
	if !b.n.Active() {
		return nil
	}
	sb, err := b.s.opts.Sandboxes.Get(idOrPrefix)
	if errors.Is(err, podsandbox.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := b.s.opts.Sandboxes.Stop(ctx, sb.ID); err != nil {
		return err
	}
	var errs []error
	for _, id := range b.s.opts.Containers.InSandbox(sb.ID) {
		errs = append(errs, b.removeContainer(ctx, id))
	}
	return errors.Join(errs...)
}

// updateContainer asks the plugins about new resources for a container
// and returns the ones to apply (the request's, overlaid with what the
// plugins set); the updates they ask for other containers are applied.
func (b *nriBridge) updateContainer(ctx context.Context, idOrPrefix string, linux *runtime.LinuxContainerResources) (*runtime.LinuxContainerResources, error) {
	if !b.n.Active() {
		return linux, nil
	}
	ctr, err := b.s.opts.Containers.Get(ctx, idOrPrefix)
	if err != nil {
		return nil, err
	}
	req, err := nriResources(linux)
	if err != nil {
		return nil, err
	}
	res, others, err := b.n.UpdateContainer(ctx, b.podOf(ctr.SandboxID), nriContainer(ctr), req)
	if err != nil {
		return nil, err
	}
	out := proto.Clone(linux).(*runtime.LinuxContainerResources)
	overlayResources(out, res)
	if err := validateResources("linux (as NRI plugins adjusted it)", out); err != nil {
		return nil, err
	}
	b.applyUpdates(ctx, others)
	return out, nil
}

// postUpdateContainer tells the plugins a container's resources changed.
func (b *nriBridge) postUpdateContainer(ctx context.Context, idOrPrefix string) {
	if !b.n.Active() {
		return
	}
	if ctr, err := b.s.opts.Containers.Get(ctx, idOrPrefix); err == nil {
		if err := b.n.PostUpdateContainer(ctx, b.podOf(ctr.SandboxID), nriContainer(ctr)); err != nil {
			klog.ErrorS(err, "NRI plugins failed to handle PostUpdateContainer", "containerID", ctr.ID)
		}
	}
}

// updatePod asks the plugins about a pod's new resources (an error fails
// the update); after is called once they are applied.
func (b *nriBridge) updatePod(ctx context.Context, sb *podsandbox.Sandbox, overhead, resources *runtime.LinuxContainerResources) (after func(), err error) {
	if !b.n.Active() {
		return func() {}, nil
	}
	ov, err := nriResources(overhead)
	if err != nil {
		return nil, err
	}
	res, err := nriResources(resources)
	if err != nil {
		return nil, err
	}
	if err := b.n.UpdatePodSandbox(ctx, nriPod(sb), ov, res); err != nil {
		return nil, err
	}
	return func() {
		if err := b.n.PostUpdatePodSandbox(ctx, b.podOf(sb.ID)); err != nil {
			klog.ErrorS(err, "NRI plugins failed to handle PostUpdatePodSandbox", "podSandboxID", sb.ID)
		}
	}, nil
}

// applyUpdates applies updates plugins asked for as part of an event;
// failures are logged (the event's own call has succeeded).
func (b *nriBridge) applyUpdates(ctx context.Context, updates []*api.ContainerUpdate) {
	if len(updates) == 0 {
		return
	}
	if failed, err := (nriDomain{b}).UpdateContainers(ctx, updates); err != nil {
		klog.ErrorS(err, "Applying container updates NRI plugins asked for", "failed", len(failed))
	}
}

// nriDomain is what NRI may ask of crid outside an event.
type nriDomain struct{ b *nriBridge }

// Snapshot lists every pod and container for a plugin's Synchronize.
func (d nriDomain) Snapshot(ctx context.Context) ([]*api.PodSandbox, []*api.Container, error) {
	var pods []*api.PodSandbox
	for _, sb := range d.b.s.opts.Sandboxes.List(podsandbox.Filter{}) {
		pods = append(pods, nriPod(sb))
	}
	var ctrs []*api.Container
	for _, c := range d.b.s.opts.Containers.List(ctx, oci.Filter{}) {
		ctrs = append(ctrs, nriContainer(c))
	}
	return pods, ctrs, nil
}

// UpdateContainers applies plugin-requested resource updates through
// the same path as UpdateContainerResources (without asking the plugins
// again). Failures of updates marked ignore_failure are only logged.
func (d nriDomain) UpdateContainers(ctx context.Context, updates []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	var (
		failed []*api.ContainerUpdate
		errs   []error
	)
	for _, u := range updates {
		res := u.GetLinux().GetResources()
		if res == nil {
			continue
		}
		linux := &runtime.LinuxContainerResources{}
		overlayResources(linux, res)
		err := validateResources("linux", linux)
		if err == nil {
			err = d.b.s.applyContainerResources(ctx, u.ContainerId, linux)
		}
		if err == nil {
			continue
		}
		err = fmt.Errorf("container %s: %w", u.ContainerId, err)
		if u.IgnoreFailure {
			klog.InfoS("Ignoring a failed NRI container update, as the plugin allowed", "containerID", u.ContainerId, "err", err)
			continue
		}
		failed = append(failed, u)
		errs = append(errs, err)
	}
	return failed, errors.Join(errs...)
}

// podLifecycle wires the sandbox manager's lifecycle to NRI.
type podLifecycle struct{ b *nriBridge }

// Ready tells the plugins about the pod before it becomes visible, and
// holds off plugin synchronization until it is: a plugin connecting
// meanwhile then finds the pod in its Synchronize.
func (l podLifecycle) Ready(ctx context.Context, sb *podsandbox.Sandbox) (func(), error) {
	unblock := l.b.n.BlockSync()
	if !l.b.n.Active() {
		return unblock, nil
	}
	pod := nriPod(sb)
	if err := l.b.n.RunPodSandbox(ctx, pod); err != nil {
		// Plugins before the failing one saw the pod: tell them it went.
		if err := l.b.n.StopPodSandbox(ctx, pod); err != nil {
			klog.ErrorS(err, "Telling NRI plugins a failed pod stopped", "podSandboxID", sb.ID)
		}
		if err := l.b.n.RemovePodSandbox(ctx, pod); err != nil {
			klog.ErrorS(err, "Telling NRI plugins a failed pod is gone", "podSandboxID", sb.ID)
		}
		unblock()
		return nil, err
	}
	return unblock, nil
}

// Stopping tells the plugins the pod's containers stopped, then the pod.
func (l podLifecycle) Stopping(ctx context.Context, sb *podsandbox.Sandbox) {
	if !l.b.n.Active() {
		return
	}
	for _, id := range l.b.s.opts.Containers.InSandbox(sb.ID) {
		l.b.deliverStop(ctx, id)
	}
	if err := l.b.n.StopPodSandbox(ctx, nriPod(sb)); err != nil {
		klog.ErrorS(err, "NRI plugins failed to handle StopPodSandbox", "podSandboxID", sb.ID)
	}
}

// Removed tells the plugins the pod is gone.
func (l podLifecycle) Removed(ctx context.Context, sb *podsandbox.Sandbox) {
	l.b.forget(func(_, sandboxID string) bool { return sandboxID == sb.ID })
	if !l.b.n.Active() {
		return
	}
	if err := l.b.n.RemovePodSandbox(ctx, nriPod(sb)); err != nil {
		klog.ErrorS(err, "NRI plugins failed to handle RemovePodSandbox", "podSandboxID", sb.ID)
	}
}

// nriPod is NRI's view of a pod.
func nriPod(sb *podsandbox.Sandbox) *api.PodSandbox {
	md := sb.Config.GetMetadata()
	pod := &api.PodSandbox{
		Id:             sb.ID,
		Name:           md.GetName(),
		Uid:            md.GetUid(),
		Namespace:      md.GetNamespace(),
		Labels:         maps.Clone(sb.Config.GetLabels()),
		Annotations:    maps.Clone(sb.Config.GetAnnotations()),
		RuntimeHandler: sb.RuntimeHandler,
		Pid:            uint32(sb.InfraPid),
		Ips:            append([]string(nil), sb.IPs...),
		Linux: &api.LinuxPodSandbox{
			CgroupParent: sb.CgroupParent,
			CgroupsPath:  sb.CgroupParent,
		},
	}
	for kind, path := range sb.Namespaces {
		if kind == "net" {
			kind = "network"
		}
		pod.Linux.Namespaces = append(pod.Linux.Namespaces, &api.LinuxNamespace{Type: kind, Path: path})
	}
	// Resources that do not convert (refused at RunPodSandbox anyway)
	// are left out of the view.
	pod.Linux.PodOverhead, _ = nriResources(sb.Config.GetLinux().GetOverhead())
	pod.Linux.PodResources, _ = nriResources(sb.Config.GetLinux().GetResources())
	return pod
}

// nriContainer is NRI's view of a container crid has (created or later).
func nriContainer(c *oci.Container) *api.Container {
	ctr := &api.Container{
		Id:            c.ID,
		PodSandboxId:  c.SandboxID,
		Name:          c.Config.GetMetadata().GetName(),
		State:         nriState(c.State),
		Labels:        maps.Clone(c.Config.GetLabels()),
		Annotations:   maps.Clone(c.Config.GetAnnotations()),
		CreatedAt:     c.CreatedAt,
		StartedAt:     c.StartedAt,
		FinishedAt:    c.FinishedAt,
		ExitCode:      c.ExitCode,
		StatusReason:  c.Reason,
		StatusMessage: c.Message,
		Linux:         &api.LinuxContainer{CgroupsPath: c.CgroupsPath},
	}
	if p := c.Process; p != nil {
		ctr.Args, ctr.Env = append([]string(nil), p.Args...), append([]string(nil), p.Env...)
		ctr.User = &api.User{Uid: p.User.UID, Gid: p.User.GID, AdditionalGids: append([]uint32(nil), p.User.AdditionalGids...)}
		if p.OOMScoreAdj != nil {
			ctr.Linux.OomScoreAdj = api.Int(*p.OOMScoreAdj)
		}
	}
	ctr.Linux.Resources, _ = nriResources(c.Resources)
	return ctr
}

// nriContainerFromSpec is NRI's view of a container about to be created
// from spec.
func nriContainerFromSpec(id, sandboxID string, cfg *runtime.ContainerConfig, spec *specs.Spec) *api.Container {
	ctr := &api.Container{
		Id:           id,
		PodSandboxId: sandboxID,
		Name:         cfg.GetMetadata().GetName(),
		State:        api.ContainerState_CONTAINER_CREATED,
		Labels:       maps.Clone(cfg.GetLabels()),
		Annotations:  maps.Clone(spec.Annotations),
		Mounts:       api.FromOCIMounts(spec.Mounts),
		Hooks:        api.FromOCIHooks(spec.Hooks),
	}
	if p := spec.Process; p != nil {
		ctr.Args, ctr.Env = append([]string(nil), p.Args...), append([]string(nil), p.Env...)
		ctr.User = &api.User{Uid: p.User.UID, Gid: p.User.GID, AdditionalGids: append([]uint32(nil), p.User.AdditionalGids...)}
		for _, r := range p.Rlimits {
			ctr.Rlimits = append(ctr.Rlimits, &api.POSIXRlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
		}
	}
	if l := spec.Linux; l != nil {
		ctr.Linux = &api.LinuxContainer{
			Namespaces:  api.FromOCILinuxNamespaces(l.Namespaces),
			Devices:     api.FromOCILinuxDevices(l.Devices),
			Resources:   api.FromOCILinuxResources(l.Resources, nil),
			CgroupsPath: l.CgroupsPath,
			Sysctl:      maps.Clone(l.Sysctl),
			SeccompPolicy: func() *api.LinuxSeccomp {
				if l.Seccomp == nil {
					return nil
				}
				return api.FromOCILinuxSeccomp(l.Seccomp)
			}(),
		}
		if spec.Process != nil && spec.Process.OOMScoreAdj != nil {
			ctr.Linux.OomScoreAdj = api.Int(*spec.Process.OOMScoreAdj)
		}
	}
	return ctr
}

func nriState(s string) api.ContainerState {
	switch s {
	case oci.StateCreated:
		return api.ContainerState_CONTAINER_CREATED
	case oci.StateRunning:
		return api.ContainerState_CONTAINER_RUNNING
	case oci.StateExited:
		return api.ContainerState_CONTAINER_STOPPED
	}
	return api.ContainerState_CONTAINER_UNKNOWN
}

// nriResources is NRI's view of CRI resources; nil stays nil.
func nriResources(r *runtime.LinuxContainerResources) (*api.LinuxResources, error) {
	if r == nil {
		return nil, nil
	}
	res, err := specgen.Resources(r)
	if err != nil {
		return nil, err
	}
	return api.FromOCILinuxResources(res, nil), nil
}

// overlayResources sets in dst every field r sets.
func overlayResources(dst *runtime.LinuxContainerResources, r *api.LinuxResources) {
	if r == nil {
		return
	}
	if c := r.GetCpu(); c != nil {
		if v := c.GetShares(); v != nil {
			dst.CpuShares = int64(v.GetValue())
		}
		if v := c.GetQuota(); v != nil {
			dst.CpuQuota = v.GetValue()
		}
		if v := c.GetPeriod(); v != nil {
			dst.CpuPeriod = int64(v.GetValue())
		}
		if c.Cpus != "" {
			dst.CpusetCpus = c.Cpus
		}
		if c.Mems != "" {
			dst.CpusetMems = c.Mems
		}
	}
	if m := r.GetMemory(); m != nil {
		if v := m.GetLimit(); v != nil {
			dst.MemoryLimitInBytes = v.GetValue()
		}
		if v := m.GetSwap(); v != nil {
			dst.MemorySwapLimitInBytes = v.GetValue()
		}
	}
	for _, h := range r.GetHugepageLimits() {
		replaced := false
		for _, d := range dst.HugepageLimits {
			if d.PageSize == h.PageSize {
				d.Limit, replaced = h.Limit, true
			}
		}
		if !replaced {
			dst.HugepageLimits = append(dst.HugepageLimits, &runtime.HugepageLimit{PageSize: h.PageSize, Limit: h.Limit})
		}
	}
	if len(r.GetUnified()) > 0 {
		if dst.Unified == nil {
			dst.Unified = map[string]string{}
		}
		maps.Copy(dst.Unified, r.GetUnified())
	}
}

// idQueue is an unbounded FIFO of container IDs between the exit relay's
// reader and its worker.
type idQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	ids    []string
	closed bool
}

func newIDQueue() *idQueue {
	q := &idQueue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *idQueue) push(id string) {
	q.mu.Lock()
	q.ids = append(q.ids, id)
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *idQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Signal()
}

// pop waits for the next ID; ok is false once the queue is closed and empty.
func (q *idQueue) pop() (id string, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.ids) == 0 && !q.closed {
		q.cond.Wait()
	}
	if len(q.ids) == 0 {
		return "", false
	}
	id, q.ids = q.ids[0], q.ids[1:]
	return id, true
}
