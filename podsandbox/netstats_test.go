package podsandbox

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseNetDev(t *testing.T) {
	const netDev = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     560       8    0    0    0     0          0         0      560       8    0    0    0     0       0          0
  eth0: 1234567    890    1    2    0     0          0         0   765432     321    3    4    0     0       0          0
`
	got, err := parseNetDev(strings.NewReader(netDev))
	if err != nil {
		t.Fatal(err)
	}
	want := InterfaceStats{Name: "eth0", RxBytes: 1234567, RxPackets: 890, RxErrors: 1, RxDropped: 2, TxBytes: 765432, TxPackets: 321, TxErrors: 3, TxDropped: 4}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("got %+v, want [%+v]", got, want)
	}
	if _, err := parseNetDev(strings.NewReader("h\nh\neth0: 1 2 x\n")); err == nil {
		t.Fatal("malformed line accepted")
	}
}

// NetworkStats reads a pinned namespace's own interfaces, not the host's:
// a fresh namespace with a veth pair that carried ARP requests.
func TestNetworkStatsInPinnedNamespace(t *testing.T) {
	for _, bin := range []string{"nsenter", "ip", "bash"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
	paths, err := pinNamespaces(filepath.Join(t.TempDir(), "ns"), []nsKind{nsNet}, nsSetup{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unpinNamespaces(paths); err != nil {
			t.Error(err)
		}
	})
	pin := paths[nsNet]
	s, err := NetworkStats(pin)
	if err != nil || len(s) != 0 {
		t.Fatalf("fresh namespace: %+v, %v; want no interface but lo", s, err)
	}
	// A veth pair inside the namespace: a datagram to an unknown neighbour
	// makes a0 send ARP requests, which b0 receives.
	script := "ip link add a0 type veth peer name b0 && ip addr add 10.99.0.1/24 dev a0 && " +
		"ip link set a0 up && ip link set b0 up && sleep 0.2 && echo one >/dev/udp/10.99.0.3/9 && sleep 0.5"
	if out, err := exec.Command("nsenter", "--net="+pin, "bash", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("set up dummy: %v\n%s", err, out)
	}
	s, err = NetworkStats(pin)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]InterfaceStats{}
	for _, i := range s {
		by[i.Name] = i
	}
	if len(s) != 2 || by["a0"].TxPackets < 1 || by["a0"].TxBytes < 28 || by["b0"].RxPackets < by["a0"].TxPackets || by["b0"].RxBytes == 0 {
		t.Fatalf("after ARP out of a0 into b0: %+v", s)
	}
	if _, err := NetworkStats(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("stats of a missing namespace")
	}
}
