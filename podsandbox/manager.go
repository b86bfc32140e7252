package podsandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/cgroupmgr"
	"github.com/crid-dev/crid/cni"
	"github.com/crid-dev/crid/events"
	"github.com/crid-dev/crid/idprefix"
	"github.com/crid-dev/crid/records"
)

const recordKind = "sandboxes"

// Errors the CRI layer maps to codes.
var (
	ErrNotFound      = errors.New("pod sandbox not found")
	ErrAlreadyExists = errors.New("pod sandbox already exists")
	ErrAmbiguous     = errors.New("ambiguous pod sandbox ID prefix")
	ErrInvalid       = errors.New("invalid pod sandbox config")
)

// Options configure the sandbox manager.
type Options struct {
	// RunDir holds one directory per pod: namespace pins, /dev/shm and the
	// files its containers mount.
	RunDir  string
	Records *records.Store
	CNI     *cni.Manager
	Cgroups *cgroupmgr.Manager
	// DefaultCgroupParent is where pods that name no cgroup parent go.
	DefaultCgroupParent string
	// ShmSize is the size of a pod's /dev/shm in bytes.
	ShmSize int64
	// Infra runs infra processes; nil means pods never get one.
	Infra Infra
	// Handlers are the runtime handlers pods may name, "" standing for the
	// default handler; nil means "" and "runc", with no options.
	Handlers map[string]Handler
	// Containers stops and removes a pod's containers with it.
	Containers PodContainers
	// Events, when set, gets the pods' lifecycle events (created and
	// started by Run, stopped by Stop, deleted by Remove).
	Events events.Publisher
	// UserNamespaces is set when the node supports pods in user
	// namespaces of their own (userns mode POD); UserNamespacesReason
	// says why not otherwise.
	UserNamespaces       bool
	UserNamespacesReason string
	// NoIdmapTmpfs is set when the kernel cannot idmap a tmpfs (before
	// 6.3): a user-namespaced pod's /dev/shm and files, on the run dir's
	// tmpfs, are then made owned by the pod's mapped root, for its
	// containers to bind without idmap (Sandbox.PodFilesOwned).
	NoIdmapTmpfs bool
	// UserNamespacesHostNetwork is set when a pod in a user namespace of
	// its own may use the node's network (KEP-5607).
	UserNamespacesHostNetwork bool
}

// Handler is what differs between the runtime handlers pods name (a
// RuntimeClass's handler); all run containers the same way.
type Handler struct {
	// InfraAlways gives each of the handler's pods an infra process.
	InfraAlways bool
}

// PodContainers are the containers of pods, as the sandbox manager needs
// them: stopped with their pod, removed with it.
type PodContainers interface {
	StopAll(ctx context.Context, sandboxID string) error
	RemoveAll(ctx context.Context, sandboxID string) error
}

// Infra starts and stops the infra (pause) process of a pod. The daemon
// wires it to the container runtime and the image store.
type Infra interface {
	Start(ctx context.Context, sb *Sandbox) (pid int, err error)
	// Stop kills the infra process and waits for it; it is idempotent.
	Stop(ctx context.Context, sb *Sandbox) error
	// Remove deletes the infra container and its rootfs; idempotent.
	Remove(ctx context.Context, sb *Sandbox) error
	// Pid is the pid of the pod's infra process while it runs, else 0.
	Pid(ctx context.Context, sb *Sandbox) (int, error)
}

// Manager owns the node's pod sandboxes.
type Manager struct {
	opts Options

	// ctx ends at Close; wg counts the infra watches (infrawatch.go).
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// lifecycle, when set, sees pods become ready, stop and go.
	lifecycle Lifecycle

	mu        sync.Mutex
	sandboxes map[string]*Sandbox
	names     map[string]string // nameKey → sandbox ID
	busy      map[string]chan struct{}
	watches   map[string]*infraWatch // sandbox ID → its infra's pidfd
}

