package cni

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestPodCIDRStoredAndHandedToCNI(t *testing.T) {
	cache := t.TempDir()
	m := New(t.TempDir(), nil, cache)
	if got := m.PodCIDR(); got != "" {
		t.Fatalf("fresh PodCIDR = %q", got)
	}
	if rt := m.runtimeConf(Attachment{SandboxID: "s"}); rt.CapabilityArgs["ipRanges"] != nil {
		t.Fatalf("ipRanges without a CIDR: %v", rt.CapabilityArgs)
	}
	if err := m.SetPodCIDR("10.244.3.9/24"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "10.0.0.1", "10.0.0.0/24,10.0.1.0/24", "a/b"} {
		if err := m.SetPodCIDR(bad); !errors.Is(err, ErrInvalidPodCIDR) {
			t.Errorf("SetPodCIDR(%q) = %v", bad, err)
		}
	}
	// A new manager (a restarted daemon) reads it back.
	m2 := New(t.TempDir(), nil, cache)
	if got := m2.PodCIDR(); got != "10.244.3.0/24" {
		t.Fatalf("after restart PodCIDR = %q", got)
	}
	rt := m2.runtimeConf(Attachment{SandboxID: "s", PortMappings: []PortMapping{{HostPort: 80, ContainerPort: 8080, Protocol: "TCP"}}})
	b, _ := json.Marshal(rt.CapabilityArgs["ipRanges"])
	if string(b) != `[[{"subnet":"10.244.3.0/24"}]]` || rt.CapabilityArgs["portMappings"] == nil {
		t.Fatalf("capability args: %s %v", b, rt.CapabilityArgs)
	}
	if err := m2.SetPodCIDR("10.244.4.0/24, fd00::/64"); err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(m2.ipRanges())
	if string(b) != `[[{"subnet":"10.244.4.0/24"}],[{"subnet":"fd00::/64"}]]` {
		t.Fatalf("dual-stack ipRanges: %s", b)
	}
}
