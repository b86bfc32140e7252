package specgen

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// rootfs makes a container root with /etc/passwd and /etc/group like the
// test images': root, www-data (33), default-user (1000, in group 50000).
func rootfs(t *testing.T) string {
	t.Helper()
	r := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(r, "etc"), 0o755))
	must(t, os.WriteFile(filepath.Join(r, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/sh\ndefault-user:x:1000:1000::/home/default-user:/bin/sh\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(r, "etc/group"), []byte("root:x:0:\nwww-data:x:33:\ndefault-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"), 0o644))
	return r
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func input(t *testing.T, cfg *runtime.ContainerConfig) Input {
	t.Helper()
	if cfg.Linux == nil {
		cfg.Linux = &runtime.LinuxContainerConfig{}
	}
	if cfg.Linux.SecurityContext == nil {
		cfg.Linux.SecurityContext = &runtime.LinuxContainerSecurityContext{}
	}
	return Input{
		Config:           cfg,
		Image:            Image{Entrypoint: []string{"/entry"}, Cmd: []string{"default"}, Env: []string{"PATH=/bin", "A=image"}, WorkingDir: "/work"},
		Rootfs:           rootfs(t),
		CgroupsPath:      "/crid/pod/c1",
		HostCapabilities: []string{"CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_ADMIN"},
		SeccompDefault: func(*specs.Spec) (*specs.LinuxSeccomp, error) {
			return &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}, nil
		},
		SeccompLocalhost: func(p string, _ *specs.Spec) (*specs.LinuxSeccomp, error) {
			return &specs.LinuxSeccomp{DefaultAction: specs.ActLog}, nil
		},
	}
}

func build(t *testing.T, in Input) *specs.Spec {
	t.Helper()
	s, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCommandAndEnv(t *testing.T) {
	for _, tc := range []struct {
		cmd, args, want []string
	}{
		{nil, nil, []string{"/entry", "default"}},
		{[]string{"/bin/sh"}, nil, []string{"/bin/sh"}},
		{nil, []string{"x", "y"}, []string{"/entry", "x", "y"}},
		{[]string{"/bin/sh"}, []string{"-c", "true"}, []string{"/bin/sh", "-c", "true"}},
	} {
		s := build(t, input(t, &runtime.ContainerConfig{Command: tc.cmd, Args: tc.args}))
		if !slices.Equal(s.Process.Args, tc.want) {
			t.Errorf("command %v args %v: got %v, want %v", tc.cmd, tc.args, s.Process.Args, tc.want)
		}
	}
	in := input(t, &runtime.ContainerConfig{Envs: []*runtime.KeyValue{{Key: "A", Value: []byte("cfg")}, {Key: "B", Value: []byte("b")}}})
	s := build(t, in)
	if !slices.Equal(s.Process.Env, []string{"PATH=/bin", "A=cfg", "B=b", "HOME=/root"}) {
		t.Errorf("env %v", s.Process.Env)
	}
	if s.Process.Cwd != "/work" {
		t.Errorf("cwd %q, want the image's", s.Process.Cwd)
	}
	in.Image = Image{}
	if _, err := Build(in); !errors.Is(err, ErrInvalid) {
		t.Errorf("no command anywhere: %v", err)
	}
}

func TestUser(t *testing.T) {
	i64 := func(v int64) *runtime.Int64Value { return &runtime.Int64Value{Value: v} }
	for _, tc := range []struct {
		name      string
		imageUser string
		sc        *runtime.LinuxContainerSecurityContext
		uid, gid  uint32
		groups    []uint32
	}{
		{"default root", "", &runtime.LinuxContainerSecurityContext{}, 0, 0, []uint32{0}},
		{"image uid", "1002", &runtime.LinuxContainerSecurityContext{}, 1002, 0, []uint32{0}},
		{"image name", "www-data", &runtime.LinuxContainerSecurityContext{}, 33, 33, []uint32{33}},
		{"image uid:gid", "1003:1004", &runtime.LinuxContainerSecurityContext{}, 1003, 1004, []uint32{1004}},
		{"image name:gid", "www-data:1004", &runtime.LinuxContainerSecurityContext{}, 33, 1004, []uint32{1004}},
		{"image groups merged", "1000", &runtime.LinuxContainerSecurityContext{SupplementalGroups: []int64{1234}}, 1000, 1000, []uint32{1000, 50000, 1234}},
		{"strict policy", "1000", &runtime.LinuxContainerSecurityContext{SupplementalGroups: []int64{1234},
			SupplementalGroupsPolicy: runtime.SupplementalGroupsPolicy_Strict}, 1000, 1000, []uint32{1000, 1234}},
		{"run_as_user wins", "www-data", &runtime.LinuxContainerSecurityContext{RunAsUser: i64(1000)}, 1000, 1000, []uint32{1000, 50000}},
		{"run_as_username", "", &runtime.LinuxContainerSecurityContext{RunAsUsername: "www-data"}, 33, 33, []uint32{33}},
		{"run_as_group", "", &runtime.LinuxContainerSecurityContext{RunAsUser: i64(33), RunAsGroup: i64(7)}, 33, 7, []uint32{7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := input(t, &runtime.ContainerConfig{Linux: &runtime.LinuxContainerConfig{SecurityContext: tc.sc}})
			in.Image.User = tc.imageUser
			u := build(t, in).Process.User
			if u.UID != tc.uid || u.GID != tc.gid || !slices.Equal(u.AdditionalGids, tc.groups) {
				t.Fatalf("user %+v, want %d:%d %v", u, tc.uid, tc.gid, tc.groups)
			}
		})
	}
	in := input(t, &runtime.ContainerConfig{Linux: &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{RunAsGroup: i64(5)}}})
	if _, err := Build(in); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "run_as_group") {
		t.Fatalf("group without user: %v", err)
	}
	in = input(t, &runtime.ContainerConfig{Linux: &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{RunAsUsername: "nobody-here"}}})
	if _, err := Build(in); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown user name: %v", err)
	}
}

