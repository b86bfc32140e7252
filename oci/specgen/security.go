package specgen

import (
	"fmt"
	"slices"
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
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
	return checkAppArmor(sc)
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

// AppArmorEnabled is false on kernels without AppArmor, as on this
// project's test machines; a set variable lets tests and future hosts
// say otherwise.
var AppArmorEnabled = fileExists("/sys/module/apparmor/parameters/enabled")

// checkAppArmor refuses a Localhost AppArmor profile where the kernel has
// none: the container would silently run unconfined. RuntimeDefault and
// Unconfined are both "no profile" on such a host.
func checkAppArmor(sc *runtime.LinuxContainerSecurityContext) error {
	typ := sc.GetApparmor().GetProfileType()
	name := sc.GetApparmor().GetLocalhostRef()
	if sc.GetApparmor() == nil {
		//lint:ignore SA1019 older kubelets and critest still send the deprecated field
		switch p := sc.GetApparmorProfile(); {
		case strings.HasPrefix(p, "localhost/"):
			typ, name = runtime.SecurityProfile_Localhost, strings.TrimPrefix(p, "localhost/")
		case p == "" || p == "runtime/default" || p == "unconfined":
			return nil
		default:
			return fmt.Errorf("%w: linux.security_context.apparmor_profile: unknown profile %q", ErrInvalid, p)
		}
	}
	if typ == runtime.SecurityProfile_Localhost && !AppArmorEnabled {
		return fmt.Errorf("%w: AppArmor profile %q requested, but AppArmor is not enabled in this kernel", ErrInvalid, name)
	}
	if typ == runtime.SecurityProfile_Localhost {
		return fmt.Errorf("%w: AppArmor profiles are not supported by crid yet (profile %q)", ErrInvalid, name)
	}
	return nil
}
