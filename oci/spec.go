package oci

import (
	"fmt"
	"slices"
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultPath is the PATH of a container whose image sets none.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// DefaultCapabilities is containerd's default set for unprivileged
// containers (Docker's too).
func DefaultCapabilities() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
		"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
	}
}

// DefaultMaskedPaths hides host information from /proc and /sys, as
// containerd does.
func DefaultMaskedPaths() []string {
	return []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap",
	}
}

// DefaultReadonlyPaths are the kernel knobs a container may read, not write.
func DefaultReadonlyPaths() []string {
	return []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
}

// DefaultMounts are the filesystems every Linux container gets: containerd's
// CRI set (its /run tmpfs dropped, a read-only cgroupfs added).
func DefaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
}

// DefaultSpec is a sane spec for an unprivileged Linux container: default
// mounts, capabilities, masked and read-only paths, devices (libcontainer
// adds the standard /dev nodes and their cgroup rules; everything else is
// denied), and private pid, ipc, uts, mount and network namespaces. The
// caller sets Root.Path, Linux.CgroupsPath and Process.Args at least, and
// joins the pod's namespaces with SetNamespace.
func DefaultSpec() *specs.Spec {
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{},
		Process: &specs.Process{
			Cwd: "/",
			Env: []string{DefaultPath},
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  DefaultCapabilities(),
				Effective: DefaultCapabilities(),
				Permitted: DefaultCapabilities(),
			},
		},
		Mounts: DefaultMounts(),
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace},
			},
			MaskedPaths:   DefaultMaskedPaths(),
			ReadonlyPaths: DefaultReadonlyPaths(),
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
		},
	}
}

// SetNamespace makes the container use a namespace of type t: a new one
// when path is empty, else the one at path (a pinned pod namespace, or
// /proc/<pid>/ns/… of another container). Joining a UTS namespace clears
// Hostname: setting it would rename every member of that namespace (and
// libcontainer refuses a hostname without a private UTS namespace).
func SetNamespace(s *specs.Spec, t specs.LinuxNamespaceType, path string) {
	ensureLinux(s)
	ns := specs.LinuxNamespace{Type: t, Path: path}
	if i := slices.IndexFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t }); i >= 0 {
		s.Linux.Namespaces[i] = ns
	} else {
		s.Linux.Namespaces = append(s.Linux.Namespaces, ns)
	}
	if t == specs.UTSNamespace && path != "" {
		s.Hostname = ""
	}
}

// RemoveNamespace makes the container share the host's namespace of type t
// (host network, host PID, host IPC).
func RemoveNamespace(s *specs.Spec, t specs.LinuxNamespaceType) {
	ensureLinux(s)
	s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t })
	if t == specs.UTSNamespace {
		s.Hostname = ""
	}
}

// SetPrivileged gives the container what a privileged container gets: every
// capability the daemon holds (not every capability the kernel knows: a
// capability the runtime lacks, CAP_SYS_RESOURCE on these machines, makes
// the init fail), access to all devices, no masked or read-only paths, and
// writable sysfs and cgroupfs. Adding the host's device nodes is the
// caller's part.
func SetPrivileged(s *specs.Spec) error {
	caps, err := HostCapabilities()
	if err != nil {
		return err
	}
	if s.Process == nil {
		s.Process = &specs.Process{}
	}
	s.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding:  caps,
		Effective: slices.Clone(caps),
		Permitted: slices.Clone(caps),
	}
	ensureLinux(s)
	s.Linux.MaskedPaths = nil
	s.Linux.ReadonlyPaths = nil
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	for i, m := range s.Mounts {
		if m.Type == "sysfs" || m.Type == "cgroup" || m.Type == "cgroup2" {
			s.Mounts[i].Options = slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return o == "ro" })
			s.Mounts[i].Options = append(s.Mounts[i].Options, "rw")
		}
	}
	return nil
}

// HostCapabilities lists the capabilities in this process's effective set,
// which is what "ALL" and privileged containers can be granted.
func HostCapabilities() ([]string, error) {
	c, err := capability.NewPid2(0)
	if err == nil {
		err = c.Load()
	}
	if err != nil {
		return nil, fmt.Errorf("read own capabilities: %w", err)
	}
	var out []string
	for _, cp := range capability.ListKnown() {
		if c.Get(capability.EFFECTIVE, cp) {
			out = append(out, "CAP_"+strings.ToUpper(cp.String()))
		}
	}
	return out, nil
}

func ensureLinux(s *specs.Spec) {
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
}
