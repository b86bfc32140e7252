package oci

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/events"
	"github.com/crid-dev/crid/failpoint"
	"github.com/crid-dev/crid/idprefix"
	"github.com/crid-dev/crid/metrics"
	"github.com/crid-dev/crid/panicguard"
	"github.com/crid-dev/crid/records"
)

const containerKind = "containers"

// Errors of the container manager, beside the Runtime's.
var (
	ErrAmbiguous = errors.New("ambiguous container ID prefix")
)

// Container is one CRI container and what crid remembers of it.
type Container struct {
	ID        string                   `json:"id"`
	SandboxID string                   `json:"sandbox_id"`
	Config    *runtime.ContainerConfig `json:"-"`
	// ImageID is the image's ID; ImageName the name the config gave.
	ImageID   string `json:"image_id"`
	ImageName string `json:"image_name"`
	// ImageRef is what kubelet shows as the image: a repo digest when the
	// image has one, else its ID.
	ImageRef   string                           `json:"image_ref"`
	LogPath    string                           `json:"log_path"`
	CreatedAt  int64                            `json:"created_at"`
	StartedAt  int64                            `json:"started_at,omitempty"`
	FinishedAt int64                            `json:"finished_at,omitempty"`
	ExitCode   int32                            `json:"exit_code"`
	Reason     string                           `json:"reason,omitempty"`
	Message    string                           `json:"message,omitempty"`
	State      string                           `json:"state"`   // created, running, exited
	Process    *specs.Process                   `json:"process"` // for exec: env, cwd, user
	StopSignal string                           `json:"stop_signal,omitempty"`
	Resources  *runtime.LinuxContainerResources `json:"-"`
	// CgroupsPath is the container's cgroup.
	CgroupsPath string `json:"cgroups_path"`
	// Creating marks the intent record Create writes before it asks the
	// monitor: a container found so at a start was never answered for,
	// and is removed whole.
	Creating bool `json:"creating,omitempty"`

	// starting is set while Start runs; an exit seen meanwhile waits in
	// pendingExit, so STARTED is always published before STOPPED.
	starting    bool
	pendingExit *Exit
	// removed is set once RemoveContainer deletes the record: no later
	// write may bring it back.
	removed bool
}

// Container states, as CRI names them.
const (
	StateCreated = "created"
	StateRunning = "running"
	StateExited  = "exited"
)

type containerRecord struct {
	Container
	Config    json.RawMessage `json:"config"`
	Resources json.RawMessage `json:"resources,omitempty"`
}

// Containers manages CRI containers on top of the monitor.
type Containers struct {
	rt      *Runtime
	records *records.Store
	// rootfs undoes what the daemon prepared for a container: its mounts
	// when it exits, its rootfs when it is removed. nil in tests.
	rootfs Rootfs

	// events receives every state change, published under mu so they
	// come out in the order they happened; nil publishes nothing.
	events events.Publisher
	// cancel and wg end the exit watcher (Close).
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	m  map[string]*Container
	// bySandbox indexes m by pod: a pod's stop and remove looked through
	// every container of the node (20,000 exited ones kept by kubelet
	// made removing them all quadratic).
	bySandbox map[string]map[string]*Container
	names     map[string]string // sandbox/name/attempt → ID
	busy      map[string]bool   // being created or removed
	// creating holds each create in flight by its name key, so a retry of
	// the name is told which attempt holds it, since when and in which step.
	creating map[string]*createAttempt
	recLocks [16]sync.Mutex
}

// Rootfs is what containers need of the image store.
type Rootfs interface {
	// UnmountRootfs unmounts and deletes a container's rootfs (its
	// writable layer too): on remove. Idempotent.
	UnmountRootfs(id string) error
	// UnmountRootfsKeepLayer unmounts a container's rootfs and image
	// volumes and keeps its writable layer: on exit. Idempotent.
	UnmountRootfsKeepLayer(id string) error
}

