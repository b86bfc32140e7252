package specgen

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ErrInvalid marks a container config that cannot be turned into a spec.
var ErrInvalid = errors.New("invalid container config")

// Image is what a container takes from its image's config.
type Image struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
	StopSignal string
}

// Pod is what a container takes from its pod sandbox.
type Pod struct {
	// Namespace paths by type: a path to join, "host" for the node's.
	// A PID entry of "" gives the container a namespace of its own.
	Namespaces map[specs.LinuxNamespaceType]string
	// Files are the pod's /etc/hosts, /etc/resolv.conf and /etc/hostname,
	// bind-mounted unless the container mounts its own there.
	Hosts, ResolvConf, Hostname string
	// Shm is the pod's /dev/shm ("" for a private tmpfs).
	Shm string
	// FilesOwned says the pod's files and Shm are owned by the pod's
	// mapped root (a kernel before 6.3 cannot idmap their tmpfs): they
	// are bind-mounted without idmap.
	FilesOwned   bool
	CgroupParent string
	Config       *runtime.PodSandboxConfig
}

// Input is everything Build needs for one container.
type Input struct {
	Config *runtime.ContainerConfig
	Image  Image
	Pod    Pod
	// Rootfs is the mounted root filesystem.
	Rootfs string
	// ImageVolumes are the host paths of the image volumes the daemon
	// mounted, by index in Config.Mounts.
	ImageVolumes map[int]string
	// CgroupsPath is the container's cgroup (its leaf ends in its ID).
	CgroupsPath string
	// PrivateCgroupNamespace gives a non-privileged container a cgroup
	// namespace of its own, as containerd and CRI-O do on cgroup v2: it
	// sees its own cgroup as the root of /sys/fs/cgroup, not every other
	// pod's. (On v1 containers share the node's, as there.)
	PrivateCgroupNamespace bool
	// HostCapabilities are the capabilities crid itself holds: what a
	// privileged container or "ALL" gets.
	HostCapabilities []string
	// SeccompDefault returns the RuntimeDefault profile for a spec.
	SeccompDefault func(*specs.Spec) (*specs.LinuxSeccomp, error)
	// SeccompLocalhost reads a Localhost profile from the node.
	SeccompLocalhost func(path string, s *specs.Spec) (*specs.LinuxSeccomp, error)
	// AppArmorProfile is the profile the container's processes (and its
	// execs) run under, "" for unconfined: what AppArmorProfile chose.
	AppArmorProfile string
}

// Build returns the runtime spec of a container.
func Build(in Input) (*specs.Spec, error) {
	cfg := in.Config
	sc := cfg.GetLinux().GetSecurityContext()
	s := Base()
	s.Root = &specs.Root{Path: in.Rootfs, Readonly: sc.GetReadonlyRootfs()}
	s.Process.Terminal = cfg.Tty
	s.Linux.CgroupsPath = in.CgroupsPath
	s.Annotations = map[string]string{}
	for k, v := range cfg.Annotations {
		s.Annotations[k] = v
	}

	args, err := commandLine(cfg, in.Image)
	if err != nil {
		return nil, err
	}
	s.Process.Args = args
	s.Process.Env = mergeEnv(in.Image.Env, cfg.Envs)
	cwdField := "working_dir"
	if cfg.WorkingDir != "" {
		s.Process.Cwd = cfg.WorkingDir
	} else if in.Image.WorkingDir != "" {
		s.Process.Cwd, cwdField = in.Image.WorkingDir, "the image's WorkingDir"
	}
	if !filepath.IsAbs(s.Process.Cwd) {
		return nil, fmt.Errorf("%w: %s %q is not absolute", ErrInvalid, cwdField, s.Process.Cwd)
	}
	if err := noNUL(cwdField, s.Process.Cwd, s.Process.Args, s.Process.Env); err != nil {
		return nil, err
	}
	if err := setUser(s, in); err != nil {
		return nil, err
	}
	for ns, path := range in.Pod.Namespaces {
		SetNamespace(s, ns, path)
	}
	if in.PrivateCgroupNamespace && !sc.GetPrivileged() {
		SetNamespace(s, specs.CgroupNamespace, "")
	}
	if err := setSecurity(s, in); err != nil {
		return nil, err
	}
	if err := setMounts(s, in); err != nil {
		return nil, err
	}
	if err := setDevices(s, cfg.Devices, sc.GetPrivileged()); err != nil {
		return nil, err
	}
	if err := setResources(s, cfg.GetLinux().GetResources()); err != nil {
		return nil, err
	}
	return s, nil
}

