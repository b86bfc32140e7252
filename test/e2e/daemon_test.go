// Package e2e drives a real crid binary over its socket, as kubelet and
// crictl do. The tests need root (cgroups, namespaces) and build crid once,
// unless CRID_BIN names a binary to test (crid-monitor must sit beside it).
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var cridBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	defer removeNRIPlugin()
	if os.Getenv(probeEnv) != "" {
		return probeAccess() // a child started as an unprivileged user
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e tests run crid for real and need root")
		return 1
	}
	cridBin = os.Getenv("CRID_BIN")
	if cridBin == "" {
		dir, err := os.MkdirTemp("", "crid-e2e-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		cridBin = filepath.Join(dir, "crid")
		for _, cmd := range []string{"crid", "crid-monitor"} {
			build := exec.Command("go", "build", "-tags", "containers_image_openpgp seccomp", "-o", filepath.Join(dir, cmd), "github.com/crid-dev/crid/cmd/"+cmd)
			build.Stdout, build.Stderr = os.Stderr, os.Stderr
			if err := build.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "build", cmd+":", err)
				return 1
			}
		}
		// The built-in infra, as make build makes it.
		build := exec.Command("gcc", "-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", "-o", filepath.Join(dir, "crid-pause"), "cmd/crid-pause/pause.c")
		build.Dir = repoRootOf()
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build crid-pause:", err)
			return 1
		}
	}
	stopRegistry, err := ensureTestImages()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stopRegistry()
	return m.Run()
}

// repoRootOf is the top of the checkout the tests run from.
func repoRootOf() string {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "."
	}
	return strings.TrimSpace(string(out))
}

// daemon is one crid process with private socket and state dirs.
type daemon struct {
	t      *testing.T
	dir    string
	socket string
	cmd    *exec.Cmd
	log    *bytes.Buffer
	exited chan struct{}
	conn   *grpc.ClientConn
}

// newDirs returns a fresh directory for a daemon's socket and state.
func newDirs(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "crid-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupDir(t, dir) })
	return dir
}

// killMonitors SIGKILLs every crid-monitor (monitor or stdio holder) whose
// command line names dir, and says how many it found.
func killMonitors(dir string) int {
	n := 0
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), "crid-monitor") || !strings.Contains(string(b), dir+"/") {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil && syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

// cleanupDir ends what a test's daemon left under dir: the monitor (it
// outlives the daemon by design; found by its run dir in its command line,
// so only monitors this test started), mounts, then the files.
func cleanupDir(t *testing.T, dir string) {
	// Scan until none is left: a monitor still alive when its stdio holder
	// is killed starts a new holder, which a single pass would miss.
	for range 50 {
		if killMonitors(dir) == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	var mounts []string
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	for _, m := range mounts {
		t.Logf("cleanup: unmounting leftover %s", m)
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	os.RemoveAll(dir)
}

// baseArgs points a daemon at dir for everything it writes and reads:
// dir/registries.conf when the test wrote one before (else no file of
// crid's own), and dir/containers-registries.conf as the containers-wide
// file (absent unless the test writes it), never the machine's.
func baseArgs(dir string) []string {
	own := filepath.Join(dir, "registries.conf")
	if _, err := os.Stat(own); err != nil {
		own = ""
	}
	return append([]string{
		"--config", filepath.Join(dir, "crid.toml"),
		"--socket", filepath.Join(dir, "crid.sock"),
		"--root-dir", filepath.Join(dir, "root"),
		"--run-dir", filepath.Join(dir, "run"),
		"--cni-conf-dir", filepath.Join(dir, "net.d"),
		"--cni-bin-dirs", filepath.Join(dir, "cni-bin"),
		"--registries-conf=" + own,
		"--containers-registries-conf", filepath.Join(dir, "containers-registries.conf"),
		"--nri-socket", filepath.Join(dir, "nri.sock"),
	}, driverArgs()...)
}

// startDaemon starts crid on dir (which must hold crid.toml, maybe empty)
// and waits until its socket answers.
func startDaemon(t *testing.T, dir string, extra ...string) *daemon {
	t.Helper()
	return startDaemonEnv(t, dir, nil, extra...)
}

// startDaemonEnv is startDaemon with extra environment variables.
func startDaemonEnv(t *testing.T, dir string, env []string, extra ...string) *daemon {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "crid.toml")); os.IsNotExist(err) {
		writeFile(t, filepath.Join(dir, "crid.toml"), "")
	}
	d := &daemon{t: t, dir: dir, socket: filepath.Join(dir, "crid.sock"), log: &bytes.Buffer{}, exited: make(chan struct{})}
	d.cmd = exec.Command(cridBin, append(append(baseArgs(dir), "-v=2"), extra...)...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.cmd.Env = append(os.Environ(), env...)
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(d.kill)
	conn, err := grpc.NewClient("unix://"+d.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	d.conn = conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := d.runtime().Version(ctx, &runtime.VersionRequest{})
		cancel()
		if err == nil {
			return d
		}
		select {
		case <-d.exited:
			t.Fatalf("crid exited at start: %v\n%s", d.cmd.ProcessState, d.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("crid did not answer on %s: %v\n%s", d.socket, err, d.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *daemon) runtime() runtime.RuntimeServiceClient {
	return runtime.NewRuntimeServiceClient(d.conn)
}
func (d *daemon) images() runtime.ImageServiceClient { return runtime.NewImageServiceClient(d.conn) }

// stop sends sig and waits for the exit, failing after the bound.
func (d *daemon) stop(sig syscall.Signal, bound time.Duration) *os.ProcessState {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatal(err)
	}
	select {
	case <-d.exited:
		return d.cmd.ProcessState
	case <-time.After(bound):
		d.t.Fatalf("crid did not exit within %s of %s\n%s", bound, sig, d.log)
		return nil
	}
}

// kill ends the daemon if a test left it running; it is only ever the
// process this test started.
func (d *daemon) kill() {
	if d.conn != nil {
		d.conn.Close()
	}
	select {
	case <-d.exited:
	default:
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}

// runCrid runs crid to completion and returns its exit code and output.
func runCrid(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cridBin, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("run crid %v: %v", args, err)
	}
	return 0, string(out)
}

func mustContain(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Fatalf("%s does not mention %q:\n%s", what, w, got)
		}
	}
}
