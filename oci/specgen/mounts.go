package specgen

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// setMounts adds the config's mounts and the pod's files. A host path is
// followed through symlinks, as kubelet and critest expect; a container
// path is resolved inside the rootfs, so a symlink in the image cannot send
// a mount outside it.
func setMounts(s *specs.Spec, in Input) error {
	taken := map[string]bool{}
	var mounts []specs.Mount
	for i, m := range in.Config.Mounts {
		field := fmt.Sprintf("mounts[%d]", i)
		if !filepath.IsAbs(m.ContainerPath) {
			return fmt.Errorf("%w: %s.container_path %q is not absolute", ErrInvalid, field, m.ContainerPath)
		}
		extra, err := CheckMountOptions(m.MountOptions)
		if err != nil {
			return fmt.Errorf("%w: %s.mount_options: %v", ErrInvalid, field, err)
		}
		dst, err := containerPath(in.Rootfs, m.ContainerPath)
		if err != nil {
			return fmt.Errorf("%w: %s.container_path: %v", ErrInvalid, field, err)
		}
		if IsImageVolume(m) {
			src, err := imageVolumeSource(in, i, m)
			if err != nil {
				return err
			}
			// Read-only by its nature; never propagating: nothing is
			// ever mounted below an image.
			opts := []string{"rbind", "rprivate", "ro"}
			if m.RecursiveReadOnly {
				opts[2] = "rro"
			}
			taken[dst] = true
			mounts = append(mounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: append(opts, extra...)})
			continue
		}
		src, err := hostSource(m.HostPath)
		if err != nil {
			return fmt.Errorf("%w: %s.host_path: %v", ErrInvalid, field, err)
		}
		opts := []string{"rbind"}
		switch m.Propagation {
		case runtime.MountPropagation_PROPAGATION_PRIVATE:
			opts = append(opts, "rprivate")
		case runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			if err := needPropagation(src, "shared", "slave"); err != nil {
				return fmt.Errorf("%w: %s.propagation: %v", ErrInvalid, field, err)
			}
			opts = append(opts, "rslave")
			// Host mounts reach the container only if its root is a
			// slave (or shared) mount too.
			if s.Linux.RootfsPropagation != "rshared" {
				s.Linux.RootfsPropagation = "rslave"
			}
		case runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			if err := needPropagation(src, "shared"); err != nil {
				return fmt.Errorf("%w: %s.propagation: %v", ErrInvalid, field, err)
			}
			opts = append(opts, "rshared")
			s.Linux.RootfsPropagation = "rshared"
		default:
			return fmt.Errorf("%w: %s.propagation: unknown mode %d", ErrInvalid, field, m.Propagation)
		}
		switch {
		case m.RecursiveReadOnly:
			if !m.Readonly || m.Propagation != runtime.MountPropagation_PROPAGATION_PRIVATE {
				return fmt.Errorf("%w: %s.recursive_read_only needs readonly and private propagation", ErrInvalid, field)
			}
			opts = append(opts, "rro")
		case m.Readonly:
			opts = append(opts, "ro")
		case slices.Contains(extra, "ro"):
		default:
			opts = append(opts, "rw")
		}
		taken[dst] = true
		mounts = append(mounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: append(opts, extra...)})
	}

	pod := []struct{ dst, src string }{
		{"/etc/hosts", in.Pod.Hosts},
		{"/etc/resolv.conf", in.Pod.ResolvConf},
		{"/etc/hostname", in.Pod.Hostname},
	}
	for _, f := range pod {
		if f.src == "" || taken[f.dst] {
			continue
		}
		opts := []string{"rbind", "rprivate", "rw"}
		if in.Config.GetLinux().GetSecurityContext().GetReadonlyRootfs() {
			opts[2] = "ro"
		}
		mounts = append(mounts, specs.Mount{Destination: f.dst, Type: "bind", Source: f.src, Options: opts})
	}
	if !taken["/dev/shm"] {
		if in.Pod.Shm != "" {
			mounts = append(mounts, specs.Mount{Destination: "/dev/shm", Type: "bind", Source: in.Pod.Shm, Options: []string{"rbind", "rprivate", "rw"}})
		} else {
			mounts = append(mounts, specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}})
		}
	}
	// Parents before children, whatever order the config lists them in.
	sort.SliceStable(mounts, func(i, j int) bool {
		return strings.Count(filepath.Clean(mounts[i].Destination), "/") < strings.Count(filepath.Clean(mounts[j].Destination), "/")
	})
	// A config mount over a default one (say /dev/shm or /sys) replaces it.
	base := s.Mounts[:0]
	for _, m := range s.Mounts {
		if !taken[m.Destination] {
			base = append(base, m)
		}
	}
	s.Mounts = append(base, mounts...)
	// In a user namespace of the pod's, every bind mount is idmapped
	// through it (runc's "idmap", no mappings: the joined namespace's), so
	// host files owned by 0 are owned by 0 inside, as without one. Image
	// volumes are read-only overlays, which cannot be idmapped: their
	// files show as the overflow ID, readable as their modes allow. The
	// pod's own files and /dev/shm, when already owned by its mapped root,
	// need no idmap.
	if p := in.Pod.Namespaces[specs.UserNamespace]; p != "" && p != "host" {
		for i := range s.Mounts {
			m := &s.Mounts[i]
			if m.Type == "bind" && !isImageVolumeSource(in, m.Source) && !isOwnedPodSource(in, m.Source) && !slices.Contains(m.Options, "idmap") {
				m.Options = append(m.Options, "idmap")
			}
		}
		// KEP-5607: on the node's network, whose namespace belongs to the
		// node's user namespace, the kernel refuses a new sysfs (EPERM):
		// the node's /sys is bound instead, read-only all the way down.
		if in.Pod.Namespaces[specs.NetworkNamespace] == "host" {
			for i := range s.Mounts {
				if s.Mounts[i].Type == "sysfs" {
					s.Mounts[i] = specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "rro", "nosuid", "noexec", "nodev"}}
				}
			}
		}
	}
	return nil
}

