package podsandbox

import (
	"errors"
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/cgroupmgr"
)

func testManager(t *testing.T) *Manager {
	t.Helper()
	cg, err := cgroupmgr.New("cgroupfs")
	if err != nil {
		t.Fatal(err)
	}
	m := newManager(Options{Cgroups: cg})
	t.Cleanup(m.Close)
	return m
}

func TestValidate(t *testing.T) {
	m := testManager(t)
	base := func() *runtime.PodSandboxConfig {
		return &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "p", Namespace: "n", Uid: "u"},
			Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{}}}}
	}
	for _, tc := range []struct {
		name, handler, want string
		mutate              func(c *runtime.PodSandboxConfig)
	}{
		{name: "ok", mutate: func(c *runtime.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "1024"}
		}},
		{name: "runc handler", handler: "runc", mutate: func(*runtime.PodSandboxConfig) {}},
		{name: "unknown handler", handler: "kata", want: "runtime_handler", mutate: func(*runtime.PodSandboxConfig) {}},
		{name: "relative parent", want: "cgroup_parent", mutate: func(c *runtime.PodSandboxConfig) { c.Linux.CgroupParent = "kubepods" }},
		{name: "node sysctl", want: "sysctls", mutate: func(c *runtime.PodSandboxConfig) { c.Linux.Sysctls = map[string]string{"vm.swappiness": "1"} }},
		{name: "bad name", want: "sysctls", mutate: func(c *runtime.PodSandboxConfig) { c.Linux.Sysctls = map[string]string{"net.ipv4/../x": "1"} }},
		{name: "empty value", want: "sysctls", mutate: func(c *runtime.PodSandboxConfig) { c.Linux.Sysctls = map[string]string{"net.ipv4.ip_forward": ""} }},
		{name: "host ipc sysctl", want: "IPC", mutate: func(c *runtime.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"kernel.msgmax": "1"}
			c.Linux.SecurityContext.NamespaceOptions.Ipc = runtime.NamespaceMode_NODE
		}},
		{name: "target pid", want: "TARGET", mutate: func(c *runtime.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.Pid = runtime.NamespaceMode_TARGET
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.mutate(cfg)
			err := m.validate(cfg, tc.handler)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
}

// Configured handlers are accepted, others refused naming the configured
// ones; each handler's pods get an infra process as its options say.
func TestHandlers(t *testing.T) {
	m := testManager(t)
	m.opts.Infra = &PauseRunner{}
	m.opts.Handlers = map[string]Handler{"": {}, "runc": {}, "test-handler": {InfraAlways: true}}
	if got := m.Handlers(); strings.Join(got, ",") != ",runc,test-handler" {
		t.Errorf("Handlers() = %q", got)
	}
	cfg := &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "p", Namespace: "n", Uid: "u"}}
	for _, h := range []string{"", "runc", "test-handler"} {
		if err := m.validate(cfg, h); err != nil {
			t.Errorf("handler %q: %v", h, err)
		}
	}
	err := m.validate(cfg, "kata")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"kata"`) || !strings.Contains(err.Error(), "test-handler") {
		t.Errorf("unknown handler: %v; want ErrInvalid naming it and the configured ones", err)
	}
	podPid := &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}}}}
	for h, want := range map[string]bool{"": false, "runc": false, "test-handler": true} {
		if got := m.needsInfra(&Sandbox{Config: podPid, RuntimeHandler: h}); got != want {
			t.Errorf("needsInfra for handler %q = %v, want %v", h, got, want)
		}
	}
}

func TestResolvePrefixes(t *testing.T) {
	m := testManager(t)
	for _, id := range []string{"abc123", "abd456", "ffff00"} {
		m.sandboxes[id] = &Sandbox{ID: id, State: StateReady, Config: &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{}}}
	}
	if sb, err := m.resolveLocked("abc"); err != nil || sb.ID != "abc123" {
		t.Fatalf("unique prefix: %v %v", sb, err)
	}
	if _, err := m.resolveLocked("ab"); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("ambiguous prefix: %v", err)
	}
	if _, err := m.resolveLocked("0000"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown prefix: %v", err)
	}
	if _, err := m.resolveLocked("not-hex"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("non-hex: %v", err)
	}
}

// CountByState counts what List shows: pods being created or removed are
// not pods yet, or any more.
func TestCountByState(t *testing.T) {
	m := testManager(t)
	if got := m.CountByState(); got[string(StateReady)] != 0 || got[string(StateNotReady)] != 0 || len(got) != 2 {
		t.Fatalf("empty manager: %v", got)
	}
	for id, st := range map[string]State{"a1": StateReady, "a2": StateReady, "b1": StateNotReady, "c1": StateCreating, "d1": StateRemoving} {
		m.sandboxes[id] = &Sandbox{ID: id, State: st, Config: &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{}}}
	}
	got := m.CountByState()
	if got[string(StateReady)] != 2 || got[string(StateNotReady)] != 1 || len(got) != 2 {
		t.Fatalf("counts %v, want ready 2, notready 1", got)
	}
	if listed := len(m.List(Filter{})); listed != 3 {
		t.Fatalf("List shows %d pods, the counts 3", listed)
	}
}

func TestPodFiles(t *testing.T) {
	b, err := resolvConf(&runtime.DNSConfig{Servers: []string{"1.1.1.1", "8.8.8.8"}, Searches: []string{"a.svc", "b"}, Options: []string{"ndots:5"}})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "search a.svc b\nnameserver 1.1.1.1\nnameserver 8.8.8.8\noptions ndots:5\n" {
		t.Fatalf("resolv.conf:\n%s", b)
	}
	h, err := hostsContent("mypod", false)
	if err != nil || !strings.Contains(string(h), "127.0.0.1\tlocalhost") || !strings.HasSuffix(string(h), "\tmypod\n") {
		t.Fatalf("hosts:\n%s", h)
	}
	for key, want := range map[string]nsKind{"net.core.somaxconn": nsNet, "kernel.shmmni": nsIPC, "kernel.sem": nsIPC, "fs.mqueue.msg_max": nsIPC} {
		if got, ok := namespacedSysctl(key); !ok || got != want {
			t.Errorf("%s: %v %v", key, got, ok)
		}
	}
	if _, ok := namespacedSysctl("kernel.pid_max"); ok {
		t.Error("kernel.pid_max is not namespaced")
	}
}