// NewContainers loads the container records and reconciles them with the
// monitor: a container the monitor does not know is marked exited. It then
// watches for exits (see watchExits) until Close; pub, which may be nil,
// gets every container's lifecycle events.
func NewContainers(ctx context.Context, rt *Runtime, store *records.Store, rootfs Rootfs, pub events.Publisher) (*Containers, error) {
	c := &Containers{rt: rt, records: store, rootfs: rootfs, events: pub, m: map[string]*Container{}, names: map[string]string{}, busy: map[string]bool{}, creating: map[string]*createAttempt{}}
	recs, errs := store.Load(containerKind)
	var exited []string
	for _, err := range errs {
		klog.ErrorS(err, "Skipping unreadable container record")
	}
	for _, r := range recs {
		rec, err := records.Decode[containerRecord](r)
		if err != nil {
			klog.ErrorS(err, "Skipping unreadable container record", "containerID", r.ID)
			continue
		}
		ctr := rec.Container
		ctr.Config = &runtime.ContainerConfig{}
		if err := protojson.Unmarshal(rec.Config, ctr.Config); err != nil || ctr.Config.Metadata == nil {
			klog.ErrorS(err, "Skipping unreadable container record", "containerID", r.ID)
			continue
		}
		if len(rec.Resources) > 0 {
			ctr.Resources = &runtime.LinuxContainerResources{}
			_ = protojson.Unmarshal(rec.Resources, ctr.Resources)
		}
		if ctr.Creating {
			c.undoCreate(ctx, &ctr)
			continue
		}
		c.addLocked(&ctr)
		c.names[nameKey(ctr.SandboxID, ctr.Config.Metadata)] = ctr.ID
		if ctr.State == StateExited {
			// Its exit was recorded before this start: a crash or an
			// older crid may have left its rootfs mounted.
			exited = append(exited, ctr.ID)
			continue
		}
		if _, err := c.refresh(ctx, &ctr); err != nil {
			klog.ErrorS(err, "Reading container state", "containerID", ctr.ID)
		}
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		// Behind the serving: one unmount each, thousands on a node
		// that kept its exited containers.
		for _, id := range exited {
			if wctx.Err() != nil {
				return
			}
			c.unmountExited(id)
		}
		c.watchExits(wctx)
	}()
	return c, nil
}

// undoCreate removes a container whose Create a crash interrupted: from
// the monitor (which may or may not have made it), its rootfs, its record.
// A failure leaves the record, so the next start tries again.
func (c *Containers) undoCreate(ctx context.Context, ctr *Container) {
	err := c.rt.Delete(ctx, ctr.ID)
	if errors.Is(err, ErrNotFound) {
		err = nil
	}
	if err == nil && c.rootfs != nil {
		err = c.rootfs.UnmountRootfs(ctr.ID)
	}
	if err == nil {
		err = c.records.Delete(containerKind, ctr.ID)
	}
	klog.InfoS("Removed a container whose creation a crash interrupted", "containerID", ctr.ID, "err", err)
}

// Close ends the exit watcher. Containers keep running.
func (c *Containers) Close() {
	c.cancel()
	c.wg.Wait()
}

// publishLocked sends an event about ctr; c.mu is held.
func (c *Containers) publishLocked(t events.Type, ctr *Container) {
	if c.events != nil {
		c.events.Publish(events.Event{Type: t, ContainerID: ctr.ID, SandboxID: ctr.SandboxID, At: time.Now()})
	}
}

func nameKey(sandboxID string, md *runtime.ContainerMetadata) string {
	return fmt.Sprintf("%s/%s/%d", sandboxID, md.Name, md.Attempt)
}

// NewID returns a fresh container ID: 64 hex digits.
func NewID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// recLock serializes the writes and the removal of one container's
// record (striped by ID), so a write racing a RemoveContainer (an exit
// recorded by a concurrent stop) cannot bring the record back after it.
func (c *Containers) recLock(id string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return &c.recLocks[h.Sum32()%uint32(len(c.recLocks))]
}