// isOwnedPodSource reports whether src is one of the pod's files or its
// /dev/shm, owned by the pod's mapped root.
func isOwnedPodSource(in Input, src string) bool {
	if !in.Pod.FilesOwned || src == "" {
		return false
	}
	return src == in.Pod.Hosts || src == in.Pod.ResolvConf || src == in.Pod.Hostname || src == in.Pod.Shm
}

// isImageVolumeSource reports whether src is one of the container's image
// volumes.
func isImageVolumeSource(in Input, src string) bool {
	for _, v := range in.ImageVolumes {
		if src == v || strings.HasPrefix(src, v+"/") {
			return true
		}
	}
	return false
}

// hostSource resolves a mount's host path through symlinks. A missing
// path is created as a directory, as Docker and containerd do.
func hostSource(p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("%q is not absolute", p)
	}
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return "", err
		}
	}
	return filepath.EvalSymlinks(p)
}

// containerPath resolves dst inside rootfs and returns it as an absolute
// path in the container.
func containerPath(rootfs, dst string) (string, error) {
	full, err := securejoin.SecureJoin(rootfs, dst)
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(rootfs, full)
	if err != nil {
		return "", err
	}
	return filepath.Join("/", rel), nil
}

// needPropagation checks that the mount holding p has one of the given
// propagation modes: a shared mount into a container needs a shared (or,
// for rslave, slave) source.
func needPropagation(p string, modes ...string) error {
	info, err := mountInfoOf(p)
	if err != nil {
		return err
	}
	for _, mode := range modes {
		if strings.Contains(info, mode+":") {
			return nil
		}
	}
	return fmt.Errorf("the mount holding %s is not %s", p, strings.Join(modes, " or "))
}

