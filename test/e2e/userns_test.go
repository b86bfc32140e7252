package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// usernsHostID is where the test pods' IDs start on the host, as kubelet
// picks a range of 65536 for each pod.
const usernsHostID = 200000

func usernsPOD() *runtime.UserNamespace {
	m := []*runtime.IDMapping{{ContainerId: 0, HostId: usernsHostID, Length: 65536}}
	return &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: m, Gids: m}
}

// newUsernsNode is newPodNode on a dir others may pass through (mode
// 0711, as /var/lib is): a container whose root is mapped to another user
// reaches its rootfs through the path, so crid supports user namespaces
// only then.
func newUsernsNode(t *testing.T, env ...string) *podNode {
	t.Helper()
	dir := newDirs(t)
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	n := &podNode{dir: dir}
	n.writeConfig(t)
	n.daemon = startDaemonEnv(t, dir, env, n.args()...)
	return n
}

// On a kernel that cannot idmap a tmpfs (before 6.3: Debian 12's 6.1;
// here the start-up check's answer is injected), user-namespaced pods
// still run: the pod's /dev/shm is a 1777 tmpfs owned by its mapped root
// and its /etc files are chowned to it, all bound without idmap, so root
// inside owns and writes them as with idmap; a volume is still idmapped;
// and a bind source that cannot be idmapped (sysfs here; a tmpfs there)
// fails CreateContainer with FailedPrecondition naming the mount, leaving
// no container behind.
func TestUsernsPodWithoutIdmappedTmpfs(t *testing.T) {
	n := newUsernsNode(t, "CRID_FAILPOINTS=userns.idmap-tmpfs=error")
	ctx := context.Background()
	st, err := n.runtime().Status(ctx, &runtime.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.RuntimeHandlers {
		if !h.GetFeatures().GetUserNamespaces() {
			t.Fatalf("handler %q does not advertise user_namespaces: Status info %q", h.Name, st.Info["userNamespaces"])
		}
	}
	mustContain(t, "Status info userNamespaces", st.Info["userNamespaces"], "supported: mode POD", "cannot idmap a tmpfs", "owned by its mapped root")

	vol := filepath.Join(n.dir, "volume")
	writeFile(t, filepath.Join(vol, "root-owned"), "r\n")
	n.pullBusybox(t)
	pod := n.logPod("userns-shm")
	pod.Linux.SecurityContext.NamespaceOptions.UsernsOptions = usernsPOD()
	podID := n.run(t, pod)
	cfg := ctrConfig("c", "sleep", "3600")
	cfg.Linux.SecurityContext.NamespaceOptions = &runtime.NamespaceOption{UsernsOptions: usernsPOD()}
	cfg.Mounts = []*runtime.Mount{{ContainerPath: "/data", HostPath: vol}}
	id := n.create(t, podID, pod, cfg, true)

	// On the node: owned by the mapped root.
	podDir := filepath.Join(n.dir, "run", "sandboxes", podID)
	for _, p := range []string{"shm", "hosts", "resolv.conf", "hostname"} {
		var hst syscall.Stat_t
		if err := syscall.Stat(filepath.Join(podDir, p), &hst); err != nil {
			t.Fatal(err)
		}
		if hst.Uid != usernsHostID || hst.Gid != usernsHostID {
			t.Errorf("pod %s is %d:%d on the node, want the mapped root %d", p, hst.Uid, hst.Gid, usernsHostID)
		}
	}
	// Inside: owned by root, writable by it, shm 1777; no idmap on them.
	for path, want := range map[string]string{
		"/dev/shm":         "0:0 1777",
		"/etc/hosts":       "0:0 644",
		"/etc/resolv.conf": "0:0 644",
	} {
		if got := n.exec(t, id, "stat", "-c", "%u:%g %a", path); got != want {
			t.Errorf("%s inside: %s, want %s", path, got, want)
		}
	}
	if got := n.exec(t, id, "stat", "-c", "%u:%g", "/data/root-owned"); got != "0:0" {
		t.Errorf("/data/root-owned (0:0 on the node) is %s inside, want 0:0", got)
	}
	n.exec(t, id, "sh", "-c", "echo 10.1.2.3 extra >> /etc/hosts && echo x > /dev/shm/f && echo w > /data/written")
	if got := n.exec(t, id, "stat", "-c", "%u:%g", "/dev/shm/f"); got != "0:0" {
		t.Errorf("a file root made in /dev/shm is %s inside, want 0:0", got)
	}
	var hst syscall.Stat_t
	if err := syscall.Stat(filepath.Join(vol, "written"), &hst); err != nil || hst.Uid != 0 {
		t.Errorf("a file root wrote in the idmapped volume is uid %d on the node (%v), want 0", hst.Uid, err)
	}
	idmapped := map[string]bool{}
	for _, l := range strings.Split(n.exec(t, id, "cat", "/proc/self/mountinfo"), "\n") {
		if f := strings.Fields(l); len(f) > 5 {
			idmapped[f[4]] = strings.Contains(","+f[5]+",", ",idmapped,")
		}
	}
	for mnt, want := range map[string]bool{"/dev/shm": false, "/etc/hosts": false, "/etc/resolv.conf": false, "/data": true} {
		if got, ok := idmapped[mnt]; !ok || got != want {
			t.Errorf("%s in the container's mountinfo: present %v, idmapped %v, want idmapped %v", mnt, ok, got, want)
		}
	}

	// A source that cannot be idmapped.
	before := countContainers(t, n, podID)
	bad := ctrConfig("bad", "sleep", "3600")
	bad.Linux.SecurityContext.NamespaceOptions = &runtime.NamespaceOption{UsernsOptions: usernsPOD()}
	bad.Mounts = []*runtime.Mount{{ContainerPath: "/data", HostPath: vol}, {ContainerPath: "/kernel", HostPath: "/sys/kernel"}}
	_, err = n.runtime().CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod, Config: bad})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), `config.mounts[1] (host_path "/sys/kernel", container_path "/kernel")`) ||
		!strings.Contains(err.Error(), "cannot be idmapped") {
		t.Errorf("CreateContainer with /sys/kernel bound into a userns pod: %v, want FailedPrecondition naming config.mounts[1]", err)
	}
	if after := countContainers(t, n, podID); after != before {
		t.Errorf("the refused create left a container: %d containers, were %d", after, before)
	}
	n.removePod(t, podID)
}

