package hostcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/apparmor"
)

// minKernel is the oldest kernel crid runs on: the layer extractor resolves
// every tar entry with openat2(RESOLVE_IN_ROOT), which arrived in 5.6.
var minKernel = [2]int{5, 6}

// Kernel checks the running kernel's version against minKernel.
func (h *Host) Kernel() Result {
	const name = "kernel"
	b, err := os.ReadFile(h.path("/proc/sys/kernel/osrelease"))
	if err != nil {
		return fail(name, fmt.Sprintf("cannot read the kernel release: %v", err), "mount /proc")
	}
	release := strings.TrimSpace(string(b))
	major, minor, parsed := parseRelease(release)
	if !parsed {
		return warn(name, fmt.Sprintf("%s: not a version crid understands", release), "run a Linux kernel 5.6 or newer")
	}
	if major < minKernel[0] || (major == minKernel[0] && minor < minKernel[1]) {
		return fail(name, fmt.Sprintf("%s is older than 5.6: no openat2, which safe layer extraction needs", release),
			"boot a kernel 5.6 or newer (Debian 12 ships 6.1)")
	}
	return ok(name, release)
}

// parseRelease reads "6.1.0-18-amd64" as 6, 1.
func parseRelease(s string) (major, minor int, ok bool) {
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	digits := strings.IndexFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' })
	if digits < 0 {
		digits = len(parts[1])
	}
	minor, err2 := strconv.Atoi(parts[1][:digits])
	return major, minor, err1 == nil && err2 == nil
}

// Overlay checks that the kernel has overlayfs (image layers are overlay
// lower dirs) and that root_dir is on a filesystem that can hold the upper
// dirs: overlayfs itself cannot.
func (h *Host) Overlay() Result {
	const name = "overlayfs"
	fs, err := os.ReadFile(h.path("/proc/filesystems"))
	if err != nil {
		return fail(name, fmt.Sprintf("cannot read /proc/filesystems: %v", err), "mount /proc")
	}
	var detail string
	switch {
	case hasFilesystem(string(fs), "overlay"):
		detail = "in the kernel"
	case exists(h.path("/sys/module/overlay")):
		detail = "module loaded"
	case h.overlayModule() != "":
		detail = "module " + h.overlayModule() + " (loaded at the first mount)"
	default:
		return fail(name, "the kernel has no overlay filesystem", "modprobe overlay, and add overlay to /etc/modules-load.d/crid.conf; or use a kernel built with CONFIG_OVERLAY_FS")
	}
	dir := existingAncestor(h.Config.RootDir)
	magic, err := h.FSType(dir)
	if err != nil {
		return warn(name, fmt.Sprintf("%s; cannot tell the filesystem of root_dir %s: %v", detail, h.Config.RootDir, err), "make root_dir a directory crid can stat")
	}
	if magic == unix.OVERLAYFS_SUPER_MAGIC {
		return fail(name, fmt.Sprintf("%s, but root_dir %s is on overlayfs, which cannot hold overlay upper dirs", detail, h.Config.RootDir),
			"put root_dir on ext4, xfs, btrfs or tmpfs (a volume, if the node itself runs in a container)")
	}
	return ok(name, fmt.Sprintf("%s; root_dir %s on %s", detail, h.Config.RootDir, fsName(magic)))
}

// overlayModule returns the overlay module file of the running kernel, if any.
func (h *Host) overlayModule() string {
	rel, err := os.ReadFile(h.path("/proc/sys/kernel/osrelease"))
	if err != nil {
		return ""
	}
	m, _ := filepath.Glob(h.path(filepath.Join("/lib/modules", strings.TrimSpace(string(rel)), "kernel/fs/overlayfs/overlay.ko*")))
	if len(m) == 0 {
		return ""
	}
	return filepath.Base(m[0])
}

func hasFilesystem(list, fs string) bool {
	for _, l := range strings.Split(list, "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && f[len(f)-1] == fs {
			return true
		}
	}
	return false
}

