package e2e

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Tests of issue 12, the pod side: a dead infra process is noticed, an
// image's user files are read safely, host users cannot reach pods' files,
// careless requests are refused, a panic in the CNI setup fails one call.

// sharedPidPod is a pod config whose containers share one PID namespace,
// held by the infra (pause) process.
func (n *podNode) sharedPidPod(name string) *runtime.PodSandboxConfig {
	pod := n.logPod(name)
	pod.Linux.SecurityContext.NamespaceOptions.Pid = runtime.NamespaceMode_POD
	return pod
}

// waitPause waits until the infra process has exec'd pause: only then does
// it handle SIGTERM.
func waitPause(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) == "pause" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("infra process %d is %q, want pause", pid, comm)
		}
	}
}

// waitPodState polls the pod's state until it is want or bound passes, and
// returns how long it took.
func (n *podNode) waitPodState(t *testing.T, id string, want runtime.PodSandboxState, bound time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if st := n.status(t, id); st.State == want {
			return time.Since(start)
		}
		if time.Since(start) > bound {
			t.Fatalf("pod %s not %v within %s\n%s", id, want, bound, n.log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// createRefused checks that CreateContainer into the pod fails with code and
// leaves no rootfs and no record behind.
func (n *podNode) createRefused(t *testing.T, podID string, pod *runtime.PodSandboxConfig, cfg *runtime.ContainerConfig, code codes.Code, naming string) {
	t.Helper()
	rootfs, records, mounts := n.rootfsDirs(), n.ctrRecords(), n.hostState(t).mounts
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := n.runtime().CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod, Config: cfg})
	if status.Code(err) != code || !strings.Contains(err.Error(), naming) {
		t.Fatalf("CreateContainer %s: %v, want %v naming %q", cfg.Metadata.Name, err, code, naming)
	}
	if r, c, m := n.rootfsDirs(), n.ctrRecords(), n.hostState(t).mounts; r != rootfs || c != records || m != mounts {
		t.Fatalf("refused CreateContainer %s left %d rootfs dirs (was %d), %d records (was %d), %d mounts (was %d)", cfg.Metadata.Name, r, rootfs, c, records, m, mounts)
	}
}

// In a pod sharing one PID namespace, a container sends SIGTERM to PID 1,
// the pause process, which exits on it. The pod turns NOTREADY at once and
// its STOPPED event arrives, so kubelet recreates the pod; no container
// can be created into it; stop and remove clean up everything. The daemon
// was restarted after the pod started: the new one watches the infra too.
func TestInfraExitMakesPodNotReady(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	pod := n.sharedPidPod("infra-dies")
	podID := n.run(t, pod)
	pid := n.infraPid(t, podID)
	waitPause(t, pid)
	n.restart(t)
	es := n.watchEvents(t)

	n.create(t, podID, pod, ctrConfig("killer", "sh", "-c", "kill -TERM 1; sleep 3600"), true)
	took := n.waitPodState(t, podID, runtime.PodSandboxState_SANDBOX_NOTREADY, 10*time.Second)
	t.Logf("pod NOTREADY %s after StartContainer of the container that kills PID 1", took)
	if took > time.Second {
		t.Errorf("pod turned NOTREADY after %s, want within a second", took)
	}
	if alive(pid) {
		t.Fatalf("infra process %d is alive", pid)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		e := es.next(t, time.Until(deadline))
		if e.ContainerId == podID && e.ContainerEventType == runtime.ContainerEventType_CONTAINER_STOPPED_EVENT {
			if e.PodSandboxStatus.GetState() != runtime.PodSandboxState_SANDBOX_NOTREADY {
				t.Fatalf("the pod's STOPPED event carries state %v", e.PodSandboxStatus.GetState())
			}
			break
		}
	}
	n.createRefused(t, podID, pod, ctrConfig("after", "sleep", "3600"), codes.FailedPrecondition, podID)
	if _, err := n.runtime().StopPodSandbox(context.Background(), &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	n.removePod(t, podID)
}

// An infra process that dies while the daemon is down is noticed at its
// start: the pod is NOTREADY and takes no container.
func TestInfraExitWhileDaemonDownIsNoticed(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	pod := n.sharedPidPod("infra-dies-offline")
	podID := n.run(t, pod)
	pid := n.infraPid(t, podID)
	waitPause(t, pid)
	n.daemon.stop(syscall.SIGTERM, 5*time.Second)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); alive(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("infra %d survived SIGKILL", pid)
		}
	}
	n.daemon = startDaemonEnv(t, n.dir, nil, n.args()...)
	if st := n.status(t, podID); st.State != runtime.PodSandboxState_SANDBOX_NOTREADY {
		t.Fatalf("after the restart the pod whose infra died is %v", st.State)
	}
	n.createRefused(t, podID, pod, ctrConfig("after", "sleep", "3600"), codes.FailedPrecondition, podID)
	n.removePod(t, podID)
}

