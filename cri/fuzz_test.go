package cri

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/oci/specgen"
)

// fuzzHostCaps stand for crid's own capabilities.
var fuzzHostCaps = append(slices.Clone(specgen.DefaultCapabilities), "CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_PTRACE")

// specWorld is what a container is built from, all inside one temp dir: the
// image's rootfs (with symlinks that lead out of it), the host directories
// mounts and devices name (host paths are moved under host/), the pod's
// files and namespace pins.
type specWorld struct {
	dir, rootfs, host, pod string
}

func newSpecWorld(t *testing.T) specWorld {
	d := fuzzTempDir(t)
	w := specWorld{dir: d, rootfs: filepath.Join(d, "rootfs"), host: filepath.Join(d, "host"), pod: filepath.Join(d, "pod")}
	for _, p := range []string{"rootfs/etc", "rootfs/var", "rootfs/data", "host/dev/sub", "host/data", "outside", "pod"} {
		if err := os.MkdirAll(filepath.Join(d, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"rootfs/etc/passwd": "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
		"rootfs/etc/group":  "root:x:0:\nwww-data:x:33:\nuser:x:1000:\nextra:x:50000:user\n",
		"host/data/file":    "data",
		"pod/hosts":         "127.0.0.1 localhost\n",
		"pod/resolv.conf":   "nameserver 10.0.0.10\n",
		"pod/hostname":      "pod\n",
	}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(d, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Symlinks in the image that lead out of it, and one on the host.
	for p, target := range map[string]string{
		"rootfs/evil": "/", "rootfs/up": "../../../../..", "rootfs/etc/host": d, "rootfs/var/run": "../../../outside",
		"rootfs/data/loop": "loop", "host/link": filepath.Join(d, "outside"),
		"host/dev/alias": "null", "host/dev/by-id": filepath.Join(d, "host/dev/sub"),
	} {
		if err := os.Symlink(target, filepath.Join(d, p)); err != nil {
			t.Fatal(err)
		}
	}
	for p, dev := range map[string]int{"host/dev/null": int(unix.Mkdev(1, 3)), "host/dev/sub/zero": int(unix.Mkdev(1, 5))} {
		if err := unix.Mknod(filepath.Join(d, p), unix.S_IFCHR|0o666, dev); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// fuzzTempDir returns a fresh directory, on tmpfs when /dev/shm is one: the
// world of each input is a few dozen files, and the shared disk is busy.
func fuzzTempDir(t *testing.T) string {
	var st unix.Statfs_t
	if unix.Statfs("/dev/shm", &st) != nil || st.Type != unix.TMPFS_MAGIC {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("/dev/shm", "crid-fuzz-cri-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func (w specWorld) pin(kind string) string { return filepath.Join(w.pod, "ns", kind) }

// hostPath moves an absolute host path under the world's host dir: specgen
// creates a missing mount source, and no fuzz input may create directories
// on the machine.
func (w specWorld) hostPath(p string) string {
	if !filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(w.host, filepath.Clean(p))
}

// input is what CreateContainer gives specgen.Build for cfg in a pod of
// podCfg (namespaces, files and /dev/shm as podInput makes them), with host
// paths moved into the world.
func (w specWorld) input(podCfg *runtime.PodSandboxConfig, cfg *runtime.ContainerConfig, img specgen.Image) specgen.Input {
	cfg = proto.Clone(cfg).(*runtime.ContainerConfig)
	// An image volume is bound from where the daemon mounted the image:
	// here a directory of the host dir.
	volumes := map[int]string{}
	for i, m := range cfg.Mounts {
		if specgen.IsImageVolume(m) {
			volumes[i] = w.hostPath("/data")
		} else if m != nil {
			m.HostPath = w.hostPath(m.HostPath)
		}
	}
	for _, d := range cfg.Devices {
		if d != nil {
			d.HostPath = w.hostPath(d.HostPath)
		}
	}
	podNS := podCfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	ns := map[specs.LinuxNamespaceType]string{
		specs.NetworkNamespace: w.pin("net"), specs.UTSNamespace: w.pin("uts"), specs.IPCNamespace: w.pin("ipc"),
	}
	if podNS.GetNetwork() == runtime.NamespaceMode_NODE {
		ns[specs.NetworkNamespace], ns[specs.UTSNamespace] = "host", "host"
	}
	shm := filepath.Join(w.pod, "shm")
	if podNS.GetIpc() == runtime.NamespaceMode_NODE {
		ns[specs.IPCNamespace], shm = "host", "/dev/shm"
	}
	switch cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid() {
	case runtime.NamespaceMode_POD:
		ns[specs.PIDNamespace] = ""
		if podNS.GetPid() == runtime.NamespaceMode_POD {
			ns[specs.PIDNamespace] = w.pin("pid")
		}
	case runtime.NamespaceMode_CONTAINER:
		ns[specs.PIDNamespace] = ""
	case runtime.NamespaceMode_NODE:
		ns[specs.PIDNamespace] = "host"
	case runtime.NamespaceMode_TARGET:
		ns[specs.PIDNamespace] = w.pin("target")
	}
	return specgen.Input{
		Config: cfg,
		Image:  img,
		Pod: specgen.Pod{
			Namespaces: ns,
			Hosts:      filepath.Join(w.pod, "hosts"), ResolvConf: filepath.Join(w.pod, "resolv.conf"), Hostname: filepath.Join(w.pod, "hostname"),
			Shm: shm, CgroupParent: "/kubepods/pod", Config: podCfg,
		},
		Rootfs:           w.rootfs,
		ImageVolumes:     volumes,
		CgroupsPath:      "/kubepods/pod/c1",
		HostCapabilities: fuzzHostCaps,
		SeccompDefault:   seccomp.GetDefaultProfile,
		SeccompLocalhost: func(string, *specs.Spec) (*specs.LinuxSeccomp, error) {
			return &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}, nil
		},
	}
}

func fuzzSeeds() (pods []*runtime.PodSandboxConfig, ctrs []*runtime.ContainerConfig) {
	meta := &runtime.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u1"}
	sc := func(s *runtime.LinuxContainerSecurityContext) *runtime.LinuxContainerConfig {
		return &runtime.LinuxContainerConfig{SecurityContext: s}
	}
	pods = []*runtime.PodSandboxConfig{
		{Metadata: meta, Hostname: "p", LogDirectory: "/var/log/pods/p"},
		{Metadata: meta, Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
			Privileged: true, NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE, Pid: runtime.NamespaceMode_NODE, Ipc: runtime.NamespaceMode_NODE},
		}}},
		{Metadata: meta, Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_POD},
		}}, PortMappings: []*runtime.PortMapping{{ContainerPort: 80, HostPort: 8080}}},
	}
	base := func() *runtime.ContainerConfig {
		return &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: "c"}, Image: &runtime.ImageSpec{Image: "busybox"},
			Command: []string{"/bin/sh"}, Args: []string{"-c", "true"}, LogPath: "c.log",
		}
	}
	with := func(mod func(c *runtime.ContainerConfig)) *runtime.ContainerConfig {
		c := base()
		mod(c)
		return c
	}
	ctrs = []*runtime.ContainerConfig{
		base(),
		with(func(c *runtime.ContainerConfig) {
			c.Mounts = []*runtime.Mount{
				{ContainerPath: "/data", HostPath: "/data", Readonly: true},
				{ContainerPath: "/evil/etc/x", HostPath: "/data/file"},
				{ContainerPath: "/up/up/outside", HostPath: "/new/dir"},
				{ContainerPath: "/etc/host/pod/hosts", HostPath: "/link"},
				{ContainerPath: "/var/run/y", HostPath: "/../../../etc", Propagation: runtime.MountPropagation_PROPAGATION_PRIVATE, Readonly: true, RecursiveReadOnly: true},
				{ContainerPath: "/../../../../escape", HostPath: "/data"},
				{ContainerPath: "/dev/shm", HostPath: "/data"},
			}
		}),
		with(func(c *runtime.ContainerConfig) {
			c.Mounts = []*runtime.Mount{{ContainerPath: "relative", HostPath: "/data"}, {ContainerPath: "/x", HostPath: "relative"}, {ContainerPath: "/data/loop/z", HostPath: "/data"}}
		}),
		with(func(c *runtime.ContainerConfig) {
			c.Mounts = []*runtime.Mount{
				{ContainerPath: "/vol", Readonly: true, Image: &runtime.ImageSpec{Image: "busybox"}, ImageSubPath: "etc", MountOptions: []string{"noexec"}},
				{ContainerPath: "/opts", HostPath: "/data", MountOptions: []string{"nosuid", "nodev", "noatime"}},
			}
		}),
		with(func(c *runtime.ContainerConfig) {
			c.Mounts = []*runtime.Mount{
				{ContainerPath: "/rw-vol", Image: &runtime.ImageSpec{Image: "busybox"}},
				{ContainerPath: "/opts", HostPath: "/data", MountOptions: []string{"exec"}},
			}
		}),
		with(func(c *runtime.ContainerConfig) {
			c.Devices = []*runtime.Device{
				{HostPath: "/dev/null", ContainerPath: "/dev/mynull", Permissions: "rw"},
				{HostPath: "/dev", ContainerPath: "/dev/all"},
				{HostPath: "/dev/sub/zero", ContainerPath: "../../escape", Permissions: "r"},
				{HostPath: "/dev/null", ContainerPath: "relative"},
			}
		}),
		with(func(c *runtime.ContainerConfig) {
			c.Devices = []*runtime.Device{{HostPath: "/dev/alias", ContainerPath: "/dev/mynull"}, {HostPath: "/dev/by-id", ContainerPath: "/dev/disks"}}
		}),
		with(func(c *runtime.ContainerConfig) {
			c.Linux = sc(&runtime.LinuxContainerSecurityContext{Privileged: true, ReadonlyRootfs: true})
		}),
		with(func(c *runtime.ContainerConfig) {
			c.Linux = sc(&runtime.LinuxContainerSecurityContext{
				Capabilities: &runtime.Capability{AddCapabilities: []string{"ALL"}, DropCapabilities: []string{"net_raw"}, AddAmbientCapabilities: []string{"CAP_SYS_ADMIN"}},
				MaskedPaths:  []string{}, ReadonlyPaths: []string{"/proc/sys"},
				NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_NODE},
				Seccomp:          &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault},
				RunAsUser:        &runtime.Int64Value{Value: 1000}, RunAsGroup: &runtime.Int64Value{Value: 50000},
				SupplementalGroups: []int64{1, 2},
			})
		}),
		with(func(c *runtime.ContainerConfig) {
			c.Linux = sc(&runtime.LinuxContainerSecurityContext{
				Capabilities:   &runtime.Capability{AddCapabilities: []string{"sys_admin"}, DropCapabilities: []string{"ALL"}},
				RunAsUsername:  "www-data",
				Seccomp:        &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "/profiles/p.json"},
				Apparmor:       &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault},
				MaskedPaths:    []string{"/proc/kcore", "../../x"},
				ReadonlyRootfs: true,
			})
			c.Linux.Resources = &runtime.LinuxContainerResources{CpuQuota: -1, MemoryLimitInBytes: 1 << 30, OomScoreAdj: 1000}
			c.WorkingDir = "/../../work"
		}),
		with(func(c *runtime.ContainerConfig) {
			c.Linux = sc(&runtime.LinuxContainerSecurityContext{
				Capabilities: &runtime.Capability{AddCapabilities: []string{"BOGUS"}},
				//lint:ignore SA1019 older kubelets and critest still send the deprecated field
				SeccompProfilePath: "localhost/profiles/p.json",
			})
		}),
		with(func(c *runtime.ContainerConfig) {
			c.Command, c.Args = nil, nil
			c.WorkingDir = "relative"
			c.Envs = []*runtime.KeyValue{{Key: "PATH", Value: []byte("/x")}, {Key: "A=B", Value: []byte("c")}}
		}),
	}
	return pods, ctrs
}

