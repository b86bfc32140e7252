package monitor

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/oci/protocol"
)

func testMonitor(t *testing.T) *Monitor {
	dir := t.TempDir()
	return &Monitor{
		cfg:        Config{RunDir: dir, StateDir: filepath.Join(dir, "state"), MaxLogLine: 100},
		log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		root:       filepath.Join(dir, "lc"),
		limits:     limits{oomScoreAdj: -500, caps: map[string]bool{"CAP_KILL": true, "CAP_CHOWN": true}},
		reaper:     &reaper{subs: map[int]func(unix.WaitStatus, time.Time){}},
		trim:       newTrimmer(),
		ctx:        context.Background(),
		containers: map[string]*container{},
	}
}

// No request, however malformed, panics the monitor or creates anything;
// each gets an error reply.
func TestHandleRejectsBadRequests(t *testing.T) {
	m := testMonitor(t)
	abs := &specs.Spec{Root: &specs.Root{Path: "/nonexistent"}, Linux: &specs.Linux{CgroupsPath: "/x"}}
	goodish, _ := json.Marshal(protocol.CreateRequest{ID: "c", Spec: abs}) // no process
	relLog, _ := json.Marshal(protocol.CreateRequest{ID: "c", Spec: &specs.Spec{Root: &specs.Root{Path: "/r"},
		Linux: &specs.Linux{CgroupsPath: "/x"}, Process: &specs.Process{Args: []string{"x"}, Cwd: "/"}}, LogPath: "rel.log"})
	bodies := []string{"", "null", "[]", `"x"`, "123", `{"id":""}`, `{"id":"../x"}`, `{"id":"a/b"}`,
		`{"id":"c","spec":{}}`, `{"id":"c","spec":{"root":{"path":"rel"}}}`, `{"id":"c","signal":-1}`,
		`{"id":"c","process":null}`, `{"id":"c","stdio":["stdout"]}`, string(goodish), string(relLog),
		`{"id":"c","spec":{"root":{"path":"/r"},"linux":{"cgroupsPath":""},"process":{"args":["x"]}}}`}
	methods := []string{protocol.MethodCreate, protocol.MethodStart, protocol.MethodKill, protocol.MethodWait,
		protocol.MethodState, protocol.MethodDelete, protocol.MethodReopenLog, protocol.MethodAdopt,
		protocol.MethodStdio, protocol.MethodCloseStdin, protocol.MethodExecStart, protocol.MethodExecWait,
		protocol.MethodExecKill, "exec", "bogus"}
	for _, method := range methods {
		for _, body := range bodies {
			_, fds, err := m.handle(context.Background(), method, json.RawMessage(body), nil)
			protocol.CloseFiles(fds)
			if err == nil && method != protocol.MethodDelete {
				t.Errorf("%s %s: no error", method, body)
			}
		}
	}
	if len(m.containers) != 0 {
		t.Fatalf("bad requests left containers: %v", m.containers)
	}
	if entries, _ := os.ReadDir(m.cfg.StateDir); len(entries) != 0 {
		t.Fatalf("bad requests left state: %v", entries)
	}
	// Descriptors sent with a rejected adopt are closed, not leaked.
	r, w, _ := os.Pipe()
	defer r.Close()
	m.handle(context.Background(), protocol.MethodAdopt, json.RawMessage(`{"id":"nope","stdio":["stdout"]}`), []*os.File{w})
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("descriptor of a rejected adopt left open")
	}
}

