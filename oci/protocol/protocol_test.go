package protocol

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func pair(t *testing.T) (*FrameConn, *FrameConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *FrameConn {
		f := os.NewFile(uintptr(fd), "sock")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		return NewFrameConn(c.(*net.UnixConn))
	}
	a, b := conn(fds[0]), conn(fds[1])
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestFramesCarryDescriptors(t *testing.T) {
	a, b := pair(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	big := bytes.Repeat([]byte("x"), 3<<20) // several recvmsg and a partial sendmsg
	go func() {
		a.WriteFrame([]byte("one"), []*os.File{w})
		a.WriteFrame(big, nil)
		a.WriteFrame([]byte("three"), []*os.File{w, w})
		w.Close()
	}()
	p, fds, err := b.ReadFrame()
	if err != nil || string(p) != "one" || len(fds) != 1 {
		t.Fatalf("frame 1: %q %d %v", p, len(fds), err)
	}
	if _, err := fds[0].Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	fds[0].Close()
	buf := make([]byte, 2)
	if _, err := io.ReadFull(r, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("through passed fd: %q %v", buf, err)
	}
	p, fds, err = b.ReadFrame()
	if err != nil || !bytes.Equal(p, big) || len(fds) != 0 {
		t.Fatalf("frame 2: %d bytes %d fds %v", len(p), len(fds), err)
	}
	p, fds, err = b.ReadFrame()
	if err != nil || string(p) != "three" || len(fds) != 2 {
		t.Fatalf("frame 3: %q %d %v", p, len(fds), err)
	}
	CloseFiles(fds)
}

func rawHeader(n uint32, nfds byte) []byte {
	h := make([]byte, 5)
	binary.BigEndian.PutUint32(h, n)
	h[4] = nfds
	return h
}

// Garbage never panics the server and never reaches the handler: the
// connection ends with an error and the next connection is served.
func TestServeConnSurvivesGarbage(t *testing.T) {
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	for _, tc := range []struct {
		name  string
		bytes []byte
		fds   []*os.File
	}{
		{"huge length", rawHeader(MaxPayload+1, 0), nil},
		{"too many fds announced", rawHeader(2, MaxFDs+1), nil},
		{"fds announced but not sent", append(rawHeader(2, 3), "{}"...), nil},
		{"not json", append(rawHeader(3, 0), "abc"...), nil},
		{"no method", append(rawHeader(8, 0), `{"id":1}`...), nil},
		{"json array", append(rawHeader(2, 1), "[]"...), []*os.File{w}},
		{"truncated", append(rawHeader(100, 0), "{"...), nil},
		{"random", []byte("\x00\x00\x00\x07\x00{\"id\":[}"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := pair(t)
			called := false
			errc := make(chan error, 1)
			go func() {
				errc <- ServeConn(context.Background(), b, func(context.Context, string, json.RawMessage, []*os.File) (any, []*os.File, error) {
					called = true
					return nil, nil, nil
				}, 4)
			}()
			var oob []byte
			if len(tc.fds) > 0 {
				oob = syscall.UnixRights(int(tc.fds[0].Fd()))
			}
			if _, _, err := a.c.WriteMsgUnix(tc.bytes, oob, nil); err != nil {
				t.Fatal(err)
			}
			a.c.CloseWrite()
			select {
			case err := <-errc:
				if err == nil {
					t.Fatal("ServeConn returned nil on garbage")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("ServeConn did not end")
			}
			if called {
				t.Fatal("handler called on garbage")
			}
		})
	}
}

func serve(t *testing.T, h Handler) *Client {
	t.Helper()
	a, b := pair(t)
	done := make(chan struct{})
	go func() { ServeConn(context.Background(), b, h, 8); close(done) }()
	c := NewClient(a)
	t.Cleanup(func() { c.Close(); <-done })
	return c
}

func TestCallsRunConcurrentlyAndCarryErrors(t *testing.T) {
	release := make(chan struct{})
	c := serve(t, func(ctx context.Context, method string, body json.RawMessage, fds []*os.File) (any, []*os.File, error) {
		CloseFiles(fds)
		switch method {
		case "block":
			select {
			case <-release:
			case <-ctx.Done():
			}
			return map[string]int{"n": 1}, nil, nil
		case "echo":
			var v IDRequest
			if err := Decode(body, &v); err != nil {
				return nil, nil, err
			}
			return v, nil, nil
		case "panic":
			panic("handler bug")
		case "missing":
			return nil, nil, Errorf(CodeNotFound, "container %q not found", "x")
		}
		return nil, nil, Errorf(CodeInvalidArgument, "unknown method %q", method)
	})
	ctx := context.Background()
	blocked := make(chan error, 1)
	go func() {
		var v map[string]int
		_, err := c.Call(ctx, "block", struct{}{}, nil, &v)
		if err == nil && v["n"] != 1 {
			err = errors.New("bad reply")
		}
		blocked <- err
	}()
	var got IDRequest
	if _, err := c.Call(ctx, "echo", IDRequest{ID: "abc"}, nil, &got); err != nil || got.ID != "abc" {
		t.Fatalf("echo while another call blocks: %+v %v", got, err)
	}
	_, err := c.Call(ctx, "panic", nil, nil, nil)
	if CodeOf(err) != CodeInternal || !strings.Contains(err.Error(), "internal error") {
		t.Fatalf("panic: %v", err)
	}
	_, err = c.Call(ctx, "missing", nil, nil, nil)
	if CodeOf(err) != CodeNotFound {
		t.Fatalf("missing: %v", err)
	}
	_, err = c.Call(ctx, "echo", json.RawMessage(`"not an object"`), nil, nil)
	if CodeOf(err) != CodeInvalidArgument {
		t.Fatalf("bad body: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.Call(cctx, "block", nil, nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled call: %v", err)
	}
	close(release)
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
}

func TestLostConnectionFailsPendingCalls(t *testing.T) {
	a, b := pair(t)
	c := NewClient(a)
	defer c.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), "wait", nil, nil, nil)
		errc <- err
	}()
	if _, _, err := b.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := <-errc; !errors.Is(err, ErrConnLost) {
		t.Fatalf("err = %v", err)
	}
	if _, err := c.Call(context.Background(), "x", nil, nil, nil); !errors.Is(err, ErrConnLost) {
		t.Fatalf("call after loss: %v", err)
	}
}

