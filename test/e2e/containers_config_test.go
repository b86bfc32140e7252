package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Images of the test bed with an ENTRYPOINT, a WORKDIR, their own
// environment and a STOPSIGNAL (hack/testimages/catalog.go).
const (
	// Entrypoint /docker-entrypoint.sh (exec "$@"), Cmd nginx -g "daemon
	// off;", STOPSIGNAL SIGQUIT.
	entrypointImage = "gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest"
	// Cmd httpd-foreground, WorkingDir /usr/local/apache2, Env PATH,
	// HTTPD_PREFIX, HTTPD_VERSION, STOPSIGNAL SIGWINCH.
	workdirImage = "registry.k8s.io/e2e-test-images/httpd:2.4.39-4"
)

func (n *podNode) pull(t *testing.T, image string) {
	t.Helper()
	if _, err := n.images().PullImage(context.Background(), &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: image}}); err != nil {
		t.Fatalf("pull %s: %v", image, err)
	}
}

// execResult runs cmd in the container and returns its stdout, stderr and
// exit code, whatever the code.
func (n *podNode) execResult(t *testing.T, id string, cmd ...string) (string, string, int32) {
	t.Helper()
	resp, err := n.runtime().ExecSync(context.Background(), &runtime.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 10})
	if err != nil {
		t.Fatalf("exec %v in %s: %v", cmd, id, err)
	}
	return strings.TrimSpace(string(resp.Stdout)), strings.TrimSpace(string(resp.Stderr)), resp.ExitCode
}

// ctrInfo is the verbose ContainerStatus info: the process crid built.
type ctrInfo struct {
	Process struct {
		Args []string `json:"args"`
		Env  []string `json:"env"`
		Cwd  string   `json:"cwd"`
	} `json:"process"`
	StopSignal string `json:"stop_signal"`
}

