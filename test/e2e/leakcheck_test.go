package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// leakChecker snapshots everything a podNode's pods and containers can
// leave on the host, so a test compares the node before and after and
// names what is left (or what went missing): mounts under the node's
// dir, namespace pins, cgroups under its parent (and systemd units),
// veths on its bridge, host-local leases, iptables lines of its pods,
// crid-monitor processes and processes in its cgroups, and the names in
// the node's state, record and layer dirs.
type leakChecker struct {
	n *podNode
	// skip are dirs (relative to the node's dir) whose files are the
	// test's own or change by design: logs, the monitor's log.
	skip []string

	mu sync.Mutex
	// ids are the pod sandbox IDs the test made: iptables lines that
	// name them are the pods'.
	ids map[string]bool
	// chains are the CNI chains seen in lines of those pods, so a chain
	// left empty (declared, no rule) still counts.
	chains map[string]bool
	// hostPorts are the host ports the pods map.
	hostPorts map[int32]bool
}

func newLeakChecker(n *podNode) *leakChecker {
	return &leakChecker{n: n, skip: []string{"logs", "crid.toml", "net.d", "ipam", "failpoints"},
		ids: map[string]bool{}, chains: map[string]bool{}, hostPorts: map[int32]bool{}}
}

// pod tells the checker about a pod sandbox ID and its host ports.
func (l *leakChecker) pod(id string, hostPorts ...int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if id != "" {
		l.ids[id] = true
	}
	for _, p := range hostPorts {
		l.hostPorts[p] = true
	}
}

// hostSnapshot is a sorted list of entries per kind of resource.
type hostSnapshot map[string][]string

func (l *leakChecker) snapshot(t *testing.T) hostSnapshot {
	t.Helper()
	n := l.n
	s := hostSnapshot{}
	add := func(kind, entry string) { s[kind] = append(s[kind], entry) }

	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], n.dir+"/") {
			add("mounts", strings.TrimPrefix(f[4], n.dir))
		}
	}
	pins, _ := filepath.Glob(filepath.Join(n.dir, "run", "sandboxes", "*", "ns", "*"))
	for _, p := range pins {
		add("netns", strings.TrimPrefix(p, n.dir))
	}
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	if cgroupV2() {
		roots = []string{"/sys/fs/cgroup"}
	}
	rel := cgroupRel(t, n.cgroupParent)
	for _, r := range roots {
		top := filepath.Join(r, rel)
		_ = filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() || p == top {
				return nil
			}
			add("cgroups", strings.TrimPrefix(p, "/sys/fs/cgroup/"))
			procs, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			for _, pid := range strings.Fields(string(procs)) {
				comm, _ := os.ReadFile("/proc/" + pid + "/comm")
				add("processes", fmt.Sprintf("%s in %s", strings.TrimSpace(string(comm)), strings.TrimPrefix(p, r)))
			}
			return nil
		})
	}
	for _, u := range systemdUnits(t, strings.TrimSuffix(n.cgroupParent, ".slice")+"-") {
		add("units", u)
	}
	for _, pid := range n.cridMonitorPids(false) {
		add("processes", fmt.Sprintf("crid-monitor (pid %d)", pid))
	}
	for range n.cridMonitorPids(true) {
		add("processes", "crid-monitor hold")
	}
	out, _ := exec.Command("ip", "-o", "link", "show", "master", n.bridge).Output()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			add("veths", strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	leases, _ := filepath.Glob(filepath.Join(n.dir, "ipam", "*", "*"))
	for _, p := range leases {
		if b := filepath.Base(p); b != "lock" && !strings.HasPrefix(b, "last_reserved_ip") {
			add("leases", strings.TrimPrefix(p, n.dir))
		}
	}
	for _, line := range l.iptables(t) {
		add("iptables", line)
	}
	l.files(t, s)
	for k := range s {
		sort.Strings(s[k])
	}
	// A monitor killed and started again has another pid: one monitor
	// before and one after is no leak.
	for i, e := range s["processes"] {
		if strings.HasPrefix(e, "crid-monitor (pid") {
			s["processes"][i] = "crid-monitor"
		}
	}
	return s
}