// A pod in a user namespace of its own (KEP-127, mode POD): the feature is
// advertised; inside, the mapping is kubelet's, the image's files are
// owned by 0 and a bind-mounted host dir's files by their own IDs (both
// idmapped, no layer chowned), root's writes to the volume land as 0 on
// the host; the pod's network (its IP, loopback up, a sysctl), hostname,
// logs and exec work as without a user namespace; the infra and every
// container share the one namespace; status shows the mappings; removing
// the pod leaves nothing.
func TestUsernsPod(t *testing.T) {
	n := newUsernsNode(t)
	ctx := context.Background()
	st, err := n.runtime().Status(ctx, &runtime.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.RuntimeHandlers {
		if !h.GetFeatures().GetUserNamespaces() {
			t.Fatalf("handler %q does not advertise user_namespaces on this node (kernel 6.18): Status info %q", h.Name, st.Info["userNamespaces"])
		}
	}
	mustContain(t, "Status info userNamespaces", st.Info["userNamespaces"], "supported: mode POD")
	if !st.GetFeatures().GetUserNamespacesHostNetwork() {
		t.Errorf("user_namespaces_host_network not advertised where user namespaces are")
	}

	vol := filepath.Join(n.dir, "volume")
	writeFile(t, filepath.Join(vol, "root-owned"), "r\n")
	writeFile(t, filepath.Join(vol, "user-owned"), "u\n")
	if err := os.Chown(filepath.Join(vol, "user-owned"), 1234, 1234); err != nil {
		t.Fatal(err)
	}
	n.pullBusybox(t)
	pod := n.logPod("userns")
	pod.Linux.SecurityContext.NamespaceOptions.Pid = runtime.NamespaceMode_POD // an infra, in the namespace too
	pod.Linux.SecurityContext.NamespaceOptions.UsernsOptions = usernsPOD()
	pod.Linux.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "80"}
	podID := n.run(t, pod)
	cfg := ctrConfig("c", "sh", "-c", "echo hello from userns; exec sleep 3600")
	cfg.Linux.SecurityContext.NamespaceOptions = &runtime.NamespaceOption{Pid: runtime.NamespaceMode_POD, UsernsOptions: usernsPOD()}
	cfg.Mounts = []*runtime.Mount{{ContainerPath: "/data", HostPath: vol}}
	id := n.create(t, podID, pod, cfg, true)
	other := n.create(t, podID, pod, ctrConfig("other", "sleep", "3600"), true)

	if got := strings.Fields(n.exec(t, id, "cat", "/proc/self/uid_map")); strings.Join(got, " ") != "0 200000 65536" {
		t.Errorf("uid_map inside: %q, want 0 200000 65536", got)
	}
	if got := strings.Fields(n.exec(t, id, "cat", "/proc/self/gid_map")); strings.Join(got, " ") != "0 200000 65536" {
		t.Errorf("gid_map inside: %q, want 0 200000 65536", got)
	}
	for path, want := range map[string]string{
		"/bin/busybox":     "0:0",
		"/etc/passwd":      "0:0",
		"/data/root-owned": "0:0",
		"/data/user-owned": "1234:1234",
		"/etc/hosts":       "0:0",
		"/dev/shm":         "0:0",
	} {
		if got := n.exec(t, id, "stat", "-c", "%u:%g", path); got != want {
			t.Errorf("%s is owned by %s inside, want %s", path, got, want)
		}
	}
	if got := n.exec(t, id, "id", "-u"); got != "0" {
		t.Errorf("id -u inside: %s", got)
	}
	// Root inside writes as 0 through the idmapped volume, and owns what it
	// creates in its rootfs.
	n.exec(t, id, "sh", "-c", "echo w > /data/written && echo w > /new-in-rootfs && chown 1234 /new-in-rootfs")
	var hst syscall.Stat_t
	if err := syscall.Stat(filepath.Join(vol, "written"), &hst); err != nil || hst.Uid != 0 || hst.Gid != 0 {
		t.Errorf("a file root wrote in the volume is %d:%d on the host (%v), want 0:0", hst.Uid, hst.Gid, err)
	}
	if got := n.exec(t, id, "stat", "-c", "%u", "/new-in-rootfs"); got != "1234" {
		t.Errorf("chown in the rootfs: owner %s inside, want 1234", got)
	}
	// The image's layers are never chowned: busybox's files stay 0 on disk.
	layers, _ := filepath.Glob(filepath.Join(n.dir, "root", "images", "layers", "*", "diff", "bin", "busybox"))
	for _, l := range layers {
		if err := syscall.Stat(l, &hst); err != nil || hst.Uid != 0 {
			t.Errorf("layer file %s owned by %d (%v), want 0", l, hst.Uid, err)
		}
	}

	// One user namespace for the pod: both containers and the infra.
	ns := n.exec(t, id, "readlink", "/proc/self/ns/user")
	if got := n.exec(t, other, "readlink", "/proc/self/ns/user"); got != ns {
		t.Errorf("containers in different user namespaces: %s and %s", ns, got)
	}
	// Every process of the pod (the infra and both containers, all in its
	// cgroup), seen from the node.
	pids := ctrPids(t, podID)
	if len(pids) < 3 {
		t.Errorf("%d processes in the pod's cgroup, want the infra and 2 containers", len(pids))
	}
	for _, pid := range pids {
		if got, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", pid)); err != nil || got != ns {
			t.Errorf("pid %d of the pod is in user namespace %s (%v), the containers in %s", pid, got, err, ns)
		}
	}
	if host, _ := os.Readlink("/proc/self/ns/user"); host == ns {
		t.Errorf("the container is in the node's user namespace %s", host)
	}

	// The pod's network, created inside the user namespace.
	ps := n.status(t, podID)
	ip := ps.GetNetwork().GetIp()
	if ip == "" {
		t.Fatalf("no pod IP: %+v", ps.GetNetwork())
	}
	mustContain(t, "ip addr in the container", n.exec(t, id, "ip", "-4", "addr"), ip, "127.0.0.1")
	mustContain(t, "loopback", n.exec(t, id, "ip", "link", "show", "lo"), "UP")
	if got := n.exec(t, id, "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"); got != "80" {
		t.Errorf("sysctl net.ipv4.ip_unprivileged_port_start inside: %s, want 80", got)
	}
	n.exec(t, other, "ping", "-c", "1", "-W", "5", ip)
	if got := n.exec(t, id, "hostname"); got != "userns" {
		t.Errorf("hostname %q", got)
	}
	waitLog(t, filepath.Join(pod.LogDirectory, cfg.LogPath), "hello from userns", 10*time.Second)

	// Status shows the mappings where the CRI has a field for them.
	if got := ps.GetLinux().GetNamespaces().GetOptions().GetUsernsOptions(); !proto.Equal(got, usernsPOD()) {
		t.Errorf("PodSandboxStatus userns_options %v, want %v", got, usernsPOD())
	}

	cs, err := n.runtime().ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var shown runtime.UserNamespace
	if err := protojson.Unmarshal([]byte(cs.Info["userNamespace"]), &shown); err != nil || !proto.Equal(&shown, usernsPOD()) {
		t.Errorf("ContainerStatus verbose userNamespace %q (%v), want %v", cs.Info["userNamespace"], err, usernsPOD())
	}

	n.removePod(t, podID)
}

