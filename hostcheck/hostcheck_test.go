package hostcheck

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/cgroupmgr"
	"github.com/crid-dev/crid/config"
)

// mountinfo lines of the three cgroup layouts.
const (
	mountsV2 = "30 1 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
	// This project's test machines: v1 controllers, cgroup2 beside them.
	mountsHybrid = "30 1 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n" +
		"31 30 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n" +
		"32 30 0:28 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n" +
		"33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n" +
		"34 30 0:30 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n" +
		"35 30 0:31 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n" +
		"36 30 0:32 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer\n" +
		"37 30 0:33 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset,clone_children\n" +
		"38 30 0:34 / /sys/fs/cgroup/blkio rw - cgroup cgroup rw,blkio\n" +
		"39 30 0:35 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n" +
		"40 30 0:36 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
	mountsV1 = "31 30 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n" +
		"33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n" +
		"34 30 0:30 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n" +
		"35 30 0:31 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n" +
		"36 30 0:32 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer\n" +
		"37 30 0:33 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n" +
		"38 30 0:34 / /sys/fs/cgroup/blkio rw - cgroup cgroup rw,blkio\n"
)

// put writes a file under the fixture root.
func put(t *testing.T, root, path, body string) {
	t.Helper()
	p := filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fixture is a healthy cgroup v2 host without systemd or kubelet, under a
// temporary root, with crid's config pointing into a second temporary dir
// and every live probe stubbed to succeed.
func fixture(t *testing.T) *Host {
	t.Helper()
	root, state := t.TempDir(), t.TempDir()
	put(t, root, "/proc/sys/kernel/osrelease", "6.1.0-18-amd64\n")
	put(t, root, "/proc/filesystems", "nodev\tsysfs\nnodev\ttmpfs\n\text4\nnodev\toverlay\n")
	put(t, root, "/proc/self/mountinfo", mountsV2)
	put(t, root, "/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n")
	put(t, root, "/proc/sys/user/max_user_namespaces", "63391\n")
	put(t, root, "/proc/self/status", "Name:\tcrid\nSeccomp:\t0\nSeccomp_filters:\t0\n")
	put(t, root, "/proc/sys/kernel/seccomp/actions_avail", "kill_process kill_thread trap errno user_notif trace log allow\n")
	put(t, root, "/usr/lib/x86_64-linux-gnu/libseccomp.so.2.5.4", "")

	cfg := config.Default()
	cfg.Socket = filepath.Join(state, "run/crid.sock")
	cfg.RootDir = filepath.Join(state, "root")
	cfg.RunDir = filepath.Join(state, "run")
	cfg.Network.CNIConfDir = filepath.Join(state, "net.d")
	cfg.Network.CNIBinDirs = []string{filepath.Join(state, "cni-bin")}
	put(t, state, "net.d/10-crid.conflist", bridgeNetwork)
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		put(t, state, "cni-bin/"+p, "")
		if err := os.Chmod(filepath.Join(state, "cni-bin", p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable() // a Go binary, as crid-monitor is
	if err != nil {
		t.Fatal(err)
	}
	return &Host{
		Root:        root,
		Config:      cfg,
		MonitorPath: self,
		PausePath:   self, // any executable file
		LookPath: func(f string) (string, error) {
			if f == "iptables" {
				return "/usr/sbin/iptables", nil
			}
			return "", errors.New("not found")
		},
		FSType:   func(string) (int64, error) { return unix.EXT4_SUPER_MAGIC, nil },
		TryIdmap: func() error { return nil },
		Serving:  func(string) bool { return false },
		HasImage: func(context.Context, string, string) (bool, error) { return true, nil },
	}
}

const bridgeNetwork = `{"cniVersion":"1.0.0","name":"crid","plugins":[
 {"type":"bridge","bridge":"crid0","isGateway":true,"ipMasq":true,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.88.0.0/16"}]]}},
 {"type":"portmap","capabilities":{"portMappings":true}},
 {"type":"loopback"}]}`

func expect(t *testing.T, r Result, level Level, mentions ...string) {
	t.Helper()
	if r.Level != level {
		t.Fatalf("%s: level %s, want %s: %s (fix: %s)", r.Name, r.Level, level, r.Detail, r.Fix)
	}
	text := r.Detail + " " + r.Fix
	for _, m := range mentions {
		if !strings.Contains(text, m) {
			t.Fatalf("%s: %q does not mention %q", r.Name, text, m)
		}
	}
	if level != OK && r.Fix == "" {
		t.Fatalf("%s: %s without a fix", r.Name, level)
	}
}

func TestHealthyHostPasses(t *testing.T) {
	h := fixture(t)
	results := h.Run(context.Background())
	if len(results) != 16 {
		t.Fatalf("%d results, want one per requirement (16)", len(results))
	}
	for _, r := range results {
		if r.Level != OK {
			t.Errorf("%s: %s: %s — %s", r.Name, r.Level, r.Detail, r.Fix)
		}
	}
	if Failed(results) {
		t.Fatal("Failed on a healthy host")
	}
}

func TestFormatOneLinePerRequirement(t *testing.T) {
	results := []Result{ok("kernel", "6.1.0"), warn("cgroup mode", "v1", "boot v2"), fail("cni", "no\nplugins", "install them")}
	var buf bytes.Buffer
	if err := Format(&buf, results); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), buf.String())
	}
	for i, want := range []string{"ok    kernel       6.1.0", "warn  cgroup mode  v1 — fix: boot v2", "fail  cni          no plugins — fix: install them"} {
		if lines[i] != want {
			t.Errorf("line %d = %q, want %q", i, lines[i], want)
		}
	}
	if !Failed(results) || Failed(results[:2]) {
		t.Fatal("Failed must be true exactly when a result fails")
	}
}