func (n *podNode) ctrInfo(t *testing.T, id string) ctrInfo {
	t.Helper()
	resp, err := n.runtime().ContainerStatus(context.Background(), &runtime.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info ctrInfo
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil {
		t.Fatalf("verbose info of %s: %v: %q", id, err, resp.Info["info"])
	}
	return info
}

// procCgroups maps each controller to pid's cgroup path (on v2, every
// controller to the one path).
func procCgroups(t *testing.T, pid int) map[string]string {
	t.Helper()
	return pidCgroups(t, pid)
}

// pidCgroupFile reads a file of pid's cgroup of controller (the unified
// cgroup on v2).
func pidCgroupFile(t *testing.T, pid int, controller, file string) string {
	t.Helper()
	dir := filepath.Join("/sys/fs/cgroup", controller, procCgroups(t, pid)[controller])
	if cgroupV2() {
		dir = filepath.Join("/sys/fs/cgroup", procCgroups(t, pid)[""])
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// ctrLeaf is the last element of a container's cgroup path: its ID with
// cgroupfs, crid-<id>.scope with systemd.
func ctrLeaf(id string) string {
	if systemdDriver() {
		return "crid-" + id + ".scope"
	}
	return id
}

// procStatus returns a field of /proc/<pid>/status.
func procStatus(t *testing.T, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == field {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return ""
}

func readProc(t *testing.T, pid int, file string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// Resources land in the container's own cgroup, whose leaf is its ID in
// every hierarchy; oom_score_adj is set, and clamped to the monitor's own
// when the node withholds CAP_SYS_RESOURCE; devices are created at the
// asked path, usable, and the device cgroup allows exactly the asked
// access.
func TestContainerResourcesAndDevices(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	pod := n.logPod("resources")
	podID := n.run(t, pod)

	cfg := ctrConfig("limits", "sleep", "3600")
	cfg.Linux.Resources = &runtime.LinuxContainerResources{
		CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000,
		CpusetCpus: "0", CpusetMems: "0",
		MemoryLimitInBytes: 64 << 20, MemorySwapLimitInBytes: 128 << 20,
		OomScoreAdj: 500,
	}
	unified := map[string]string{"memory.high": strconv.Itoa(48 << 20), "memory.oom.group": "1"}
	if !cgroupV2() {
		// v2 interface files cannot apply: refused naming the field.
		bad := proto.Clone(cfg).(*runtime.ContainerConfig)
		bad.Linux.Resources.Unified = unified
		_, err := n.runtime().CreateContainer(context.Background(), &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod, Config: bad})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "config.linux.resources.unified") {
			t.Fatalf("unified settings on a v1 host: %v, want InvalidArgument naming config.linux.resources.unified", err)
		}
	} else {
		cfg.Linux.Resources.Unified = unified
	}
	limits := n.create(t, podID, pod, cfg, true)
	pid := initPid(t, limits)
	paths := procCgroups(t, pid)
	controllers := []string{"cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer", "blkio"}
	if cgroupV2() {
		controllers = []string{""}
	}
	podDir := cgroupRel(t, n.podCgroup(t, podID))
	for _, c := range controllers {
		if p, ok := paths[c]; !ok || path.Base(p) != ctrLeaf(limits) || !strings.HasPrefix(p, podDir+"/") {
			t.Errorf("%s cgroup %q: want a leaf named %s under the pod's %s", c, p, ctrLeaf(limits), podDir)
		}
	}
	files := []struct{ controller, file, want string }{
		{"cpu", "cpu.shares", "512"},
		{"cpu", "cpu.cfs_quota_us", "50000"},
		{"cpu", "cpu.cfs_period_us", "100000"},
		{"cpuset", "cpuset.cpus", "0"},
		{"cpuset", "cpuset.mems", "0"},
		{"memory", "memory.limit_in_bytes", strconv.Itoa(64 << 20)},
	}
	if cgroupV2() {
		// runc's conversions: shares to weight; swap is memory+swap in
		// CRI and v1, swap alone in memory.swap.max.
		files = []struct{ controller, file, want string }{
			{"cpu", "cpu.weight", strconv.FormatUint(cgroups.ConvertCPUSharesToCgroupV2Value(512), 10)},
			{"cpu", "cpu.max", "50000 100000"},
			{"cpuset", "cpuset.cpus", "0"},
			{"cpuset", "cpuset.mems", "0"},
			{"memory", "memory.max", strconv.Itoa(64 << 20)},
			{"memory", "memory.swap.max", strconv.Itoa(64 << 20)},
			{"memory", "memory.high", strconv.Itoa(48 << 20)}, // linux.resources.unified
			{"memory", "memory.oom.group", "1"},
		}
	}
	for _, f := range files {
		if got := pidCgroupFile(t, pid, f.controller, f.file); got != f.want {
			t.Errorf("%s = %q, want %q", f.file, got, f.want)
		}
	}
	if cgroupV2() {
		// Not in a v1 hierarchy: memsw is v1's alone.
	} else if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", paths["memory"], "memory.memsw.limit_in_bytes")); err == nil {
		if got := pidCgroupFile(t, pid, "memory", "memory.memsw.limit_in_bytes"); got != strconv.Itoa(128<<20) {
			t.Errorf("memory.memsw.limit_in_bytes = %q, want %d", got, 128<<20)
		}
	} else {
		t.Logf("no swap accounting on this node: memory.memsw not checked")
	}
	if cgroupV2() {
		// A cgroup namespace of its own: the container's cgroup is its
		// root, and no other pod's cgroup shows.
		if out := n.exec(t, limits, "cat", "/proc/self/cgroup"); out != "0::/" {
			t.Errorf("/proc/self/cgroup in the container: %q, want 0::/ (a private cgroup namespace)", out)
		}
		if out := n.exec(t, limits, "ls", "/sys/fs/cgroup"); strings.Contains(out, ".slice") || strings.Contains(out, "crid-e2e") {
			t.Errorf("the container sees the node's cgroups: %q", out)
		}
	}
	// CRI has no per-container pids limit: the pids cgroup is there, unlimited.
	if got := pidCgroupFile(t, pid, "pids", "pids.max"); got != "max" {
		t.Errorf("pids.max = %q, want max", got)
	}
	if got := readProc(t, pid, "oom_score_adj"); got != "500" {
		t.Errorf("oom_score_adj %s, want 500", got)
	}

	// A value below the monitor's own is clamped to it without
	// CAP_SYS_RESOURCE (platform-notes.md), kept with it.
	mons := n.monitorPids()
	if len(mons) != 1 {
		t.Fatalf("monitors: %v", mons)
	}
	monAdj, _ := strconv.Atoi(readProc(t, mons[0], "oom_score_adj"))
	capEff, _ := strconv.ParseUint(procStatus(t, mons[0], "CapEff"), 16, 64)
	want := -900
	if capEff&(1<<24) == 0 {
		want = max(-900, monAdj)
	}
	cfg = ctrConfig("clamped", "sleep", "3600")
	cfg.Linux.Resources.OomScoreAdj = -900
	clamped := n.create(t, podID, pod, cfg, true)
	if got := readProc(t, initPid(t, clamped), "oom_score_adj"); got != strconv.Itoa(want) {
		t.Errorf("oom_score_adj -900 asked, monitor at %d with CapEff %x: got %s, want %d", monAdj, capEff, got, want)
	}

	// Devices: /dev/null under another name, and two nodes with no driver
	// behind them (char 1:42 and 1:43, minors the mem driver lacks): an
	// open the device cgroup allows fails with ENXIO, one it denies with
	// EPERM.
	devDir := filepath.Join(n.dir, "devs")
	if err := os.MkdirAll(devDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, minor := range map[string]int{"fake-rw": 42, "fake-r": 43} {
		if err := unix.Mknod(filepath.Join(devDir, name), unix.S_IFCHR|0o666, int(unix.Mkdev(1, uint32(minor)))); err != nil {
			t.Fatal(err)
		}
	}
	cfg = ctrConfig("devices", "sleep", "3600")
	cfg.Devices = []*runtime.Device{
		{ContainerPath: "/dev/mynull", HostPath: "/dev/null", Permissions: "rwm"},
		{ContainerPath: "/dev/fake-rw", HostPath: filepath.Join(devDir, "fake-rw"), Permissions: "rw"},
		{ContainerPath: "/dev/fake-r", HostPath: filepath.Join(devDir, "fake-r"), Permissions: "r"},
	}
	devs := n.create(t, podID, pod, cfg, true)
	if out := n.exec(t, devs, "stat", "-c", "%F %t:%T %a", "/dev/mynull"); out != "character special file 1:3 666" {
		t.Errorf("/dev/mynull: %q", out)
	}
	if out := n.exec(t, devs, "sh", "-c", "echo data > /dev/mynull && wc -c < /dev/mynull"); out != "0" {
		t.Errorf("write and read of /dev/mynull: %q", out)
	}
	for _, tc := range []struct {
		script, want string
	}{
		{"echo x > /dev/fake-rw", "No such device or address"}, // allowed: reaches the (missing) driver
		{"cat /dev/fake-rw", "No such device or address"},
		{"cat /dev/fake-r", "No such device or address"},
		{"echo x > /dev/fake-r", "Operation not permitted"}, // write denied by the device cgroup
	} {
		_, stderr, code := n.execResult(t, devs, "sh", "-c", tc.script)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want %q", tc.script, code, stderr, tc.want)
		}
	}
	if !cgroupV2() {
		// v2 has no device rules to read (an eBPF program enforces
		// them): the opens above are the check there.
		list := pidCgroupFile(t, initPid(t, devs), "devices", "devices.list")
		for _, rule := range []string{"c 1:42 rw", "c 1:43 r"} {
			if !slices.Contains(strings.Split(list, "\n"), rule) {
				t.Errorf("devices.list lacks %q:\n%s", rule, list)
			}
		}
		if slices.Contains(strings.Split(list, "\n"), "a *:* rwm") {
			t.Errorf("devices.list allows every device:\n%s", list)
		}
	}
	n.removePod(t, podID)
	for _, id := range []string{limits, clamped, devs} {
		for c, p := range paths {
			if c == "" && !cgroupV2() {
				continue
			}
			if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", c, strings.Replace(p, limits, id, 1))); err == nil {
				t.Errorf("cgroup %s of %s left after the pod's removal", c, id)
			}
		}
	}
	if units := systemdUnits(t, "crid-"+limits); len(units) > 0 {
		t.Errorf("systemd units left after the pod's removal: %v", units)
	}
}

// The process crid builds: a terminal when tty is set; stdin a pipe when
// stdin is set (and both stdin flags recorded); no_new_privs and the
// seccomp mode as asked; working dir, environment and command line merged
// with the image's as Docker and kubelet do; masked and read-only /proc
// paths as given, the defaults when none are, none when privileged.
func TestContainerProcessConfig(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	n.pull(t, entrypointImage)
	n.pull(t, workdirImage)
	pod := n.logPod("process")
	pod.Linux.SecurityContext.Privileged = true // for its privileged container
	podID := n.run(t, pod)

	// tty, stdin.
	cfg := ctrConfig("tty", "sh", "-c", `tty; if [ -t 1 ]; then echo stdout-is-a-tty; fi; sleep 3600`)
	cfg.Tty = true
	n.create(t, podID, pod, cfg, true)
	waitLog(t, filepath.Join(pod.LogDirectory, "tty.log"), "stdout-is-a-tty", 10*time.Second)
	waitLog(t, filepath.Join(pod.LogDirectory, "tty.log"), "/dev/pts/", 10*time.Second)
	cfg = ctrConfig("stdin", "sleep", "3600")
	cfg.Stdin, cfg.StdinOnce = true, true
	stdin := n.create(t, podID, pod, cfg, true)
	plain := n.create(t, podID, pod, ctrConfig("plain", "sleep", "3600"), true)
	if fd, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/0", initPid(t, stdin))); !strings.HasPrefix(fd, "pipe:") {
		t.Errorf("stdin container's fd 0: %q, want a pipe", fd)
	}
	if fd, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/0", initPid(t, plain))); fd != "/dev/null" {
		t.Errorf("container without stdin: fd 0 is %q, want /dev/null", fd)
	}
	rec, err := os.ReadFile(filepath.Join(n.dir, "run", "containers", stdin, "container.json"))
	if err != nil || !strings.Contains(string(rec), `"stdin":true`) || !strings.Contains(string(rec), `"stdinOnce":true`) {
		t.Errorf("monitor record of the stdin container (%v): %s", err, rec)
	}

	// no_new_privs and seccomp, seen by the kernel.
	for _, tc := range []struct {
		name     string
		nnp      bool
		seccomp  runtime.SecurityProfile_ProfileType
		wantNNP  string
		wantMode string
	}{
		{"nnp", true, runtime.SecurityProfile_Unconfined, "1", "0"},
		{"unconfined", false, runtime.SecurityProfile_Unconfined, "0", "0"},
		{"runtimedefault", false, runtime.SecurityProfile_RuntimeDefault, "0", "2"},
		{"nnp-runtimedefault", true, runtime.SecurityProfile_RuntimeDefault, "1", "2"},
	} {
		cfg := ctrConfig(tc.name, "sleep", "3600")
		cfg.Linux.SecurityContext.NoNewPrivs = tc.nnp
		cfg.Linux.SecurityContext.Seccomp = &runtime.SecurityProfile{ProfileType: tc.seccomp}
		id := n.create(t, podID, pod, cfg, true)
		pid := initPid(t, id)
		if got := procStatus(t, pid, "NoNewPrivs"); got != tc.wantNNP {
			t.Errorf("%s: NoNewPrivs %s, want %s", tc.name, got, tc.wantNNP)
		}
		if got := procStatus(t, pid, "Seccomp"); got != tc.wantMode {
			t.Errorf("%s: Seccomp %s, want %s", tc.name, got, tc.wantMode)
		}
		if got := n.exec(t, id, "sh", "-c", "grep ^NoNewPrivs: /proc/self/status | cut -f2"); got != tc.wantNNP {
			t.Errorf("%s: an exec's NoNewPrivs %s, want %s", tc.name, got, tc.wantNNP)
		}
	}

	// Working dir, environment: the image's, overridden by the config's.
	cfg = ctrConfig("image-wd", "sh", "-c", "echo cwd=$(pwd); sleep 3600")
	cfg.Image.Image = workdirImage
	cfg.Envs = []*runtime.KeyValue{{Key: "HTTPD_VERSION", Value: []byte("override")}, {Key: "EXTRA", Value: []byte("a=b c")}}
	imageWD := n.create(t, podID, pod, cfg, true)
	waitLog(t, filepath.Join(pod.LogDirectory, "image-wd.log"), "cwd=/usr/local/apache2", 10*time.Second)
	env := strings.Split(strings.TrimRight(readProc(t, initPid(t, imageWD), "environ"), "\x00"), "\x00")
	for _, want := range []string{
		"PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HTTPD_PREFIX=/usr/local/apache2", "HTTPD_VERSION=override", "EXTRA=a=b c", "HOME=/root",
	} {
		if !slices.Contains(env, want) {
			t.Errorf("environment lacks %q: %q", want, env)
		}
	}
	if slices.Contains(env, "HTTPD_VERSION=2.4.39") {
		t.Errorf("the image's HTTPD_VERSION was not overridden: %q", env)
	}
	cfg = ctrConfig("config-wd", "sh", "-c", "echo cwd=$(pwd); sleep 3600")
	cfg.Image.Image = workdirImage
	cfg.WorkingDir = "/usr/local/apache2/htdocs"
	n.create(t, podID, pod, cfg, true)
	waitLog(t, filepath.Join(pod.LogDirectory, "config-wd.log"), "cwd=/usr/local/apache2/htdocs", 10*time.Second)
	if got := n.exec(t, plain, "pwd"); got != "/" {
		t.Errorf("no working dir anywhere: %q, want /", got)
	}

	// Command and args merged with the image's Entrypoint and Cmd.
	for i, tc := range []struct {
		image         string
		command, args []string
		want          []string
	}{
		{entrypointImage, nil, nil, []string{"/docker-entrypoint.sh", "nginx", "-g", "daemon off;"}},
		{entrypointImage, nil, []string{"echo", "hi"}, []string{"/docker-entrypoint.sh", "echo", "hi"}},
		{entrypointImage, []string{"echo"}, nil, []string{"echo"}},
		{entrypointImage, []string{"echo"}, []string{"a", "b"}, []string{"echo", "a", "b"}},
		{busybox, nil, nil, []string{"sh"}},
		{busybox, nil, []string{"true"}, []string{"true"}},
	} {
		cfg := ctrConfig(fmt.Sprintf("merge%d", i))
		cfg.Image.Image, cfg.Command, cfg.Args = tc.image, tc.command, tc.args
		id := n.create(t, podID, pod, cfg, false)
		if got := n.ctrInfo(t, id).Process.Args; !slices.Equal(got, tc.want) {
			t.Errorf("image %s, command %q, args %q: process args %q, want %q", tc.image, tc.command, tc.args, got, tc.want)
		}
	}
	cfg = ctrConfig("entrypoint-runs")
	cfg.Image.Image = entrypointImage
	cfg.Args = []string{"sh", "-c", `echo "args=$0 $1"; sleep 3600`, "x", "y"}
	n.create(t, podID, pod, cfg, true)
	waitLog(t, filepath.Join(pod.LogDirectory, "entrypoint-runs.log"), "args=x y", 10*time.Second)

	// Masked and read-only paths.
	mounts := func(id string) map[string]string { // mount point -> options
		out := map[string]string{}
		for _, l := range strings.Split(n.exec(t, id, "cat", "/proc/self/mountinfo"), "\n") {
			if f := strings.Fields(l); len(f) > 5 {
				out[f[4]] = f[5]
			}
		}
		return out
	}
	isRO := func(opts string) bool { return slices.Contains(strings.Split(opts, ","), "ro") }
	m := mounts(plain)
	// (/proc/kcore is absent from this kernel: /proc/keys stands in.)
	if _, ok := m["/proc/keys"]; !ok {
		t.Errorf("default masked path /proc/keys not masked")
	}
	if !isRO(m["/proc/sys"]) {
		t.Errorf("default read-only path /proc/sys: %q", m["/proc/sys"])
	}
	if out := n.exec(t, plain, "wc", "-c", "/proc/keys"); !strings.HasPrefix(out, "0 ") {
		t.Errorf("masked /proc/keys reads %q", out)
	}
	cfg = ctrConfig("custom-masks", "sleep", "3600")
	cfg.Linux.SecurityContext.MaskedPaths = []string{"/proc/timer_list"}
	cfg.Linux.SecurityContext.ReadonlyPaths = []string{"/proc/fs"}
	m = mounts(n.create(t, podID, pod, cfg, true))
	if _, ok := m["/proc/timer_list"]; !ok || !isRO(m["/proc/fs"]) {
		t.Errorf("given masked /proc/timer_list (%v) and read-only /proc/fs (%q) not applied", ok, m["/proc/fs"])
	}
	if _, ok := m["/proc/keys"]; ok {
		t.Errorf("given lists replace the defaults, yet /proc/keys is masked")
	}
	if _, ok := m["/proc/sys"]; ok {
		t.Errorf("given lists replace the defaults, yet /proc/sys is a read-only mount")
	}
	cfg = ctrConfig("privileged", "sleep", "3600")
	cfg.Linux.SecurityContext.Privileged = true
	m = mounts(n.create(t, podID, pod, cfg, true))
	for _, p := range []string{"/proc/keys", "/proc/sys", "/proc/timer_list"} {
		if _, ok := m[p]; ok {
			t.Errorf("privileged container: %s is masked or read-only", p)
		}
	}
	n.removePod(t, podID)
}

