package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// crid check reads the daemon's own config file and flags, asks the running
// daemon about the sandbox image, and exits 1 when a requirement fails.
func TestCheckCommand(t *testing.T) {
	dir := newDirs(t)
	writeFile(t, filepath.Join(dir, "net.d", "10-check.conflist"), `{
  "cniVersion": "1.0.0", "name": "crid-check",
  "plugins": [
    {"type": "bridge", "bridge": "crid-chk0", "ipMasq": false, "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.242.0.0/24"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]}`)
	extra := []string{"--cni-bin-dirs", "/opt/cni/bin", "--registries-conf", filepath.Join(testbedDir, "registries.conf")}
	d := startDaemon(t, dir, extra...)
	// kubelet's settings come from a file of the test's, not from whatever
	// kubelet may run on the machine.
	kubelet := filepath.Join(dir, "kubelet.yaml")
	writeFile(t, kubelet, "kind: KubeletConfiguration\ncontainerRuntimeEndpoint: unix://"+d.socket+"\ncgroupDriver: cgroupfs\nfailCgroupV1: false\n")
	check := func(more ...string) (int, string) {
		t.Helper()
		args := append(append([]string{"check", "--kubelet-config", kubelet}, baseArgs(dir)...), extra...)
		return runCrid(t, append(args, more...)...)
	}
	line := func(out, name string) string {
		t.Helper()
		m := regexp.MustCompile(`(?m)^(ok|warn|fail) +` + regexp.QuoteMeta(name) + `  .*$`).FindString(out)
		if m == "" {
			t.Fatalf("no %q line in:\n%s", name, out)
		}
		return m
	}

	code, out := check()
	t.Logf("crid check:\n%s", out)
	if code != 0 {
		t.Fatalf("crid check exit %d on this machine, want 0:\n%s", code, out)
	}
	if n := len(strings.Split(strings.TrimSpace(out), "\n")); n != 16 {
		t.Fatalf("%d lines, want one per requirement (16)", n)
	}
	mustContain(t, "socket line", line(out, "socket"), "ok", d.socket, "crid is serving")
	mustContain(t, "cni line", line(out, "cni"), "ok", `network "crid-check"`, "bridge host-local portmap loopback", "/opt/cni/bin")
	mustContain(t, "state dirs line", line(out, "state dirs"), filepath.Join(dir, "root"), filepath.Join(dir, "run"))
	mustContain(t, "infra line", line(out, "infra (pause)"), "ok", "built-in "+filepath.Join(filepath.Dir(cridBin), "crid-pause"), "no image, no registry")
	mustContain(t, "kubelet line", line(out, "kubelet"), "ok", kubelet, "cgroupDriver: cgroupfs")
	if hostAppArmor() {
		mustContain(t, "apparmor line", line(out, "apparmor"), "ok", "AppArmor enabled", "apparmor_parser /")
	} else {
		mustContain(t, "apparmor line", line(out, "apparmor"), "ok", "AppArmor not in this kernel", "Localhost profiles are refused")
	}

	// With a sandbox image configured, the check asks the daemon for it,
	// and once the daemon holds it, says so.
	_, out = check("--sandbox-image", sandboxImage)
	mustContain(t, "infra line", line(out, "infra (pause)"), "warn", sandboxImage, "not in crid's store")
	if _, err := d.images().PullImage(context.Background(), &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: sandboxImage}}); err != nil {
		t.Fatalf("pull the sandbox image through the test bed's mirror: %v", err)
	}
	_, out = check("--sandbox-image", sandboxImage)
	mustContain(t, "infra line", line(out, "infra (pause)"), "ok", "present, pinned")

	// The config file is read as the daemon reads it.
	writeFile(t, filepath.Join(dir, "crid.toml"), "[runtime]\ninfra = \"always\"\n")
	_, out = check()
	mustContain(t, "infra line", line(out, "infra (pause)"), "every pod (runtime.infra = always)")

	// A kubelet on the other cgroup driver is a fail.
	writeFile(t, kubelet, "kind: KubeletConfiguration\ncontainerRuntimeEndpoint: unix://"+d.socket+"\ncgroupDriver: systemd\nfailCgroupV1: false\n")
	code, out = check()
	if code != 1 {
		t.Fatalf("exit %d with kubelet on the systemd driver, want 1:\n%s", code, out)
	}
	mustContain(t, "kubelet line", line(out, "kubelet"), "fail", "cgroupDriver systemd, crid's is cgroupfs")
	writeFile(t, kubelet, "kind: KubeletConfiguration\ncontainerRuntimeEndpoint: unix://"+d.socket+"\ncgroupDriver: cgroupfs\nfailCgroupV1: false\n")

	// Plugins missing from cni_bin_dirs are a fail, and the exit says so.
	empty := filepath.Join(dir, "empty-bin")
	if err := os.MkdirAll(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	code, out = check("--cni-bin-dirs", empty)
	if code != 1 {
		t.Fatalf("exit %d with no CNI plugins, want 1:\n%s", code, out)
	}
	mustContain(t, "cni line", line(out, "cni"), "fail", "bridge host-local portmap loopback", "make install")
	if n := strings.Count(out, "\nfail  ") + strings.Count(out[:5], "fail "); n != 1 {
		t.Fatalf("%d fails, want only the cni one:\n%s", n, out)
	}

	// A config the daemon would refuse is refused here too, naming the key.
	writeFile(t, filepath.Join(dir, "crid.toml"), "[runtime]\ncgroup_driver = \"cgroupv1\"\n")
	code, out = check()
	if code != 2 {
		t.Fatalf("exit %d with an invalid config, want 2:\n%s", code, out)
	}
	mustContain(t, "output", out, "runtime.cgroup_driver")
}

// crid --version (and crid version) names the libraries crid was built
// with, at the versions go.mod pins; libcontainer's is read from the
// crid-monitor beside crid.
func TestVersionFlag(t *testing.T) {
	mod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	required := func(path string) string {
		m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(path) + ` (v\S+)`).FindStringSubmatch(string(mod))
		if m == nil {
			t.Fatalf("go.mod does not require %s", path)
		}
		return m[1]
	}
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, out := runCrid(t, args...)
		if code != 0 {
			t.Fatalf("crid %v: exit %d\n%s", args, code, out)
		}
		monitor := filepath.Join(filepath.Dir(cridBin), "crid-monitor")
		mustContain(t, "crid "+args[0], out,
			"\n  commit:",
			"\n  go:                 go1.",
			"\n  runc/libcontainer:  "+required("github.com/opencontainers/runc")+" (linked into "+monitor+")",
			"\n  cri-api:            "+required("k8s.io/cri-api"),
			"\n  cni (libcni):       "+required("github.com/containernetworking/cni"),
			"\n  containers/image:   "+required("go.podman.io/image/v5"),
		)
	}
}
