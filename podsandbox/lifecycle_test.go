package podsandbox

import (
	"context"
	"slices"
	"sync"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/records"
)

// callLog records, in order, the container and lifecycle calls a manager
// makes.
type callLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *callLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, s)
}

func (l *callLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

type logContainers struct{ *callLog }

func (c logContainers) StopAll(_ context.Context, id string) error {
	c.add("StopAll " + id)
	return nil
}

func (c logContainers) RemoveAll(_ context.Context, id string) error {
	c.add("RemoveAll " + id)
	return nil
}

type logLifecycle struct{ *callLog }

func (l logLifecycle) Ready(_ context.Context, sb *Sandbox) (func(), error) {
	l.add("Ready " + sb.ID)
	return nil, nil
}

func (l logLifecycle) Stopping(_ context.Context, sb *Sandbox) { l.add("Stopping " + sb.ID) }

func (l logLifecycle) Removed(_ context.Context, sb *Sandbox) { l.add("Removed " + sb.ID) }

// hostPod adds a ready pod on the host's network and IPC (nothing to set
// up or tear down but its directory and record) to m.
func hostPod(t *testing.T, m *Manager, id string) {
	t.Helper()
	sb := &Sandbox{ID: id, State: StateReady, Namespaces: map[string]string{}, Config: &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: id, Namespace: "n", Uid: id},
		Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE, Ipc: runtime.NamespaceMode_NODE},
		}},
	}}
	m.sandboxes[id] = sb
	m.names[nameKey(sb.Config.Metadata)] = id
	if err := m.persist(sb); err != nil {
		t.Fatal(err)
	}
}

// The Stopping hook comes once per pod, after its containers stopped,
// whether the pod is stopped (twice) or removed while ready; Removed comes
// when it is gone.
func TestLifecycleHooks(t *testing.T) {
	store, err := records.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	log := &callLog{}
	m := testManager(t)
	m.opts.RunDir, m.opts.Records, m.opts.Containers = t.TempDir(), store, logContainers{log}
	m.SetLifecycle(logLifecycle{log})
	ctx := context.Background()

	hostPod(t, m, "a")
	for range 2 {
		if err := m.Stop(ctx, "a"); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Remove(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	want := []string{"StopAll a", "Stopping a", "StopAll a", "StopAll a", "StopAll a", "RemoveAll a", "Removed a"}
	if got := log.get(); !slices.Equal(got, want) {
		t.Fatalf("stop, stop, remove:\n got %v\nwant %v", got, want)
	}

	log.calls = nil
	hostPod(t, m, "b")
	if err := m.Remove(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	want = []string{"StopAll b", "Stopping b", "StopAll b", "RemoveAll b", "Removed b"}
	if got := log.get(); !slices.Equal(got, want) {
		t.Fatalf("remove of a ready pod:\n got %v\nwant %v", got, want)
	}
	if len(m.List(Filter{})) != 0 {
		t.Fatal("pods left after Remove")
	}
}