// UserNamespaces checks that the kernel lets processes create user
// namespaces. crid does not run pods in user namespaces yet, so a node
// without them only loses that future feature.
func (h *Host) UserNamespaces() Result {
	const name = "user namespaces"
	b, err := os.ReadFile(h.path("/proc/sys/user/max_user_namespaces"))
	if err != nil {
		return warn(name, "the kernel has no user namespaces (no /proc/sys/user/max_user_namespaces)",
			"pods with hostUsers: false need a kernel built with CONFIG_USER_NS")
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return warn(name, fmt.Sprintf("max_user_namespaces %q is not a number", strings.TrimSpace(string(b))), "check the kernel's user.max_user_namespaces")
	}
	if n == 0 {
		return warn(name, "disabled (user.max_user_namespaces = 0)", "sysctl -w user.max_user_namespaces=15000 for pods with hostUsers: false")
	}
	return ok(name, fmt.Sprintf("user.max_user_namespaces = %d", n))
}

// IdmappedMounts tries an idmapped mount of a scratch tmpfs (kernel 6.3+).
// Only a warning: without it pods in user namespaces still run when
// root_dir's filesystem can be idmapped (the daemon checks that at start),
// but tmpfs volumes cannot be mounted in them.
func (h *Host) IdmappedMounts() Result {
	const name = "idmapped mounts"
	if err := h.TryIdmap(); err != nil {
		return warn(name, fmt.Sprintf("an idmapped mount of a scratch tmpfs failed: %v", err),
			"pods with hostUsers: false need root_dir on a filesystem that can be idmapped (ext4, xfs, btrfs); their /dev/shm and /etc files are then owned by their mapped root, and tmpfs volumes (memory-backed emptyDir) in them need a kernel 6.3 or newer")
	}
	return ok(name, "a scratch tmpfs mounted idmapped and removed")
}

// libDirs are where the dynamic loader finds libseccomp on Debian and others.
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// Seccomp checks the kernel's seccomp filters (RuntimeDefault profiles)
// and the libseccomp that crid-monitor is linked against.
func (h *Host) Seccomp() Result {
	const name = "seccomp"
	status, err := os.ReadFile(h.path("/proc/self/status"))
	if err != nil || !strings.Contains(string(status), "\nSeccomp:") {
		return fail(name, "the kernel has no seccomp", "use a kernel built with CONFIG_SECCOMP and CONFIG_SECCOMP_FILTER")
	}
	actions, err := os.ReadFile(h.path("/proc/sys/kernel/seccomp/actions_avail"))
	if err != nil {
		return fail(name, "the kernel has seccomp but no seccomp filters", "use a kernel built with CONFIG_SECCOMP_FILTER")
	}
	var lib string
	for _, d := range libDirs {
		if m, _ := filepath.Glob(h.path(filepath.Join(d, "libseccomp.so.2*"))); len(m) > 0 {
			lib = filepath.Join(d, filepath.Base(m[len(m)-1]))
			break
		}
	}
	if lib == "" {
		return fail(name, "libseccomp.so.2 not found: crid-monitor cannot start", "apt-get install libseccomp2")
	}
	return ok(name, fmt.Sprintf("filters (%s); %s", strings.TrimSpace(string(actions)), lib))
}

// AppArmor reports the node's AppArmor as crid uses it: where the kernel
// enforces it, RuntimeDefault containers run under crid-default, which
// crid loads with apparmor_parser (Debian's apparmor) at the first need.
func (h *Host) AppArmor() Result {
	const name = "apparmor"
	// The daemon runs apparmor_parser from PATH; the check looks where
	// Debian's package puts it, under Root.
	st := apparmor.New(h.Root, h.path("/usr/sbin/apparmor_parser")).Status()
	switch {
	case !st.Enabled && strings.Contains(st.Reason, "securityfs"):
		return warn(name, st.String(), "mount -t securityfs securityfs /sys/kernel/security (systemd does at boot)")
	case !st.Enabled:
		return ok(name, st.String())
	case st.Parser == "":
		return fail(name, st.String(), "apt-get install apparmor")
	}
	return ok(name, st.String())
}

// fsName names common statfs magics.
func fsName(magic int64) string {
	switch magic {
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	default:
		return fmt.Sprintf("filesystem 0x%x", magic)
	}
}

// fsType is the statfs magic of the filesystem holding path.
func fsType(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return int64(st.Type), nil
}

// existingAncestor is path or its nearest existing parent: root_dir is
// created at the first start, on the filesystem of that parent.
func existingAncestor(path string) string {
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		if exists(p) || p == "/" || p == "." {
			return p
		}
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
