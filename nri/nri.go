// Package nri connects crid to NRI plugins (the Node Resource Interface,
// github.com/containerd/nri, the adaptation library containerd and CRI-O
// use). It runs the adaptation that external plugins register with on a
// unix socket and that starts the pre-installed ones, relays the pod and
// container lifecycle to them, and turns their answers into runtime-spec
// adjustments and container updates.
//
// It speaks NRI's types and the OCI spec only: the CRI layer converts its
// pods and containers into them and calls in at each point of the
// lifecycle (arrows: cri -> nri). What NRI needs from the runtime in the
// other direction (the pods and containers for a plugin's Synchronize, and
// the updates a plugin asks for on its own) comes through Domain.
package nri

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	nrilog "github.com/containerd/nri/pkg/log"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/config"
)

// Domain is what plugins may ask of the runtime outside a lifecycle event.
type Domain interface {
	// Snapshot returns every pod and container (not those being created
	// or removed), for a plugin that has just connected.
	Snapshot(ctx context.Context) ([]*api.PodSandbox, []*api.Container, error)
	// UpdateContainers applies resource updates through crid's normal
	// update path; it returns the updates that failed and were not
	// marked ignore_failure, with an error saying why.
	UpdateContainers(ctx context.Context, updates []*api.ContainerUpdate) ([]*api.ContainerUpdate, error)
}

// NRI is crid's side of NRI. A disabled or not yet started NRI answers
// every call at once without error, so callers need no checks of their own.
type NRI struct {
	cfg     config.NRI
	name    string
	version string

	a       atomic.Pointer[adaptation.Adaptation]
	plugins atomic.Int64 // plugins registered, as the adaptation counts them
}

// setLogger sends NRI's logging to klog, once per process: the library's
// logger is a global its goroutines read.
var setLogger sync.Once

// New returns crid's NRI, not yet serving: Start does.
func New(cfg config.NRI, runtimeName, runtimeVersion string) *NRI {
	setLogger.Do(func() { nrilog.Set(klogLogger{}) })
	return &NRI{cfg: cfg, name: runtimeName, version: runtimeVersion}
}

// Enabled reports whether NRI is configured on.
func (n *NRI) Enabled() bool { return n != nil && n.cfg.Enable }

// CheckSocket fails when NRI is on and another live process serves its
// socket; the daemon calls it before it sets anything up.
func (n *NRI) CheckSocket() error {
	if !n.Enabled() {
		return nil
	}
	return socketFree(n.cfg.SocketPath)
}

// Start launches the pre-installed plugins and listens for external ones.
// A socket path that another live process serves is refused rather than
// taken over: the adaptation would remove it and listen in its place.
func (n *NRI) Start(d Domain) error {
	if !n.Enabled() {
		return nil
	}
	if err := socketFree(n.cfg.SocketPath); err != nil {
		return err
	}
	adaptation.SetPluginRegistrationTimeout(n.cfg.PluginRegistrationTimeout.Std())
	adaptation.SetPluginRequestTimeout(n.cfg.PluginRequestTimeout.Std())
	syncFn := func(ctx context.Context, cb adaptation.SyncCB) error {
		pods, ctrs, err := d.Snapshot(ctx)
		if err != nil {
			return fmt.Errorf("list pods and containers for NRI synchronization: %w", err)
		}
		updates, err := cb(ctx, pods, ctrs)
		if err != nil {
			return err
		}
		if failed, err := d.UpdateContainers(ctx, updates); err != nil {
			klog.ErrorS(err, "Applying the container updates an NRI plugin asked for at synchronization", "failed", len(failed))
		}
		return nil
	}
	a, err := adaptation.New(n.name, n.version, syncFn, d.UpdateContainers,
		adaptation.WithPluginPath(n.cfg.PluginPath),
		adaptation.WithPluginConfigPath(n.cfg.PluginConfigPath),
		adaptation.WithSocketPath(n.cfg.SocketPath),
		adaptation.WithMetrics(pluginCounter{n}),
	)
	if err != nil {
		return fmt.Errorf("nri: %w", err)
	}
	if err := a.Start(); err != nil {
		return fmt.Errorf("nri: start (nri.plugin_path %s, nri.socket_path %s): %w", n.cfg.PluginPath, n.cfg.SocketPath, err)
	}
	n.a.Store(a)
	klog.InfoS("NRI serving", "socket", n.cfg.SocketPath, "pluginPath", n.cfg.PluginPath,
		"requestTimeout", n.cfg.PluginRequestTimeout.Std(), "registrationTimeout", n.cfg.PluginRegistrationTimeout.Std())
	return nil
}

