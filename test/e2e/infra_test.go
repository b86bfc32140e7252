package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// infraPid reads the pod's infra process from its verbose status.
func (n *podNode) infraPid(t *testing.T, id string) int {
	t.Helper()
	resp, err := n.runtime().PodSandboxStatus(context.Background(), &runtime.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		InfraPid int `json:"infra_pid"`
	}
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil {
		t.Fatal(err)
	}
	return info.InfraPid
}

// monitorPids finds the monitors serving this node's run dir (not the
// stdio holder, "crid-monitor hold").
func (n *podNode) monitorPids() []int {
	return n.cridMonitorPids(false)
}

// holderPids finds the stdio holders of this node's run dir.
func (n *podNode) holderPids() []int {
	return n.cridMonitorPids(true)
}

func (n *podNode) cridMonitorPids(holders bool) []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), "crid-monitor") && strings.Contains(string(b), n.dir+"/") &&
			strings.Contains(string(b), "\x00hold\x00") == holders {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			pids = append(pids, pid)
		}
	}
	return pids
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// sandboxImage is the test bed's pause image (hack/test-images.sh), served
// through its registry mirror, for the image-based infra.
const sandboxImage = "registry.k8s.io/pause:3.10"

// A pod sharing one PID namespace gets an infra (pause) process, which
// lives in the pod's namespaces and survives restarts of the daemon and of
// the monitor: crid's built-in crid-pause by default, from a read-only
// rootfs and with no image, or the pause of a configured sandbox image,
// pulled and pinned.
func TestInfraProcess(t *testing.T) {
	t.Run("built-in", func(t *testing.T) {
		testInfraProcess(t, newPodNode(t))
	})
	t.Run("sandbox image", func(t *testing.T) {
		testInfraProcess(t, newPodNodeWith(t, []string{"--sandbox-image", sandboxImage}))
	})
}

func testInfraProcess(t *testing.T, n *podNode) {
	t.Helper()
	builtin := !strings.Contains(strings.Join(n.extra, " "), "--sandbox-image")
	cfg := podConfig("infra")
	cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtime.NamespaceMode_POD
	id := n.run(t, cfg)
	pid := n.infraPid(t, id)
	if pid == 0 || !alive(pid) {
		t.Fatalf("no live infra process (pid %d)\n%s", pid, n.log)
	}
	// Start returns once the init is released; its exec of pause follows
	// within moments (as with runc start).
	var comm []byte
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		comm, _ = os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) == "pause" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("infra process is %q, want pause", comm)
		}
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	mustContain(t, "infra status", string(status), "Uid:\t65535")
	// Its root is mounted read-only, and it is the built-in rootfs or the
	// image's; only the image is in the store, pinned.
	rootMount := ""
	mi, _ := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 5 && f[4] == "/" {
			rootMount = l
		}
	}
	if f := strings.Fields(rootMount); len(f) < 6 || !strings.HasPrefix(f[5], "ro") {
		t.Errorf("infra root mount %q is not read-only", rootMount)
	}
	images, err := n.images().ListImages(context.Background(), &runtime.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if builtin {
		if len(images.Images) != 0 {
			t.Errorf("the built-in infra put images in the store: %v", images.Images)
		}
		entries, _ := os.ReadDir(fmt.Sprintf("/proc/%d/root", pid))
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if got := strings.Join(names, " "); got != "dev pause proc sys" {
			t.Errorf("built-in infra's root holds %q, want dev pause proc sys", got)
		}
	} else if len(images.Images) != 1 || !images.Images[0].Pinned || !strings.Contains(strings.Join(images.Images[0].RepoTags, " "), sandboxImage) {
		t.Errorf("store after an image-based infra: %v, want %s alone, pinned", images.Images, sandboxImage)
	}
	pins := filepath.Join(n.dir, "run", "sandboxes", id, "ns")
	for _, kind := range []string{"net", "ipc", "uts"} {
		if got, want := nsInode(t, fmt.Sprintf("/proc/%d/ns/%s", pid, kind)), nsInode(t, filepath.Join(pins, kind)); got != want {
			t.Fatalf("infra %s namespace %d is not the pod's %d", kind, got, want)
		}
	}
	cgroup, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	mustContain(t, "infra cgroup", string(cgroup), cgroupRel(t, childCgroup(n.cgroupParent, "pod"+podSep()+id))+"/"+ctrLeaf(id))

	// The daemon restarts: the pod keeps running.
	n.restart(t)
	if st := n.status(t, id); st.State != runtime.PodSandboxState_SANDBOX_READY || !alive(pid) {
		t.Fatalf("after daemon restart: %v, infra alive %v", st.State, alive(pid))
	}
	// The monitor is killed: the daemon starts another, the pod lives on.
	mons := n.monitorPids()
	if len(mons) != 1 {
		t.Fatalf("monitors for this node: %v", mons)
	}
	if err := syscall.Kill(mons[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := n.monitorPids(); len(m) == 1 && m[0] != mons[0] && alive(m[0]) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new monitor after killing %d: %v\n%s", mons[0], n.monitorPids(), n.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := n.status(t, id); st.State != runtime.PodSandboxState_SANDBOX_READY || !alive(pid) {
		t.Fatalf("after monitor restart: %v, infra alive %v", st.State, alive(pid))
	}

	ctx := context.Background()
	if _, err := n.runtime().StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatal("infra process survived StopPodSandbox")
	}
	if _, err := n.runtime().RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if s := n.hostState(t); s != (hostState{}) {
		t.Fatalf("left behind: %+v", s)
	}
	if _, err := os.Stat(filepath.Join(n.dir, "root", "rootfs", id)); !os.IsNotExist(err) {
		t.Fatalf("infra rootfs left: %v", err)
	}
}

