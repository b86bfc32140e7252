package cni

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSetupTeardownRealPlugins attaches a throw-away namespace to a private
// bridge with the real plugins, and checks that DEL releases the lease and
// the port-forwarding rules, also once the namespace is gone.
func TestSetupTeardownRealPlugins(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: creates a network namespace and a bridge")
	}
	binDir := "/opt/cni/bin"
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join(binDir, p)); err != nil {
			t.Fatalf("CNI plugin %s missing (run hack/install-deps.sh): %v", p, err)
		}
	}
	t.Setenv("PATH", "/usr/local/sbin:/usr/sbin:/sbin:"+os.Getenv("PATH"))
	suffix := fmt.Sprintf("%04x", rand.IntN(0xffff))
	bridge, nsName := "crid-t"+suffix, "crid-cni-test-"+suffix
	confDir, dataDir := t.TempDir(), t.TempDir()
	write(t, filepath.Join(confDir, "10-test.conflist"), fmt.Sprintf(`{
  "cniVersion": "1.0.0", "name": "crid-test",
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": "10.231.0.0/24"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]}`, bridge, dataDir))
	if out, err := exec.Command("ip", "netns", "add", nsName).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	nsPath := "/run/netns/" + nsName
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", nsName).Run()
		_ = exec.Command("ip", "link", "del", bridge).Run()
	})

	m := New(confDir, []string{binDir}, t.TempDir())
	a := Attachment{SandboxID: "sb-" + suffix, NetNS: nsPath, PodName: "p", PodNamespace: "ns", PodUID: "uid",
		PortMappings: []PortMapping{{HostPort: 40000 + int32(rand.IntN(1000)), ContainerPort: 80, Protocol: "TCP"}}}
	ctx := context.Background()
	res, err := m.Setup(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.IPs) != 1 || !strings.HasPrefix(res.IPs[0].String(), "10.231.0.") || res.Network != "crid-test" {
		t.Fatalf("result %+v", res)
	}
	out, _ := exec.Command("ip", "netns", "exec", nsName, "ip", "-4", "addr", "show", "eth0").CombinedOutput()
	if !strings.Contains(string(out), res.IPs[0].String()) {
		t.Fatalf("eth0 in the namespace lacks %s:\n%s", res.IPs[0], out)
	}
	if leases(t, dataDir) != 1 {
		t.Fatal("no lease recorded")
	}
	if !strings.Contains(iptablesNAT(t), a.SandboxID) {
		t.Fatal("portmap added no rule for the pod")
	}

	// The namespace disappears before DEL, as when a node restarts.
	if out, err := exec.Command("ip", "netns", "del", nsName).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v %s", err, out)
	}
	a.NetNS = ""
	if err := m.Teardown(ctx, a); err != nil {
		t.Fatal(err)
	}
	if n := leases(t, dataDir); n != 0 {
		t.Fatalf("%d leases left after DEL", n)
	}
	if strings.Contains(iptablesNAT(t), a.SandboxID) {
		t.Fatal("portmap rules left after DEL")
	}
	if err := m.Teardown(ctx, a); err != nil {
		t.Fatalf("second DEL must succeed: %v", err)
	}
}

// leases counts host-local's allocations (files named by IP).
func leases(t *testing.T, dataDir string) int {
	t.Helper()
	n := 0
	_ = filepath.WalkDir(dataDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), "10.231.") {
			n++
		}
		return nil
	})
	return n
}

func iptablesNAT(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", "nat").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save: %v %s", err, out)
	}
	return string(out)
}
