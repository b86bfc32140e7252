// Command nriplugin is the NRI plugin crid's end-to-end tests run, built
// on NRI's stub library. It records every event it gets, one line each,
// and acts on pods and containers by their names:
//
//   - a container named adjust-*: at CreateContainer it gets env
//     NRI_ADJUSTED=yes, annotation nri.test/adjusted=yes, a read-only bind
//     mount of -mount-source at /nri-mount, an RLIMIT_NOFILE of 1000/999,
//     CPU shares 321 and a 64 MiB memory limit; at UpdateContainer its CPU
//     shares become 333; after it starts the plugin itself asks crid
//     (UpdateContainers) for a 48 MiB memory limit.
//   - a container named cdi-NAME: at CreateContainer it gets the CDI
//     device crid.test/device=NAME.
//   - a pod or container named fail-once-*: the first RunPodSandbox or
//     CreateContainer for that name fails with an error.
//   - a container named -hang-prefix* (hang-once-*): the first
//     CreateContainer for that name does not answer until after crid's
//     request timeout.
//
// Run as an external plugin it connects to -socket; started by crid from
// its plugin_path it takes its settings from its configuration file
// (lines "events=PATH", "mount-source=PATH").
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

type plugin struct {
	stub stub.Stub

	mu          sync.Mutex
	eventsPath  string
	mountSource string
	seen        map[string]bool // names that already failed or hung once
	hang        time.Duration
	hangPrefix  string
}

func (p *plugin) record(event string, pod *api.PodSandbox, ctr *api.Container) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.eventsPath == "" {
		return
	}
	line := fmt.Sprintf("%s pod=%s podname=%s", event, pod.GetId(), pod.GetName())
	if ctr != nil {
		line += fmt.Sprintf(" ctr=%s ctrname=%s state=%s", ctr.GetId(), ctr.GetName(), ctr.GetState())
	}
	f, err := os.OpenFile(p.eventsPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nriplugin: record:", err)
		return
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}

// firstTime reports whether name is seen for the first time.
func (p *plugin) firstTime(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen[name] {
		return false
	}
	p.seen[name] = true
	return true
}

func (p *plugin) Configure(_ context.Context, config, _, _ string) (api.EventMask, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, line := range strings.Split(config, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch k {
		case "events":
			p.eventsPath = v
		case "mount-source":
			p.mountSource = v
		}
	}
	return 0, nil // every event
}

func (p *plugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	for _, pod := range pods {
		p.record("Synchronize", pod, nil)
	}
	for _, c := range ctrs {
		p.record("Synchronize", &api.PodSandbox{Id: c.PodSandboxId}, c)
	}
	p.record("Synchronized", &api.PodSandbox{}, nil)
	return nil, nil
}

func (p *plugin) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("RunPodSandbox", pod, nil)
	if strings.HasPrefix(pod.Name, "fail-once-") && p.firstTime("pod/"+pod.Name) {
		return fmt.Errorf("nriplugin refuses pod %s once", pod.Name)
	}
	return nil
}

func (p *plugin) UpdatePodSandbox(_ context.Context, pod *api.PodSandbox, _, _ *api.LinuxResources) error {
	p.record("UpdatePodSandbox", pod, nil)
	return nil
}

func (p *plugin) PostUpdatePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("PostUpdatePodSandbox", pod, nil)
	return nil
}

func (p *plugin) StopPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("StopPodSandbox", pod, nil)
	return nil
}

func (p *plugin) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("RemovePodSandbox", pod, nil)
	return nil
}