// The acceptance of issue 14: with no registries configuration at all (so
// no registry serves any pause image), a crictl pod that leaves the PID
// namespace option unset (POD sharing, crictl's default) runs, its infra
// the built-in one.
func TestPodSharingPIDWithoutRegistry(t *testing.T) {
	n := newPodNodeWith(t, []string{"--registries-conf="})
	pod := filepath.Join(n.dir, "pod.json")
	writeFile(t, pod, `{"metadata": {"name": "no-registry", "namespace": "e2e", "uid": "no-registry-uid"}, "hostname": "no-registry",
  "linux": {"cgroup_parent": "`+childCgroup(n.cgroupParent, "noreg")+`"}}`)
	id := strings.TrimSpace(crictl(t, n.daemon, "runp", pod))
	mustContain(t, "crictl pods", crictl(t, n.daemon, "pods", "--id", id), "no-registry", "Ready")
	pid := n.infraPid(t, id)
	if pid == 0 || !alive(pid) {
		t.Fatalf("no live infra process (pid %d)\n%s", pid, n.log)
	}
	exe, err := os.Stat(fmt.Sprintf("/proc/%d/exe", pid))
	builtin, err2 := os.Stat(filepath.Join(n.dir, "root", "infra", "rootfs", "pause"))
	if err != nil || err2 != nil || !os.SameFile(exe, builtin) {
		t.Errorf("infra does not run the built-in root/infra/rootfs/pause: %v %v", err, err2)
	}
	if out := crictl(t, n.daemon, "images", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("images pulled for the pod: %q", out)
	}
	crictl(t, n.daemon, "rmp", "-f", id)
	if alive(pid) {
		t.Fatal("infra process survived crictl rmp -f")
	}
}