// The image's /etc/passwd and /etc/group are read inside its rootfs, only
// as small regular files: a FIFO, a device, a 100 MB file fail
// CreateContainer with InvalidArgument at once; a symlink to the host's
// /etc/shadow or /dev/zero resolves inside the rootfs, never on the host;
// nothing is left mounted, stored or blocked.
func TestImageUserFilesAreReadSafely(t *testing.T) {
	imgs := map[string]string{
		"fifo": secpodPushImage(t, "fifo-passwd", []secpodFile{{name: "etc/passwd", typ: tar.TypeFifo}}),
		"zero": secpodPushImage(t, "chardev-group", []secpodFile{{name: "etc/group", typ: tar.TypeChar, major: 1, minor: 5}}),
		"big": secpodPushImage(t, "big-passwd", []secpodFile{{name: "etc/passwd", typ: tar.TypeReg,
			body: []byte("user:x:1000:1000:a user of a very large passwd file:/home/user:/bin/sh\n"), size: 100 << 20}}),
		// The image's own shadow holds a user in passwd form: the host's
		// holds root, which must never be found.
		"shadow": secpodPushImage(t, "passwd-to-shadow", []secpodFile{
			{name: "etc/shadow", typ: tar.TypeReg, body: []byte("imguser:x:4321:4321::/:/bin/sh\n")},
			{name: "etc/passwd", typ: tar.TypeSymlink, linkname: "/etc/shadow"},
		}),
		"devzero": secpodPushImage(t, "passwd-to-dev-zero", []secpodFile{{name: "etc/passwd", typ: tar.TypeSymlink, linkname: "/dev/zero"}}),
	}
	n := newPodNode(t)
	for _, ref := range imgs {
		n.pull(t, ref)
	}
	pod := n.logPod("userfiles")
	podID := n.run(t, pod)
	crid := n.cmd.Process.Pid
	for _, tc := range []struct {
		name, image, user, naming string
	}{
		{"fifo passwd", imgs["fifo"], "", "is a FIFO"},
		{"character device group", imgs["zero"], "", "is a character device"},
		{"100 MB passwd", imgs["big"], "user", "more than"},
		{"passwd linked to /etc/shadow", imgs["shadow"], "root", "no matching entries"},
		{"passwd linked to /dev/zero", imgs["devzero"], "root", "no matching entries"},
	} {
		cfg := ctrConfig(strings.ReplaceAll(tc.name, " ", "-"), "sleep", "3600")
		cfg.Image.Image = tc.image
		cfg.Linux.SecurityContext.RunAsUsername = tc.user
		start := time.Now()
		n.createRefused(t, podID, pod, cfg, codes.InvalidArgument, tc.naming)
		t.Logf("%s: refused in %s", tc.name, time.Since(start))
		if tasks := blockedOnFifo(crid); len(tasks) > 0 {
			t.Fatalf("%s: crid threads blocked on a FIFO: %v", tc.name, tasks)
		}
	}
	// The symlink's target is the image's own file.
	cfg := ctrConfig("imguser", "sleep", "3600")
	cfg.Image.Image = imgs["shadow"]
	cfg.Linux.SecurityContext.RunAsUsername = "imguser"
	id := n.create(t, podID, pod, cfg, true)
	if uid := n.exec(t, id, "id", "-u"); uid != "4321" {
		t.Fatalf("imguser from the image's /etc/shadow runs as %q, want 4321", uid)
	}
	n.removePod(t, podID)
}

// blockedOnFifo lists the threads of pid sleeping in a FIFO open or read.
func blockedOnFifo(pid int) []string {
	var out []string
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/wchan", pid))
	for _, p := range tasks {
		b, _ := os.ReadFile(p)
		if w := string(b); strings.Contains(w, "partner") || strings.Contains(w, "pipe_read") || strings.Contains(w, "fifo") {
			out = append(out, filepath.Base(filepath.Dir(p))+":"+w)
		}
	}
	return out
}

