package podsandbox

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildPause compiles cmd/crid-pause as make build does.
func buildPause(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "crid-pause")
	cmd := exec.Command("gcc", "-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", "-o", out, "../cmd/crid-pause/pause.c")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc crid-pause (make deps installs gcc and libc6-dev): %v\n%s", err, b)
	}
	return out
}

func TestPrepareBuiltinRootfs(t *testing.T) {
	pause := buildPause(t)
	dir := filepath.Join(t.TempDir(), "infra")
	rootfs, err := PrepareBuiltinRootfs(dir, pause)
	if err != nil {
		t.Fatal(err)
	}
	if rootfs != filepath.Join(dir, "rootfs") {
		t.Fatalf("rootfs %s", rootfs)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o711 {
		t.Fatalf("%s: mode %v (%v), want 0711: not listable, passable by a userns pod's infra", dir, fi.Mode(), err)
	}
	want, _ := os.ReadFile(pause)
	check := func() {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(rootfs, "pause"))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("rootfs /pause: %v (%d bytes, want %d)", err, len(got), len(want))
		}
		if fi, _ := os.Stat(filepath.Join(rootfs, "pause")); fi.Mode().Perm() != pauseMode {
			t.Errorf("/pause mode %v, want %v", fi.Mode(), os.FileMode(pauseMode))
		}
		entries, err := os.ReadDir(rootfs)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if got := strings.Join(names, " "); got != "dev pause proc sys" {
			t.Errorf("rootfs holds %q, want the binary and the mount points only", got)
		}
	}
	check()
	// A running infra keeps the file it executed: a restart renames a new
	// copy over it, never writes into it.
	old, err := os.Stat(filepath.Join(rootfs, "pause"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PrepareBuiltinRootfs(dir, pause); err != nil {
		t.Fatalf("second start: %v", err)
	}
	check()
	// The same binary is kept as it is: a start on a full root_dir needs
	// no room for a copy.
	now, _ := os.Stat(filepath.Join(rootfs, "pause"))
	if !os.SameFile(old, now) {
		t.Error("the same binary was installed again")
	}
	// Another binary (an upgrade) is renamed over it: the running one's
	// file keeps its bytes.
	running, err := os.Open(filepath.Join(rootfs, "pause"))
	if err != nil {
		t.Fatal(err)
	}
	defer running.Close()
	newer := filepath.Join(t.TempDir(), "crid-pause")
	if err := os.WriteFile(newer, append(bytes.Clone(want), 0), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := PrepareBuiltinRootfs(dir, newer); err != nil {
		t.Fatalf("start with another binary: %v", err)
	}
	upgraded, _ := os.Stat(filepath.Join(rootfs, "pause"))
	if os.SameFile(old, upgraded) || upgraded.Size() != int64(len(want)+1) {
		t.Error("another binary was written into the running one's file, not renamed over it")
	}
	if b, _ := io.ReadAll(running); !bytes.Equal(b, want) {
		t.Error("the running binary's file was changed")
	}

	if _, err := PrepareBuiltinRootfs(dir, filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "crid-pause") {
		t.Errorf("missing binary: %v", err)
	}
	notExec := filepath.Join(t.TempDir(), "crid-pause")
	if err := os.WriteFile(notExec, want, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := PrepareBuiltinRootfs(dir, notExec); err == nil || !strings.Contains(err.Error(), "not an executable") {
		t.Errorf("non-executable binary: %v", err)
	}
}

// crid-pause as PID 1 of a PID namespace, as in a pod: it reaps the
// orphans reparented to it and exits 0 on SIGTERM and on SIGINT (a PID 1
// gets no signal it has not provided for).
func TestPauseAsPID1(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root for a PID namespace (the unit tests run as root)")
	}
	pause := buildPause(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(pause)
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-done
			})
			pid := cmd.Process.Pid
			// Orphans: sh starts two sleeps in pause's namespace and exits
			// at once; they are reparented to pause and end after 0.3 s.
			sh := exec.Command("nsenter", "--target", strconv.Itoa(pid), "--pid", "--", "sh", "-c", "sleep 0.3 >/dev/null 2>&1 & sleep 0.3 >/dev/null 2>&1 & exit 0")
			if out, err := sh.CombinedOutput(); err != nil {
				t.Fatalf("nsenter: %v\n%s", err, out)
			}
			orphans := children(pid)
			if len(orphans) != 2 {
				t.Fatalf("pause has children %v, want the two orphaned sleeps", orphans)
			}
			deadline := time.Now().Add(10 * time.Second)
			for len(children(pid)) > 0 {
				if time.Now().After(deadline) {
					t.Fatalf("pause did not reap its orphans: children %v (states %v)", children(pid), states(children(pid)))
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				done <- err // for the cleanup
				if err != nil {
					t.Fatalf("pause exited on %s with %v (stderr %q), want status 0", sig, err, stderr.String())
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("pause did not exit on %s", sig)
			}
		})
	}
}

// children lists the pids whose parent is ppid.
func children(ppid int) []int {
	var out []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(ppid) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			out = append(out, pid)
		}
	}
	return out
}

func states(pids []int) []string {
	var out []string
	for _, pid := range pids {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if i := bytes.LastIndexByte(b, ')'); i > 0 && len(b) > i+2 {
			out = append(out, string(b[i+2]))
		}
	}
	return out
}