func TestExitFileFirstWriterWins(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "c1"), 0o700); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	ok, err := WriteExit(dir, "c1", Exit{Code: 3, At: at, ReapedBy: "daemon"})
	if !ok || err != nil {
		t.Fatal(ok, err)
	}
	ok, err = WriteExit(dir, "c1", Exit{Code: 255, Unknown: true})
	if ok || err != nil {
		t.Fatal("second write", ok, err)
	}
	e, err := ReadExit(dir, "c1")
	if err != nil || e == nil || e.Code != 3 || e.ReapedBy != "daemon" {
		t.Fatalf("%+v %v", e, err)
	}
	if e, err := ReadExit(dir, "nope"); e != nil || err != nil {
		t.Fatal(e, err)
	}
	if _, err := WriteExit(dir, "../x", Exit{}); err == nil {
		t.Fatal("path-escaping ID accepted")
	}
}

// The holder's seen exit is kept apart from the exit file, and never
// recreates the directory of a container removed meanwhile.
func TestSeenExit(t *testing.T) {
	dir := t.TempDir()
	if err := WriteSeenExit(dir, "gone", Exit{Code: 4}); err == nil {
		t.Fatal("seen exit written for a container without a directory")
	}
	if _, err := os.Stat(filepath.Join(dir, "gone")); !os.IsNotExist(err) {
		t.Fatalf("directory of a removed container recreated: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "c1"), 0o700); err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC()
	if err := WriteSeenExit(dir, "c1", Exit{Code: 4, At: at, ReapedBy: "holder"}); err != nil {
		t.Fatal(err)
	}
	e, err := ReadSeenExit(dir, "c1")
	if err != nil || e == nil || e.Code != 4 || !e.At.Equal(at) {
		t.Fatalf("seen exit %+v %v", e, err)
	}
	if x, err := ReadExit(dir, "c1"); x != nil || err != nil {
		t.Fatalf("seen exit read as the exit file: %+v %v", x, err)
	}
	if err := WriteSeenExit(dir, "../x", Exit{}); err == nil {
		t.Fatal("path-escaping ID accepted")
	}
}

func TestExitConventions(t *testing.T) {
	exited := syscall.WaitStatus(3 << 8)
	killed := syscall.WaitStatus(syscall.SIGKILL)
	if e := ExitFromStatus(exited, time.Now(), "", "t"); e.Code != 3 || e.Signal != 0 {
		t.Fatalf("%+v", e)
	}
	if e := ExitFromStatus(killed, time.Now(), "", "t"); e.Code != 137 || e.Signal != 9 {
		t.Fatalf("%+v", e)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "memory.oom_control"), []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"), 0o600)
	if e := ExitFromStatus(killed, time.Now(), dir, "t"); !e.OOMKilled {
		t.Fatalf("%+v", e)
	}
}

func TestProcStartTime(t *testing.T) {
	st, state, err := ProcStartTime(os.Getpid())
	if err != nil || st == 0 || state == 0 {
		t.Fatal(st, state, err)
	}
}

// A zombie's wait status is read from /proc, exit codes and signals alike;
// a running process or a wrong start time gives none.
func TestZombieStatus(t *testing.T) {
	for _, tc := range []struct {
		script string
		check  func(syscall.WaitStatus) bool
	}{
		{"exit 7", func(ws syscall.WaitStatus) bool { return ws.Exited() && ws.ExitStatus() == 7 }},
		{"exit 0", func(ws syscall.WaitStatus) bool { return ws.Exited() && ws.ExitStatus() == 0 }},
		{"kill -KILL $$", func(ws syscall.WaitStatus) bool { return ws.Signaled() && ws.Signal() == syscall.SIGKILL }},
	} {
		cmd := exec.Command("sh", "-c", "read x; "+tc.script)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		start, _, err := ProcStartTime(pid)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := ZombieStatus(pid, start); ok {
			t.Errorf("%s: status of a running process", tc.script)
		}
		stdin.Close()
		var ws syscall.WaitStatus
		var ok bool
		for i := 0; i < 500 && !ok; i++ {
			time.Sleep(10 * time.Millisecond)
			ws, ok = ZombieStatus(pid, start)
		}
		if !ok || !tc.check(ws) {
			t.Errorf("%s: zombie status %#x (%v)", tc.script, uint32(ws), ok)
		}
		if _, ok := ZombieStatus(pid, start+1); ok {
			t.Errorf("%s: status for another start time", tc.script)
		}
		_ = cmd.Wait()
		if _, ok := ZombieStatus(pid, start); ok {
			t.Errorf("%s: status after the reap", tc.script)
		}
	}
}

func FuzzServeConn(f *testing.F) {
	f.Add(append(rawHeader(27, 0), `{"id":1,"method":"x","body":{}}`[:27]...))
	f.Add(rawHeader(0, 0))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := pair(t)
		done := make(chan struct{})
		go func() {
			ServeConn(context.Background(), b, func(context.Context, string, json.RawMessage, []*os.File) (any, []*os.File, error) {
				return nil, nil, Errorf(CodeInvalidArgument, "no")
			}, 2)
			close(done)
		}()
		a.c.Write(data)
		a.c.CloseWrite()
		io.Copy(io.Discard, a.c)
		<-done
	})
}
