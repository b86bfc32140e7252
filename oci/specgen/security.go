package specgen

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/apparmor"
)

// setSecurity applies capabilities, privileged mode, no_new_privs, masked
// and read-only paths, seccomp and AppArmor.
func setSecurity(s *specs.Spec, in Input) error {
	sc := in.Config.GetLinux().GetSecurityContext()
	caps, err := capabilities(sc, in.HostCapabilities)
	if err != nil {
		return err
	}
	s.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding: caps, Effective: caps, Permitted: caps,
	}
	if amb := sc.GetCapabilities().GetAddAmbientCapabilities(); len(amb) > 0 {
		var ambient []string
		for _, c := range amb {
			name := capName(c)
			if !slices.Contains(caps, name) {
				return fmt.Errorf("%w: ambient capability %s is not in the container's set", ErrInvalid, c)
			}
			ambient = append(ambient, name)
		}
		s.Process.Capabilities.Ambient = ambient
		s.Process.Capabilities.Inheritable = ambient
	}
	s.Process.NoNewPrivileges = sc.GetNoNewPrivs()

	if sc.GetPrivileged() {
		s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
		for i := range s.Mounts {
			if s.Mounts[i].Type == "sysfs" || s.Mounts[i].Type == "cgroup" {
				s.Mounts[i].Options = slices.DeleteFunc(s.Mounts[i].Options, func(o string) bool { return o == "ro" })
				s.Mounts[i].Options = append(s.Mounts[i].Options, "rw")
			}
		}
	} else if len(sc.GetMaskedPaths()) > 0 || len(sc.GetReadonlyPaths()) > 0 {
		// kubelet sends the lists (its defaults, or empty ones for an
		// Unmasked proc mount); crictl sends none and gets the defaults.
		s.Linux.MaskedPaths = append([]string(nil), sc.GetMaskedPaths()...)
		s.Linux.ReadonlyPaths = append([]string(nil), sc.GetReadonlyPaths()...)
	}

	if err := setSeccomp(s, in); err != nil {
		return err
	}
	s.Process.ApparmorProfile = in.AppArmorProfile
	// SELinux options get no label (see SELinuxNotApplied): the spec keeps
	// none, and the caller reports them.
	return nil
}

// capabilities computes the container's capability set as containerd
// does: the defaults, or every capability crid holds for privileged
// containers and "ALL"; then drops and adds.
func capabilities(sc *runtime.LinuxContainerSecurityContext, host []string) ([]string, error) {
	if sc.GetPrivileged() {
		return append([]string(nil), host...), nil
	}
	add, drop := sc.GetCapabilities().GetAddCapabilities(), sc.GetCapabilities().GetDropCapabilities()
	caps := append([]string(nil), DefaultCapabilities...)
	if slices.ContainsFunc(add, isAll) {
		caps = append([]string(nil), host...)
	}
	if slices.ContainsFunc(drop, isAll) {
		caps = nil
	}
	for _, c := range add {
		if isAll(c) {
			continue
		}
		name := capName(c)
		if !validCap(name) {
			return nil, fmt.Errorf("%w: linux.security_context.capabilities.add_capabilities: unknown capability %q", ErrInvalid, c)
		}
		if !slices.Contains(caps, name) {
			caps = append(caps, name)
		}
	}
	for _, c := range drop {
		if isAll(c) {
			continue
		}
		name := capName(c)
		if !validCap(name) {
			return nil, fmt.Errorf("%w: linux.security_context.capabilities.drop_capabilities: unknown capability %q", ErrInvalid, c)
		}
		caps = slices.DeleteFunc(caps, func(x string) bool { return x == name })
	}
	return caps, nil
}

func isAll(c string) bool { return strings.EqualFold(c, "ALL") }

// capName accepts "NET_ADMIN" and "CAP_NET_ADMIN", in any case.
func capName(c string) string {
	c = strings.ToUpper(c)
	if !strings.HasPrefix(c, "CAP_") {
		c = "CAP_" + c
	}
	return c
}