// Bad user namespace options are refused with InvalidArgument naming the
// field, as critest checks, and leave nothing behind; so is a container
// whose options are not its pod's.
func TestUsernsBadInput(t *testing.T) {
	n := newUsernsNode(t)
	ctx := context.Background()
	one := []*runtime.IDMapping{{ContainerId: 0, HostId: 1000, Length: 100000}}
	const field = "config.linux.security_context.namespace_options.userns_options"
	for name, u := range map[string]*runtime.UserNamespace{
		"two mappings": {Mode: runtime.NamespaceMode_POD, Uids: append(one, &runtime.IDMapping{ContainerId: 0, HostId: 2000, Length: 100000}), Gids: one},
		"0 not mapped": {Mode: runtime.NamespaceMode_POD, Uids: []*runtime.IDMapping{{ContainerId: 1, HostId: 1000, Length: 100000}}, Gids: one},
		"no mapping":   {Mode: runtime.NamespaceMode_POD},
		"CONTAINER":    {Mode: runtime.NamespaceMode_CONTAINER},
		"TARGET":       {Mode: runtime.NamespaceMode_TARGET},
	} {
		cfg := podConfig("bad")
		cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = u
		_, err := n.runtime().RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v, want InvalidArgument naming %s", name, err, field)
		}
	}
	if s := n.hostState(t); s != (hostState{}) {
		t.Fatalf("bad input created something: %+v", s)
	}

	// A container must take its pod's user namespace.
	n.pullBusybox(t)
	pod := podConfig("plain")
	podID := n.run(t, pod)
	ctr := ctrConfig("c", "true")
	ctr.Linux.SecurityContext.NamespaceOptions = &runtime.NamespaceOption{UsernsOptions: usernsPOD()}
	_, err := n.runtime().CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod, Config: ctr})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), field) {
		t.Errorf("a userns container in a pod without one: %v, want InvalidArgument naming %s", err, field)
	}
	ctr.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtime.UserNamespace{Mode: runtime.NamespaceMode_CONTAINER}
	_, err = n.runtime().CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod, Config: ctr})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), field) {
		t.Errorf("a container with mode CONTAINER: %v, want InvalidArgument naming %s", err, field)
	}
	n.removePod(t, podID)
}