func TestKernel(t *testing.T) {
	for release, level := range map[string]Level{
		"6.18.44-fc-v1300":  OK,
		"5.6.0":             OK,
		"5.10.0-28-amd64":   OK,
		"5.4.0-150-generic": Fail,
		"4.19.0-26-amd64":   Fail,
		"unknown":           Warn,
	} {
		h := fixture(t)
		put(t, h.Root, "/proc/sys/kernel/osrelease", release+"\n")
		expect(t, h.Kernel(), level, release)
	}
}

func TestOverlay(t *testing.T) {
	h := fixture(t)
	expect(t, h.Overlay(), OK, "in the kernel", "ext4")

	put(t, h.Root, "/proc/filesystems", "nodev\ttmpfs\n\text4\n")
	expect(t, h.Overlay(), Fail, "modprobe overlay")

	put(t, h.Root, "/lib/modules/6.1.0-18-amd64/kernel/fs/overlayfs/overlay.ko.xz", "")
	expect(t, h.Overlay(), OK, "overlay.ko.xz")

	put(t, h.Root, "/sys/module/overlay/refcnt", "0\n")
	expect(t, h.Overlay(), OK, "module loaded")

	h.FSType = func(string) (int64, error) { return unix.OVERLAYFS_SUPER_MAGIC, nil }
	expect(t, h.Overlay(), Fail, "root_dir", "is on overlayfs")
}

func TestOverlayStatsNearestExistingParent(t *testing.T) {
	h := fixture(t)
	var asked string
	h.FSType = func(p string) (int64, error) { asked = p; return unix.TMPFS_MAGIC, nil }
	expect(t, h.Overlay(), OK, "tmpfs")
	if want := filepath.Dir(h.Config.RootDir); asked != want {
		t.Fatalf("statfs of %s, want the existing parent %s of the not yet created root_dir", asked, want)
	}
}