// mountInfoOf returns the optional fields of the mount that holds p.
func mountInfoOf(p string) (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	best, fields := "", ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 7 {
			continue
		}
		mp := unescapeMount(f[4])
		if (p == mp || strings.HasPrefix(p, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best = mp
			fields = strings.Join(f[6:], " ")
		}
	}
	if best == "" {
		return "", fmt.Errorf("no mount holds %s", p)
	}
	return fields, nil
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// setDevices adds the config's devices (a host directory adds every device
// under it) and, for privileged containers, all the host's.
func setDevices(s *specs.Spec, devs []*runtime.Device, privileged bool) error {
	if privileged {
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
		hostDevs, err := devicesUnder("/dev")
		if err != nil {
			return err
		}
		for _, d := range hostDevs {
			s.Linux.Devices = append(s.Linux.Devices, d.dev(d.path))
		}
	}
	for i, d := range devs {
		// The spec's device paths are created inside the rootfs: only
		// a clean absolute path says where.
		if !filepath.IsAbs(d.ContainerPath) || strings.ContainsRune(d.ContainerPath, 0) {
			return fmt.Errorf("%w: devices[%d].container_path %q is not an absolute path", ErrInvalid, i, d.ContainerPath)
		}
		ctrPath := filepath.Clean(d.ContainerPath)
		found, err := devicesUnder(d.HostPath)
		if err != nil {
			return fmt.Errorf("%w: devices[%d].host_path: %v", ErrInvalid, i, err)
		}
		perms := d.Permissions
		if perms == "" {
			perms = "rwm"
		}
		if strings.Trim(perms, "rwm") != "" {
			return fmt.Errorf("%w: devices[%d].permissions %q is not a subset of rwm", ErrInvalid, i, d.Permissions)
		}
		for _, hd := range found {
			dst := ctrPath
			if hd.rel != "." {
				dst = filepath.Join(ctrPath, hd.rel)
			}
			s.Linux.Devices = append(s.Linux.Devices, hd.dev(dst))
			if !privileged {
				major, minor := hd.major, hd.minor
				s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{
					Allow: true, Type: hd.typ, Major: &major, Minor: &minor, Access: perms,
				})
			}
		}
	}
	return nil
}

type hostDevice struct {
	path         string
	rel          string // path relative to the (resolved) path looked under
	typ          string
	major, minor int64
	mode         os.FileMode
	uid, gid     uint32
}

func (h hostDevice) dev(dst string) specs.LinuxDevice {
	mode := h.mode.Perm()
	return specs.LinuxDevice{Path: dst, Type: h.typ, Major: h.major, Minor: h.minor, FileMode: &mode, UID: &h.uid, GID: &h.gid}
}

// devicesUnder returns the device nodes at p, or under it when p is a
// directory. p may be a symlink (/dev/disk/by-id/...): each device's rel
// is taken from where it leads, so a container path is never joined with
// "..".
func devicesUnder(p string) ([]hostDevice, error) {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return nil, err
	}
	var out []hostDevice
	err = filepath.WalkDir(real, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			if path == real {
				return err
			}
			return nil
		}
		if d.IsDir() && path != real && (d.Name() == "pts" || d.Name() == "shm" || d.Name() == "mqueue") {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if unix.Lstat(path, &st) != nil {
			return nil
		}
		var typ string
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFCHR:
			typ = "c"
		case unix.S_IFBLK:
			typ = "b"
		default:
			return nil
		}
		dev := uint64(st.Rdev)
		rel, err := filepath.Rel(real, path)
		if err != nil {
			return err
		}
		out = append(out, hostDevice{path: path, rel: rel, typ: typ, major: int64(unix.Major(dev)), minor: int64(unix.Minor(dev)),
			mode: os.FileMode(st.Mode & 0o777), uid: st.Uid, gid: st.Gid})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no device", p)
	}
	return out, nil
}
