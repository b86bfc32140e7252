package e2e

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func condition(t *testing.T, st *runtime.StatusResponse, typ string) *runtime.RuntimeCondition {
	t.Helper()
	for _, c := range st.GetStatus().GetConditions() {
		if c.Type == typ {
			return c
		}
	}
	t.Fatalf("no %s condition in %v", typ, st)
	return nil
}

func TestVersionStatusRuntimeConfig(t *testing.T) {
	dir := newDirs(t)
	d := startDaemon(t, dir)
	ctx := context.Background()

	v, err := d.runtime().Version(ctx, &runtime.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeName != "crid" || v.RuntimeApiVersion != "v1" || v.RuntimeVersion == "" {
		t.Fatalf("version: %+v", v)
	}

	st, err := d.runtime().Status(ctx, &runtime.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if c := condition(t, st, runtime.RuntimeReady); !c.Status {
		t.Fatalf("RuntimeReady: %+v", c)
	}
	net := condition(t, st, runtime.NetworkReady)
	if net.Status || net.Reason == "" {
		t.Fatalf("NetworkReady with no CNI config: %+v", net)
	}
	mustContain(t, "NetworkReady message", net.Message, "no network config found", filepath.Join(dir, "net.d"))
	var cfg map[string]any
	if err := json.Unmarshal([]byte(st.Info["config"]), &cfg); err != nil {
		t.Fatalf("verbose config is not JSON: %v: %q", err, st.Info["config"])
	}
	if cfg["socket"] != d.socket {
		t.Fatalf("verbose config socket = %v, want %s", cfg["socket"], d.socket)
	}

	// A config and its plugins appear: the network becomes ready, no restart.
	writeFile(t, filepath.Join(dir, "net.d", "10-test.conflist"),
		`{"cniVersion":"1.0.0","name":"test","plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]}`)
	writeFile(t, filepath.Join(dir, "cni-bin", "bridge"), "#!/bin/sh\nexit 1\n")
	writeFile(t, filepath.Join(dir, "cni-bin", "portmap"), "#!/bin/sh\nexit 1\n")
	st, err = d.runtime().Status(ctx, &runtime.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c := condition(t, st, runtime.NetworkReady); !c.Status {
		t.Fatalf("NetworkReady with a config: %+v", c)
	}

	rc, err := d.runtime().RuntimeConfig(ctx, &runtime.RuntimeConfigRequest{})
	wantDriver := runtime.CgroupDriver_CGROUPFS
	if systemdDriver() {
		wantDriver = runtime.CgroupDriver_SYSTEMD
	}
	if err != nil || rc.GetLinux().GetCgroupDriver() != wantDriver {
		t.Fatalf("RuntimeConfig: %v, %v", rc, err)
	}
}

func TestUnbuiltAndMalformedRequests(t *testing.T) {
	d := startDaemon(t, newDirs(t))
	ctx := context.Background()

	// Every CRI RPC is served; a method the server does not know answers
	// Unimplemented.
	if err := d.conn.Invoke(ctx, "/runtime.v1.RuntimeService/NoSuchMethod", &runtime.VersionRequest{}, &runtime.VersionResponse{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("unknown method: %v, want Unimplemented", err)
	}
	_, err := d.runtime().RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: "p", Uid: "u"}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("RunPodSandbox without namespace: %v, want InvalidArgument", err)
	}
	mustContain(t, "error", err.Error(), "config.metadata.namespace")
	_, err = d.images().PullImage(ctx, &runtime.PullImageRequest{})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("PullImage without image: %v, want InvalidArgument", err)
	}
	mustContain(t, "error", err.Error(), "image is required")
	// The daemon is still serving after bad input.
	if _, err := d.runtime().Version(ctx, &runtime.VersionRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestSocketIsRootOnlyAndStaleSocketReplaced(t *testing.T) {
	dir := newDirs(t)
	// A socket file left behind by a crashed daemon: bound, never unlinked.
	l, err := net.Listen("unix", filepath.Join(dir, "crid.sock"))
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()

	d := startDaemon(t, dir)
	fi, err := os.Stat(d.socket)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o660 || fi.Mode().Type() != os.ModeSocket || st.Uid != 0 || st.Gid != 0 {
		t.Fatalf("socket mode %v owner %d:%d, want socket 0660 root:root", fi.Mode(), st.Uid, st.Gid)
	}
}

func TestSecondDaemonOnSameStateIsRefused(t *testing.T) {
	dir := newDirs(t)
	startDaemon(t, dir)
	// Its own socket, so only the lock on the state dir can refuse it.
	code, out := runCrid(t, append(baseArgs(dir), "--socket", filepath.Join(dir, "second.sock"))...)
	if code == 0 {
		t.Fatalf("second daemon started:\n%s", out)
	}
	mustContain(t, "refusal", out, "another crid is running", filepath.Join(dir, "root"))
	if _, err := os.Stat(filepath.Join(dir, "second.sock")); !os.IsNotExist(err) {
		t.Fatalf("refused daemon left a socket: %v", err)
	}
}

func TestBadConfigIsRefusedWithItsKey(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"[runtime]\ncgroup_drivr = \"cgroupfs\"\n", `unknown key "runtime.cgroup_drivr"`},
		{"[runtime]\ncgroup_driver = \"cgroupv3\"\n", "runtime.cgroup_driver"},
		{"shutdown_timeout = \"forever\"\n", "shutdown_timeout"},
	} {
		dir := newDirs(t)
		writeFile(t, filepath.Join(dir, "crid.toml"), tc.body)
		code, out := runCrid(t, baseArgs(dir)...)
		if code == 0 {
			t.Fatalf("config %q accepted", tc.body)
		}
		mustContain(t, "refusal", out, tc.want)
	}
	if _, err := os.Stat("/run/systemd/system"); err != nil { // systemd's own test, as crid's
		// The systemd driver needs systemd as PID 1: refused at start,
		// with the fix named.
		dir := newDirs(t)
		writeFile(t, filepath.Join(dir, "crid.toml"), "[runtime]\ncgroup_driver = \"systemd\"\n")
		code, out := runCrid(t, baseArgs(dir)...)
		if code == 0 {
			t.Fatalf("the systemd driver was accepted without systemd:\n%s", out)
		}
		mustContain(t, "refusal", out, "runtime.cgroup_driver", "needs systemd as the init system", "kubelet's cgroupDriver: cgroupfs")
	}
	if code, out := runCrid(t, "--config", "/nonexistent/crid.toml"); code == 0 {
		t.Fatalf("missing explicit config accepted:\n%s", out)
	}
}

func TestConfigDefaultCommand(t *testing.T) {
	code, out := runCrid(t, "config", "--default")
	if code != 0 {
		t.Fatalf("crid config --default: %d\n%s", code, out)
	}
	mustContain(t, "default config", out, `socket = "/run/crid/crid.sock"`, "[runtime]", `cgroup_driver = "cgroupfs"`, "# ")
	// The printed defaults are a valid config file.
	dir := newDirs(t)
	writeFile(t, filepath.Join(dir, "crid.toml"), out)
	startDaemon(t, dir)
}

func TestSIGTERMExitsCleanly(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		dir := newDirs(t)
		d := startDaemon(t, dir)
		start := time.Now()
		ps := d.stop(sig, 5*time.Second)
		if !ps.Success() {
			t.Fatalf("%s: exit %v\n%s", sig, ps, d.log)
		}
		t.Logf("%s: exited 0 in %s", sig, time.Since(start))
		if _, err := os.Stat(d.socket); !os.IsNotExist(err) {
			t.Fatalf("socket left after shutdown: %v", err)
		}
		// The lock is released: a new daemon starts on the same state.
		startDaemon(t, dir).stop(syscall.SIGTERM, 5*time.Second)
	}
}

func TestRestartAfterKill(t *testing.T) {
	dir := newDirs(t)
	d := startDaemon(t, dir)
	d.stop(syscall.SIGKILL, 5*time.Second)
	// The kill leaves the socket file; the lock died with the process.
	if _, err := os.Stat(d.socket); err != nil {
		t.Fatalf("expected the dead daemon's socket file: %v", err)
	}
	startDaemon(t, dir)
}