func (p *plugin) CreateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.record("CreateContainer", pod, ctr)
	switch {
	case strings.HasPrefix(ctr.Name, "fail-once-") && p.firstTime("ctr/"+ctr.Name):
		return nil, nil, fmt.Errorf("nriplugin refuses container %s once", ctr.Name)
	case strings.HasPrefix(ctr.Name, p.hangPrefix) && p.firstTime("ctr/"+ctr.Name):
		select {
		case <-ctx.Done(): // crid's request timeout
			time.Sleep(100 * time.Millisecond) // answer late, after crid gave up
		case <-time.After(p.hang):
		}
		return nil, nil, nil
	case strings.HasPrefix(ctr.Name, "cdi-"):
		adj := &api.ContainerAdjustment{}
		adj.AddCDIDevice(&api.CDIDevice{Name: "crid.test/device=" + strings.TrimPrefix(ctr.Name, "cdi-")})
		return adj, nil, nil
	case !strings.HasPrefix(ctr.Name, "adjust-"):
		return nil, nil, nil
	}
	adj := &api.ContainerAdjustment{}
	adj.AddEnv("NRI_ADJUSTED", "yes")
	adj.AddAnnotation("nri.test/adjusted", "yes")
	p.mu.Lock()
	src := p.mountSource
	p.mu.Unlock()
	if src != "" {
		adj.AddMount(&api.Mount{Destination: "/nri-mount", Type: "bind", Source: src, Options: []string{"rbind", "ro"}})
	}
	adj.AddRlimit("RLIMIT_NOFILE", 1000, 999)
	adj.SetLinuxCPUShares(321)
	adj.SetLinuxMemoryLimit(64 << 20)
	return adj, nil, nil
}

func (p *plugin) PostCreateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.record("PostCreateContainer", pod, ctr)
	return nil
}

func (p *plugin) StartContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.record("StartContainer", pod, ctr)
	return nil
}

func (p *plugin) PostStartContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.record("PostStartContainer", pod, ctr)
	if strings.HasPrefix(ctr.Name, "adjust-") {
		// An update of the plugin's own accord, as a resource manager
		// rebalancing would send; not from inside this event.
		id := ctr.Id
		go func() {
			u := &api.ContainerUpdate{ContainerId: id}
			u.SetLinuxMemoryLimit(48 << 20)
			failed, err := p.stub.UpdateContainers([]*api.ContainerUpdate{u})
			p.record(fmt.Sprintf("UpdateContainers-result failed=%d err=%v", len(failed), err), &api.PodSandbox{}, &api.Container{Id: id})
		}()
	}
	return nil
}

func (p *plugin) UpdateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container, _ *api.LinuxResources) ([]*api.ContainerUpdate, error) {
	p.record("UpdateContainer", pod, ctr)
	if !strings.HasPrefix(ctr.Name, "adjust-") {
		return nil, nil
	}
	u := &api.ContainerUpdate{ContainerId: ctr.Id}
	u.SetLinuxCPUShares(333)
	return []*api.ContainerUpdate{u}, nil
}

func (p *plugin) PostUpdateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.record("PostUpdateContainer", pod, ctr)
	return nil
}

func (p *plugin) StopContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) ([]*api.ContainerUpdate, error) {
	p.record("StopContainer", pod, ctr)
	return nil, nil
}

func (p *plugin) RemoveContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.record("RemoveContainer", pod, ctr)
	return nil
}

func main() {
	socket := flag.String("socket", "", "NRI socket to connect to (empty: the one crid hands a plugin it starts)")
	name := flag.String("name", "e2e", "plugin name")
	idx := flag.String("idx", "10", "plugin index (invocation order)")
	events := flag.String("events", "", "file to append one line per event to")
	mountSource := flag.String("mount-source", "", "host directory bind-mounted at /nri-mount into adjust-* containers")
	hang := flag.Duration("hang", 30*time.Second, "how long a hanging CreateContainer waits at most")
	hangPrefix := flag.String("hang-prefix", "hang-once-", "name prefix of the containers whose first CreateContainer hangs")
	failRequest := flag.Bool("fail-request", false, "ask crid to fail a call this plugin does not answer in time (failure policy fail_request, keep_connected)")
	flag.Parse()

	p := &plugin{eventsPath: *events, mountSource: *mountSource, seen: map[string]bool{}, hang: *hang, hangPrefix: *hangPrefix}
	opts := []stub.Option{}
	if *socket != "" {
		opts = append(opts, stub.WithSocketPath(*socket), stub.WithPluginName(*name), stub.WithPluginIdx(*idx))
	}
	if *failRequest {
		opts = append(opts, stub.WithFailurePolicy(&api.FailurePolicy{FailRequest: true, KeepConnected: true}))
	}
	s, err := stub.New(p, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nriplugin:", err)
		os.Exit(1)
	}
	p.stub = s
	if err := s.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "nriplugin:", err)
		os.Exit(1)
	}
}