// probeEnv makes the test binary an access prober (probeAccess) instead
// of running tests: hostUserProbe starts it as an unprivileged user.
const probeEnv = "CRID_E2E_ACCESS_PROBE"

// probeResult is what an unprivileged user could do with one path; each
// field is "" when it succeeded, else the error.
type probeResult struct {
	Path   string `json:"path"`
	List   string `json:"list,omitempty"`   // directories: read the entries
	Open   string `json:"open,omitempty"`   // files: open for reading; sockets: connect
	Create string `json:"create,omitempty"` // directories: create a file in it
}

// probeAccess reads paths (JSON) on stdin and tries each as the user it
// runs as; it prints the results (JSON) and its mountinfo on stdout.
func probeAccess() int {
	var paths []string
	if err := json.NewDecoder(os.Stdin).Decode(&paths); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	errStr := func(err error) string {
		if err == nil {
			return ""
		}
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return errno.Error()
		}
		return err.Error()
	}
	var out struct {
		UID       int           `json:"uid"`
		Results   []probeResult `json:"results"`
		MountInfo string        `json:"mountinfo"`
	}
	out.UID = os.Getuid()
	for _, p := range paths {
		r := probeResult{Path: p, List: "-", Open: "-", Create: "-"}
		fi, err := os.Lstat(p)
		switch {
		case err != nil:
			// Not even its type can be read: nothing can be done with it.
			r.List, r.Open, r.Create = errStr(err), errStr(err), errStr(err)
		case fi.IsDir():
			_, err := os.ReadDir(p)
			r.List = errStr(err)
			f, err := os.OpenFile(filepath.Join(p, ".probe"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err == nil {
				f.Close()
				os.Remove(f.Name())
			}
			r.Create = errStr(err)
		case fi.Mode().Type() == fs.ModeSocket:
			c, err := net.Dial("unix", p)
			if err == nil {
				c.Close()
			}
			r.Open = errStr(err)
		case fi.Mode().Type() == fs.ModeSymlink:
			_, err := os.Stat(p)
			r.Open = errStr(err)
		default:
			f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
			if err == nil {
				f.Close()
			}
			r.Open = errStr(err)
		}
		out.Results = append(out.Results, r)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	out.MountInfo = string(mi)
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		return 1
	}
	return 0
}

// hostUserProbe runs probeAccess as nobody (uid and gid 65534, no
// supplementary groups) on paths; it returns the results by path and what
// nobody sees in /proc/self/mountinfo.
func hostUserProbe(t *testing.T, paths []string) (map[string]probeResult, string) {
	t.Helper()
	// The test binary sits in go test's private dir: nobody runs a copy.
	dir, err := os.MkdirTemp("", "crid-e2e-probe-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	bin := filepath.Join(dir, "probe")
	f, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, self); err != nil {
		t.Fatal(err)
	}
	f.Close()
	in, err := json.Marshal(paths)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Dir = "/"
	cmd.Env = []string{probeEnv + "=1", "PATH=/usr/bin:/bin"}
	cmd.Stdin = strings.NewReader(string(in))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	outb, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("access probe: %v %s", err, stderr)
	}
	var out struct {
		UID       int           `json:"uid"`
		Results   []probeResult `json:"results"`
		MountInfo string        `json:"mountinfo"`
	}
	if err := json.Unmarshal(outb, &out); err != nil {
		t.Fatal(err)
	}
	if out.UID != 65534 || len(out.Results) != len(paths) {
		t.Fatalf("probe ran as uid %d and probed %d of %d paths", out.UID, len(out.Results), len(paths))
	}
	res := map[string]probeResult{}
	for _, r := range out.Results {
		res[r.Path] = r
	}
	return res, out.MountInfo
}