// New loads the sandbox records and reconciles them with the host: a
// sandbox caught mid-create or mid-remove by a crash is torn down, one from
// an earlier boot is marked not ready with its network released.
func New(ctx context.Context, opts Options) (*Manager, error) {
	// Private: a pod's /dev/shm is a 1777 tmpfs and its namespace pins
	// are entries into the pod; no host user but root may reach them. The
	// chmod fixes a dir an older crid made 0711.
	if err := os.MkdirAll(opts.RunDir, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox run dir: %w", err)
	}
	if err := os.Chmod(opts.RunDir, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox run dir: %w", err)
	}
	m := newManager(opts)
	recs, errs := opts.Records.Load(recordKind)
	for _, err := range errs {
		klog.ErrorS(err, "Skipping unreadable sandbox record")
	}
	for _, r := range recs {
		sb, err := decodeRecord(r)
		if err != nil {
			klog.ErrorS(err, "Skipping unreadable sandbox record", "podSandboxID", r.ID)
			continue
		}
		m.sandboxes[sb.ID] = sb
		m.names[nameKey(sb.Config.Metadata)] = sb.ID
		unpinTargets(m.dir(sb.ID))
		m.reconcile(ctx, sb, r.Stale)
	}
	m.removeOrphanDirs()
	return m, nil
}

func newManager(opts Options) *Manager {
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{opts: opts, ctx: ctx, cancel: cancel, sandboxes: map[string]*Sandbox{}, names: map[string]string{},
		busy: map[string]chan struct{}{}, watches: map[string]*infraWatch{}}
}

func (m *Manager) reconcile(ctx context.Context, sb *Sandbox, stale bool) {
	switch {
	case sb.State == StateCreating || sb.State == StateRemoving:
		klog.InfoS("Removing sandbox interrupted by a daemon crash", "podSandboxID", sb.ID, "state", sb.State)
		if err := m.teardown(ctx, sb); err != nil {
			klog.ErrorS(err, "Cleaning up interrupted sandbox", "podSandboxID", sb.ID)
			return
		}
		m.forget(sb)
	case stale:
		klog.InfoS("Sandbox is from an earlier boot; marking it not ready", "podSandboxID", sb.ID)
		if err := m.stop(ctx, sb); err != nil {
			klog.ErrorS(err, "Stopping stale sandbox", "podSandboxID", sb.ID)
		}
	case sb.State == StateReady && sb.InfraPid != 0 && m.opts.Infra != nil:
		if err := m.adoptInfra(ctx, sb); err != nil {
			klog.InfoS("Infra process of sandbox is gone; marking it not ready", "podSandboxID", sb.ID, "reason", err)
			if err := m.stop(ctx, sb); err != nil {
				klog.ErrorS(err, "Stopping sandbox", "podSandboxID", sb.ID)
			}
		}
	}
}

// removeOrphanDirs cleans pod directories with no record: left by a crash
// before the intent record was written.
func (m *Manager) removeOrphanDirs() {
	entries, err := os.ReadDir(m.opts.RunDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if _, ok := m.sandboxes[e.Name()]; ok || !e.IsDir() {
			continue
		}
		dir := m.dir(e.Name())
		err := errors.Join(unpinNamespaces(pinsIn(dir)), unmountShm(dir), os.RemoveAll(dir))
		klog.InfoS("Removed orphan sandbox directory", "dir", dir, "err", err)
	}
}

// pinsIn returns every pin path a pod directory can hold: the pod's
// namespaces and any PID namespace of a TARGET container pinned for a
// create that a crash interrupted.
func pinsIn(dir string) map[nsKind]string {
	pins := map[nsKind]string{nsNet: dir + "/ns/net", nsIPC: dir + "/ns/ipc", nsUTS: dir + "/ns/uts", nsPID: dir + "/ns/pid"}
	entries, _ := os.ReadDir(dir + "/ns")
	for _, e := range entries {
		pins[nsKind(e.Name())] = dir + "/ns/" + e.Name()
	}
	return pins
}

type record struct {
	Sandbox
	Config json.RawMessage `json:"config"`
}

func (m *Manager) persist(sb *Sandbox) error {
	cfg, err := protojson.Marshal(sb.Config)
	if err != nil {
		return fmt.Errorf("encode sandbox config: %w", err)
	}
	return m.opts.Records.Put(recordKind, sb.ID, record{Sandbox: *sb, Config: cfg})
}