func TestCapabilitiesAndPrivileged(t *testing.T) {
	sc := func(add, drop []string, priv bool) *runtime.ContainerConfig {
		return &runtime.ContainerConfig{Linux: &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
			Privileged: priv, Capabilities: &runtime.Capability{AddCapabilities: add, DropCapabilities: drop}}}}
	}
	s := build(t, input(t, sc([]string{"NET_ADMIN"}, []string{"cap_chown", "KILL"}, false)))
	caps := s.Process.Capabilities.Effective
	if !slices.Contains(caps, "CAP_NET_ADMIN") || slices.Contains(caps, "CAP_CHOWN") || slices.Contains(caps, "CAP_KILL") || !slices.Contains(caps, "CAP_SETUID") {
		t.Errorf("add/drop: %v", caps)
	}
	if got := build(t, input(t, sc([]string{"ALL"}, nil, false))).Process.Capabilities.Bounding; !slices.Equal(got, []string{"CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_ADMIN"}) {
		t.Errorf("ALL must be the daemon's own capabilities: %v", got)
	}
	if got := build(t, input(t, sc([]string{"SETUID"}, []string{"ALL"}, false))).Process.Capabilities.Bounding; !slices.Equal(got, []string{"CAP_SETUID"}) {
		t.Errorf("drop ALL, add one: %v", got)
	}
	if _, err := Build(input(t, sc([]string{"NOT-A-CAP"}, nil, false))); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad capability name: %v", err)
	}
	p := build(t, input(t, sc(nil, nil, true)))
	if len(p.Linux.MaskedPaths) != 0 || len(p.Linux.ReadonlyPaths) != 0 || p.Linux.Seccomp != nil {
		t.Errorf("privileged keeps masks or seccomp: %v %v %v", p.Linux.MaskedPaths, p.Linux.ReadonlyPaths, p.Linux.Seccomp)
	}
	for _, m := range p.Mounts {
		if m.Destination == "/sys" && slices.Contains(m.Options, "ro") {
			t.Errorf("privileged /sys is read-only: %v", m.Options)
		}
	}
	if len(p.Linux.Devices) == 0 || !p.Linux.Resources.Devices[0].Allow {
		t.Errorf("privileged lacks host devices")
	}
	d := build(t, input(t, &runtime.ContainerConfig{}))
	if !slices.Equal(d.Linux.MaskedPaths, DefaultMaskedPaths) || d.Linux.Seccomp != nil {
		t.Errorf("defaults: masked %v seccomp %v", d.Linux.MaskedPaths, d.Linux.Seccomp)
	}
}