// knownCaps are the capabilities the kernel headers crid was built with
// know; a name outside them is a typo, refused rather than ignored.
var knownCaps = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range capability.ListKnown() {
		m["CAP_"+strings.ToUpper(c.String())] = true
	}
	return m
}()

func validCap(name string) bool { return knownCaps[name] }

// setSeccomp applies the container's seccomp profile: RuntimeDefault from
// the maintained default profile, Localhost from a file on the node,
// Unconfined (or nothing asked) without a filter. Privileged containers
// run unconfined.
func setSeccomp(s *specs.Spec, in Input) error {
	sc := in.Config.GetLinux().GetSecurityContext()
	if sc.GetPrivileged() {
		return nil
	}
	typ, ref := sc.GetSeccomp().GetProfileType(), sc.GetSeccomp().GetLocalhostRef()
	if sc.GetSeccomp() == nil {
		//lint:ignore SA1019 older kubelets and critest still send the deprecated field
		switch p := sc.GetSeccompProfilePath(); {
		case p == "runtime/default" || p == "docker/default":
			typ = runtime.SecurityProfile_RuntimeDefault
		case strings.HasPrefix(p, "localhost/"):
			typ, ref = runtime.SecurityProfile_Localhost, strings.TrimPrefix(p, "localhost/")
		case p == "" || p == "unconfined":
			typ = runtime.SecurityProfile_Unconfined
		default:
			return fmt.Errorf("%w: linux.security_context.seccomp_profile_path: unknown profile %q", ErrInvalid, p)
		}
	}
	var err error
	switch typ {
	case runtime.SecurityProfile_Unconfined:
		return nil
	case runtime.SecurityProfile_RuntimeDefault:
		s.Linux.Seccomp, err = in.SeccompDefault(s)
	case runtime.SecurityProfile_Localhost:
		if !strings.HasPrefix(ref, "/") {
			return fmt.Errorf("%w: linux.security_context.seccomp.localhost_ref %q is not an absolute path", ErrInvalid, ref)
		}
		s.Linux.Seccomp, err = in.SeccompLocalhost(ref, s)
	}
	if err != nil {
		return fmt.Errorf("%w: seccomp profile: %v", ErrInvalid, err)
	}
	return nil
}

// AppArmorHost is the node's AppArmor as profile selection needs it
// (*apparmor.Host; a fake in tests).
type AppArmorHost interface {
	Enabled() bool
	Loaded(name string) (bool, error)
	EnsureDefault(ctx context.Context) error
}

// AppArmorProfile picks the AppArmor profile a container runs under, ""
// meaning unconfined, as containerd does:
//   - Unconfined is unconfined;
//   - RuntimeDefault, or nothing asked for a non-privileged container, is
//     crid-default, loaded the first time it is needed; a privileged
//     container asking nothing is unconfined;
//   - Localhost names a profile that must be loaded already.
//
// The apparmor field wins over the deprecated apparmor_profile string
// ("runtime/default", "unconfined", "localhost/<name>"). On a node without
// AppArmor (host nil or not enabled) a container that asks nothing runs
// unconfined, and any profile asked other than Unconfined (RuntimeDefault
// too, as containerd and kubelet's own admission do) is refused rather than
// dropped.
func AppArmorProfile(ctx context.Context, sc *runtime.LinuxContainerSecurityContext, host AppArmorHost) (string, error) {
	typ, name, field, err := appArmorRequest(sc)
	if err != nil {
		return "", err
	}
	if host == nil || !host.Enabled() {
		switch {
		case typ == runtime.SecurityProfile_Localhost:
			return "", fmt.Errorf("%w: %s: AppArmor profile %q requested, but AppArmor is not enabled on this node", ErrInvalid, field, name)
		case typ == runtime.SecurityProfile_RuntimeDefault && field != "":
			return "", fmt.Errorf("%w: %s: the runtime's default AppArmor profile requested, but AppArmor is not enabled on this node", ErrInvalid, field)
		}
		return "", nil
	}
	switch typ {
	case runtime.SecurityProfile_Unconfined:
		return "", nil
	case runtime.SecurityProfile_Localhost:
		loaded, err := host.Loaded(name)
		if err != nil {
			return "", err
		}
		if !loaded {
			return "", fmt.Errorf("%w: %s: AppArmor profile %q is not loaded (load it with apparmor_parser first)", ErrInvalid, field, name)
		}
		return name, nil
	}
	if field == "" && sc.GetPrivileged() {
		return "", nil
	}
	if err := host.EnsureDefault(ctx); err != nil {
		return "", err
	}
	return apparmor.DefaultProfile, nil
}

