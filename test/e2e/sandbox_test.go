package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// podNode is a daemon with a private pod network (its own bridge, subnet
// and lease dir) and a private cgroup parent, all removed at the end.
type podNode struct {
	*daemon
	dir, bridge, subnet, cgroupParent string
	extra                             []string // flags after args()'s, at every start
}

func newPodNode(t *testing.T, env ...string) *podNode {
	t.Helper()
	return newPodNodeWith(t, nil, env...)
}

// newPodNodeWith is newPodNode with more daemon flags (later flags win).
func newPodNodeWith(t *testing.T, extra []string, env ...string) *podNode {
	t.Helper()
	dir := newDirs(t)
	n := &podNode{dir: dir, extra: extra}
	n.writeConfig(t)
	n.daemon = startDaemonEnv(t, dir, env, n.args()...)
	return n
}

func (n *podNode) writeConfig(t *testing.T) {
	t.Helper()
	r := rand.IntN(250) + 1
	n.bridge = fmt.Sprintf("crid-e%04x", rand.IntN(0xffff))
	n.subnet = fmt.Sprintf("10.241.%d.0/24", r)
	n.cgroupParent = newCgroupParent()
	writeFile(t, filepath.Join(n.dir, "net.d", "10-e2e.conflist"), fmt.Sprintf(`{
  "cniVersion": "1.0.0", "name": "crid-e2e",
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]}`, n.bridge, filepath.Join(n.dir, "ipam"), n.subnet))
	writeFile(t, filepath.Join(n.dir, "crid.toml"), fmt.Sprintf("[runtime]\ncgroup_parent = %q\n", n.cgroupParent))
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", n.bridge).Run()
		removeCgroupTree(t, n.cgroupParent)
	})
}

func (n *podNode) restart(t *testing.T, env ...string) {
	t.Helper()
	n.daemon.stop(syscall.SIGTERM, 5*time.Second)
	n.daemon = startDaemonEnv(t, n.dir, env, n.args()...)
}

// args point the daemon at the real CNI plugins and the test bed's
// registry mirror (for the images tests pull by their upstream names).
// The infra is the built-in one unless extra names a sandbox image.
func (n *podNode) args() []string {
	return append([]string{"--cni-bin-dirs", "/opt/cni/bin", "--registries-conf", filepath.Join(testbedDir, "registries.conf")}, n.extra...)
}

func podConfig(name string) *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: name, Namespace: "e2e", Uid: "uid-" + name},
		Hostname: name,
		Labels:   map[string]string{"app": "e2e", "pod": name},
		Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER},
		}},
	}
}

func (n *podNode) run(t *testing.T, cfg *runtime.PodSandboxConfig) string {
	t.Helper()
	resp, err := n.runtime().RunPodSandbox(context.Background(), &runtime.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox %s: %v\n%s", cfg.Metadata.Name, err, n.log)
	}
	return resp.PodSandboxId
}

func (n *podNode) status(t *testing.T, id string) *runtime.PodSandboxStatus {
	t.Helper()
	resp, err := n.runtime().PodSandboxStatus(context.Background(), &runtime.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		t.Fatalf("PodSandboxStatus %s: %v", id, err)
	}
	return resp.Status
}

// hostState is what pods can leave behind on the node.
type hostState struct {
	mounts, pins, cgroups, units, veths, leases, records, podDirs, rootfs int
}

func (n *podNode) hostState(t *testing.T) hostState {
	t.Helper()
	var s hostState
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, n.dir) {
			s.mounts++
		}
	}
	pins, _ := filepath.Glob(filepath.Join(n.dir, "run", "sandboxes", "*", "ns", "*"))
	s.pins = len(pins)
	cg, _ := os.ReadDir(cgroupDir(t, "memory", n.cgroupParent))
	for _, e := range cg {
		if e.IsDir() {
			s.cgroups++
		}
	}
	// With systemd, the pods' slices and the containers' scopes: units
	// under the parent slice are named after it; scopes show as their
	// cgroup directories above.
	for _, u := range systemdUnits(t, strings.TrimSuffix(n.cgroupParent, ".slice")+"-") {
		if strings.HasSuffix(u, ".slice") || strings.HasSuffix(u, ".scope") {
			s.units++
		}
	}
	out, _ := exec.Command("ip", "-o", "link", "show", "master", n.bridge).Output()
	s.veths = strings.Count(string(out), "\n")
	leases, _ := filepath.Glob(filepath.Join(n.dir, "ipam", "crid-e2e", "10.*"))
	s.leases = len(leases)
	recs, _ := os.ReadDir(filepath.Join(n.dir, "root", "records", "sandboxes"))
	s.records = len(recs)
	dirs, _ := os.ReadDir(filepath.Join(n.dir, "run", "sandboxes"))
	s.podDirs = len(dirs)
	rootfs, _ := os.ReadDir(filepath.Join(n.dir, "root", "rootfs"))
	s.rootfs = len(rootfs)
	return s
}