func TestSeccomp(t *testing.T) {
	withSC := func(sc *runtime.LinuxContainerSecurityContext) *runtime.ContainerConfig {
		return &runtime.ContainerConfig{Linux: &runtime.LinuxContainerConfig{SecurityContext: sc}}
	}
	s := build(t, input(t, withSC(&runtime.LinuxContainerSecurityContext{Seccomp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}})))
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
		t.Errorf("RuntimeDefault: %v", s.Linux.Seccomp)
	}
	s = build(t, input(t, withSC(&runtime.LinuxContainerSecurityContext{Seccomp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "/etc/p.json"}})))
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActLog {
		t.Errorf("Localhost: %v", s.Linux.Seccomp)
	}
	//lint:ignore SA1019 the deprecated field is still honoured
	s = build(t, input(t, withSC(&runtime.LinuxContainerSecurityContext{SeccompProfilePath: "runtime/default"})))
	if s.Linux.Seccomp == nil {
		t.Error("deprecated runtime/default path ignored")
	}
}

func mountAt(s *specs.Spec, dst string) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dst {
			return &s.Mounts[i]
		}
	}
	return nil
}

func TestMounts(t *testing.T) {
	host := t.TempDir()
	must(t, os.Mkdir(filepath.Join(host, "data"), 0o755))
	must(t, os.Symlink(filepath.Join(host, "data"), filepath.Join(host, "link")))
	in := input(t, &runtime.ContainerConfig{Mounts: []*runtime.Mount{
		{ContainerPath: "/mnt/a/b", HostPath: filepath.Join(host, "link"), Readonly: true},
		{ContainerPath: "/mnt/a", HostPath: filepath.Join(host, "data")},
		{ContainerPath: "/escape/x", HostPath: filepath.Join(host, "data")},
		{ContainerPath: "/etc/hosts", HostPath: filepath.Join(host, "data")},
		{ContainerPath: "/rro", HostPath: filepath.Join(host, "data"), Readonly: true, RecursiveReadOnly: true},
	}})
	// The image has /escape -> /etc: the mount must land in the rootfs.
	must(t, os.Symlink("/etc", filepath.Join(in.Rootfs, "escape")))
	in.Pod = Pod{Hosts: "/pod/hosts", ResolvConf: "/pod/resolv.conf", Hostname: "/pod/hostname", Shm: "/pod/shm"}
	s := build(t, in)
	b := mountAt(s, "/mnt/a/b")
	if b == nil || b.Source != filepath.Join(host, "data") || !slices.Contains(b.Options, "ro") || !slices.Contains(b.Options, "rprivate") {
		t.Fatalf("symlinked host path: %+v", b)
	}
	var order []string
	for _, m := range s.Mounts {
		order = append(order, m.Destination)
	}
	if slices.Index(order, "/mnt/a") > slices.Index(order, "/mnt/a/b") {
		t.Errorf("child mounted before parent: %v", order)
	}
	if mountAt(s, "/etc/x") == nil || mountAt(s, "/escape/x") != nil {
		t.Errorf("a symlink in the image moved the mount: %v", order)
	}
	if h := mountAt(s, "/etc/hosts"); h == nil || h.Source != filepath.Join(host, "data") {
		t.Errorf("config's /etc/hosts must win over the pod's: %+v", h)
	}
	if r := mountAt(s, "/etc/resolv.conf"); r == nil || r.Source != "/pod/resolv.conf" {
		t.Errorf("pod resolv.conf: %+v", r)
	}
	if shm := mountAt(s, "/dev/shm"); shm == nil || shm.Source != "/pod/shm" {
		t.Errorf("pod shm: %+v", shm)
	}
	if r := mountAt(s, "/rro"); r == nil || !slices.Contains(r.Options, "rro") {
		t.Errorf("recursive read-only: %+v", r)
	}
	bad := input(t, &runtime.ContainerConfig{Mounts: []*runtime.Mount{{ContainerPath: "/x", HostPath: host, RecursiveReadOnly: true}}})
	if _, err := Build(bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("rro without readonly: %v", err)
	}
	bad = input(t, &runtime.ContainerConfig{Mounts: []*runtime.Mount{{ContainerPath: "relative", HostPath: host}}})
	if _, err := Build(bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("relative container path: %v", err)
	}
}

