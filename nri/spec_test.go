package nri

import (
	"errors"
	"slices"
	"testing"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func baseSpec() *specs.Spec {
	shares := uint64(1024)
	return &specs.Spec{
		Process: &specs.Process{
			Args: []string{"/bin/sh"},
			Env:  []string{"PATH=/bin", "KEEP=1", "DROP=1", "CHANGE=old"},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/etc/hosts", Type: "bind", Source: "/run/pod/hosts", Options: []string{"rbind"}},
		},
		Annotations: map[string]string{"keep": "1", "drop": "1"},
		Linux: &specs.Linux{
			CgroupsPath: "/pod/ctr",
			Namespaces:  []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/run/pod/ns/net"}, {Type: specs.PIDNamespace}},
			Resources:   &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: &shares}},
		},
	}
}

func TestAdjustSpecAppliesEveryKindOfAdjustment(t *testing.T) {
	s := baseSpec()
	adj := &api.ContainerAdjustment{
		Annotations: map[string]string{"added": "yes", api.MarkForRemoval("drop"): ""},
		Env: []*api.KeyValue{
			{Key: "CHANGE", Value: "new"},
			{Key: api.MarkForRemoval("DROP")},
			{Key: "ADDED", Value: "2"},
		},
		Args: []string{"/bin/sleep", "10"},
		Mounts: []*api.Mount{
			{Destination: "/data", Type: "bind", Source: "/var/lib/data", Options: []string{"rbind", "ro"}},
			{Destination: api.MarkForRemoval("/etc/hosts")},
		},
		Hooks: &api.Hooks{
			CreateRuntime: []*api.Hook{{Path: "/usr/bin/hook", Args: []string{"hook", "create"}}},
			Poststop:      []*api.Hook{{Path: "/usr/bin/hook", Args: []string{"hook", "stop"}}},
		},
		Rlimits: []*api.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 512}},
		Linux: &api.LinuxContainerAdjustment{
			Devices: []*api.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229, FileMode: api.FileMode(uint32(0o666))}},
			Resources: &api.LinuxResources{
				Cpu:    &api.LinuxCPU{Shares: api.UInt64(uint64(2048)), Quota: api.Int64(int64(50000)), Period: api.UInt64(uint64(100000)), Cpus: "0"},
				Memory: &api.LinuxMemory{Limit: api.Int64(int64(64 << 20))},
			},
			OomScoreAdj: api.Int(500),
			Sysctl:      map[string]string{"net.ipv4.ip_forward": "1"},
		},
	}
	if err := AdjustSpec(s, adj, nil); err != nil {
		t.Fatal(err)
	}
	if want := []string{"PATH=/bin", "KEEP=1", "CHANGE=new", "ADDED=2"}; !slices.Equal(s.Process.Env, want) {
		t.Errorf("env = %v, want %v", s.Process.Env, want)
	}
	if !slices.Equal(s.Process.Args, []string{"/bin/sleep", "10"}) {
		t.Errorf("args = %v", s.Process.Args)
	}
	if s.Annotations["added"] != "yes" || s.Annotations["keep"] != "1" {
		t.Errorf("annotations = %v", s.Annotations)
	}
	if _, ok := s.Annotations["drop"]; ok {
		t.Errorf("annotation marked for removal is still there: %v", s.Annotations)
	}
	var dests []string
	for _, m := range s.Mounts {
		dests = append(dests, m.Destination)
	}
	if !slices.Equal(dests, []string{"/data", "/proc"}) {
		t.Errorf("mount destinations = %v, want /data added, /etc/hosts removed, sorted by depth", dests)
	}
	if h := s.Hooks; h == nil || len(h.CreateRuntime) != 1 || h.CreateRuntime[0].Path != "/usr/bin/hook" || len(h.Poststop) != 1 {
		t.Errorf("hooks = %+v", s.Hooks)
	}
	if len(s.Process.Rlimits) != 1 || s.Process.Rlimits[0] != (specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 512}) {
		t.Errorf("rlimits = %v", s.Process.Rlimits)
	}
	if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/fuse" || s.Linux.Devices[0].Major != 10 {
		t.Errorf("devices = %v", s.Linux.Devices)
	}
	allowed := false
	for _, d := range s.Linux.Resources.Devices {
		if d.Allow && d.Type == "c" && d.Major != nil && *d.Major == 10 && d.Minor != nil && *d.Minor == 229 {
			allowed = true
		}
	}
	if !allowed {
		t.Errorf("the added device is not allowed in the device cgroup: %v", s.Linux.Resources.Devices)
	}
	cpu := s.Linux.Resources.CPU
	if *cpu.Shares != 2048 || *cpu.Quota != 50000 || *cpu.Period != 100000 || cpu.Cpus != "0" {
		t.Errorf("cpu = %+v", cpu)
	}
	if m := s.Linux.Resources.Memory; m == nil || *m.Limit != 64<<20 {
		t.Errorf("memory = %+v", m)
	}
	if s.Process.OOMScoreAdj == nil || *s.Process.OOMScoreAdj != 500 {
		t.Errorf("oom_score_adj = %v", s.Process.OOMScoreAdj)
	}
	if s.Linux.Sysctl["net.ipv4.ip_forward"] != "1" {
		t.Errorf("sysctl = %v", s.Linux.Sysctl)
	}
}

