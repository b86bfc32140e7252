package nri

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"

	"github.com/crid-dev/crid/config"
)

// fakeDomain is a runtime with a fixed set of pods and containers that
// records the updates plugins ask for.
type fakeDomain struct {
	pods []*api.PodSandbox
	ctrs []*api.Container

	mu      sync.Mutex
	updates []*api.ContainerUpdate
}

func (d *fakeDomain) Snapshot(context.Context) ([]*api.PodSandbox, []*api.Container, error) {
	return d.pods, d.ctrs, nil
}

func (d *fakeDomain) UpdateContainers(_ context.Context, u []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.updates = append(d.updates, u...)
	return nil, nil
}

// testPlugin records the events it gets and answers with what a test sets.
type testPlugin struct {
	mu       sync.Mutex
	events   []string
	synced   chan struct{}
	syncPods []string
	syncCtrs []string

	adjust    *api.ContainerAdjustment
	update    []*api.ContainerUpdate
	createErr error
}

func (p *testPlugin) record(ev, id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, ev+" "+id)
}

func (p *testPlugin) Events() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

func (p *testPlugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	p.mu.Lock()
	for _, pod := range pods {
		p.syncPods = append(p.syncPods, pod.Id)
	}
	for _, c := range ctrs {
		p.syncCtrs = append(p.syncCtrs, c.Id)
	}
	p.mu.Unlock()
	close(p.synced)
	return []*api.ContainerUpdate{{ContainerId: "c0", Linux: &api.LinuxContainerUpdate{Resources: &api.LinuxResources{Cpu: &api.LinuxCPU{Shares: api.UInt64(uint64(100))}}}}}, nil
}

func (p *testPlugin) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("RunPodSandbox", pod.Id)
	return nil
}

func (p *testPlugin) StopPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("StopPodSandbox", pod.Id)
	return nil
}

func (p *testPlugin) CreateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.record("CreateContainer", c.Id)
	return p.adjust, p.update, p.createErr
}

func (p *testPlugin) UpdateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container, r *api.LinuxResources) ([]*api.ContainerUpdate, error) {
	p.record("UpdateContainer", c.Id)
	mine := &api.ContainerUpdate{ContainerId: c.Id, Linux: &api.LinuxContainerUpdate{Resources: &api.LinuxResources{
		Cpu: &api.LinuxCPU{Shares: api.UInt64(uint64(2048))}, Memory: r.Memory,
	}}}
	other := &api.ContainerUpdate{ContainerId: "other", Linux: &api.LinuxContainerUpdate{Resources: &api.LinuxResources{Cpu: &api.LinuxCPU{Cpus: "0"}}}}
	return []*api.ContainerUpdate{mine, other}, nil
}

func (p *testPlugin) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	p.record("StopContainer", c.Id)
	return nil, nil
}

func testConfig(t *testing.T) config.NRI {
	dir, err := os.MkdirTemp("", "nri") // short: a socket path has 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := config.Default().NRI
	cfg.SocketPath = filepath.Join(dir, "nri.sock")
	cfg.PluginPath = filepath.Join(dir, "plugins")
	cfg.PluginConfigPath = filepath.Join(dir, "conf.d")
	return cfg
}