func TestCgroups(t *testing.T) {
	tests := []struct {
		name, mounts, controllers string
		mode                      string
		modeLevel, ctrlLevel      Level
		mentions                  []string
	}{
		{"v2", mountsV2, "cpuset cpu io memory hugetlb pids", "v2", OK, OK, []string{"cpu cpuset hugetlb io memory pids"}},
		{"v2 without memory", mountsV2, "cpuset cpu io hugetlb pids", "v2", OK, Fail, []string{"missing memory"}},
		{"v2 without cpuset", mountsV2, "cpu io memory hugetlb pids", "v2", OK, Warn, []string{"without cpuset"}},
		{"hybrid", mountsHybrid, "hugetlb", "hybrid", Warn, OK, []string{"blkio", "hugetlb(v2)", "devices"}},
		{"v1 combined cpu,cpuacct", mountsV1, "", "v1", Warn, Warn, []string{"cpuacct", "without hugetlb"}},
		{"v1 without devices", strings.ReplaceAll(mountsV1, "rw,devices", "rw,name=foo"), "", "v1", Warn, Fail, []string{"missing devices"}},
		{"none", "20 1 8:1 / / rw - ext4 /dev/sda1 rw\n", "", "", Fail, Fail, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := fixture(t)
			put(t, h.Root, "/proc/self/mountinfo", tc.mounts)
			if tc.mode == "hybrid" {
				put(t, h.Root, "/sys/fs/cgroup/unified/cgroup.controllers", tc.controllers)
			} else {
				put(t, h.Root, "/sys/fs/cgroup/cgroup.controllers", tc.controllers)
			}
			l := h.cgroupLayout()
			if l.Mode != tc.mode {
				t.Fatalf("mode %q, want %q", l.Mode, tc.mode)
			}
			expect(t, h.CgroupMode(l), tc.modeLevel)
			expect(t, h.CgroupControllers(l), tc.ctrlLevel, tc.mentions...)
		})
	}
}

// The layout read from mountinfo is the one the daemon's cgroup manager
// sees on this machine.
func TestCgroupLayoutMatchesCgroupmgr(t *testing.T) {
	h := New(config.Default(), "")
	if got, want := h.cgroupLayout().Mode, cgroupmgr.Mode(); got != want {
		t.Fatalf("hostcheck reads cgroup mode %q, cgroupmgr %q", got, want)
	}
}

func TestUserNamespaces(t *testing.T) {
	h := fixture(t)
	expect(t, h.UserNamespaces(), OK, "63391")
	put(t, h.Root, "/proc/sys/user/max_user_namespaces", "0\n")
	expect(t, h.UserNamespaces(), Warn, "disabled")
	os.Remove(filepath.Join(h.Root, "/proc/sys/user/max_user_namespaces"))
	expect(t, h.UserNamespaces(), Warn, "CONFIG_USER_NS")
}

func TestIdmappedMountsReportsTheProbe(t *testing.T) {
	h := fixture(t)
	h.TryIdmap = func() error { return unix.EINVAL }
	expect(t, h.IdmappedMounts(), Warn, "invalid argument")
}

// The real probe on this machine: an idmapped tmpfs mount succeeds (kernel
// 6.3 and newer), and nothing is left: no idmapped mount, no descriptor
// (the detached mount lives only as long as its descriptor) and no child.
// The mount table is shared with whatever else runs on the machine, so only
// idmapped mounts are compared.
func TestTryIdmapLeavesNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a user namespace and a mount")
	}
	major, minor, _ := parseRelease(strings.TrimSpace(readFile(t, "/proc/sys/kernel/osrelease")))
	supported := major > 6 || (major == 6 && minor >= 3)
	_ = tryIdmap() // the first call may set up runtime state (pidfd support probe)
	mountsBefore, fdsBefore := idmappedMounts(t), openFDs(t)
	err := tryIdmap()
	if supported && err != nil {
		t.Fatalf("idmapped tmpfs on kernel %d.%d: %v", major, minor, err)
	}
	if !supported && err == nil {
		t.Fatalf("idmapped tmpfs succeeded on kernel %d.%d, which has no idmapped tmpfs", major, minor)
	}
	if after := idmappedMounts(t); after != mountsBefore {
		t.Fatalf("idmapped mounts changed:\nbefore:\n%s\nafter:\n%s", mountsBefore, after)
	}
	if after := openFDs(t); after != fdsBefore {
		t.Fatalf("open descriptors %d before, %d after", fdsBefore, after)
	}
	if _, err := unix.Wait4(-1, nil, unix.WNOHANG|unix.WALL, nil); !errors.Is(err, unix.ECHILD) {
		t.Fatalf("a child process is left behind (wait4: %v)", err)
	}
}