func TestCrictlPodCommands(t *testing.T) {
	n := newPodNode(t)
	pod := filepath.Join(n.dir, "pod.json")
	writeFile(t, pod, `{"metadata": {"name": "crictl-pod", "namespace": "e2e", "uid": "crictl-uid"}, "hostname": "crictl-pod",
  "labels": {"via": "crictl"}, "linux": {"cgroup_parent": "`+childCgroup(n.cgroupParent, "crictl")+`"}}`)
	id := strings.TrimSpace(crictl(t, n.daemon, "runp", pod))
	if len(id) != 64 {
		t.Fatalf("crictl runp printed %q, want a sandbox ID", id)
	}
	mustContain(t, "crictl pods", crictl(t, n.daemon, "pods"), id[:13], "crictl-pod", "Ready")
	out := crictl(t, n.daemon, "inspectp", id[:13])
	mustContain(t, "crictl inspectp", out, `"state": "SANDBOX_READY"`, `"ip": "10.241.`, `"via": "crictl"`, `"infra_pid"`)
	crictl(t, n.daemon, "stopp", id[:13])
	mustContain(t, "crictl pods after stopp", crictl(t, n.daemon, "pods", "--id", id), "NotReady")
	crictl(t, n.daemon, "rmp", id[:13])
	if out := crictl(t, n.daemon, "pods", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("pods left after rmp: %q", out)
	}
	// The pod cgroup named in the config is the caller's (kubelet creates
	// and removes its pod cgroups); crid removed only its leaf in it.
	hierarchies := []string{"memory", "cpu", "cpuacct", "pids", "cpuset", "blkio", "devices", "freezer", "systemd"}
	if cgroupV2() {
		hierarchies = []string{""}
	}
	for _, h := range hierarchies {
		p := filepath.Join("/sys/fs/cgroup", h, cgroupRel(t, childCgroup(n.cgroupParent, "crictl")))
		if entries, _ := os.ReadDir(p); len(entries) > 0 {
			for _, e := range entries {
				if e.IsDir() {
					t.Errorf("container cgroup left: %s/%s", p, e.Name())
				}
			}
		}
		_ = os.Remove(p)
	}
	if systemdDriver() {
		// The slice systemd made for the scopes in it is the caller's too.
		_ = exec.Command("systemctl", "stop", childCgroup(n.cgroupParent, "crictl")).Run()
	}
	if s := n.hostState(t); s != (hostState{}) {
		t.Fatalf("left behind: %+v", s)
	}
}

// listenInNetns opens a TCP listener inside the network namespace at pin:
// a socket keeps the namespace it was created in.
func listenInNetns(t *testing.T, pin string, port int) net.Listener {
	t.Helper()
	type result struct {
		l   net.Listener
		err error
	}
	done := make(chan result, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread dies with the goroutine
		f, err := os.Open(pin)
		if err != nil {
			done <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{nil, err}
			return
		}
		l, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		done <- result{l, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.l.Close() })
	return r.l
}

// A pod's port mapping forwards the host port to the pod.
func TestPortMappingReachesPod(t *testing.T) {
	n := newPodNode(t)
	hostPort := int32(42000 + rand.IntN(2000))
	cfg := podConfig("ports")
	cfg.PortMappings = []*runtime.PortMapping{{ContainerPort: 8080, HostPort: hostPort, Protocol: runtime.Protocol_TCP}}
	id := n.run(t, cfg)
	l := listenInNetns(t, filepath.Join(n.dir, "run", "sandboxes", id, "ns", "net"), 8080)
	go func() {
		c, err := l.Accept()
		if err == nil {
			_, _ = c.Write([]byte("hello from the pod\n"))
			c.Close()
		}
	}()
	// The bridge's gateway is a host address: portmap's DNAT for locally
	// generated traffic sends host:hostPort to the pod.
	gw := strings.TrimSuffix(n.subnet, "0/24") + "1"
	c, err := net.DialTimeout("tcp4", fmt.Sprintf("%s:%d", gw, hostPort), 5*time.Second)
	if err != nil {
		t.Fatalf("dial host port %d: %v", hostPort, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	if string(b) != "hello from the pod\n" {
		t.Fatalf("through the host port: %q", b)
	}
	if _, err := n.runtime().RemovePodSandbox(context.Background(), &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("iptables-save", "-t", "nat").Output()
	if strings.Contains(string(out), id) {
		t.Fatal("port-forwarding rules left after removal")
	}
}