// Stop closes the socket and every plugin connection, and ends the
// plugins crid started.
func (n *NRI) Stop() {
	if n == nil {
		return
	}
	if a := n.a.Swap(nil); a != nil {
		a.Stop()
	}
}

// socketFree fails when a live process accepts connections on path.
func socketFree(path string) error {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil // absent, or a stale file nobody serves: the adaptation replaces it
	}
	c.Close()
	return fmt.Errorf("config: nri.socket_path: %s is served by another live process (another runtime's NRI?); name another path or set nri.enable = false", path)
}

// active returns the adaptation when at least one plugin is registered:
// with none, events are not even built into requests.
func (n *NRI) active() *adaptation.Adaptation {
	if n == nil || n.plugins.Load() == 0 {
		return nil
	}
	return n.a.Load()
}

// Active reports whether a plugin is registered, so callers can skip
// building NRI's view of a pod or container no one will read.
func (n *NRI) Active() bool { return n.active() != nil }

// BlockSync holds off the synchronization of plugins that connect from
// now on until the returned function is called. A container is created,
// or a pod made ready, under it: a plugin then either receives the event
// or finds the object in its Synchronize, never neither.
func (n *NRI) BlockSync() (unblock func()) {
	if n == nil {
		return func() {}
	}
	a := n.a.Load()
	if a == nil {
		return func() {}
	}
	b := a.BlockPluginSync()
	return b.Unblock
}

// RunPodSandbox tells the plugins a pod is set up; an error (a plugin
// refused it) must fail the pod's creation.
func (n *NRI) RunPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	a := n.active()
	if a == nil {
		return nil
	}
	return wrap("RunPodSandbox", a.RunPodSandbox(ctx, &api.RunPodSandboxRequest{Pod: pod}))
}

// UpdatePodSandbox tells the plugins a pod's resources change, before
// they are applied; an error fails the update.
func (n *NRI) UpdatePodSandbox(ctx context.Context, pod *api.PodSandbox, overhead, resources *api.LinuxResources) error {
	a := n.active()
	if a == nil {
		return nil
	}
	_, err := a.UpdatePodSandbox(ctx, &api.UpdatePodSandboxRequest{Pod: pod, OverheadLinuxResources: overhead, LinuxResources: resources})
	return wrap("UpdatePodSandbox", err)
}

// PostUpdatePodSandbox tells the plugins a pod's resources changed.
func (n *NRI) PostUpdatePodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	a := n.active()
	if a == nil {
		return nil
	}
	return wrap("PostUpdatePodSandbox", a.PostUpdatePodSandbox(ctx, &api.PostUpdatePodSandboxRequest{Pod: pod}))
}

// StopPodSandbox tells the plugins a pod stops; its containers have
// stopped already.
func (n *NRI) StopPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	a := n.active()
	if a == nil {
		return nil
	}
	return wrap("StopPodSandbox", a.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: pod}))
}

// RemovePodSandbox tells the plugins a pod is gone.
func (n *NRI) RemovePodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	a := n.active()
	if a == nil {
		return nil
	}
	return wrap("RemovePodSandbox", a.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: pod}))
}

// CreateContainer asks the plugins about a container about to be created
// (ctr carries its spec's view: args, env, mounts, resources...). It
// returns their combined adjustment of it and the updates they ask for
// other containers; an error must fail the creation.
func (n *NRI) CreateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	a := n.active()
	if a == nil {
		return nil, nil, nil
	}
	rpl, err := a.CreateContainer(ctx, &api.CreateContainerRequest{Pod: pod, Container: ctr})
	if err != nil {
		return nil, nil, wrap("CreateContainer", err)
	}
	return rpl.GetAdjust(), rpl.GetUpdate(), nil
}