func TestNewProcessMapping(t *testing.T) {
	l := limits{caps: map[string]bool{"CAP_KILL": true, "CAP_CHOWN": true}}
	var own unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &own); err != nil {
		t.Fatal(err)
	}
	p := &specs.Process{
		Args: []string{"/bin/sh"}, Env: []string{"A=1"}, Cwd: "/work",
		User:            specs.User{UID: 65535, GID: 65534, AdditionalGids: []uint32{5, 6}},
		NoNewPrivileges: true, ApparmorProfile: "prof", SelinuxLabel: "lbl",
		Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL", "CAP_SYS_RESOURCE"}, Effective: []string{"CAP_CHOWN"}},
		Rlimits: []specs.POSIXRlimit{
			{Type: "RLIMIT_NOFILE", Soft: 10, Hard: own.Max + 1},
			{Type: "RLIMIT_CORE", Soft: 0, Hard: 0},
		},
		ConsoleSize: &specs.Box{Width: 80, Height: 24},
	}
	lp, clamped, err := l.newProcess(p)
	if err != nil {
		t.Fatal(err)
	}
	if lp.UID != 65535 || lp.GID != 65534 || len(lp.AdditionalGroups) != 2 || lp.Cwd != "/work" ||
		!*lp.NoNewPrivileges || lp.AppArmorProfile != "prof" || lp.Label != "lbl" || lp.ConsoleWidth != 80 {
		t.Fatalf("process %+v", lp)
	}
	if strings.Join(lp.Capabilities.Bounding, ",") != "CAP_KILL" || strings.Join(lp.Capabilities.Effective, ",") != "CAP_CHOWN" {
		t.Fatalf("capabilities %+v", lp.Capabilities)
	}
	if lp.Rlimits[0] != (configs.Rlimit{Type: unix.RLIMIT_NOFILE, Soft: 10, Hard: own.Max}) || len(clamped) != 2 {
		t.Fatalf("rlimits %+v clamped %v", lp.Rlimits, clamped)
	}
	for _, bad := range []*specs.Process{
		nil, {Cwd: "/"}, {Args: []string{"x"}, Cwd: "rel"},
		{Args: []string{"x"}, Cwd: "/", Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_BOGUS"}}},
		{Args: []string{"x"}, Cwd: "/", Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_CORE", Soft: 2, Hard: 1}}},
	} {
		if _, _, err := l.newProcess(bad); protocol.CodeOf(err) != protocol.CodeInvalidArgument {
			t.Errorf("process %+v: %v", bad, err)
		}
	}
}

func TestClampOOMScoreAdj(t *testing.T) {
	l := limits{oomScoreAdj: -500}
	v := -998
	if got, changed := l.clampOOMScoreAdj(&v); !changed || *got != -500 {
		t.Fatalf("%d %v", *got, changed)
	}
	v = 100
	if got, changed := l.clampOOMScoreAdj(&v); changed || *got != 100 {
		t.Fatalf("%d %v", *got, changed)
	}
	l.sysResource = true
	v = -998
	if got, changed := l.clampOOMScoreAdj(&v); changed || *got != -998 {
		t.Fatalf("with CAP_SYS_RESOURCE: %d %v", *got, changed)
	}
	if got, _ := l.clampOOMScoreAdj(nil); got != nil {
		t.Fatal("nil")
	}
}

// The exit status of a process that is not the monitor's child (a reloaded
// init whose parent is PID 1 or the daemon) is observed, not guessed.
func TestWaitPidExitOfNonChild(t *testing.T) {
	m := testMonitor(t)
	m.limits.caps["CAP_SYS_PTRACE"] = os.Geteuid() == 0
	for _, tc := range []struct {
		script string
		want   func(unix.WaitStatus) bool
	}{
		{"sleep 0.3; exit 5", func(ws unix.WaitStatus) bool { return ws.Exited() && ws.ExitStatus() == 5 }},
		{"sleep 0.3; kill -TERM $$", func(ws unix.WaitStatus) bool { return ws.Signaled() && ws.Signal() == unix.SIGTERM }},
	} {
		// The inner shell outlives its parent: an orphan of someone else.
		out, err := exec.Command("sh", "-c", `sh -c "$0" >/dev/null 2>&1 & echo $!`, tc.script).Output()
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil {
			t.Fatalf("pid %q", out)
		}
		start, _, err := protocol.ProcStartTime(pid)
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		ws, observed, err := m.waitPidExit(context.Background(), pid, start)
		if err != nil || !observed || !tc.want(unix.WaitStatus(ws)) {
			t.Errorf("%s: status %#x observed %v err %v", tc.script, uint32(ws), observed, err)
		}
		if d := time.Since(began); d > 2*time.Second {
			t.Errorf("%s: took %s", tc.script, d)
		}
	}
	// Gone before anyone looked: nothing to observe.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if _, observed, err := m.waitPidExit(context.Background(), cmd.Process.Pid, 1); observed || err != nil {
		t.Errorf("reaped process: observed %v err %v", observed, err)
	}
}