func TestSandboxLifecycle(t *testing.T) {
	n := newPodNode(t)
	ctx := context.Background()
	cfg := podConfig("web")
	cfg.DnsConfig = &runtime.DNSConfig{Servers: []string{"10.0.0.10"}, Searches: []string{"e2e.svc.cluster.local"}, Options: []string{"ndots:5"}}
	cfg.Linux.Sysctls = map[string]string{"net.ipv4.ip_local_port_range": "20000 30000", "kernel.shmmni": "2048"}
	id := n.run(t, cfg)

	st := n.status(t, id)
	if st.State != runtime.PodSandboxState_SANDBOX_READY || st.Network.GetIp() == "" || st.Metadata.Name != "web" {
		t.Fatalf("status: %v", st)
	}
	pin := func(kind string) string { return filepath.Join(n.dir, "run", "sandboxes", id, "ns", kind) }
	nsexec := func(flag, kind string, args ...string) string {
		out, err := exec.Command("nsenter", append([]string{flag + "=" + pin(kind), "--"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("nsenter %s %v: %v %s", kind, args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if h := nsexec("--uts", "uts", "hostname"); h != "web" {
		t.Fatalf("hostname in the pod = %q", h)
	}
	if addr := nsexec("--net", "net", "ip", "-4", "-o", "addr", "show", "eth0"); !strings.Contains(addr, st.Network.Ip+"/") {
		t.Fatalf("eth0 in the pod lacks %s: %s", st.Network.Ip, addr)
	}
	if r := nsexec("--net", "net", "cat", "/proc/sys/net/ipv4/ip_local_port_range"); strings.Join(strings.Fields(r), " ") != "20000 30000" {
		t.Fatalf("net sysctl in the pod = %q", r)
	}
	if r := nsexec("--ipc", "ipc", "cat", "/proc/sys/kernel/shmmni"); r != "2048" {
		t.Fatalf("ipc sysctl in the pod = %q", r)
	}
	resolv, _ := os.ReadFile(filepath.Join(n.dir, "run", "sandboxes", id, "resolv.conf"))
	mustContain(t, "resolv.conf", string(resolv), "nameserver 10.0.0.10", "search e2e.svc.cluster.local", "options ndots:5")
	shm := filepath.Join(n.dir, "run", "sandboxes", id, "shm")
	var fs syscall.Statfs_t
	if err := syscall.Statfs(shm, &fs); err != nil || fs.Blocks*uint64(fs.Bsize) != 64<<20 {
		t.Fatalf("pod /dev/shm: %v, %d bytes", err, fs.Blocks*uint64(fs.Bsize))
	}

	// The prefix crictl prints works for every RPC.
	if got := n.status(t, id[:12]); got.Id != id {
		t.Fatalf("status by prefix: %v", got.Id)
	}
	_, err := n.runtime().RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
	if status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), id) {
		t.Fatalf("second run with the same metadata: %v", err)
	}

	other := n.run(t, podConfig("other"))
	list := func(f *runtime.PodSandboxFilter) []string {
		resp, err := n.runtime().ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, p := range resp.Items {
			ids = append(ids, p.Id)
		}
		sort.Strings(ids)
		return ids
	}
	if ids := list(&runtime.PodSandboxFilter{LabelSelector: map[string]string{"pod": "other"}}); len(ids) != 1 || ids[0] != other {
		t.Fatalf("list by label: %v", ids)
	}
	if ids := list(&runtime.PodSandboxFilter{Id: id[:10]}); len(ids) != 1 || ids[0] != id {
		t.Fatalf("list by id prefix: %v", ids)
	}

	for i := 0; i < 2; i++ { // Stop is idempotent
		if _, err := n.runtime().StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatal(err)
		}
	}
	if st := n.status(t, id); st.State != runtime.PodSandboxState_SANDBOX_NOTREADY || st.Network.GetIp() != "" {
		t.Fatalf("after stop: %v", st)
	}
	ready := &runtime.PodSandboxFilter{State: &runtime.PodSandboxStateValue{State: runtime.PodSandboxState_SANDBOX_READY}}
	if ids := list(ready); len(ids) != 1 || ids[0] != other {
		t.Fatalf("list ready: %v", ids)
	}
	for _, p := range []string{id, other, id} { // Remove is idempotent
		if _, err := n.runtime().RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p}); err != nil {
			t.Fatal(err)
		}
	}
	if s := n.hostState(t); s != (hostState{}) {
		t.Fatalf("left behind after removal: %+v", s)
	}
}

