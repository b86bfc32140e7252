package holder

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/crid-dev/crid/oci/protocol"
)

// startHolder runs a holder in this process on fresh dirs and connects.
func startHolder(t *testing.T) (*Client, string) {
	t.Helper()
	dir := t.TempDir()
	runDir, stateDir := filepath.Join(dir, "run"), filepath.Join(dir, "state")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	readyR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Config{RunDir: runDir, StateDir: stateDir}, readyW) }()
	b := make([]byte, 64)
	n, _ := readyR.Read(b)
	readyR.Close()
	if string(b[:n]) != "ok\n" {
		cancel()
		t.Fatalf("holder did not start: %q %v", b[:n], <-done)
	}
	c, err := Connect(ctx, "/nonexistent/never-started", runDir, stateDir)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("holder Run: %v", err)
		}
	})
	return c, stateDir
}

// A pipe whose only other reader is gone does not kill or fail its writer
// while the holder keeps a read end, and what was written comes back
// through Take.
func TestHeldPipeKeepsWriterAliveAndOutput(t *testing.T) {
	c, _ := startHolder(t)
	ctx := context.Background()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := c.Hold(ctx, HoldRequest{ID: "ctr1", Stdio: []string{protocol.StdioStdout}}, []*os.File{r}); err != nil {
		t.Fatal(err)
	}
	r.Close() // the monitor (and the daemon) die: their read ends go
	if _, err := w.Write([]byte("kept\n")); err != nil {
		t.Fatalf("write with only the holder reading: %v (without the holder: EPIPE)", err)
	}
	files, err := c.Take(ctx, "ctr1")
	if err != nil || files[protocol.StdioStdout] == nil {
		t.Fatalf("take: %v %v", files, err)
	}
	got := make([]byte, 64)
	n, err := files[protocol.StdioStdout].Read(got)
	files[protocol.StdioStdout].Close()
	if err != nil || string(got[:n]) != "kept\n" {
		t.Fatalf("read from the taken end: %q %v", got[:n], err)
	}

	// Released, the holder keeps nothing: the writer sees EPIPE.
	if err := c.Release(ctx, "ctr1"); err != nil {
		t.Fatal(err)
	}
	if files, err := c.Take(ctx, "ctr1"); err != nil || files != nil {
		t.Fatalf("take after release: %v %v", files, err)
	}
	if _, err := w.Write([]byte("lost\n")); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("write after release: %v, want EPIPE (the holder still keeps a reader)", err)
	}
}

// The holder records the exit of an init it watches although it is not
// its parent: the code the process exited with, and when.
func TestHolderRecordsSeenExit(t *testing.T) {
	c, stateDir := startHolder(t)
	cmd := exec.Command("sh", "-c", "read x; exit 7")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	start, _, err := protocol.ProcStartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	const id = "ctr2"
	if err := os.MkdirAll(protocol.ContainerDir(stateDir, id), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := c.Hold(context.Background(), HoldRequest{ID: id, Pid: pid, InitStartTime: start}, nil); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	stdin.Close() // the process exits 7; it stays a zombie until we wait
	deadline := time.Now().Add(10 * time.Second)
	var e *protocol.Exit
	for e == nil {
		if time.Now().After(deadline) {
			t.Fatal("no seen exit recorded within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
		if e, err = protocol.ReadSeenExit(stateDir, id); err != nil {
			t.Fatal(err)
		}
	}
	_ = cmd.Wait()
	if e.Code != 7 || e.Unknown || e.ReapedBy != "holder" {
		t.Errorf("seen exit %+v, want code 7 seen by the holder", e)
	}
	if e.At.Before(before.Add(-time.Second)) || e.At.After(time.Now()) {
		t.Errorf("seen at %s; the process ended after %s", e.At, before)
	}
	// The container's own exit file is never the holder's to write.
	if x, err := protocol.ReadExit(stateDir, id); err != nil || x != nil {
		t.Errorf("exit file written by the holder: %+v %v", x, err)
	}
}

// Bad requests are refused, their descriptors closed.
func TestHolderRefusesBadRequests(t *testing.T) {
	c, _ := startHolder(t)
	ctx := context.Background()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := c.Hold(ctx, HoldRequest{ID: "../x", Stdio: []string{protocol.StdioStdout}}, []*os.File{r}); protocol.CodeOf(err) != protocol.CodeInvalidArgument {
		t.Errorf("hold with a bad ID: %v", err)
	}
	if err := c.Hold(ctx, HoldRequest{ID: "ok", Stdio: []string{"stdout", "stderr"}}, []*os.File{r}); protocol.CodeOf(err) != protocol.CodeInvalidArgument {
		t.Errorf("hold with two roles for one descriptor: %v", err)
	}
	if _, err := c.Take(ctx, "a/b"); protocol.CodeOf(err) != protocol.CodeInvalidArgument {
		t.Errorf("take with a bad ID: %v", err)
	}
	// Nothing of r stayed in the holder: closing ours leaves no reader.
	r.Close()
	if _, err := w.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("write after refused holds: %v, want EPIPE", err)
	}
}

// The holder outlives its monitor's connection while it holds something
// (a new monitor takes it back), and exits once it holds nothing and no
// monitor is connected.
func TestHolderLivesWhileItHolds(t *testing.T) {
	dir := t.TempDir()
	runDir, stateDir := filepath.Join(dir, "run"), filepath.Join(dir, "state")
	readyR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), Config{RunDir: runDir, StateDir: stateDir}, readyW) }()
	b := make([]byte, 64)
	n, _ := readyR.Read(b)
	readyR.Close()
	if string(b[:n]) != "ok\n" {
		t.Fatalf("holder did not start: %q %v", b[:n], <-done)
	}
	ctx := context.Background()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	c1, err := Connect(ctx, "/nonexistent/never-started", runDir, stateDir)
	if err != nil {
		t.Fatal(err)
	}
	err = c1.Hold(ctx, HoldRequest{ID: "c", Stdio: []string{protocol.StdioStdout}}, []*os.File{r})
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	c1.Close() // the monitor dies
	select {
	case err := <-done:
		t.Fatalf("holder exited with its monitor while holding a container: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	c2, err := Connect(ctx, "/nonexistent/never-started", runDir, stateDir)
	if err != nil {
		t.Fatal(err)
	}
	files, err := c2.Take(ctx, "c")
	if err != nil || files[protocol.StdioStdout] == nil {
		t.Fatalf("take from a new connection: %v %v", files, err)
	}
	files[protocol.StdioStdout].Close()
	if err := c2.Release(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	c2.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("holder Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("holder still running with nothing held and no monitor connected")
	}
}
