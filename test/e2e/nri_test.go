package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var (
	nriPluginOnce sync.Once
	nriPluginBin  string
	nriPluginErr  error
)

// removeNRIPlugin removes the plugin nriPlugin built, at the end of the run.
func removeNRIPlugin() {
	if nriPluginBin != "" {
		os.RemoveAll(filepath.Dir(nriPluginBin))
	}
}

// nriPlugin builds test/nriplugin once per run.
func nriPlugin(t *testing.T) string {
	t.Helper()
	nriPluginOnce.Do(func() {
		dir, err := os.MkdirTemp("", "crid-e2e-nriplugin")
		if err != nil {
			nriPluginErr = err
			return
		}
		nriPluginBin = filepath.Join(dir, "nriplugin")
		out, err := exec.Command("go", "build", "-o", nriPluginBin, "github.com/crid-dev/crid/test/nriplugin").CombinedOutput()
		if err != nil {
			nriPluginErr = fmt.Errorf("build test/nriplugin: %v\n%s", err, out)
		}
	})
	if nriPluginErr != nil {
		t.Fatal(nriPluginErr)
	}
	return nriPluginBin
}

// newNRINode is a podNode whose crid.toml adds extra [nri] settings
// (the socket is always the node's own, from baseArgs).
func newNRINode(t *testing.T, nriTOML string) *podNode {
	t.Helper()
	n := &podNode{dir: newDirs(t)}
	n.writeConfig(t)
	cfg, err := os.ReadFile(filepath.Join(n.dir, "crid.toml"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(n.dir, "crid.toml"), string(cfg)+"\n[nri]\n"+nriTOML+"\n")
	n.daemon = startDaemonEnv(t, n.dir, nil, n.args()...)
	return n
}

// nriEvents is the event log a test plugin writes.
type nriEvents struct {
	path string
	proc *exec.Cmd
	done chan struct{}
}

// startNRIPlugin runs test/nriplugin against the node's NRI socket and
// waits until crid has synchronized it.
func (n *podNode) startNRIPlugin(t *testing.T, name string, args ...string) *nriEvents {
	t.Helper()
	ev := &nriEvents{path: filepath.Join(n.dir, name+".events"), done: make(chan struct{})}
	ev.proc = exec.Command(nriPlugin(t), append([]string{"-socket", filepath.Join(n.dir, "nri.sock"), "-name", name, "-events", ev.path}, args...)...)
	ev.proc.Stdout, ev.proc.Stderr = os.Stderr, os.Stderr
	if err := ev.proc.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = ev.proc.Wait(); close(ev.done) }()
	t.Cleanup(func() {
		_ = ev.proc.Process.Kill()
		<-ev.done
	})
	ev.wait(t, 30*time.Second, "Synchronized")
	return ev
}