// connect starts NRI on cfg over d and connects p as plugin 10-test; it
// returns once p is synchronized and counted.
func connect(t *testing.T, cfg config.NRI, d Domain, p *testPlugin) *NRI {
	t.Helper()
	n := New(cfg, "crid", "test")
	if err := n.Start(d); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	p.synced = make(chan struct{})
	s, err := stub.New(p, stub.WithSocketPath(cfg.SocketPath), stub.WithPluginName("test"), stub.WithPluginIdx("10"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-p.synced:
	case err := <-done:
		t.Fatalf("plugin ended before synchronizing: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("plugin not synchronized after 30s")
	}
	// The adaptation counts the plugin once Synchronize has returned.
	for deadline := time.Now().Add(30 * time.Second); !n.Active(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("plugin synchronized but never counted as active")
		}
	}
	return n
}

func TestDisabledAndIdleNRIDoNothing(t *testing.T) {
	cfg := testConfig(t)
	cfg.Enable = false
	n := New(cfg, "crid", "test")
	if err := n.Start(&fakeDomain{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.SocketPath); !os.IsNotExist(err) {
		t.Fatalf("disabled NRI created its socket: %v", err)
	}
	res := &api.LinuxResources{Cpu: &api.LinuxCPU{Cpus: "1"}}
	got, others, err := n.UpdateContainer(context.Background(), &api.PodSandbox{}, &api.Container{Id: "x"}, res)
	if err != nil || got != res || others != nil {
		t.Fatalf("disabled UpdateContainer = %v, %v, %v; want the request's resources back", got, others, err)
	}
	n.BlockSync()()
	n.Stop()

	var nilNRI *NRI
	if nilNRI.Enabled() || nilNRI.Active() {
		t.Fatal("a nil NRI must be off")
	}
	if err := nilNRI.RunPodSandbox(context.Background(), &api.PodSandbox{}); err != nil {
		t.Fatal(err)
	}

	// Enabled, no plugin: the socket serves, events go nowhere.
	cfg.Enable = true
	n = New(cfg, "crid", "test")
	if err := n.Start(&fakeDomain{}); err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	if fi, err := os.Stat(cfg.SocketPath); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("enabled NRI has no socket at %s: %v", cfg.SocketPath, err)
	}
	if n.Active() {
		t.Fatal("active with no plugin")
	}
	if adj, _, err := n.CreateContainer(context.Background(), &api.PodSandbox{}, &api.Container{}); adj != nil || err != nil {
		t.Fatalf("CreateContainer with no plugin = %v, %v", adj, err)
	}
}

func TestStartRefusesALiveSocket(t *testing.T) {
	cfg := testConfig(t)
	l, err := net.Listen("unix", cfg.SocketPath)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	n := New(cfg, "crid", "test")
	err = n.Start(&fakeDomain{})
	if err == nil {
		n.Stop()
		t.Fatal("Start took over a socket another process serves")
	}
	if !containsAll(err.Error(), "nri.socket_path", cfg.SocketPath) {
		t.Fatalf("error %q does not name the key and the path", err)
	}
	// A stale socket file nobody serves is replaced.
	l.Close()
	if err := n.Start(&fakeDomain{}); err != nil {
		t.Fatalf("stale socket file: %v", err)
	}
	n.Stop()
}

func TestPluginSynchronizesAndReceivesEvents(t *testing.T) {
	cfg := testConfig(t)
	d := &fakeDomain{
		pods: []*api.PodSandbox{{Id: "p0", Name: "pod0"}},
		ctrs: []*api.Container{{Id: "c0", PodSandboxId: "p0", Name: "ctr0"}},
	}
	p := &testPlugin{}
	n := connect(t, cfg, d, p)
	p.mu.Lock()
	if !slices.Equal(p.syncPods, []string{"p0"}) || !slices.Equal(p.syncCtrs, []string{"c0"}) {
		t.Fatalf("Synchronize got pods %v containers %v, want [p0] [c0]", p.syncPods, p.syncCtrs)
	}
	p.mu.Unlock()
	d.mu.Lock()
	if len(d.updates) != 1 || d.updates[0].ContainerId != "c0" {
		t.Fatalf("the update answered to Synchronize was not applied: %v", d.updates)
	}
	d.mu.Unlock()

	ctx := context.Background()
	pod := &api.PodSandbox{Id: "p1", Name: "pod1"}
	if err := n.RunPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	p.adjust = &api.ContainerAdjustment{Env: []*api.KeyValue{{Key: "FROM_PLUGIN", Value: "yes"}}}
	p.update = []*api.ContainerUpdate{{ContainerId: "c0", Linux: &api.LinuxContainerUpdate{Resources: &api.LinuxResources{Cpu: &api.LinuxCPU{Cpus: "0"}}}}}
	adj, updates, err := n.CreateContainer(ctx, pod, &api.Container{Id: "c1", PodSandboxId: "p1", Name: "ctr1", Env: []string{"A=1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(adj.GetEnv()) != 1 || adj.GetEnv()[0].Key != "FROM_PLUGIN" {
		t.Fatalf("adjustment %v lost the plugin's env", adj)
	}
	if len(updates) != 1 || updates[0].ContainerId != "c0" {
		t.Fatalf("updates of other containers = %v", updates)
	}

	res, others, err := n.UpdateContainer(ctx, pod, &api.Container{Id: "c1", PodSandboxId: "p1"},
		&api.LinuxResources{Cpu: &api.LinuxCPU{Shares: api.UInt64(uint64(512))}, Memory: &api.LinuxMemory{Limit: api.Int64(int64(64 << 20))}})
	if err != nil {
		t.Fatal(err)
	}
	if res.GetCpu().GetShares().GetValue() != 2048 || res.GetMemory().GetLimit().GetValue() != 64<<20 {
		t.Fatalf("resources for the updated container = %v, want the plugin's shares 2048 and the request's memory", res)
	}
	if len(others) != 1 || others[0].ContainerId != "other" {
		t.Fatalf("updates of other containers = %v, want the one for \"other\"", others)
	}

	if _, err := n.StopContainer(ctx, pod, &api.Container{Id: "c1", PodSandboxId: "p1"}); err != nil {
		t.Fatal(err)
	}
	if err := n.StopPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	want := []string{"RunPodSandbox p1", "CreateContainer c1", "UpdateContainer c1", "StopContainer c1", "StopPodSandbox p1"}
	if got := p.Events(); !slices.Equal(got, want) {
		t.Fatalf("plugin saw %v, want %v", got, want)
	}

	// A plugin's error fails the call and says where it came from.
	p.createErr = errors.New("no room for this one")
	_, _, err = n.CreateContainer(ctx, pod, &api.Container{Id: "c2", PodSandboxId: "p1", Name: "ctr2"})
	if !errors.Is(err, ErrPlugin) || !containsAll(err.Error(), "CreateContainer", "no room for this one") {
		t.Fatalf("error %v, want an ErrPlugin naming the event and the plugin's message", err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