// The stop signal is the config's, else the image's STOPSIGNAL, else
// SIGTERM; ContainerStatus reports the config's.
func TestContainerStopSignalFromImage(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	n.pull(t, entrypointImage)
	n.pull(t, workdirImage)
	ctx := context.Background()
	pod := n.logPod("stopsignal")
	podID := n.run(t, pod)
	const script = `for s in INT QUIT TERM WINCH USR1; do trap "echo got-$s; exit 0" $s; done; echo ready; while true; do sleep 0.1; done`
	for _, tc := range []struct {
		name, image string
		signal      runtime.Signal
		want        string
	}{
		{"image-quit", entrypointImage, runtime.Signal_SIGNAL_RUNTIME_DEFAULT, "got-QUIT"},
		{"image-winch", workdirImage, runtime.Signal_SIGNAL_RUNTIME_DEFAULT, "got-WINCH"},
		{"config-over-image", workdirImage, runtime.Signal_SIGNAL_SIGUSR1, "got-USR1"},
		{"default-term", busybox, runtime.Signal_SIGNAL_RUNTIME_DEFAULT, "got-TERM"},
	} {
		cfg := ctrConfig(tc.name)
		cfg.Image.Image, cfg.StopSignal = tc.image, tc.signal
		if tc.image == entrypointImage {
			cfg.Args = []string{"sh", "-c", script} // through the image's entrypoint
		} else {
			cfg.Command = []string{"sh", "-c", script}
		}
		id := n.create(t, podID, pod, cfg, true)
		logPath := filepath.Join(pod.LogDirectory, cfg.LogPath)
		waitLog(t, logPath, "ready", 10*time.Second)
		start := time.Now()
		if _, err := n.runtime().StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id, Timeout: 20}); err != nil {
			t.Fatalf("%s: StopContainer: %v", tc.name, err)
		}
		took := time.Since(start)
		st := n.ctrStatus(t, id)
		b, _ := os.ReadFile(logPath)
		if st.State != runtime.ContainerState_CONTAINER_EXITED || st.ExitCode != 0 || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s: %v exit %d after %s; want the trap of %s to end it; log:\n%s", tc.name, st.State, st.ExitCode, took, tc.want, b)
		}
		if took > 10*time.Second {
			t.Errorf("%s: stop took %s: the signal did not reach the trap", tc.name, took)
		}
		if st.StopSignal != tc.signal {
			t.Errorf("%s: status stop_signal %v, want the config's %v", tc.name, st.StopSignal, tc.signal)
		}
	}
	n.removePod(t, podID)
}