// lines returns the recorded events, in order.
func (ev *nriEvents) lines() []string {
	b, _ := os.ReadFile(ev.path)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// wait waits for an event line containing every one of parts; the bound
// keeps a broken crid from hanging the test.
func (ev *nriEvents) wait(t *testing.T, bound time.Duration, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		for _, l := range ev.lines() {
			if containsAll(l, parts...) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no NRI event with %q after %s; events:\n%s", parts, bound, strings.Join(ev.lines(), "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// of returns the names of the events that mention s, in order.
func (ev *nriEvents) of(s string) []string {
	var out []string
	for _, l := range ev.lines() {
		if strings.Contains(l, s) {
			out = append(out, strings.Fields(l)[0])
		}
	}
	return out
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// A plugin sees each pod and container event once and in order, a
// container that exits on its own included; one that connects later is
// synchronized with what exists.
func TestNRILifecycleInOrder(t *testing.T) {
	n := newNRINode(t, "")
	n.pullBusybox(t)
	ctx := context.Background()

	// A pod and a container that exist before any plugin connects.
	early := n.logPod("nri-early")
	earlyID := n.run(t, early)
	earlyCtr := n.create(t, earlyID, early, ctrConfig("early", "sleep", "3600"), true)

	ev := n.startNRIPlugin(t, "order")
	ev.wait(t, time.Second, "Synchronize", "pod="+earlyID)
	ev.wait(t, time.Second, "Synchronize", "ctr="+earlyCtr, "ctrname=early", "state=CONTAINER_RUNNING")

	pod := n.logPod("nri-life")
	podID := n.run(t, pod)
	if _, err := n.runtime().UpdatePodSandboxResources(ctx, &runtime.UpdatePodSandboxResourcesRequest{
		PodSandboxId: podID, Resources: &runtime.LinuxContainerResources{CpuShares: 1024},
	}); err != nil {
		t.Fatal(err)
	}
	id := n.create(t, podID, pod, ctrConfig("web", "sleep", "3600"), true)
	if _, err := n.runtime().UpdateContainerResources(ctx, &runtime.UpdateContainerResourcesRequest{
		ContainerId: id, Linux: &runtime.LinuxContainerResources{CpuShares: 256},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.runtime().StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id, Timeout: 1}); err != nil {
		t.Fatal(err)
	}
	// A second stop changes nothing and tells the plugin nothing.
	if _, err := n.runtime().StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.runtime().RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}

	// A container that exits by itself: its stop reaches the plugin
	// without any CRI call.
	quick := n.create(t, podID, pod, ctrConfig("quick", "sh", "-c", "exit 3"), true)
	n.waitExited(t, quick, 30*time.Second)
	ev.wait(t, 30*time.Second, "StopContainer", "ctr="+quick, "state=CONTAINER_STOPPED")

	if _, err := n.runtime().StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.runtime().StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.runtime().RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}

	want := []string{"RunPodSandbox", "UpdatePodSandbox", "PostUpdatePodSandbox",
		"CreateContainer", "PostCreateContainer", "StartContainer", "PostStartContainer",
		"UpdateContainer", "PostUpdateContainer", "StopContainer", "RemoveContainer",
		"CreateContainer", "PostCreateContainer", "StartContainer", "PostStartContainer", "StopContainer",
		"StopPodSandbox", "RemoveContainer", "RemovePodSandbox"}
	if got := ev.of("pod=" + podID); !slices.Equal(got, want) {
		t.Fatalf("events of pod %s:\n got %v\nwant %v", podID, got, want)
	}
	if l := ev.wait(t, time.Second, "RunPodSandbox", "pod="+podID); !strings.Contains(l, "podname=nri-life") {
		t.Fatalf("RunPodSandbox without the pod's name: %s", l)
	}
	if l := ev.wait(t, time.Second, "CreateContainer", "ctr="+id); !strings.Contains(l, "ctrname=web") {
		t.Fatalf("CreateContainer without the container's name: %s", l)
	}

	// Removing a ready pod with a running container: the container
	// stops, then the pod, then both go.
	n.removePod(t, earlyID)
	want = []string{"Synchronize", "Synchronize", "StopContainer", "StopPodSandbox", "RemoveContainer", "RemovePodSandbox"}
	if got := ev.of("pod=" + earlyID); !slices.Equal(got, want) {
		t.Fatalf("events of pod %s:\n got %v\nwant %v", earlyID, got, want)
	}
}

// A plugin's adjustment at CreateContainer is in effect in the container
// (env, bind mount, rlimit, cgroup limits) and in ContainerStatus; its
// say at UpdateContainerResources wins; an update it sends on its own is
// applied through the normal update path.
func TestNRIAdjustsContainers(t *testing.T) {
	n := newNRINode(t, "")
	n.pullBusybox(t)
	src := filepath.Join(n.dir, "nri-src")
	writeFile(t, filepath.Join(src, "hello"), "from the plugin's mount\n")
	ev := n.startNRIPlugin(t, "adjust", "-mount-source", src)

	pod := n.logPod("nri-adjust")
	podID := n.run(t, pod)
	cfg := ctrConfig("adjust-web", "sleep", "3600")
	cfg.Linux.Resources = &runtime.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 128 << 20}
	id := n.create(t, podID, pod, cfg, false)

	// Plugin-set limits, before the container runs and before the
	// plugin's own update (sent once it has started) comes in.
	cg := n.ctrCgroup(t, id)
	if got := cgroupFile(t, "cpu", cg, "cpu.shares"); got != "321" {
		t.Errorf("cpu.shares = %s, want the plugin's 321", got)
	}
	if got := cgroupFile(t, "memory", cg, "memory.limit_in_bytes"); got != fmt.Sprint(64<<20) {
		t.Errorf("memory limit = %s, want the plugin's 64 MiB", got)
	}
	if r := n.ctrStatus(t, id).GetResources().GetLinux(); r.GetCpuShares() != 321 || r.GetMemoryLimitInBytes() != 64<<20 {
		t.Errorf("ContainerStatus resources %v, want the plugin's shares 321 and memory 64 MiB", r)
	}
	if _, err := n.runtime().StartContainer(context.Background(), &runtime.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if out := n.exec(t, id, "sh", "-c", "echo $NRI_ADJUSTED; cat /nri-mount/hello; ulimit -n"); out != "yes\nfrom the plugin's mount\n999" {
		t.Errorf("env, mount and rlimit in the container:\n%q", out)
	}
	if _, _, code := n.execResult(t, id, "touch", "/nri-mount/x"); code == 0 {
		t.Error("the plugin's read-only mount is writable")
	}

	// The plugin's own update (UpdateContainers), sent after the start.
	ev.wait(t, 30*time.Second, "UpdateContainers-result failed=0 err=<nil>", "ctr="+id)
	if got := cgroupFile(t, "memory", cg, "memory.limit_in_bytes"); got != fmt.Sprint(48<<20) {
		t.Errorf("memory limit after the plugin's update = %s, want 48 MiB", got)
	}
	if r := n.ctrStatus(t, id).GetResources().GetLinux(); r.GetMemoryLimitInBytes() != 48<<20 || r.GetCpuShares() != 321 {
		t.Errorf("ContainerStatus after the plugin's update: %v", r)
	}

	// UpdateContainerResources: the plugin turns the requested shares into 333.
	if _, err := n.runtime().UpdateContainerResources(context.Background(), &runtime.UpdateContainerResourcesRequest{
		ContainerId: id, Linux: &runtime.LinuxContainerResources{CpuShares: 700},
	}); err != nil {
		t.Fatal(err)
	}
	if got := cgroupFile(t, "cpu", cg, "cpu.shares"); got != "333" {
		t.Errorf("cpu.shares after update = %s, want the plugin's 333", got)
	}
	if r := n.ctrStatus(t, id).GetResources().GetLinux(); r.GetCpuShares() != 333 {
		t.Errorf("ContainerStatus after update: %v", r)
	}
	n.removePod(t, podID)
}

// A CDI device a plugin adds is resolved from nri.cdi_spec_dirs into the
// container; one that no spec defines fails the creation cleanly.
func TestNRICDIDevice(t *testing.T) {
	cdiDir := filepath.Join(os.TempDir(), fmt.Sprintf("crid-e2e-cdi-%d", os.Getpid()))
	t.Cleanup(func() { os.RemoveAll(cdiDir) })
	writeFile(t, filepath.Join(cdiDir, "crid-test.yaml"), `cdiVersion: "0.6.0"
kind: "crid.test/device"
devices:
  - name: one
    containerEdits:
      env: ["CDI_DEVICE=one"]
containerEdits:
  env: ["CDI_VENDOR=crid"]
`)
	n := newNRINode(t, fmt.Sprintf("cdi_spec_dirs = [%q]", cdiDir))
	n.pullBusybox(t)
	n.startNRIPlugin(t, "cdi")
	pod := n.logPod("nri-cdi")
	podID := n.run(t, pod)
	id := n.create(t, podID, pod, ctrConfig("cdi-one", "sleep", "3600"), true)
	if out := n.exec(t, id, "sh", "-c", "echo $CDI_DEVICE $CDI_VENDOR"); out != "one crid" {
		t.Errorf("CDI edits in the container: %q", out)
	}
	before := n.hostState(t)
	records := n.ctrRecords()
	_, err := n.runtime().CreateContainer(context.Background(), &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod, Config: ctrConfig("cdi-two", "sleep", "3600")})
	if err == nil || !strings.Contains(err.Error(), "crid.test/device=two") {
		t.Fatalf("CreateContainer with an unknown CDI device: %v", err)
	}
	if s := n.hostState(t); s != before || n.ctrRecords() != records {
		t.Fatalf("a failed CDI injection left behind: %+v (before %+v)", s, before)
	}
	n.removePod(t, podID)
}

// A plugin that refuses a pod or a container fails the call; nothing is
// left behind and the same request succeeds when retried.
func TestNRIFailingPluginFailsCleanly(t *testing.T) {
	n := newNRINode(t, "")
	n.pullBusybox(t)
	ctx := context.Background()
	ev := n.startNRIPlugin(t, "failing")

	pod := n.logPod("fail-once-pod")
	_, err := n.runtime().RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
	if err == nil || !strings.Contains(err.Error(), "nriplugin refuses pod fail-once-pod once") {
		t.Fatalf("RunPodSandbox refused by the plugin: %v", err)
	}
	if s := n.hostState(t); s != (hostState{}) {
		t.Fatalf("a refused pod left behind: %+v", s)
	}
	if list, _ := n.runtime().ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{}); len(list.GetItems()) != 0 {
		t.Fatalf("a refused pod is listed: %v", list.Items)
	}
	podID := n.run(t, pod) // the retry, same name
	if st := n.status(t, podID); st.State != runtime.PodSandboxState_SANDBOX_READY {
		t.Fatalf("retried pod is %v", st.State)
	}
	before := n.hostState(t)

	cfg := ctrConfig("fail-once-ctr", "sleep", "3600")
	_, err = n.runtime().CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod, Config: cfg})
	if err == nil || !strings.Contains(err.Error(), "nriplugin refuses container fail-once-ctr once") {
		t.Fatalf("CreateContainer refused by the plugin: %v", err)
	}
	if s := n.hostState(t); s != before || n.ctrRecords() != 0 || n.rootfsDirs() != 0 {
		t.Fatalf("a refused container left behind: %+v (before %+v), %d records, %d rootfs dirs", s, before, n.ctrRecords(), n.rootfsDirs())
	}
	if list, _ := n.runtime().ListContainers(ctx, &runtime.ListContainersRequest{}); len(list.GetContainers()) != 0 {
		t.Fatalf("a refused container is listed: %v", list.Containers)
	}
	id := n.create(t, podID, pod, cfg, true) // the retry, same name
	if st := n.ctrStatus(t, id); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("retried container is %v", st.State)
	}
	// The plugin never saw the refused container start.
	for _, l := range ev.lines() {
		if strings.HasPrefix(l, "StartContainer") && !strings.Contains(l, "ctr="+id) {
			t.Fatalf("a refused container was started: %s", l)
		}
	}
	n.removePod(t, podID)
}