// Host users cannot reach pods' files: nobody sees the pod's /dev/shm in
// the mount table, yet can neither list, open nor create anything under
// crid's run and root dirs (pod dirs, shm, namespace pins, rootfs, state),
// whose top dirs are 0711 and whose next ones are private. Containers in
// the pod still share /dev/shm, one of them as a non-root user.
func TestPodFilesUnreachableByHostUsers(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	// The test's own dir is private; open it so that crid's modes alone
	// stand between nobody and crid's files.
	if err := os.Chmod(n.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pod := n.logPod("private")
	podID := n.run(t, pod)
	user := ctrConfig("user", "sh", "-c", "echo from-user > /dev/shm/user-file && echo wrote && sleep 3600")
	user.Linux.SecurityContext.RunAsUser = &runtime.Int64Value{Value: 1000}
	userID := n.create(t, podID, pod, user, true)
	waitLog(t, filepath.Join(pod.LogDirectory, "user.log"), "wrote", 10*time.Second)
	root := n.create(t, podID, pod, ctrConfig("root", "sleep", "3600"), true)
	if got := n.exec(t, root, "cat", "/dev/shm/user-file"); got != "from-user" {
		t.Fatalf("the pod's other container reads %q from /dev/shm", got)
	}
	if got := n.exec(t, root, "stat", "-c", "%u %a", "/dev/shm/user-file", "/dev/shm"); !strings.HasPrefix(got, "1000 ") || !strings.HasSuffix(got, "\n0 1777") {
		t.Fatalf("/dev/shm as seen in the pod (owner and mode of the file, then of the dir): %q", got)
	}
	if got := n.exec(t, userID, "id", "-u"); got != "1000" {
		t.Fatalf("the writer runs as %q", got)
	}

	runDir, rootDir := filepath.Join(n.dir, "run"), filepath.Join(n.dir, "root")
	podDir := filepath.Join(runDir, "sandboxes", podID)
	shm := filepath.Join(podDir, "shm")
	var st syscall.Stat_t
	if err := syscall.Stat(shm, &st); err != nil || st.Mode&0o7777 != 0o1777 {
		t.Fatalf("pod shm tmpfs mode %#o (%v): containers need 1777", st.Mode&0o7777, err)
	}
	for dir, want := range map[string]os.FileMode{runDir: 0o711, rootDir: 0o711} {
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", dir, fi.Mode().Perm(), err, want)
		}
	}
	for _, top := range []string{runDir, rootDir} {
		entries, err := os.ReadDir(top)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			fi, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			// Passable (x) is allowed: user-namespaced containers and
			// infras reach their rootfs through these dirs; the probe
			// below proves nothing can be listed, read or made through them.
			if e.IsDir() && fi.Mode().Perm()&0o066 != 0 {
				t.Errorf("%s: mode %v: a dir under crid's %s must be private (passable at most)", filepath.Join(top, e.Name()), fi.Mode().Perm(), top)
			}
		}
	}

	var paths []string
	for _, top := range []string{runDir, rootDir} {
		err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err == nil {
				paths = append(paths, p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	mustHave := []string{podDir, shm, filepath.Join(shm, "user-file"), filepath.Join(podDir, "ns", "net"), filepath.Join(podDir, "resolv.conf"),
		filepath.Join(rootDir, "rootfs", userID, "merged", "etc", "passwd"), filepath.Join(runDir, "monitor")}
	for _, p := range mustHave {
		if !contains(paths, p) {
			t.Fatalf("walk of crid's dirs missed %s", p)
		}
	}
	res, mountinfo := hostUserProbe(t, paths)
	if !strings.Contains(mountinfo, shm) {
		t.Fatalf("nobody does not see the pod's shm mount %s: the probe proves nothing", shm)
	}
	reached := 0
	for _, p := range paths {
		r := res[p]
		if r.List == "" || r.Open == "" || r.Create == "" {
			t.Errorf("nobody can reach %s: list %q open %q create %q", p, r.List, r.Open, r.Create)
			reached++
		}
	}
	t.Logf("nobody probed %d paths under %s and %s; reached %d", len(paths), runDir, rootDir, reached)
	n.removePod(t, podID)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Requests only a careless client sends reach a real crid and are refused
// with InvalidArgument naming the field, leaving nothing behind; a TARGET
// PID namespace joins a container of the same pod, by a pin released after
// the create.
func TestCarelessPodRequestsAreRefused(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	ctx := context.Background()
	for _, tc := range []struct {
		field  string
		mutate func(*runtime.PodSandboxConfig)
	}{
		{"config.hostname", func(c *runtime.PodSandboxConfig) { c.Hostname = "web\n10.0.0.1 kubernetes" }},
		{"config.dns_config.searches[0]", func(c *runtime.PodSandboxConfig) {
			c.DnsConfig = &runtime.DNSConfig{Searches: []string{"svc;nameserver 6.6.6.6"}}
		}},
		{"config.dns_config.options[0]", func(c *runtime.PodSandboxConfig) {
			c.DnsConfig = &runtime.DNSConfig{Options: []string{"ndots:5\nnameserver 6.6.6.6"}}
		}},
		{"config.dns_config.servers[0]", func(c *runtime.PodSandboxConfig) {
			c.DnsConfig = &runtime.DNSConfig{Servers: []string{"10.0.0.10\x00"}}
		}},
		{"config.metadata.uid", func(c *runtime.PodSandboxConfig) { c.Metadata.Uid = "uid;K8S_POD_NAME=other" }},
		{"config.metadata.namespace", func(c *runtime.PodSandboxConfig) { c.Metadata.Namespace = "e2e\n" }},
	} {
		cfg := podConfig("careless")
		tc.mutate(cfg)
		_, err := n.runtime().RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v, want InvalidArgument naming it", tc.field, err)
		}
	}
	if s := n.hostState(t); s != (hostState{}) {
		t.Fatalf("refused pods left: %+v", s)
	}

	pod := n.logPod("targets")
	podID := n.run(t, pod)
	other := n.logPod("other")
	otherID := n.run(t, other)
	target := n.create(t, podID, pod, ctrConfig("target", "sleep", "3600"), true)

	joiner := ctrConfig("joiner", "sleep", "3601")
	joiner.Linux.SecurityContext.NamespaceOptions = &runtime.NamespaceOption{Pid: runtime.NamespaceMode_TARGET, TargetId: target}
	joined := n.create(t, podID, pod, joiner, true)
	if got := n.exec(t, joined, "cat", "/proc/1/cmdline"); !strings.HasPrefix(got, "sleep\x003600") {
		t.Fatalf("PID 1 seen from the joiner is %q, want the target's sleep 3600", got)
	}
	if pins, _ := filepath.Glob(filepath.Join(n.dir, "run", "sandboxes", podID, "ns", "pid-target-*")); len(pins) != 0 {
		t.Fatalf("target pins left after the create: %v", pins)
	}

	intruder := ctrConfig("intruder", "sleep", "3600")
	intruder.Linux.SecurityContext.NamespaceOptions = &runtime.NamespaceOption{Pid: runtime.NamespaceMode_TARGET, TargetId: target}
	n.createRefused(t, otherID, other, intruder, codes.InvalidArgument, "target_id")
	intruder.Linux.SecurityContext.NamespaceOptions.TargetId = strings.Repeat("0", 64)
	n.createRefused(t, otherID, other, intruder, codes.NotFound, "target_id")
	priv := ctrConfig("privileged", "sleep", "3600")
	priv.Linux.SecurityContext.Privileged = true
	n.createRefused(t, otherID, other, priv, codes.InvalidArgument, "config.linux.security_context.privileged")
	if _, err := n.runtime().RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: otherID}); err != nil {
		t.Fatal(err)
	}
	n.removePod(t, podID)
}

