package podsandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/events"
	"github.com/crid-dev/crid/records"
)

// fakeInfra reports pid as the running infra.
type fakeInfra struct {
	mu  sync.Mutex
	pid int
}

func (f *fakeInfra) Start(context.Context, *Sandbox) (int, error) { return 0, errors.New("not used") }
func (f *fakeInfra) Stop(context.Context, *Sandbox) error         { return nil }
func (f *fakeInfra) Remove(context.Context, *Sandbox) error       { return nil }
func (f *fakeInfra) Pid(context.Context, *Sandbox) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pid, nil
}

type eventLog struct {
	mu  sync.Mutex
	got []events.Event
}

func (l *eventLog) Publish(e events.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, e)
}

func (l *eventLog) events() []events.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]events.Event(nil), l.got...)
}

// startInit starts a process as PID 1 of a new PID namespace, as an infra
// process is; it is killed at the end of the test.
func startInit(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// watchedPod is a ready pod whose infra is a real process, adopted as
// after a daemon restart.
func watchedPod(t *testing.T) (*Manager, *Sandbox, *exec.Cmd, *eventLog) {
	t.Helper()
	dir := t.TempDir()
	store, err := records.Open(filepath.Join(dir, "records"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	init := startInit(t)
	evs := &eventLog{}
	m := newManager(Options{RunDir: filepath.Join(dir, "run"), Records: store, Infra: &fakeInfra{pid: init.Process.Pid}, Events: evs})
	t.Cleanup(m.Close)
	sb := &Sandbox{ID: "0123abcd", State: StateReady, InfraPid: init.Process.Pid, Namespaces: map[string]string{},
		Config: &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "p", Namespace: "n", Uid: "u"},
			Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_POD}}}}}
	m.sandboxes[sb.ID] = sb
	m.names[nameKey(sb.Config.Metadata)] = sb.ID
	if err := m.adoptInfra(context.Background(), sb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unpinNamespaces(pinsIn(m.dir(sb.ID))) })
	return m, sb, init, evs
}

func nsIno(t *testing.T, p string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// The pod's PID namespace is pinned from its infra process; when the infra
// dies, the pod turns NOTREADY, a STOPPED event of the pod is published,
// and its PID namespace is no longer handed out.
func TestInfraExitMakesPodNotReady(t *testing.T) {
	m, sb, init, evs := watchedPod(t)
	pin, err := m.PidNamespace(sb)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := nsIno(t, pin), nsIno(t, fmt.Sprintf("/proc/%d/ns/pid", init.Process.Pid)); got != want {
		t.Fatalf("pin holds namespace %d, the infra's is %d", got, want)
	}
	if err := init.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m.mu.Lock()
		state := sb.State
		m.mu.Unlock()
		if state == StateNotReady && len(evs.events()) > 0 { // the event follows the state
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s, events %v after its infra died", state, evs.events())
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := evs.events()
	if len(got) != 1 || got[0].Type != events.ContainerStopped || got[0].ContainerID != sb.ID || got[0].SandboxID != sb.ID {
		t.Fatalf("events %+v, want one STOPPED of the pod", got)
	}
	if _, err := m.PidNamespace(sb); !errors.Is(err, ErrNotReady) {
		t.Fatalf("PID namespace of a pod whose infra died: %v", err)
	}
	recs, _ := m.opts.Records.Load(recordKind)
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	if rec, err := decodeRecord(recs[0]); err != nil || rec.State != StateNotReady {
		t.Fatalf("record %+v, %v: want it not ready", rec, err)
	}
}

// The exit is noticed even before it is handled: PidNamespace asks the
// pidfd, not the pod's state.
func TestPidNamespaceRefusedAsSoonAsInfraExits(t *testing.T) {
	m, sb, init, _ := watchedPod(t)
	unlock := func() {}
	if _, u, err := m.lock(context.Background(), sb.ID); err == nil {
		unlock = u // holds off the exit handler
	}
	defer unlock()
	if err := init.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_, _ = init.Process.Wait()
	if _, err := m.PidNamespace(sb); !errors.Is(err, ErrNotReady) {
		t.Fatalf("PID namespace of a dead infra: %v", err)
	}
}

// After a restart, a process with the recorded pid that does not hold the
// pod's pinned PID namespace is not the infra: the pod is not adopted.
func TestAdoptRefusesAnotherProcessWithTheInfrasPid(t *testing.T) {
	m, sb, _, _ := watchedPod(t)
	m.unwatch(sb.ID)
	impostor := startInit(t)
	m.opts.Infra.(*fakeInfra).pid = impostor.Process.Pid
	sb.InfraPid = impostor.Process.Pid
	if err := m.adoptInfra(context.Background(), sb); !errors.Is(err, ErrNotReady) {
		t.Fatalf("adopting a process outside the pinned namespace: %v", err)
	}
	// No pid from the monitor: not adopted either.
	m.opts.Infra.(*fakeInfra).pid = 0
	if err := m.adoptInfra(context.Background(), sb); !errors.Is(err, ErrNotReady) {
		t.Fatalf("adopting an infra the monitor does not run: %v", err)
	}
}

// A target container's PID namespace is pinned for a create and released
// after; a pid the monitor no longer reports is refused.
func TestPinTargetPidNamespace(t *testing.T) {
	m, sb, _, _ := watchedPod(t)
	target := startInit(t)
	pid := target.Process.Pid
	path, release, err := m.PinTargetPidNamespace(sb, "c1", pid, func() (int, error) { return pid, nil })
	if err != nil {
		t.Fatal(err)
	}
	if got, want := nsIno(t, path), nsIno(t, fmt.Sprintf("/proc/%d/ns/pid", pid)); got != want {
		t.Fatalf("target pin holds %d, want %d", got, want)
	}
	release()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("target pin left after release: %v", err)
	}
	if _, _, err := m.PinTargetPidNamespace(sb, "c2", pid, func() (int, error) { return 0, nil }); err == nil {
		t.Fatal("pinned the namespace of a container the monitor says stopped")
	}
	if entries, _ := os.ReadDir(filepath.Join(m.dir(sb.ID), "ns")); len(entries) != 1 {
		t.Fatalf("pins left: %v", entries)
	}
	// One left by a crash mid-create goes at the next start.
	if _, _, err := m.PinTargetPidNamespace(sb, "c3", pid, func() (int, error) { return pid, nil }); err != nil {
		t.Fatal(err)
	}
	unpinTargets(m.dir(sb.ID))
	if entries, _ := os.ReadDir(filepath.Join(m.dir(sb.ID), "ns")); len(entries) != 1 || entries[0].Name() != "pid" {
		t.Fatalf("pins after the restart's cleanup: %v", entries)
	}
}