// A plugin that does not answer in time: with the failure policy
// fail_request the call fails cleanly and a retry succeeds (the plugin
// stays, keep_connected); without it the plugin is dropped and the call
// goes on without it.
func TestNRITimingOutPlugin(t *testing.T) {
	n := newNRINode(t, `plugin_request_timeout = "1s"`)
	n.pullBusybox(t)
	ctx := context.Background()
	strict := n.startNRIPlugin(t, "strict", "-fail-request")

	pod := n.logPod("nri-timeout")
	podID := n.run(t, pod)
	before := n.hostState(t)
	cfg := ctrConfig("hang-once-ctr", "sleep", "3600")
	_, err := n.runtime().CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod, Config: cfg})
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("CreateContainer with a plugin that timed out under fail_request: %v", err)
	}
	if s := n.hostState(t); s != before || n.ctrRecords() != 0 || n.rootfsDirs() != 0 {
		t.Fatalf("a timed-out creation left behind: %+v (before %+v), %d records, %d rootfs dirs", s, before, n.ctrRecords(), n.rootfsDirs())
	}
	id := n.create(t, podID, pod, cfg, true) // the retry: the plugin answers now
	strict.wait(t, 10*time.Second, "StartContainer", "ctr="+id)

	// A plugin without a failure policy is dropped on a timeout; the
	// call succeeds without it, and the plugin's connection ends.
	lax := n.startNRIPlugin(t, "lax", "-hang-prefix", "lax-hang-")
	id2 := n.create(t, podID, pod, ctrConfig("lax-hang-ctr", "sleep", "3600"), true)
	select {
	case <-lax.done:
	case <-time.After(30 * time.Second):
		t.Fatal("crid kept a plugin that timed out without asking to")
	}
	strict.wait(t, 10*time.Second, "StartContainer", "ctr="+id2)
	n.removePod(t, podID)
}