// KEP-5607: a pod in a user namespace of its own on the node's network.
// Its infra and container run (the kernel refuses them a new sysfs there:
// the node's /sys is bound read-only in its place), they see the node's
// interfaces, are mapped, cannot write /sys, and exec works; removing the
// pod leaves nothing.
func TestUsernsHostNetwork(t *testing.T) {
	n := newUsernsNode(t)
	n.pullBusybox(t)
	pod := n.logPod("userns-hostnet")
	pod.Linux.SecurityContext.NamespaceOptions.Network = runtime.NamespaceMode_NODE
	pod.Linux.SecurityContext.NamespaceOptions.Pid = runtime.NamespaceMode_POD // an infra, in the namespace too
	pod.Linux.SecurityContext.NamespaceOptions.UsernsOptions = usernsPOD()
	podID := n.run(t, pod)
	cfg := ctrConfig("c", "sleep", "3600")
	id := n.create(t, podID, pod, cfg, true)
	mustContain(t, "uid_map", n.exec(t, id, "cat", "/proc/self/uid_map"), "200000")
	links, err := os.ReadDir("/sys/class/net")
	if err != nil {
		t.Fatal(err)
	}
	inside := n.exec(t, id, "ls", "/sys/class/net")
	for _, l := range links {
		mustContain(t, "/sys/class/net in the container (the node's network)", inside, l.Name())
	}
	mustContain(t, "/sys in the container's mounts", n.exec(t, id, "grep", " /sys ", "/proc/self/mountinfo"), " ro,")
	if _, errOut, code := n.execResult(t, id, "sh", "-c", "echo 1 > /sys/kernel/uevent_helper"); code == 0 {
		t.Errorf("wrote to the node's /sys from a user-namespaced container (%q)", errOut)
	}
	n.removePod(t, podID)
	if s := n.hostState(t); s != (hostState{}) {
		t.Fatalf("left behind: %+v", s)
	}
}

// On a node where a mapped root could not reach its rootfs (the root dir
// under a directory of mode 0700, as a test's temp dir), user namespaces
// are not advertised, Status verbose says why, and a pod asking for one
// is refused with that reason, leaving nothing behind.
func TestUsernsUnsupportedSaysWhy(t *testing.T) {
	n := newPodNode(t) // its dir is 0700
	ctx := context.Background()
	st, err := n.runtime().Status(ctx, &runtime.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.RuntimeHandlers {
		if h.GetFeatures().GetUserNamespaces() {
			t.Errorf("handler %q advertises user_namespaces under a 0700 dir", h.Name)
		}
	}
	mustContain(t, "Status info userNamespaces", st.Info["userNamespaces"], "not supported", n.dir, "cannot be passed through by others")
	cfg := podConfig("userns")
	cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = usernsPOD()
	_, err = n.runtime().RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "does not support user namespaces") {
		t.Errorf("a userns pod on a node without support: %v, want InvalidArgument saying why", err)
	}
	if s := n.hostState(t); s != (hostState{}) {
		t.Fatalf("refused pod created something: %+v", s)
	}
}

// countContainers counts the pod's containers.
func countContainers(t *testing.T, n *podNode, podID string) int {
	t.Helper()
	resp, err := n.runtime().ListContainers(context.Background(), &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: podID}})
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.Containers)
}