func (c *Containers) persist(ctr *Container) error {
	l := c.recLock(ctr.ID)
	l.Lock()
	defer l.Unlock()
	c.mu.Lock()
	removed := ctr.removed
	c.mu.Unlock()
	if removed {
		return nil
	}
	cfg, err := protojson.Marshal(ctr.Config)
	if err != nil {
		return err
	}
	rec := containerRecord{Container: *ctr, Config: cfg}
	if ctr.Resources != nil {
		if rec.Resources, err = protojson.Marshal(ctr.Resources); err != nil {
			return err
		}
	}
	return c.records.Put(containerKind, ctr.ID, rec)
}

// CreateParams describe a container whose rootfs is mounted and spec built.
type CreateParams struct {
	ID        string
	SandboxID string
	Config    *runtime.ContainerConfig
	ImageID   string
	ImageName string
	ImageRef  string
	LogPath   string
	Spec      *specs.Spec
	// StopSignal is the config's, else the image's (empty: SIGTERM).
	StopSignal string
	// Reservation, when set, is the name reservation the caller took
	// (Reserve) before its own steps; Create takes it over.
	Reservation *Reservation
}

// createAttempt is a CreateContainer in flight; step and owned are
// guarded by Containers.mu.
type createAttempt struct {
	c       *Containers
	key, id string
	started time.Time
	step    string
	owned   bool // by the caller of Reserve, until Create takes it over
}

// Reservation holds a container name for one CreateContainer attempt from
// its first step on, so a retry of the name while this attempt is stuck
// (in a stat of a bind-mount source on a hung filesystem, say) is told
// which attempt holds it, since when and in which step.
type Reservation = createAttempt

// Reserve takes the name of md in the pod for the container id.
func (c *Containers) Reserve(sandboxID string, md *runtime.ContainerMetadata, id string) (*Reservation, error) {
	key := nameKey(sandboxID, md)
	c.mu.Lock()
	defer c.mu.Unlock()
	if other, ok := c.names[key]; ok {
		if a := c.creating[key]; a != nil {
			return nil, fmt.Errorf("%w: container %q (attempt %d) of pod %s is being created by an attempt (container %s) started at %s, %s ago, now in step %q; retry when it ends",
				ErrAlreadyExists, md.Name, md.Attempt, sandboxID, a.id, a.started.UTC().Format(time.RFC3339), time.Since(a.started).Round(time.Second), a.step)
		}
		return nil, fmt.Errorf("%w: container %q (attempt %d) of pod %s is %s", ErrAlreadyExists, md.Name, md.Attempt, sandboxID, other)
	}
	a := &createAttempt{c: c, key: key, id: id, started: time.Now(), step: "start", owned: true}
	c.names[key] = id
	c.busy[id] = true
	c.creating[key] = a
	return a, nil
}

// Step names what the attempt does now, for a retry's error.
func (a *createAttempt) Step(s string) {
	a.c.mu.Lock()
	a.step = s
	a.c.mu.Unlock()
}

// Release frees the name unless Create took the reservation over; the
// caller defers it.
func (a *createAttempt) Release() {
	a.c.mu.Lock()
	defer a.c.mu.Unlock()
	if a.owned {
		a.owned = false
		a.c.releaseLocked(a)
	}
}

func (c *Containers) releaseLocked(a *createAttempt) {
	if c.creating[a.key] == a {
		delete(c.names, a.key)
		delete(c.busy, a.id)
		delete(c.creating, a.key)
	}
}