// FuzzCreateContainer unmarshals arbitrary bytes into a RunPodSandbox and
// a CreateContainer request (seeded with structured configs: mounts through
// the image's symlinks and with "..", devices, privileged and capability
// sets, masked paths, users, namespaces), validates both as the server does
// and builds the container's spec as CreateContainer does. Oracle: no
// panic; a refused request or config is InvalidArgument; an accepted one
// yields a spec whose mounts stay where they must (destinations absolute,
// clean and not through a symlink of the image, sources inside the host
// dirs given, the kernel filesystems present and read-only), whose devices
// are where the config put them, which is privileged (capabilities beyond
// the asked ones, devices, writable sysfs, no masked paths) only when asked,
// keeps the default masked paths unless the config lists its own, and
// takes the node's namespaces only when the pod or container asks.
func FuzzCreateContainer(f *testing.F) {
	pods, ctrs := fuzzSeeds()
	for i, c := range ctrs {
		pb, err := proto.Marshal(&runtime.RunPodSandboxRequest{Config: pods[i%len(pods)]})
		if err != nil {
			f.Fatal(err)
		}
		cb, err := proto.Marshal(&runtime.CreateContainerRequest{PodSandboxId: "sb1", Config: c, SandboxConfig: pods[i%len(pods)]})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(pb, cb, "", "/work")
	}
	f.Add([]byte{}, []byte{}, "www-data", "")
	f.Add([]byte("\x0a\x00"), []byte("\x0a\x03sb1"), "1000:50000", "relative")

	f.Fuzz(func(t *testing.T, podReq, ctrReq []byte, imageUser, imageWorkdir string) {
		var pr runtime.RunPodSandboxRequest
		if proto.Unmarshal(podReq, &pr) != nil {
			return // gRPC refuses it before crid sees it
		}
		if err := validateRequest(&pr); err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("RunPodSandbox refused with %v", err)
			}
			return
		}
		var cr runtime.CreateContainerRequest
		if proto.Unmarshal(ctrReq, &cr) != nil {
			return
		}
		if err := validateRequest(&cr); err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("CreateContainer refused with %v", err)
			}
			return
		}
		w := newSpecWorld(t)
		img := specgen.Image{Entrypoint: []string{"/entry"}, Cmd: []string{"default"}, Env: []string{"PATH=/bin"}, WorkingDir: imageWorkdir, User: imageUser}
		spec, err := specgen.Build(w.input(pr.Config, cr.Config, img))
		if err != nil {
			if code := status.Code(toStatus(err)); code != codes.InvalidArgument {
				t.Fatalf("config refused with %s, want InvalidArgument: %v", code, err)
			}
			return
		}
		checkSpec(t, w, pr.Config, cr.Config, spec)
	})
}