// appArmorRequest reads what a container asks of AppArmor and the field
// that asked it ("" when nothing was asked, which reads as RuntimeDefault).
func appArmorRequest(sc *runtime.LinuxContainerSecurityContext) (runtime.SecurityProfile_ProfileType, string, string, error) {
	if p := sc.GetApparmor(); p != nil {
		const field = "linux.security_context.apparmor"
		switch p.GetProfileType() {
		case runtime.SecurityProfile_RuntimeDefault, runtime.SecurityProfile_Unconfined:
			return p.GetProfileType(), "", field, nil
		case runtime.SecurityProfile_Localhost:
			// kubelet sends the bare name; critest sends "localhost/<name>".
			name := strings.TrimPrefix(p.GetLocalhostRef(), "localhost/")
			if err := profileName(field+".localhost_ref", name); err != nil {
				return 0, "", "", err
			}
			return runtime.SecurityProfile_Localhost, name, field + ".localhost_ref", nil
		default:
			return 0, "", "", fmt.Errorf("%w: %s.profile_type: unknown type %d", ErrInvalid, field, p.GetProfileType())
		}
	}
	const field = "linux.security_context.apparmor_profile"
	//lint:ignore SA1019 older kubelets and critest still send the deprecated field
	switch p := sc.GetApparmorProfile(); {
	case p == "":
		return runtime.SecurityProfile_RuntimeDefault, "", "", nil
	case p == "runtime/default":
		return runtime.SecurityProfile_RuntimeDefault, "", field, nil
	case p == "unconfined":
		return runtime.SecurityProfile_Unconfined, "", field, nil
	case strings.HasPrefix(p, "localhost/"):
		name := strings.TrimPrefix(p, "localhost/")
		if err := profileName(field, name); err != nil {
			return 0, "", "", err
		}
		return runtime.SecurityProfile_Localhost, name, field, nil
	default:
		return 0, "", "", fmt.Errorf("%w: %s: unknown profile %q (want runtime/default, unconfined or localhost/<name>)", ErrInvalid, field, p)
	}
}

// profileName refuses names the kernel could not hold: empty, or with a
// newline or NUL (libcontainer writes "exec <name>" to a procfs file).
func profileName(field, name string) error {
	if name == "" {
		return fmt.Errorf("%w: %s: Localhost AppArmor profile without a name", ErrInvalid, field)
	}
	if strings.ContainsAny(name, "\n\x00") {
		return fmt.Errorf("%w: %s: AppArmor profile name %q contains a newline or NUL", ErrInvalid, field, name)
	}
	return nil
}

// SELinuxNotApplied says which SELinux options were asked and not applied,
// "" when none are set. crid applies no SELinux labels: the nodes it runs
// on have no SELinux, where containerd and CRI-O ignore the options too.
// Refusing them is not an option: kubelet passes a pod's seLinuxOptions
// whatever the node, and Kubernetes' conformance specs set them (the
// EmptyDir specs ask level "s0"). So crid runs the pod and reports the
// options it did not apply, in its log and in the verbose status, rather
// than dropping them silently.
func SELinuxNotApplied(field string, o *runtime.SELinuxOption) string {
	if o.GetUser() == "" && o.GetRole() == "" && o.GetType() == "" && o.GetLevel() == "" {
		return ""
	}
	return fmt.Sprintf("%s (user %q, role %q, type %q, level %q) not applied: SELinux is not enabled on this node",
		field, o.GetUser(), o.GetRole(), o.GetType(), o.GetLevel())
}