// Create creates a container that stops before its process runs, under
// p.Reservation (taken over) or a reservation of its own.
//
// The monitor's create (mounts, namespaces, the init up to its exec fifo)
// cannot be called back once sent, and may block on a filesystem that
// stops answering. A client that gives up gets its error at once; the
// attempt goes on in the background, holding the name (a retry is told
// which attempt holds it and where it is stuck), and is undone when the
// monitor answers, so nothing is left that the daemon does not know.
func (c *Containers) Create(ctx context.Context, p CreateParams) error {
	attempt := p.Reservation
	if attempt == nil {
		var err error
		if attempt, err = c.Reserve(p.SandboxID, p.Config.Metadata, p.ID); err != nil {
			return err
		}
	}
	c.mu.Lock()
	attempt.owned = false
	attempt.step = "write the container record"
	c.mu.Unlock()
	key := attempt.key
	ctr := &Container{
		ID: p.ID, SandboxID: p.SandboxID, Config: p.Config, ImageID: p.ImageID, ImageName: p.ImageName, ImageRef: p.ImageRef,
		LogPath: p.LogPath, CreatedAt: time.Now().UnixNano(), State: StateCreated,
		Process: p.Spec.Process, StopSignal: p.StopSignal, Resources: p.Config.GetLinux().GetResources(),
		CgroupsPath: p.Spec.Linux.CgroupsPath, Creating: true,
	}
	step := attempt.Step
	fail := func(err error) error {
		c.mu.Lock()
		c.releaseLocked(attempt)
		c.mu.Unlock()
		return err
	}
	if err := ctx.Err(); err != nil {
		// Given up while an earlier step was stuck: nothing sent yet.
		return fail(fmt.Errorf("create container %s: %w", p.ID, err))
	}
	if err := c.persist(ctr); err != nil {
		return fail(err)
	}
	step("monitor: create (rootfs and bind mounts, namespaces, init up to its exec fifo)")
	done := make(chan error, 1)
	go func() { // ends when the monitor answers (or its connection is lost)
		var err error
		defer func() { done <- err }()
		defer panicguard.Recover("create container "+p.ID, &err)
		if err = failpoint.Inject("container.create.after-record"); err != nil {
			return
		}
		_, err = c.rt.Create(context.WithoutCancel(ctx), CreateRequest{
			ID: p.ID, Spec: p.Spec, LogPath: p.LogPath,
			Stdin: p.Config.Stdin, StdinOnce: p.Config.StdinOnce, TTY: p.Config.Tty,
		})
	}()
	undo := func(err error) error {
		step("undo the create: " + err.Error())
		_ = c.rt.Delete(context.WithoutCancel(ctx), p.ID)
		_ = c.records.Delete(containerKind, p.ID)
		return fail(err)
	}
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		step("the client gave up; waiting for the monitor's create to end, then undoing it")
		panicguard.Go("finish abandoned create of container "+p.ID, func() {
			created := <-done
			if created == nil {
				created = fmt.Errorf("its client gave up: %w", ctx.Err())
			}
			_ = undo(created)
		})
		return fmt.Errorf("create container %s: %w", p.ID, ctx.Err())
	}
	if err == nil {
		err = failpoint.Inject("container.create.after-monitor")
	}
	if err == nil {
		step("write the created container's record")
		ctr.Creating = false
		err = c.persist(ctr)
	}
	if err != nil {
		return undo(err)
	}
	c.mu.Lock()
	c.addLocked(ctr)
	delete(c.busy, p.ID)
	delete(c.creating, key)
	c.publishLocked(events.ContainerCreated, ctr)
	c.mu.Unlock()
	return nil
}

// resolve finds a container by ID or unique prefix.
func (c *Containers) resolve(idOrPrefix string) (*Container, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return idprefix.Resolve(c.m, idOrPrefix, "container", ErrNotFound, ErrAmbiguous)
}