func decodeRecord(r records.Record) (*Sandbox, error) {
	rec, err := records.Decode[record](r)
	if err != nil {
		return nil, err
	}
	sb := rec.Sandbox
	sb.Config = &runtime.PodSandboxConfig{}
	if err := protojson.Unmarshal(rec.Config, sb.Config); err != nil {
		return nil, fmt.Errorf("decode sandbox %s config: %w", r.ID, err)
	}
	if sb.Config.Metadata == nil || sb.ID != r.ID {
		return nil, fmt.Errorf("sandbox record %s is incomplete", r.ID)
	}
	return &sb, nil
}

func (m *Manager) forget(sb *Sandbox) {
	if err := m.opts.Records.Delete(recordKind, sb.ID); err != nil {
		klog.ErrorS(err, "Deleting sandbox record", "podSandboxID", sb.ID)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sandboxes, sb.ID)
	if m.names[nameKey(sb.Config.Metadata)] == sb.ID {
		delete(m.names, nameKey(sb.Config.Metadata))
	}
}

func newID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// resolveLocked finds a sandbox by full ID or unique ID prefix. m.mu held.
func (m *Manager) resolveLocked(idOrPrefix string) (*Sandbox, error) {
	return idprefix.Resolve(m.sandboxes, idOrPrefix, "pod sandbox", ErrNotFound, ErrAmbiguous)
}

// lock serialises operations on one sandbox; it returns the sandbox and
// an unlock function.
func (m *Manager) lock(ctx context.Context, idOrPrefix string) (*Sandbox, func(), error) {
	for {
		m.mu.Lock()
		sb, err := m.resolveLocked(idOrPrefix)
		if err != nil {
			m.mu.Unlock()
			return nil, nil, err
		}
		wait, busy := m.busy[sb.ID]
		if !busy {
			ch := make(chan struct{})
			m.busy[sb.ID] = ch
			m.mu.Unlock()
			return sb, func() {
				m.mu.Lock()
				delete(m.busy, sb.ID)
				m.mu.Unlock()
				close(ch)
			}, nil
		}
		m.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// Get returns a copy of the sandbox named by ID or unique prefix.
func (m *Manager) Get(idOrPrefix string) (*Sandbox, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sb, err := m.resolveLocked(idOrPrefix)
	if err != nil {
		return nil, err
	}
	if sb.State == StateCreating {
		// Not a pod yet: its fields are still being filled in.
		return nil, fmt.Errorf("%w: %q is still being created", ErrNotFound, idOrPrefix)
	}
	return sb.clone(), nil
}

// Filter selects sandboxes for List.
type Filter struct {
	ID       string // ID or prefix
	State    *State
	Selector map[string]string
}

// List returns the sandboxes matching f, oldest first. Sandboxes being
// created or removed are not listed.
func (m *Manager) List(f Filter) []*Sandbox {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Sandbox
	for id, sb := range m.sandboxes {
		if sb.State == StateCreating || sb.State == StateRemoving {
			continue
		}
		if f.ID != "" && !strings.HasPrefix(id, f.ID) {
			continue
		}
		if f.State != nil && sb.State != *f.State {
			continue
		}
		if !matchesLabels(sb.Config.Labels, f.Selector) {
			continue
		}
		out = append(out, sb.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt < out[j].CreatedAt })
	return out
}

// CountByState counts the sandboxes List would show, by state ("ready",
// "notready"; both always present). It reads memory only, for the
// metrics scrape.
func (m *Manager) CountByState() map[string]int {
	out := map[string]int{string(StateReady): 0, string(StateNotReady): 0}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, sb := range m.sandboxes {
		if sb.State == StateCreating || sb.State == StateRemoving {
			continue
		}
		out[string(sb.State)]++
	}
	return out
}

// publish sends an event about the sandbox itself.
func (m *Manager) publish(t events.Type, id string) {
	if m.opts.Events != nil {
		m.opts.Events.Publish(events.Event{Type: t, ContainerID: id, SandboxID: id, At: time.Now()})
	}
}