func TestAdjustSpecNamespacesAndEnvWithoutProcess(t *testing.T) {
	s := baseSpec()
	adj := &api.ContainerAdjustment{Linux: &api.LinuxContainerAdjustment{Namespaces: []*api.LinuxNamespace{
		{Type: "network", Path: "/proc/1/ns/net"},
		{Type: api.MarkForRemoval("pid")},
		{Type: "cgroup"},
	}}}
	if err := AdjustSpec(s, adj, nil); err != nil {
		t.Fatal(err)
	}
	want := []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/proc/1/ns/net"}, {Type: specs.CgroupNamespace}}
	if !slices.Equal(s.Linux.Namespaces, want) {
		t.Errorf("namespaces = %v, want %v", s.Linux.Namespaces, want)
	}
	bad := &api.ContainerAdjustment{Linux: &api.LinuxContainerAdjustment{Namespaces: []*api.LinuxNamespace{{Type: "nonsense"}}}}
	if err := AdjustSpec(baseSpec(), bad, nil); err == nil {
		t.Error("an unknown namespace kind was accepted")
	}

	empty := &specs.Spec{}
	if err := AdjustSpec(empty, &api.ContainerAdjustment{Env: []*api.KeyValue{{Key: "A", Value: "1"}}}, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(empty.Process.Env, []string{"A=1"}) {
		t.Errorf("env of a spec without process = %v", empty.Process.Env)
	}
	if err := AdjustSpec(empty, nil, nil); err != nil {
		t.Errorf("nil adjustment: %v", err)
	}
}

func TestAdjustSpecCDI(t *testing.T) {
	adj := &api.ContainerAdjustment{CDIDevices: []*api.CDIDevice{{Name: "vendor.com/gpu=0"}}}
	if err := AdjustSpec(baseSpec(), adj, nil); err == nil {
		t.Fatal("a CDI device was accepted with no CDI resolver")
	}
	var got []string
	inject := func(s *specs.Spec, names []string) error {
		got = names
		s.Process.Env = append(s.Process.Env, "CDI=1")
		return nil
	}
	s := baseSpec()
	if err := AdjustSpec(s, adj, inject); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"vendor.com/gpu=0"}) || !slices.Contains(s.Process.Env, "CDI=1") {
		t.Fatalf("injector got %v, env %v", got, s.Process.Env)
	}
	boom := errors.New("unresolvable")
	if err := AdjustSpec(baseSpec(), adj, func(*specs.Spec, []string) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("injector error lost: %v", err)
	}
}