func idmappedMounts(t *testing.T) string {
	var out []string
	for _, l := range strings.Split(readFile(t, "/proc/self/mountinfo"), "\n") {
		if strings.Contains(l, "idmapped") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSeccomp(t *testing.T) {
	h := fixture(t)
	expect(t, h.Seccomp(), OK, "libseccomp.so.2.5.4", "errno")

	os.Remove(filepath.Join(h.Root, "/usr/lib/x86_64-linux-gnu/libseccomp.so.2.5.4"))
	expect(t, h.Seccomp(), Fail, "apt-get install libseccomp2")

	put(t, h.Root, "/usr/lib/x86_64-linux-gnu/libseccomp.so.2.5.4", "")
	os.Remove(filepath.Join(h.Root, "/proc/sys/kernel/seccomp/actions_avail"))
	expect(t, h.Seccomp(), Fail, "CONFIG_SECCOMP_FILTER")

	put(t, h.Root, "/proc/self/status", "Name:\tcrid\n")
	expect(t, h.Seccomp(), Fail, "no seccomp")
}

func TestAppArmor(t *testing.T) {
	h := fixture(t)
	expect(t, h.AppArmor(), OK, "not in this kernel", "RuntimeDefault and Unconfined containers run unconfined", "Localhost profiles are refused")
	put(t, h.Root, "/sys/module/apparmor/parameters/enabled", "N\n")
	expect(t, h.AppArmor(), OK, "disabled")
	put(t, h.Root, "/sys/module/apparmor/parameters/enabled", "Y\n")
	expect(t, h.AppArmor(), Warn, "securityfs is not mounted")
	put(t, h.Root, "/sys/kernel/security/apparmor/profiles", "other (enforce)\n")
	expect(t, h.AppArmor(), Fail, "apparmor_parser missing", "apt-get install apparmor")
	put(t, h.Root, "/usr/sbin/apparmor_parser", "")
	if err := os.Chmod(filepath.Join(h.Root, "/usr/sbin/apparmor_parser"), 0o755); err != nil {
		t.Fatal(err)
	}
	expect(t, h.AppArmor(), OK, "AppArmor enabled", "crid-default not loaded yet")
	put(t, h.Root, "/sys/kernel/security/apparmor/profiles", "other (enforce)\ncrid-default (enforce)\n")
	expect(t, h.AppArmor(), OK, "crid-default loaded")
}

func TestCNI(t *testing.T) {
	h := fixture(t)
	bin := h.Config.Network.CNIBinDirs[0]
	expect(t, h.CNI(), OK, `network "crid"`, "bridge host-local portmap loopback")

	// An IPAM plugin is a plugin too.
	os.Remove(filepath.Join(bin, "host-local"))
	expect(t, h.CNI(), Fail, "host-local")

	conf := filepath.Join(h.Config.Network.CNIConfDir, "10-crid.conflist")
	if err := os.WriteFile(conf, []byte(`{"cniVersion":"1.0.0","name":`), 0o644); err != nil {
		t.Fatal(err)
	}
	expect(t, h.CNI(), Fail, "10-crid.conflist")

	os.Remove(conf)
	expect(t, h.CNI(), Warn, "no network config")
	os.Remove(h.Config.Network.CNIConfDir)
	expect(t, h.CNI(), Warn, "no network config")
}

func TestFirewall(t *testing.T) {
	have := func(bins ...string) func(string) (string, error) {
		return func(f string) (string, error) {
			for _, b := range bins {
				if b == f {
					return "/usr/sbin/" + f, nil
				}
			}
			return "", errors.New("not found")
		}
	}
	h := fixture(t)
	conf := filepath.Join(h.Config.Network.CNIConfDir, "10-crid.conflist")
	expect(t, h.Firewall(), OK, "/usr/sbin/iptables")

	h.LookPath = have()
	expect(t, h.Firewall(), Fail, "masquerades or maps ports", "apt-get install iptables")

	h.LookPath = have("nft") // the plugins fall back to nftables
	expect(t, h.Firewall(), OK, "/usr/sbin/nft")

	put(t, filepath.Dir(conf), "10-crid.conflist", strings.Replace(bridgeNetwork, `"type":"portmap",`, `"type":"portmap","backend":"iptables",`, 1))
	expect(t, h.Firewall(), Fail, "iptables backend")

	h.LookPath = have("iptables")
	put(t, filepath.Dir(conf), "10-crid.conflist", strings.Replace(bridgeNetwork, `"ipMasq":true,`, `"ipMasq":true,"ipMasqBackend":"nftables",`, 1))
	expect(t, h.Firewall(), Fail, "nftables backend", "apt-get install nftables")

	// A network that never touches netfilter needs neither.
	h.LookPath = have()
	put(t, filepath.Dir(conf), "10-crid.conflist", `{"cniVersion":"1.0.0","name":"plain","plugins":[{"type":"bridge","ipam":{"type":"host-local"}},{"type":"loopback"}]}`)
	expect(t, h.Firewall(), OK, "neither")
}

func TestInfraBuiltin(t *testing.T) {
	h := fixture(t)
	h.Config.Image.SandboxImage = ""
	h.PausePath = filepath.Join(t.TempDir(), "crid-pause")
	expect(t, h.Infra(context.Background()), Fail, h.PausePath, "install crid-pause beside crid")
	put(t, filepath.Dir(h.PausePath), "crid-pause", "binary")
	expect(t, h.Infra(context.Background()), Fail, "not an executable file")
	if err := os.Chmod(h.PausePath, 0o755); err != nil {
		t.Fatal(err)
	}
	expect(t, h.Infra(context.Background()), OK, "built-in "+h.PausePath, "no image, no registry")
}

func TestInfra(t *testing.T) {
	h := fixture(t)
	h.Config.Image.SandboxImage = "registry.k8s.io/pause:3.10"
	expect(t, h.Infra(context.Background()), OK, "registry.k8s.io/pause:3.10", "not running")

	h.Serving = func(string) bool { return true }
	expect(t, h.Infra(context.Background()), OK, "present, pinned")

	h.HasImage = func(context.Context, string, string) (bool, error) { return false, nil }
	expect(t, h.Infra(context.Background()), Warn, "first such pod pulls it", "crictl pull registry.k8s.io/pause:3.10")

	h.Config.Runtime.Infra = "always"
	expect(t, h.Infra(context.Background()), Warn, "every pod")
}

func TestMonitor(t *testing.T) {
	h := fixture(t)
	expect(t, h.Monitor(), OK, h.MonitorPath)

	dir := t.TempDir()
	h.MonitorPath = filepath.Join(dir, "crid-monitor")
	expect(t, h.Monitor(), Fail, "no such file", "runtime.monitor_path")

	put(t, dir, "crid-monitor", "#!/bin/sh\n")
	expect(t, h.Monitor(), Fail, "not an executable")

	if err := os.Chmod(h.MonitorPath, 0o755); err != nil {
		t.Fatal(err)
	}
	expect(t, h.Monitor(), Fail, "not a Go binary")
}

func TestSocketAndStateDirs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the checks want root-owned files")
	}
	h := fixture(t)
	expect(t, h.Socket(), OK, "created at start")
	expect(t, h.StateDirs(), OK, "root_dir", "run_dir", "created at start")

	run := h.Config.RunDir
	if err := os.MkdirAll(run, 0o711); err != nil {
		t.Fatal(err)
	}
	old := unix.Umask(0o177)
	l, err := net.Listen("unix", h.Config.Socket)
	unix.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Chmod(h.Config.Socket, 0o660); err != nil {
		t.Fatal(err)
	}
	h.Serving = func(string) bool { return true }
	expect(t, h.Socket(), OK, "0660 0:0", "serving")
	h.Serving = func(string) bool { return false }
	expect(t, h.Socket(), Warn, "left from a crid that is gone")

	if err := os.Chmod(h.Config.Socket, 0o666); err != nil {
		t.Fatal(err)
	}
	expect(t, h.Socket(), Fail, "others may drive")

	if err := os.Chmod(run, 0o777); err != nil {
		t.Fatal(err)
	}
	expect(t, h.Socket(), Fail, "socket dir", "others can write")
	expect(t, h.StateDirs(), Fail, "run_dir", "is 0777", "chmod 0711")

	if err := os.Chmod(run, 0o711); err != nil {
		t.Fatal(err)
	}
	l.Close()
	os.Remove(h.Config.Socket)
	put(t, run, "crid.sock", "")
	expect(t, h.Socket(), Fail, "not a socket")

	put(t, filepath.Dir(h.Config.RootDir), "root", "")
	expect(t, h.StateDirs(), Fail, "root_dir", "not a directory")
}