func TestDevicesAndResources(t *testing.T) {
	in := input(t, &runtime.ContainerConfig{
		Devices: []*runtime.Device{{HostPath: "/dev/null", ContainerPath: "/dev/mynull", Permissions: "rw"}},
		Linux: &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{
			CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 64 << 20, CpusetCpus: "0", OomScoreAdj: 500,
			HugepageLimits: []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 0}},
		}},
	})
	s := build(t, in)
	if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/mynull" || s.Linux.Devices[0].Major != 1 || s.Linux.Devices[0].Minor != 3 {
		t.Fatalf("devices %+v", s.Linux.Devices)
	}
	last := s.Linux.Resources.Devices[len(s.Linux.Resources.Devices)-1]
	if !last.Allow || last.Access != "rw" || *last.Major != 1 {
		t.Fatalf("device rule %+v", last)
	}
	r := s.Linux.Resources
	if *r.CPU.Shares != 512 || *r.CPU.Quota != 50000 || *r.Memory.Limit != 64<<20 || r.CPU.Cpus != "0" || len(r.HugepageLimits) != 1 || *s.Process.OOMScoreAdj != 500 {
		t.Fatalf("resources %+v", r)
	}
	in.Config.Linux.Resources.MemoryLimitInBytes = -1
	if _, err := Build(in); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "memory_limit_in_bytes") {
		t.Fatalf("negative limit: %v", err)
	}
}

func TestNamespaces(t *testing.T) {
	in := input(t, &runtime.ContainerConfig{})
	in.Pod.Namespaces = map[specs.LinuxNamespaceType]string{
		specs.NetworkNamespace: "/run/pod/ns/net", specs.IPCNamespace: "host", specs.PIDNamespace: "/proc/42/ns/pid",
	}
	s := build(t, in)
	got := map[specs.LinuxNamespaceType]string{}
	for _, n := range s.Linux.Namespaces {
		got[n.Type] = n.Path
	}
	if _, ok := got[specs.IPCNamespace]; ok {
		t.Errorf("host IPC still has a namespace entry: %v", got)
	}
	if got[specs.NetworkNamespace] != "/run/pod/ns/net" || got[specs.PIDNamespace] != "/proc/42/ns/pid" {
		t.Errorf("namespaces %v", got)
	}
	if _, ok := got[specs.MountNamespace]; !ok {
		t.Errorf("no private mount namespace: %v", got)
	}
}

// On cgroup v2 a container gets a cgroup namespace of its own unless it is
// privileged (which keeps the node's, as in containerd and CRI-O); without
// the option (v1) none is added.
func TestPrivateCgroupNamespace(t *testing.T) {
	hasCgroupNS := func(s *specs.Spec) bool {
		return slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool {
			return n.Type == specs.CgroupNamespace && n.Path == ""
		})
	}
	in := input(t, &runtime.ContainerConfig{})
	in.PrivateCgroupNamespace = true
	if !hasCgroupNS(build(t, in)) {
		t.Error("non-privileged container on v2: no cgroup namespace")
	}
	priv := input(t, &runtime.ContainerConfig{Linux: &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{Privileged: true}}})
	priv.PrivateCgroupNamespace = true
	if hasCgroupNS(build(t, priv)) {
		t.Error("privileged container: got a private cgroup namespace")
	}
	if hasCgroupNS(build(t, input(t, &runtime.ContainerConfig{}))) {
		t.Error("v1: got a cgroup namespace")
	}
}

// A NUL would cut a C string short in chdir or execve: the config is
// refused, naming the field, wherever the value comes from.
func TestNULRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg      *runtime.ContainerConfig
		imageDir string
		field    string
	}{
		"working_dir":      {&runtime.ContainerConfig{WorkingDir: "/\x00"}, "/work", "working_dir"},
		"image WorkingDir": {&runtime.ContainerConfig{}, "/w\x00rk", "the image's WorkingDir"},
		"args":             {&runtime.ContainerConfig{Args: []string{"ok", "b\x00d"}}, "/work", "command/args[2]"},
		"envs":             {&runtime.ContainerConfig{Envs: []*runtime.KeyValue{{Key: "A", Value: []byte("x\x00y")}}}, "/work", "envs[1]"},
	} {
		in := input(t, tc.cfg)
		in.Image.WorkingDir = tc.imageDir
		_, err := Build(in)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v, want ErrInvalid naming %s", name, err, tc.field)
		}
	}
}