// Start runs a created container's process.
func (c *Containers) Start(ctx context.Context, idOrPrefix string) error {
	ctr, err := c.resolve(idOrPrefix)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if ctr.State != StateCreated || ctr.starting {
		state := ctr.State
		c.mu.Unlock()
		return fmt.Errorf("%w: container %s is %s, not created", ErrFailedPrecondition, ctr.ID, state)
	}
	ctr.starting = true
	c.mu.Unlock()
	err = c.rt.Start(ctx, ctr.ID)
	if errors.Is(err, ErrMonitorLost) {
		err = c.resumeStart(ctx, ctr.ID, err)
	}
	if err != nil {
		c.mu.Lock()
		ctr.starting, ctr.pendingExit = false, nil
		if ctr.State != StateExited {
			ctr.State, ctr.FinishedAt, ctr.ExitCode = StateExited, time.Now().UnixNano(), 128
			ctr.Reason, ctr.Message = "StartError", err.Error()
			c.publishLocked(events.ContainerStopped, ctr)
		}
		c.mu.Unlock()
		_ = c.persist(ctr)
		c.unmountExited(ctr.ID)
		return err
	}
	if err := failpoint.Inject("container.start.after-monitor"); err != nil {
		return err
	}
	c.mu.Lock()
	ctr.starting = false
	ctr.State, ctr.StartedAt = StateRunning, time.Now().UnixNano()
	c.publishLocked(events.ContainerStarted, ctr)
	x := ctr.pendingExit
	ctr.pendingExit = nil
	c.mu.Unlock()
	if x != nil {
		c.setExit(ctr, x)
	}
	if err := c.persist(ctr); err != nil {
		return err
	}
	return failpoint.Inject("container.start.after-record")
}

// resumeStart finishes a start whose monitor died with the request in
// flight (lost): the monitor started again knows whether the process was
// released. Running is a start done; created is one not begun, made now.
func (c *Containers) resumeStart(ctx context.Context, id string, lost error) error {
	st, err := c.rt.State(ctx, id)
	if err != nil {
		return errors.Join(lost, err)
	}
	switch st.Status {
	case Running:
		klog.InfoS("Container started by a monitor that died before answering", "containerID", id)
		return nil
	case Created:
		return c.rt.Start(ctx, id)
	}
	return lost
}

// refresh updates a container's state from the monitor and reports it.
func (c *Containers) refresh(ctx context.Context, ctr *Container) (*Container, error) {
	c.mu.Lock()
	state := ctr.State
	c.mu.Unlock()
	if state == StateExited {
		return c.snapshot(ctr), nil
	}
	st, err := c.rt.State(ctx, ctr.ID)
	switch {
	case errors.Is(err, ErrNotFound):
		c.setExit(ctr, &Exit{Code: 255, Unknown: true, FinishedAt: time.Now()})
	case err != nil:
		return c.snapshot(ctr), err
	case st.Status == Stopped && st.Exit != nil:
		c.setExit(ctr, st.Exit)
	case st.Status == Running && state == StateRunning:
		c.mu.Lock()
		if ctr.State == StateRunning {
			ctr.Message = st.Message
		}
		c.mu.Unlock()
	case st.Status == Running && state == StateCreated:
		c.mu.Lock()
		if ctr.State == StateCreated && !ctr.starting {
			ctr.State = StateRunning
			if !st.StartedAt.IsZero() {
				ctr.StartedAt = st.StartedAt.UnixNano()
			}
			c.publishLocked(events.ContainerStarted, ctr)
		}
		c.mu.Unlock()
	}
	return c.snapshot(ctr), nil
}