func TestHostNetworkSandbox(t *testing.T) {
	n := newPodNode(t)
	cfg := podConfig("hostnet")
	cfg.Linux.SecurityContext.NamespaceOptions.Network = runtime.NamespaceMode_NODE
	id := n.run(t, cfg)
	st := n.status(t, id)
	if st.Network.GetIp() != "" {
		t.Fatalf("host-network pod got a CNI IP: %v", st.Network)
	}
	if _, err := os.Stat(filepath.Join(n.dir, "run", "sandboxes", id, "ns", "net")); !os.IsNotExist(err) {
		t.Fatalf("host-network pod has a netns pin: %v", err)
	}
	hostname, _ := os.Hostname()
	b, _ := os.ReadFile(filepath.Join(n.dir, "run", "sandboxes", id, "hostname"))
	if strings.TrimSpace(string(b)) != hostname {
		t.Fatalf("host-network pod hostname %q, want the node's %q", b, hostname)
	}
	if _, err := n.runtime().RemovePodSandbox(context.Background(), &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if s := n.hostState(t); s != (hostState{}) {
		t.Fatalf("left behind: %+v", s)
	}
}

func TestSandboxBadInput(t *testing.T) {
	n := newPodNode(t)
	ctx := context.Background()
	for _, tc := range []struct {
		field  string
		mutate func(c *runtime.PodSandboxConfig) string
	}{
		{"config.metadata", func(c *runtime.PodSandboxConfig) string { c.Metadata = nil; return "" }},
		{"config.port_mappings[0].container_port", func(c *runtime.PodSandboxConfig) string {
			c.PortMappings = []*runtime.PortMapping{{ContainerPort: 0, HostPort: 8080}}
			return ""
		}},
		{"config.linux.cgroup_parent", func(c *runtime.PodSandboxConfig) string { c.Linux.CgroupParent = "relative/parent"; return "" }},
		// systemd's slice rules: "-" nests, so no empty level.
		{"config.linux.cgroup_parent", func(c *runtime.PodSandboxConfig) string { c.Linux.CgroupParent = "kubepods--pod1.slice"; return "" }},
		{"runtime_handler", func(c *runtime.PodSandboxConfig) string { return "kata" }},
		{"config.linux.sysctls", func(c *runtime.PodSandboxConfig) string {
			c.Linux.Sysctls = map[string]string{"kernel.hostname": "x"}
			return ""
		}},
		{"config.linux.sysctls", func(c *runtime.PodSandboxConfig) string {
			c.Linux.Sysctls = map[string]string{"net..bad": "1"}
			return ""
		}},
		{"config.linux.sysctls", func(c *runtime.PodSandboxConfig) string {
			c.Linux.Sysctls = map[string]string{"net.ipv4.ip_forward": "1"}
			c.Linux.SecurityContext.NamespaceOptions.Network = runtime.NamespaceMode_NODE
			return ""
		}},
	} {
		cfg := podConfig("bad")
		handler := tc.mutate(cfg)
		_, err := n.runtime().RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v, want InvalidArgument naming it", tc.field, err)
		}
	}
	if s := n.hostState(t); s != (hostState{}) {
		t.Fatalf("bad input created something: %+v", s)
	}
}

func TestFiftyPodsLeaveNothing(t *testing.T) {
	n := newPodNode(t)
	ctx := context.Background()
	before := n.hostState(t)
	var durs []time.Duration
	var ids []string
	for i := 0; i < 50; i++ {
		start := time.Now()
		ids = append(ids, n.run(t, podConfig(fmt.Sprintf("p%02d", i))))
		durs = append(durs, time.Since(start))
	}
	mid := n.hostState(t)
	if mid.pins != 150 || mid.leases != 50 || mid.veths != 50 || mid.cgroups != 50 {
		t.Fatalf("50 running pods: %+v", mid)
	}
	for _, id := range ids {
		if _, err := n.runtime().StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := n.runtime().RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatal(err)
		}
	}
	if after := n.hostState(t); after != before {
		t.Fatalf("before %+v, after %+v", before, after)
	}
	sort.Slice(durs, func(i, j int) bool { return durs[i] < durs[j] })
	t.Logf("RunPodSandbox (pod network, no infra) over 50 pods: p50 %s p99 %s", durs[24], durs[48])
}

// A RunPodSandbox whose client gives up still completes; the retry with the
// same config gets that pod instead of a "name is reserved" error.
func TestTimedOutRunIsKeptForRetry(t *testing.T) {
	n := newPodNode(t, "CRID_FAILPOINTS=sandbox.run.after-infra-start=sleep:1500ms")
	cfg := podConfig("slow")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := n.runtime().RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("first request: %v, want DeadlineExceeded", err)
	}
	id := n.run(t, cfg) // waits for the first to finish, then gets its pod
	if st := n.status(t, id); st.State != runtime.PodSandboxState_SANDBOX_READY {
		t.Fatalf("retried pod: %v", st)
	}
	_, err = n.runtime().RunPodSandbox(context.Background(), &runtime.RunPodSandboxRequest{Config: cfg})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("a third request: %v, want AlreadyExists", err)
	}
	if _, err := n.runtime().RemovePodSandbox(context.Background(), &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
}

func TestSandboxesSurviveRestart(t *testing.T) {
	n := newPodNode(t)
	id := n.run(t, podConfig("survivor"))
	ip := n.status(t, id).Network.Ip
	n.restart(t)
	st := n.status(t, id)
	if st.State != runtime.PodSandboxState_SANDBOX_READY || st.Network.Ip != ip {
		t.Fatalf("after restart: %v (ip was %s)", st, ip)
	}
	if _, err := n.runtime().RemovePodSandbox(context.Background(), &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if s := n.hostState(t); s != (hostState{}) {
		t.Fatalf("left behind: %+v", s)
	}
}