// crid starts the plugins of nri.plugin_path itself, with their
// configuration from nri.plugin_config_path, and ends them when it stops.
func TestNRIPreinstalledPlugin(t *testing.T) {
	dir := newDirs(t)
	plugins, confs := filepath.Join(dir, "nri-plugins"), filepath.Join(dir, "nri-conf")
	bin, err := os.ReadFile(nriPlugin(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(plugins, "10-preinstalled"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	events := filepath.Join(dir, "pre.events")
	writeFile(t, filepath.Join(confs, "10-preinstalled.conf"), "events="+events+"\n")

	n := &podNode{dir: dir}
	n.writeConfig(t)
	cfg, _ := os.ReadFile(filepath.Join(dir, "crid.toml"))
	writeFile(t, filepath.Join(dir, "crid.toml"), fmt.Sprintf("%s\n[nri]\nplugin_path = %q\nplugin_config_path = %q\n", cfg, plugins, confs))
	n.daemon = startDaemonEnv(t, dir, nil, n.args()...)
	ev := &nriEvents{path: events}
	ev.wait(t, 30*time.Second, "Synchronized")
	pid := pluginPid(t, filepath.Join(plugins, "10-preinstalled"))

	pod := n.logPod("nri-pre")
	podID := n.run(t, pod)
	ev.wait(t, 10*time.Second, "RunPodSandbox", "pod="+podID)
	n.removePod(t, podID)
	ev.wait(t, 10*time.Second, "RemovePodSandbox", "pod="+podID)

	n.daemon.stop(syscall.SIGTERM, 10*time.Second)
	for deadline := time.Now().Add(10 * time.Second); alive(pid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("pre-installed plugin (pid %d) outlived crid", pid)
		}
	}
}

// pluginPid finds the process running the executable at path.
func pluginPid(t *testing.T, path string) int {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/exe")
	for _, p := range procs {
		if target, err := os.Readlink(p); err == nil && target == path {
			var pid int
			if _, err := fmt.Sscanf(p, "/proc/%d/exe", &pid); err == nil {
				return pid
			}
		}
	}
	t.Fatalf("no process runs %s", path)
	return 0
}

// crid does not take over an NRI socket another live process serves: it
// refuses to start and names the key.
func TestNRISocketInUse(t *testing.T) {
	dir := newDirs(t)
	l, err := net.Listen("unix", filepath.Join(dir, "nri.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	writeFile(t, filepath.Join(dir, "crid.toml"), "")
	code, out := runCrid(t, baseArgs(dir)...)
	if code == 0 {
		t.Fatalf("crid started on a busy NRI socket:\n%s", out)
	}
	mustContain(t, "crid's error", out, "nri.socket_path", filepath.Join(dir, "nri.sock"))
	if _, err := net.Dial("unix", filepath.Join(dir, "nri.sock")); err != nil {
		t.Fatalf("the other process's socket is gone: %v", err)
	}
}
