package monitor

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The watcher reads a container's OOM kills when memory.events changes and
// keeps the count after the cgroup (here a plain directory standing in
// for it) is gone, as a systemd scope is at its last process's exit.
func TestOOMWatcherKeepsKillsOfARemovedCgroup(t *testing.T) {
	w, err := newOOMWatcher()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.run(ctx) }()
	defer func() { cancel(); <-done }()

	dir := t.TempDir()
	events := filepath.Join(dir, "memory.events")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(events, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
	if err := w.add("c1", dir); err != nil {
		t.Fatal(err)
	}
	if w.killed("c1", false) {
		t.Fatal("killed before any OOM kill")
	}
	if w.killed("c1", true) {
		t.Fatal("killed with no OOM kill after settling")
	}
	write("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
	for deadline := time.Now().Add(5 * time.Second); ; {
		w.mu.Lock()
		n := w.byID["c1"].kills
		w.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher did not read the OOM kill")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // IN_IGNORED arrives
	if !w.killed("c1", false) {
		t.Fatal("the count was lost with the cgroup")
	}
	w.remove("c1")
	if w.killed("c1", true) {
		t.Fatal("a removed container still counts")
	}
	if w.killed("unknown", true) {
		t.Fatal("an unknown container counts")
	}
}

// A cgroup removed before the watcher could read its kill (systemd won
// the race): the parent's counter, raised since the watch began, counts.
func TestOOMWatcherFallsBackToTheParent(t *testing.T) {
	w, err := newOOMWatcher()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.run(ctx) }()
	defer func() { cancel(); <-done }()

	parent := t.TempDir()
	dir := filepath.Join(parent, "crid-c2.scope")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	put := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(p, "memory.events"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put(parent, "oom_kill 2\n")
	put(dir, "oom_kill 0\n")
	if err := w.add("c2", dir); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // IN_IGNORED arrives
	if w.killed("c2", true) {
		t.Fatal("killed without a new kill under the parent")
	}
	put(parent, "oom_kill 3\n")
	if !w.killed("c2", true) {
		t.Fatal("the parent's new kill was not counted")
	}
	if w.killed("c2", false) {
		t.Fatal("an exit that was not SIGKILL counted as OOM")
	}
}