// checkSpec is the oracle for an accepted config.
func checkSpec(t *testing.T, w specWorld, pod *runtime.PodSandboxConfig, cfg *runtime.ContainerConfig, s *specs.Spec) {
	sc := cfg.GetLinux().GetSecurityContext()
	priv := sc.GetPrivileged()
	cleanAbs := func(what, p string) {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p || strings.ContainsRune(p, 0) {
			t.Errorf("%s %q is not a clean absolute path", what, p)
		}
	}
	if s.Root == nil || s.Root.Path != w.rootfs || s.Root.Readonly != sc.GetReadonlyRootfs() {
		t.Errorf("root %+v, want %s read-only %v", s.Root, w.rootfs, sc.GetReadonlyRootfs())
	}
	if len(s.Process.Args) == 0 {
		t.Error("no command")
	}
	if !filepath.IsAbs(s.Process.Cwd) || strings.ContainsRune(s.Process.Cwd, 0) {
		t.Errorf("working dir %q", s.Process.Cwd)
	}

	// Mounts.
	configDst := map[string]bool{}
	anyRW := false
	for _, m := range cfg.GetMounts() {
		anyRW = anyRW || !m.GetReadonly()
	}
	seen := map[string]bool{}
	for _, m := range s.Mounts {
		cleanAbs("mount destination", m.Destination)
		seen[m.Destination] = true
		switch {
		case m.Type == "bind" && isUnder(m.Source, w.host, filepath.Join(w.dir, "outside")):
			// A config mount: its destination was resolved inside the
			// rootfs, so no part of it may be a symlink of the image.
			configDst[m.Destination] = true
			cleanAbs("mount source", m.Source)
			if p := symlinkOn(w.rootfs, m.Destination); p != "" {
				t.Errorf("mount at %s passes through the image's symlink %s", m.Destination, p)
			}
			if !anyRW && !slices.Contains(m.Options, "ro") && !slices.Contains(m.Options, "rro") {
				t.Errorf("mount at %s is writable, every config mount is read-only: %v", m.Destination, m.Options)
			}
			// Only crid's own options and the allowed mount_options.
			for _, o := range m.Options {
				if !slices.Contains([]string{"rbind", "rprivate", "rslave", "rshared", "rw", "rro"}, o) && !slices.Contains(specgen.MountOptions, o) {
					t.Errorf("mount at %s has option %q", m.Destination, o)
				}
			}
		case m.Type == "bind":
			if !isUnder(m.Source, w.pod) && m.Source != "/dev/shm" {
				t.Errorf("bind mount at %s from %s: not a config mount, not a pod file", m.Destination, m.Source)
			}
			if sc.GetReadonlyRootfs() && m.Destination != "/dev/shm" && !slices.Contains(m.Options, "ro") {
				t.Errorf("pod file %s writable in a read-only container: %v", m.Destination, m.Options)
			}
		case (m.Type == "sysfs" || m.Type == "cgroup") && !priv:
			if !slices.Contains(m.Options, "ro") || slices.Contains(m.Options, "rw") {
				t.Errorf("%s at %s writable in an unprivileged container: %v", m.Type, m.Destination, m.Options)
			}
		}
	}
	for _, d := range []string{"/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup", "/dev/shm"} {
		if !seen[d] {
			t.Errorf("no mount at %s", d)
		}
	}

	// Devices.
	for _, d := range s.Linux.Devices {
		cleanAbs("device path", d.Path)
		if priv {
			continue
		}
		if !slices.ContainsFunc(cfg.GetDevices(), func(cd *runtime.Device) bool {
			return d.Path == filepath.Clean(cd.GetContainerPath()) || isUnder(d.Path, filepath.Clean(cd.GetContainerPath()))
		}) {
			t.Errorf("device %s not asked for", d.Path)
		}
	}
	rules := s.Linux.Resources.Devices
	if !priv {
		if len(rules) == 0 || rules[0].Allow {
			t.Errorf("device rules of an unprivileged container do not start by denying all: %+v", rules)
		}
		for _, r := range rules {
			if r.Allow && (r.Major == nil || r.Minor == nil || r.Type == "" || r.Type == "a") {
				t.Errorf("wildcard device rule in an unprivileged container: %+v", r)
			}
		}
	}

	// Capabilities.
	c := s.Process.Capabilities
	if c == nil || !slices.Equal(c.Bounding, c.Effective) || !slices.Equal(c.Bounding, c.Permitted) {
		t.Fatalf("capability sets differ: %+v", c)
	}
	allowed := slices.Clone(specgen.DefaultCapabilities)
	for _, a := range sc.GetCapabilities().GetAddCapabilities() {
		if strings.EqualFold(a, "ALL") {
			allowed = append(allowed, fuzzHostCaps...)
		}
		a = strings.ToUpper(a)
		allowed = append(allowed, a, "CAP_"+a)
	}
	if priv {
		allowed = append(allowed, fuzzHostCaps...)
	}
	for _, cp := range c.Bounding {
		if !slices.Contains(allowed, cp) {
			t.Errorf("capability %s not asked for", cp)
		}
	}
	for _, cp := range c.Ambient {
		if !slices.Contains(c.Bounding, cp) {
			t.Errorf("ambient capability %s outside the bounding set", cp)
		}
	}

	// A seccomp profile asked for is applied.
	//lint:ignore SA1019 older kubelets and critest still send the deprecated field
	path := sc.GetSeccompProfilePath()
	wantSeccomp := path == "runtime/default" || path == "docker/default" || strings.HasPrefix(path, "localhost/")
	if p := sc.GetSeccomp(); p != nil {
		wantSeccomp = p.GetProfileType() == runtime.SecurityProfile_RuntimeDefault || p.GetProfileType() == runtime.SecurityProfile_Localhost
	}
	if wantSeccomp && !priv && s.Linux.Seccomp == nil {
		t.Errorf("seccomp profile %s %q asked for, none applied", sc.GetSeccomp().GetProfileType(), path)
	}

	// Masked and read-only paths.
	masked, ro := sc.GetMaskedPaths(), sc.GetReadonlyPaths()
	switch {
	case priv:
		if len(s.Linux.MaskedPaths)+len(s.Linux.ReadonlyPaths) != 0 {
			t.Errorf("privileged container keeps masked paths %v %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
		}
	case len(masked) == 0 && len(ro) == 0:
		if !slices.Equal(s.Linux.MaskedPaths, specgen.DefaultMaskedPaths) || !slices.Equal(s.Linux.ReadonlyPaths, specgen.DefaultReadonlyPaths) {
			t.Errorf("default masked paths lost: %v %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
		}
	default:
		if !slices.Equal(s.Linux.MaskedPaths, masked) || !slices.Equal(s.Linux.ReadonlyPaths, ro) {
			t.Errorf("masked paths %v %v, config asked %v %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths, masked, ro)
		}
	}

	// Namespaces: the node's only when asked.
	podNS := pod.GetLinux().GetSecurityContext().GetNamespaceOptions()
	hostNet := podNS.GetNetwork() == runtime.NamespaceMode_NODE
	want := map[specs.LinuxNamespaceType]bool{
		specs.MountNamespace:   true,
		specs.NetworkNamespace: !hostNet,
		specs.UTSNamespace:     !hostNet,
		specs.IPCNamespace:     podNS.GetIpc() != runtime.NamespaceMode_NODE,
		specs.PIDNamespace:     sc.GetNamespaceOptions().GetPid() != runtime.NamespaceMode_NODE,
	}
	got := map[specs.LinuxNamespaceType]bool{}
	for _, n := range s.Linux.Namespaces {
		if got[n.Type] {
			t.Errorf("namespace %s twice", n.Type)
		}
		got[n.Type] = true
	}
	for typ, w := range want {
		if got[typ] != w {
			t.Errorf("namespace %s: own or joined %v, want %v", typ, got[typ], w)
		}
	}
}

// isUnder reports whether p is one of dirs or below one.
func isUnder(p string, dirs ...string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// symlinkOn returns the first path component of dst, taken inside rootfs,
// that is a symlink.
func symlinkOn(rootfs, dst string) string {
	p := rootfs
	for _, c := range strings.Split(strings.TrimPrefix(dst, "/"), "/") {
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		if err != nil {
			return ""
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return p
		}
	}
	return ""
}