// setExit records the container's exit, once: the first observation wins.
func (c *Containers) setExit(ctr *Container, x *Exit) {
	c.mu.Lock()
	if ctr.State == StateExited {
		c.mu.Unlock()
		return
	}
	if ctr.starting {
		// Start publishes STARTED first, then applies this.
		ctr.pendingExit = x
		c.mu.Unlock()
		return
	}
	ctr.State = StateExited
	ctr.ExitCode = int32(x.Code)
	ctr.FinishedAt = x.FinishedAt.UnixNano()
	switch {
	case x.OOMKilled:
		ctr.Reason = "OOMKilled"
		metrics.OOMKill()
	case x.Unknown:
		ctr.Reason, ctr.Message = "Unknown", "the container's exit could not be observed"
	case x.Code == 0:
		ctr.Reason = "Completed"
	default:
		ctr.Reason = "Error"
	}
	c.publishLocked(events.ContainerStopped, ctr)
	c.mu.Unlock()
	if err := c.persist(ctr); err != nil {
		klog.ErrorS(err, "Recording container exit", "containerID", ctr.ID)
	}
	c.unmountExited(ctr.ID)
}

// unmountExited takes an exited container's rootfs out of the host's mount
// table, keeping its writable layer until RemoveContainer, as containerd
// does on a task's exit: kubelet keeps exited containers for their logs
// and status (thousands on a busy node), and every overlay left mounted
// makes each new mount namespace (every container start) copy one more
// mount. A failure is logged: RemoveContainer unmounts again.
func (c *Containers) unmountExited(id string) {
	if c.rootfs == nil {
		return
	}
	if err := c.rootfs.UnmountRootfsKeepLayer(id); err != nil {
		klog.ErrorS(err, "Unmounting an exited container's rootfs", "containerID", id)
	}
}

func (c *Containers) snapshot(ctr *Container) *Container {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := *ctr
	return &s
}

// Get returns a container's current state.
func (c *Containers) Get(ctx context.Context, idOrPrefix string) (*Container, error) {
	ctr, err := c.resolve(idOrPrefix)
	if err != nil {
		return nil, err
	}
	return c.refresh(ctx, ctr)
}

// Filter selects containers for List.
type Filter struct {
	ID, SandboxID string
	State         string
	Selector      map[string]string
}

// List returns the containers matching f, oldest first, as crid knows
// them: it asks the monitor nothing. The exit watcher (watchExits) records
// each exit as the monitor reports it, and Start, Stop and Get record what
// they see, so the list is as current as those; asking the monitor for the
// state of every live container on every list cost a round trip each
// (kubelet relists every second: 1,000 requests a relist at 1,000 running
// containers, with the list waiting on each in turn).
func (c *Containers) List(_ context.Context, f Filter) []*Container {
	c.mu.Lock()
	var out []*Container
	from := c.m
	if len(f.SandboxID) >= idprefix.IDLen {
		from = c.bySandbox[f.SandboxID] // a whole pod ID: only its own
	}
	for id, ctr := range from {
		if c.busy[id] || (f.ID != "" && !strings.HasPrefix(id, f.ID)) || (f.SandboxID != "" && !strings.HasPrefix(ctr.SandboxID, f.SandboxID)) ||
			(f.State != "" && ctr.State != f.State) || !hasLabels(ctr.Config.Labels, f.Selector) {
			continue
		}
		s := *ctr
		out = append(out, &s)
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt < out[j].CreatedAt })
	return out
}

// hasLabels reports whether every selector label is among labels.
func hasLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// CountByState counts the containers List would show, by their last known
// state ("created", "running", "exited"; all always present). Unlike List
// it asks the monitor nothing: the exit watcher keeps the states current,
// and a metrics scrape must not wait on the monitor.
func (c *Containers) CountByState() map[string]int {
	out := map[string]int{StateCreated: 0, StateRunning: 0, StateExited: 0}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, ctr := range c.m {
		if !c.busy[id] {
			out[ctr.State]++
		}
	}
	return out
}

// Stop sends the stop signal, waits up to timeout, then kills. It returns
// once the process is gone; stopping a stopped container does nothing.
func (c *Containers) Stop(ctx context.Context, idOrPrefix string, timeout time.Duration) error {
	ctr, err := c.resolve(idOrPrefix)
	if errors.Is(err, ErrNotFound) {
		return nil // CRI: stopping an unknown container is not an error
	}
	if err != nil {
		return err
	}
	return c.stop(ctx, ctr, timeout)
}