func TestCgroupDriver(t *testing.T) {
	h := fixture(t)
	expect(t, h.CgroupDriver(), OK, "not systemd")
	h.Config.Runtime.CgroupDriver = "systemd"
	expect(t, h.CgroupDriver(), Fail, `runtime.cgroup_driver = "cgroupfs"`)
	if err := os.MkdirAll(filepath.Join(h.Root, "/run/systemd/system"), 0o755); err != nil {
		t.Fatal(err)
	}
	expect(t, h.CgroupDriver(), OK, "PID 1 is systemd")
	h.Config.Runtime.CgroupDriver = "cgroupfs"
	expect(t, h.CgroupDriver(), Warn, "two managers", "kubelet's cgroupDriver: systemd")
}

func TestKubelet(t *testing.T) {
	h := fixture(t)
	endpoint := "unix://" + h.Config.Socket
	v2, v1 := cgroupLayout{Mode: "v2"}, cgroupLayout{Mode: "hybrid"}

	expect(t, h.Kubelet(v2), OK, "no kubelet found", endpoint, "cgroupDriver: cgroupfs")
	expect(t, h.Kubelet(v1), Warn, "failCgroupV1: false")

	// kubeadm's file, with kubeadm's default driver.
	put(t, h.Root, kubeadmConfig, "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\ncontainerRuntimeEndpoint: "+endpoint+"\n")
	expect(t, h.Kubelet(v2), Fail, "cgroupDriver systemd, crid's is cgroupfs")

	put(t, h.Root, kubeadmConfig, "kind: KubeletConfiguration\ncontainerRuntimeEndpoint: "+endpoint+"\n")
	expect(t, h.Kubelet(v2), OK, kubeadmConfig)
	expect(t, h.Kubelet(v1), Fail, "failCgroupV1 is not false")
	put(t, h.Root, kubeadmConfig, "kind: KubeletConfiguration\ncontainerRuntimeEndpoint: "+endpoint+"\nfailCgroupV1: false\n")
	expect(t, h.Kubelet(v1), OK)

	put(t, h.Root, kubeadmConfig, "kind: KubeletConfiguration\ncontainerRuntimeEndpoint: unix:///run/containerd/containerd.sock\n")
	expect(t, h.Kubelet(v2), Warn, "containerd.sock")

	// A running kubelet's --config and flags win over kubeadm's file.
	put(t, h.Root, "/etc/kubernetes/kubelet.yaml", "kind: KubeletConfiguration\ncgroupDriver: cgroupfs\nfailCgroupV1: false\n")
	put(t, h.Root, "/proc/4242/cmdline", "/usr/bin/kubelet\x00--config=/etc/kubernetes/kubelet.yaml\x00--container-runtime-endpoint\x00"+endpoint+"\x00")
	expect(t, h.Kubelet(v1), OK, "/etc/kubernetes/kubelet.yaml")
	put(t, h.Root, "/proc/4242/cmdline", "/usr/bin/kubelet\x00--config=/etc/kubernetes/kubelet.yaml\x00--cgroup-driver=systemd\x00--fail-cgroupv1\x00")
	expect(t, h.Kubelet(v1), Fail, "cgroupDriver systemd", "failCgroupV1 is not false")

	put(t, h.Root, "/etc/kubernetes/kubelet.yaml", "cgroupDriver: [\n")
	expect(t, h.Kubelet(v2), Fail, "/etc/kubernetes/kubelet.yaml")
}

func TestParseRelease(t *testing.T) {
	for s, want := range map[string][2]int{"6.1.0-18-amd64": {6, 1}, "5.15rc2": {5, 15}, "6.18.44-fc-v1300": {6, 18}} {
		major, minor, ok := parseRelease(s)
		if !ok || major != want[0] || minor != want[1] {
			t.Errorf("parseRelease(%q) = %d, %d, %v", s, major, minor, ok)
		}
	}
	if _, _, ok := parseRelease("6"); ok {
		t.Error(`parseRelease("6") parsed`)
	}
}