// PostCreateContainer tells the plugins a container was created.
func (n *NRI) PostCreateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	a := n.active()
	if a == nil {
		return nil
	}
	return wrap("PostCreateContainer", a.PostCreateContainer(ctx, &api.PostCreateContainerRequest{Pod: pod, Container: ctr}))
}

// StartContainer tells the plugins a container is about to start; an
// error must fail the start.
func (n *NRI) StartContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	a := n.active()
	if a == nil {
		return nil
	}
	return wrap("StartContainer", a.StartContainer(ctx, &api.StartContainerRequest{Pod: pod, Container: ctr}))
}

// PostStartContainer tells the plugins a container's process runs.
func (n *NRI) PostStartContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	a := n.active()
	if a == nil {
		return nil
	}
	return wrap("PostStartContainer", a.PostStartContainer(ctx, &api.PostStartContainerRequest{Pod: pod, Container: ctr}))
}

// UpdateContainer asks the plugins about new resources for a container.
// It returns the resources to apply to it (res when no plugin changed
// them) and the updates they ask for other containers.
func (n *NRI) UpdateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container, res *api.LinuxResources) (*api.LinuxResources, []*api.ContainerUpdate, error) {
	a := n.active()
	if a == nil {
		return res, nil, nil
	}
	rpl, err := a.UpdateContainer(ctx, &api.UpdateContainerRequest{Pod: pod, Container: ctr, LinuxResources: res})
	if err != nil {
		return nil, nil, wrap("UpdateContainer", err)
	}
	var others []*api.ContainerUpdate
	for _, u := range rpl.GetUpdate() {
		switch {
		case u == nil:
		case u.ContainerId == ctr.Id:
			if r := u.GetLinux().GetResources(); r != nil {
				res = r
			}
		default:
			others = append(others, u)
		}
	}
	return res, others, nil
}

// PostUpdateContainer tells the plugins a container's resources changed.
func (n *NRI) PostUpdateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	a := n.active()
	if a == nil {
		return nil
	}
	return wrap("PostUpdateContainer", a.PostUpdateContainer(ctx, &api.PostUpdateContainerRequest{Pod: pod, Container: ctr}))
}

// StopContainer tells the plugins a container stopped (by a CRI call or
// on its own); it returns the updates they ask for other containers.
func (n *NRI) StopContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) ([]*api.ContainerUpdate, error) {
	a := n.active()
	if a == nil {
		return nil, nil
	}
	rpl, err := a.StopContainer(ctx, &api.StopContainerRequest{Pod: pod, Container: ctr})
	if err != nil {
		return nil, wrap("StopContainer", err)
	}
	return rpl.GetUpdate(), nil
}

// RemoveContainer tells the plugins a container is gone.
func (n *NRI) RemoveContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	a := n.active()
	if a == nil {
		return nil
	}
	return wrap("RemoveContainer", a.RemoveContainer(ctx, &api.RemoveContainerRequest{Pod: pod, Container: ctr}))
}

// ErrPlugin marks an error that came from an NRI plugin (or from its
// failure policy), so the CRI layer can say so.
var ErrPlugin = errors.New("NRI plugin")

func wrap(event string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %s: %w", ErrPlugin, event, err)
}

// pluginCounter keeps NRI.plugins in step with the adaptation's count;
// the other metrics are not collected.
type pluginCounter struct{ n *NRI }

func (c pluginCounter) UpdatePluginCount(count int) { c.n.plugins.Store(int64(count)) }

func (pluginCounter) RecordPluginInvocation(string, string, error)                               {}
func (pluginCounter) RecordPluginLatency(string, string, time.Duration)                          {}
func (pluginCounter) RecordPluginAdjustments(string, string, *api.ContainerAdjustment, int, int) {}

// klogLogger sends NRI's own log lines to crid's log.
type klogLogger struct{}

func (klogLogger) Debugf(_ context.Context, format string, args ...any) {
	klog.V(4).Infof("nri: "+format, args...)
}

func (klogLogger) Infof(_ context.Context, format string, args ...any) {
	klog.V(2).Infof("nri: "+format, args...)
}

func (klogLogger) Warnf(_ context.Context, format string, args ...any) {
	klog.Warningf("nri: "+format, args...)
}

func (klogLogger) Errorf(_ context.Context, format string, args ...any) {
	klog.Errorf("nri: "+format, args...)
}