func (c *Containers) stop(ctx context.Context, ctr *Container, timeout time.Duration) error {
	s, err := c.refresh(ctx, ctr)
	if err != nil {
		return err
	}
	if s.State == StateExited {
		return nil
	}
	if s.State == StateCreated {
		// Never started: there is no user process to signal.
		if err := c.rt.Delete(ctx, ctr.ID); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		c.setExit(ctr, &Exit{Code: 0, FinishedAt: time.Now()})
		return nil
	}
	if timeout > 0 {
		sig := parseSignal(ctr.StopSignal)
		if err := c.rt.Kill(ctx, ctr.ID, sig); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := failpoint.Inject("container.stop.after-signal"); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, timeout)
		x, err := c.rt.Wait(wctx, ctr.ID)
		cancel()
		if err == nil {
			c.setExit(ctr, &x)
			return nil
		}
	}
	if err := c.rt.KillAll(ctx, ctr.ID, syscall.SIGKILL); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	x, err := c.rt.Wait(ctx, ctr.ID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if err := failpoint.Inject("container.stop.after-exit"); err != nil {
		return err
	}
	if err == nil {
		c.setExit(ctr, &x)
	}
	return failpoint.Inject("container.stop.after-record")
}

// Remove kills the container if it runs, deletes it, its rootfs and its
// record. Removing an unknown container is not an error.
func (c *Containers) Remove(ctx context.Context, idOrPrefix string) error {
	ctr, err := c.resolve(idOrPrefix)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := c.stop(ctx, ctr, 0); err != nil {
		return err
	}
	if err := failpoint.Inject("container.remove.after-stop"); err != nil {
		return err
	}
	if err := c.rt.Delete(ctx, ctr.ID); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if err := failpoint.Inject("container.remove.after-delete"); err != nil {
		return err
	}
	if c.rootfs != nil {
		if err := c.rootfs.UnmountRootfs(ctr.ID); err != nil {
			return err
		}
	}
	if err := failpoint.Inject("container.remove.after-rootfs"); err != nil {
		return err
	}
	l := c.recLock(ctr.ID)
	l.Lock()
	c.mu.Lock()
	ctr.removed = true
	c.mu.Unlock()
	err = c.records.Delete(containerKind, ctr.ID)
	l.Unlock()
	if err != nil {
		c.mu.Lock()
		ctr.removed = false
		c.mu.Unlock()
		return err
	}
	if err := failpoint.Inject("container.remove.after-record"); err != nil {
		return err
	}
	c.mu.Lock()
	if c.m[ctr.ID] == ctr {
		c.deleteLocked(ctr)
		c.publishLocked(events.ContainerDeleted, ctr)
	}
	if c.names[nameKey(ctr.SandboxID, ctr.Config.Metadata)] == ctr.ID {
		delete(c.names, nameKey(ctr.SandboxID, ctr.Config.Metadata))
	}
	c.mu.Unlock()
	return nil
}

// InSandbox lists the IDs of a pod's containers.
func (c *Containers) InSandbox(sandboxID string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	for id := range c.bySandbox[sandboxID] {
		ids = append(ids, id)
	}
	return ids
}

// addLocked adds ctr to the map and the pod index.
func (c *Containers) addLocked(ctr *Container) {
	c.m[ctr.ID] = ctr
	if c.bySandbox == nil {
		c.bySandbox = map[string]map[string]*Container{}
	}
	pod := c.bySandbox[ctr.SandboxID]
	if pod == nil {
		pod = map[string]*Container{}
		c.bySandbox[ctr.SandboxID] = pod
	}
	pod[ctr.ID] = ctr
}

// deleteLocked removes ctr from the map and the pod index.
func (c *Containers) deleteLocked(ctr *Container) {
	delete(c.m, ctr.ID)
	if pod := c.bySandbox[ctr.SandboxID]; pod != nil {
		delete(pod, ctr.ID)
		if len(pod) == 0 {
			delete(c.bySandbox, ctr.SandboxID)
		}
	}
}