// Labels and annotations come back from ContainerStatus and ListContainers,
// also after a daemon restart, and ListContainers filters by label;
// selinux_relabel is accepted and ignored (no SELinux here); a host mount
// shared into the container with HOST_TO_CONTAINER propagation shows mounts
// made on the host later, a private one does not.
func TestContainerLabelsAnnotationsAndMounts(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	ctx := context.Background()
	pod := n.logPod("labels")
	podID := n.run(t, pod)

	data := filepath.Join(n.dir, "data")
	writeFile(t, filepath.Join(data, "hello"), "from the host")
	prop := filepath.Join(n.dir, "prop")
	if err := os.MkdirAll(prop, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(prop, prop, "", syscall.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(prop, syscall.MNT_DETACH) })
	if err := syscall.Mount("", prop, "", syscall.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}

	front := ctrConfig("front", "sleep", "3600")
	front.Labels = map[string]string{"tier": "front", "issue": "5"}
	front.Annotations = map[string]string{"example.com/note": "two words", "empty": ""}
	front.Mounts = []*runtime.Mount{
		{ContainerPath: "/data", HostPath: data, Readonly: true, SelinuxRelabel: true},
		{ContainerPath: "/prop", HostPath: prop, Propagation: runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
	}
	frontID := n.create(t, podID, pod, front, true)
	back := ctrConfig("back", "sleep", "3600")
	back.Labels = map[string]string{"tier": "back"}
	back.Mounts = []*runtime.Mount{{ContainerPath: "/prop", HostPath: prop, Propagation: runtime.MountPropagation_PROPAGATION_PRIVATE}}
	backID := n.create(t, podID, pod, back, true)

	check := func(when string) {
		st := n.ctrStatus(t, frontID)
		if !maps.Equal(st.Labels, front.Labels) || !maps.Equal(st.Annotations, front.Annotations) {
			t.Errorf("%s: status labels %v annotations %v, want %v %v", when, st.Labels, st.Annotations, front.Labels, front.Annotations)
		}
		for _, tc := range []struct {
			selector map[string]string
			want     []string
		}{
			{map[string]string{"tier": "front"}, []string{frontID}},
			{map[string]string{"tier": "back"}, []string{backID}},
			{map[string]string{"tier": "front", "issue": "5"}, []string{frontID}},
			{map[string]string{"tier": "back", "issue": "5"}, nil},
			{map[string]string{"issue": "6"}, nil},
			{nil, []string{frontID, backID}},
		} {
			resp, err := n.runtime().ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: podID, LabelSelector: tc.selector}})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range resp.Containers {
				got = append(got, c.Id)
				if c.Id == frontID && (!maps.Equal(c.Labels, front.Labels) || !maps.Equal(c.Annotations, front.Annotations)) {
					t.Errorf("%s: listed labels %v annotations %v", when, c.Labels, c.Annotations)
				}
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("%s: ListContainers with labels %v: %v, want %v", when, tc.selector, got, want)
			}
		}
	}
	check("before the restart")
	n.restart(t)
	check("after a daemon restart")

	if got := n.exec(t, frontID, "cat", "/data/hello"); got != "from the host" {
		t.Errorf("mount with selinux_relabel: %q", got)
	}
	if _, _, code := n.execResult(t, frontID, "touch", "/data/x"); code == 0 {
		t.Errorf("read-only mount is writable")
	}
	sub := filepath.Join(prop, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(sub, syscall.MNT_DETACH) })
	writeFile(t, filepath.Join(sub, "late"), "mounted after the start")
	if got, _, code := n.execResult(t, frontID, "cat", "/prop/sub/late"); code != 0 || got != "mounted after the start" {
		t.Errorf("HOST_TO_CONTAINER: a host mount made after the start is not seen: %q (exit %d)", got, code)
	}
	if _, _, code := n.execResult(t, backID, "cat", "/prop/sub/late"); code == 0 {
		t.Errorf("PRIVATE: a host mount made after the start is seen")
	}
	for _, m := range []string{sub, prop} {
		if err := syscall.Unmount(m, 0); err != nil {
			t.Fatal(err)
		}
	}
	n.removePod(t, podID)
}