// noNUL refuses a NUL in the working dir, the command line or the
// environment: execve and chdir take C strings, so a NUL would silently cut
// the value short rather than fail.
func noNUL(cwdField, cwd string, args, env []string) error {
	if strings.ContainsRune(cwd, 0) {
		return fmt.Errorf("%w: %s %q contains a NUL byte", ErrInvalid, cwdField, cwd)
	}
	for i, a := range args {
		if strings.ContainsRune(a, 0) {
			return fmt.Errorf("%w: command/args[%d] %q contains a NUL byte", ErrInvalid, i, a)
		}
	}
	for i, e := range env {
		if strings.ContainsRune(e, 0) {
			return fmt.Errorf("%w: envs[%d] %q contains a NUL byte", ErrInvalid, i, e)
		}
	}
	return nil
}

// commandLine merges the config's command and args with the image's
// entrypoint and cmd as kubelet documents: a command replaces the
// entrypoint and drops the image's cmd; args replace the cmd.
func commandLine(cfg *runtime.ContainerConfig, img Image) ([]string, error) {
	entrypoint, cmd := img.Entrypoint, img.Cmd
	if len(cfg.Command) > 0 {
		entrypoint, cmd = cfg.Command, nil
	}
	if len(cfg.Args) > 0 {
		cmd = cfg.Args
	}
	args := append(append([]string(nil), entrypoint...), cmd...)
	if len(args) == 0 {
		return nil, fmt.Errorf("%w: no command: neither the config nor the image gives one", ErrInvalid)
	}
	return args, nil
}

// mergeEnv lays the config's variables over the image's, keeping order.
func mergeEnv(image []string, cfg []*runtime.KeyValue) []string {
	out := append([]string(nil), image...)
	idx := map[string]int{}
	for i, e := range out {
		k, _, _ := strings.Cut(e, "=")
		idx[k] = i
	}
	for _, kv := range cfg {
		e := kv.Key + "=" + string(kv.Value)
		if i, ok := idx[kv.Key]; ok {
			out[i] = e
			continue
		}
		idx[kv.Key] = len(out)
		out = append(out, e)
	}
	if _, ok := idx["PATH"]; !ok {
		out = append([]string{DefaultPath}, out...)
	}
	return out
}

// setUser resolves the user the process runs as: run_as_username or
// run_as_user (with run_as_group), else the image's USER, looked up in the
// container's own /etc/passwd and /etc/group.
func setUser(s *specs.Spec, in Input) error {
	sc := in.Config.GetLinux().GetSecurityContext()
	spec := in.Image.User
	switch {
	case sc.GetRunAsUsername() != "":
		spec = sc.GetRunAsUsername()
	case sc.GetRunAsUser() != nil:
		spec = strconv.FormatInt(sc.GetRunAsUser().GetValue(), 10)
	}
	if sc.GetRunAsGroup() != nil {
		if sc.GetRunAsUser() == nil && sc.GetRunAsUsername() == "" {
			return fmt.Errorf("%w: linux.security_context.run_as_group is set without run_as_user or run_as_username", ErrInvalid)
		}
		name, _, _ := strings.Cut(spec, ":")
		spec = name + ":" + strconv.FormatInt(sc.GetRunAsGroup().GetValue(), 10)
	}
	if spec == "" {
		spec = "0"
	}
	passwd, err := imageUserFile(in.Rootfs, "/etc/passwd")
	if err != nil {
		return err
	}
	group, err := imageUserFile(in.Rootfs, "/etc/group")
	if err != nil {
		return err
	}
	u, err := user.GetExecUser(spec, &user.ExecUser{Home: "/"}, passwd, group)
	if err != nil {
		return fmt.Errorf("%w: user %q: %v", ErrInvalid, spec, err)
	}
	gids := map[uint32]bool{}
	var additional []uint32
	add := func(g uint32) {
		if !gids[g] {
			gids[g] = true
			additional = append(additional, g)
		}
	}
	add(uint32(u.Gid))
	if sc.GetSupplementalGroupsPolicy() != runtime.SupplementalGroupsPolicy_Strict {
		for _, g := range u.Sgids {
			add(uint32(g))
		}
	}
	for _, g := range sc.GetSupplementalGroups() {
		add(uint32(g))
	}
	s.Process.User = specs.User{UID: uint32(u.Uid), GID: uint32(u.Gid), AdditionalGids: additional}
	if !hasEnv(s.Process.Env, "HOME") {
		s.Process.Env = append(s.Process.Env, "HOME="+u.Home)
	}
	return nil
}

// imageUserFile reads one of the image's user files (see readImageFile);
// a missing one is a nil io.Reader, as user.GetExecUser wants it.
func imageUserFile(rootfs, path string) (io.Reader, error) {
	b, err := readImageFile(rootfs, path)
	if err != nil || b == nil {
		return nil, err
	}
	return bytes.NewReader(b), nil
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}

// sortedKeys returns m's keys in order, for deterministic specs.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