// StopAll stops every container of a pod (podsandbox.Stop).
func (c *Containers) StopAll(ctx context.Context, sandboxID string) error {
	var errs []error
	for _, id := range c.InSandbox(sandboxID) {
		errs = append(errs, c.Stop(ctx, id, 0))
	}
	return errors.Join(errs...)
}

// RemoveAll removes every container of a pod (podsandbox.Remove).
func (c *Containers) RemoveAll(ctx context.Context, sandboxID string) error {
	var errs []error
	for _, id := range c.InSandbox(sandboxID) {
		errs = append(errs, c.Remove(ctx, id))
	}
	return errors.Join(errs...)
}

// ExecSync runs cmd in a running container and returns its output.
func (c *Containers) ExecSync(ctx context.Context, idOrPrefix string, cmd []string, timeout time.Duration) (ExecResult, error) {
	ctr, err := c.Get(ctx, idOrPrefix)
	if err != nil {
		return ExecResult{}, err
	}
	if ctr.State != StateRunning {
		return ExecResult{}, fmt.Errorf("%w: container %s is %s, not running", ErrFailedPrecondition, ctr.ID, ctr.State)
	}
	p := *ctr.Process
	p.Args = cmd
	p.Terminal = false
	res, err := c.rt.Exec(ctx, ExecRequest{ID: ctr.ID, Process: &p, Timeout: timeout})
	return res, c.execFailed(ctx, ctr.ID, err)
}

// execFailed classes an exec that could not start: a container that ended
// between the state check and the exec's setns (its /proc/<pid>/ns gone)
// is FailedPrecondition, as if it had ended before the call, not Unknown.
// The monitor may record the exit well after the exec saw the init gone
// (it drains the output first), so the init itself is looked at too.
func (c *Containers) execFailed(ctx context.Context, id string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, ErrNotFound) || errors.Is(err, ErrFailedPrecondition) || errors.Is(err, ErrInvalidArgument) {
		return err
	}
	if c.rt.initEnded(id) {
		return fmt.Errorf("%w: container %s ended during the exec: %w", ErrFailedPrecondition, id, err)
	}
	for range 2 {
		now, gerr := c.Get(context.WithoutCancel(ctx), id)
		if errors.Is(gerr, ErrNotFound) || (gerr == nil && now.State != StateRunning) {
			return fmt.Errorf("%w: container %s ended during the exec: %w", ErrFailedPrecondition, id, err)
		}
		if gerr != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
	return err
}

// ReopenLog reopens a running container's log file (kubelet's rotation).
func (c *Containers) ReopenLog(ctx context.Context, idOrPrefix string) error {
	ctr, err := c.Get(ctx, idOrPrefix)
	if err != nil {
		return err
	}
	if ctr.State != StateRunning {
		return fmt.Errorf("%w: container %s is not running", ErrFailedPrecondition, ctr.ID)
	}
	return c.rt.ReopenLog(ctx, ctr.ID)
}

// parseSignal reads "SIGTERM", "TERM", "15"; anything else is SIGTERM.
func parseSignal(s string) syscall.Signal {
	s = strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if s == "" {
		return syscall.SIGTERM
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n)
	}
	for sig := syscall.Signal(1); sig < 65; sig++ {
		if strings.TrimPrefix(strings.ToUpper(unix.SignalName(sig)), "SIG") == s {
			return sig
		}
	}
	return syscall.SIGTERM
}

// Pid returns the pid of a running container's init, 0 when not running.
func (c *Containers) Pid(ctx context.Context, id string) (int, error) {
	st, err := c.rt.State(ctx, id)
	if err != nil {
		return 0, err
	}
	if st.Status != Running {
		return 0, nil
	}
	return st.Pid, nil
}