// iptables returns the lines of iptables-save (all tables) that belong to
// the checker's pods: naming a pod ID, the node's subnet, bridge or a
// host port of its pods, and the declarations of chains such lines use.
func (l *leakChecker) iptables(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	subnet := strings.TrimSuffix(l.n.subnet, "0/24")
	l.mu.Lock()
	defer l.mu.Unlock()
	var lines []string
	mine := func(line string) bool {
		if strings.Contains(line, subnet) || strings.Contains(line, l.n.bridge) {
			return true
		}
		for id := range l.ids {
			if strings.Contains(line, id) {
				return true
			}
		}
		for p := range l.hostPorts {
			if strings.Contains(line, fmt.Sprintf("--dport %d ", p)) || strings.HasSuffix(line, fmt.Sprintf("--dport %d", p)) {
				return true
			}
		}
		return false
	}
	all := strings.Split(string(out), "\n")
	for _, line := range all {
		if !mine(line) {
			continue
		}
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "CNI-") && f != "CNI-HOSTPORT-DNAT" && f != "CNI-HOSTPORT-SNAT" && f != "CNI-HOSTPORT-MASQ" && f != "CNI-HOSTPORT-SETMARK" {
				l.chains[f] = true
			}
		}
	}
	for _, line := range all {
		own := mine(line)
		if !own && strings.HasPrefix(line, ":") {
			own = l.chains[strings.Fields(line)[0][1:]]
		}
		if !own && strings.HasPrefix(line, "-A ") {
			own = l.chains[strings.Fields(line)[1]]
		}
		if own {
			lines = append(lines, line)
		}
	}
	return lines
}

// files adds the names under the node's state dirs, three levels deep
// (root/layers/<id>/diff, run/sandboxes/<id>/..., records/<kind>/<id>),
// without descending into mounts or layer contents.
func (l *leakChecker) files(t *testing.T, s hostSnapshot) {
	t.Helper()
	for _, top := range []string{"root", "run"} {
		base := filepath.Join(l.n.dir, top)
		_ = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == base {
				return nil
			}
			rel := strings.TrimPrefix(p, l.n.dir+"/")
			for _, sk := range l.skip {
				if rel == sk || strings.HasPrefix(rel, sk+"/") {
					return fs.SkipDir
				}
			}
			// Logs of the monitor and daemon-private temp files change by design.
			if strings.HasSuffix(rel, ".log") || strings.HasSuffix(rel, ".lock") || strings.HasSuffix(rel, ".sock") {
				return nil
			}
			s["files"] = append(s["files"], rel)
			if d.IsDir() && strings.Count(rel, "/") >= 3 {
				return fs.SkipDir
			}
			return nil
		})
	}
}

// diff names what after has that before lacks (+) and what it lost (-).
func (before hostSnapshot) diff(after hostSnapshot) []string {
	kinds := map[string]bool{}
	for k := range before {
		kinds[k] = true
	}
	for k := range after {
		kinds[k] = true
	}
	var names []string
	for k := range kinds {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []string
	for _, k := range names {
		count := map[string]int{}
		for _, e := range before[k] {
			count[e]--
		}
		for _, e := range after[k] {
			count[e]++
		}
		var es []string
		for e, c := range count {
			for ; c > 0; c-- {
				es = append(es, fmt.Sprintf("%s: + %s", k, e))
			}
			for ; c < 0; c++ {
				es = append(es, fmt.Sprintf("%s: - %s", k, e))
			}
		}
		sort.Strings(es)
		out = append(out, es...)
	}
	return out
}

// TestLeakCheckerSeesAPod proves the checker looks where things are: a
// running pod with a port mapping and a container shows in every kind it
// snapshots, and its removal takes every entry away.
func TestLeakCheckerSeesAPod(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	lc := newLeakChecker(n)
	// The dirs crid makes at first use (records/containers, rootfs...)
	// are there after one pod's life.
	warm := n.logPod("leakcheck-warmup")
	warmID := n.run(t, warm)
	n.create(t, warmID, warm, ctrConfig("c", "true"), false)
	n.removePod(t, warmID)
	empty := lc.snapshot(t)
	pod := n.logPod("leakcheck")
	pod.Linux.SecurityContext.NamespaceOptions.Pid = runtime.NamespaceMode_POD
	hostPort := int32(30000 + rand.IntN(20000))
	pod.PortMappings = []*runtime.PortMapping{{Protocol: runtime.Protocol_TCP, ContainerPort: 80, HostPort: hostPort}}
	lc.pod("", hostPort)
	id := n.run(t, pod)
	lc.pod(id)
	n.create(t, id, pod, ctrConfig("c", "sleep", "3600"), true)
	full := empty.diff(lc.snapshot(t))
	kinds := map[string]int{}
	for _, e := range full {
		kind, _, _ := strings.Cut(e, ":")
		kinds[kind]++
	}
	for _, k := range []string{"mounts", "netns", "cgroups", "processes", "veths", "leases", "iptables", "files"} {
		if kinds[k] == 0 {
			t.Errorf("a running pod shows no %s in the snapshot; it shows:\n  %s", k, strings.Join(full, "\n  "))
		}
	}
	t.Logf("a pod with one container: %v", kinds)
	if _, err := n.runtime().StopPodSandbox(context.Background(), &runtime.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.runtime().RemovePodSandbox(context.Background(), &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if left := empty.diff(lc.snapshot(t)); len(left) > 0 {
		t.Errorf("left after the pod's removal:\n  %s", strings.Join(left, "\n  "))
	}
}