// A panic in the CNI setup (fault point cni.setup, after the plugins took
// a lease) fails RunPodSandbox with Internal; the pod, begun with its infra
// process at the same time, is undone whole: no netns pin, mount, cgroup,
// veth, lease, record or rootfs is left, and the daemon serves on.
func TestCNIPanicFailsRunPodSandboxCleanly(t *testing.T) {
	n := newPodNode(t, "CRID_FAILPOINTS=cni.setup=panic")
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		_, err := n.runtime().RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: n.sharedPidPod(fmt.Sprintf("cni-panic-%d", i))})
		if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "panic") {
			t.Fatalf("RunPodSandbox with a panicking CNI setup: %v, want Internal", err)
		}
		if s := n.hostState(t); s != (hostState{}) {
			t.Fatalf("failed pod left: %+v\n%s", s, n.log)
		}
	}
	mustContain(t, "crid log", n.log.String(), "Recovered from a panic", "cni.setup")
	select {
	case <-n.exited:
		t.Fatalf("crid exited: %v", n.cmd.ProcessState)
	default:
	}
	if _, err := n.runtime().Version(ctx, &runtime.VersionRequest{}); err != nil {
		t.Fatalf("crid does not answer after the panics: %v", err)
	}
	// A host-network pod needs no CNI: it still starts.
	cfg := n.sharedPidPod("after-panic")
	cfg.Linux.SecurityContext.NamespaceOptions.Network = runtime.NamespaceMode_NODE
	id := n.run(t, cfg)
	n.removePod(t, id)
}
