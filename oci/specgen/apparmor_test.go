//lint:file-ignore SA1019 the deprecated apparmor_profile string is still sent by older kubelets and critest, and honoured

package specgen

import (
	"context"
	"errors"
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeAppArmor is a node's AppArmor: enabled or not, with some profiles
// loaded; it counts the loads of the default profile.
type fakeAppArmor struct {
	enabled      bool
	loaded       map[string]bool
	defaultLoads int
	loadErr      error
}

func (f *fakeAppArmor) Enabled() bool                    { return f.enabled }
func (f *fakeAppArmor) Loaded(name string) (bool, error) { return f.loaded[name], nil }
func (f *fakeAppArmor) EnsureDefault(context.Context) error {
	if f.loadErr != nil {
		return f.loadErr
	}
	f.defaultLoads++
	return nil
}

func TestAppArmorProfile(t *testing.T) {
	local := func(ref string) *runtime.SecurityProfile {
		return &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: ref}
	}
	typ := func(t runtime.SecurityProfile_ProfileType) *runtime.SecurityProfile {
		return &runtime.SecurityProfile{ProfileType: t}
	}
	for _, tc := range []struct {
		name        string
		sc          *runtime.LinuxContainerSecurityContext
		enabled     bool
		want        string
		wantErr     string // in the error; "" for none
		wantDefault bool   // crid-default loaded for it
	}{
		// A node with AppArmor.
		{name: "unset", sc: nil, enabled: true, want: "crid-default", wantDefault: true},
		{name: "RuntimeDefault", sc: &runtime.LinuxContainerSecurityContext{Apparmor: typ(runtime.SecurityProfile_RuntimeDefault)}, enabled: true, want: "crid-default", wantDefault: true},
		{name: "deprecated runtime/default", sc: &runtime.LinuxContainerSecurityContext{ApparmorProfile: "runtime/default"}, enabled: true, want: "crid-default", wantDefault: true},
		{name: "Unconfined", sc: &runtime.LinuxContainerSecurityContext{Apparmor: typ(runtime.SecurityProfile_Unconfined)}, enabled: true},
		{name: "deprecated unconfined", sc: &runtime.LinuxContainerSecurityContext{ApparmorProfile: "unconfined"}, enabled: true},
		{name: "privileged, nothing asked", sc: &runtime.LinuxContainerSecurityContext{Privileged: true}, enabled: true},
		{name: "privileged, RuntimeDefault asked", sc: &runtime.LinuxContainerSecurityContext{Privileged: true, Apparmor: typ(runtime.SecurityProfile_RuntimeDefault)}, enabled: true, want: "crid-default", wantDefault: true},
		{name: "privileged, Localhost asked", sc: &runtime.LinuxContainerSecurityContext{Privileged: true, Apparmor: local("deny-write")}, enabled: true, want: "deny-write"},
		{name: "Localhost loaded", sc: &runtime.LinuxContainerSecurityContext{Apparmor: local("deny-write")}, enabled: true, want: "deny-write"},
		{name: "Localhost with the localhost/ prefix", sc: &runtime.LinuxContainerSecurityContext{Apparmor: local("localhost/deny-write")}, enabled: true, want: "deny-write"},
		{name: "deprecated localhost/", sc: &runtime.LinuxContainerSecurityContext{ApparmorProfile: "localhost/deny-write"}, enabled: true, want: "deny-write"},
		{name: "new field wins", sc: &runtime.LinuxContainerSecurityContext{ApparmorProfile: "localhost/missing", Apparmor: local("localhost/deny-write")}, enabled: true, want: "deny-write"},
		{name: "Localhost not loaded", sc: &runtime.LinuxContainerSecurityContext{Apparmor: local("missing")}, enabled: true, wantErr: `linux.security_context.apparmor.localhost_ref: AppArmor profile "missing" is not loaded`},
		{name: "deprecated not loaded", sc: &runtime.LinuxContainerSecurityContext{ApparmorProfile: "localhost/missing"}, enabled: true, wantErr: `linux.security_context.apparmor_profile: AppArmor profile "missing" is not loaded`},
		{name: "Localhost without a name", sc: &runtime.LinuxContainerSecurityContext{Apparmor: local("")}, enabled: true, wantErr: "linux.security_context.apparmor.localhost_ref: Localhost AppArmor profile without a name"},
		{name: "name with a newline", sc: &runtime.LinuxContainerSecurityContext{Apparmor: local("a\nb")}, enabled: true, wantErr: "newline or NUL"},
		{name: "unknown deprecated", sc: &runtime.LinuxContainerSecurityContext{ApparmorProfile: "docker-default"}, enabled: true, wantErr: `linux.security_context.apparmor_profile: unknown profile "docker-default"`},
		{name: "unknown type", sc: &runtime.LinuxContainerSecurityContext{Apparmor: typ(7)}, enabled: true, wantErr: "linux.security_context.apparmor.profile_type: unknown type 7"},

		// A node without AppArmor: nothing to apply, and any profile asked
		// refused (RuntimeDefault too: asked, it cannot be honoured).
		{name: "no AppArmor: unset", sc: nil},
		{name: "no AppArmor: privileged, unset", sc: &runtime.LinuxContainerSecurityContext{Privileged: true}},
		{name: "no AppArmor: RuntimeDefault", sc: &runtime.LinuxContainerSecurityContext{Apparmor: typ(runtime.SecurityProfile_RuntimeDefault)}, wantErr: "linux.security_context.apparmor: the runtime's default AppArmor profile requested, but AppArmor is not enabled on this node"},
		{name: "no AppArmor: deprecated runtime/default", sc: &runtime.LinuxContainerSecurityContext{ApparmorProfile: "runtime/default"}, wantErr: "linux.security_context.apparmor_profile: the runtime's default AppArmor profile requested"},
		{name: "no AppArmor: Unconfined", sc: &runtime.LinuxContainerSecurityContext{ApparmorProfile: "unconfined"}},
		{name: "no AppArmor: Localhost", sc: &runtime.LinuxContainerSecurityContext{Apparmor: local("deny-write")}, wantErr: `linux.security_context.apparmor.localhost_ref: AppArmor profile "deny-write" requested, but AppArmor is not enabled on this node`},
		{name: "no AppArmor: deprecated localhost/", sc: &runtime.LinuxContainerSecurityContext{ApparmorProfile: "localhost/deny-write"}, wantErr: "linux.security_context.apparmor_profile: AppArmor profile"},
		{name: "no AppArmor: unknown deprecated", sc: &runtime.LinuxContainerSecurityContext{ApparmorProfile: "bogus"}, wantErr: "unknown profile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := &fakeAppArmor{enabled: tc.enabled, loaded: map[string]bool{"deny-write": true}}
			got, err := AppArmorProfile(context.Background(), tc.sc, host)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want InvalidArgument with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("= %q, %v; want %q", got, err, tc.want)
			}
			if loads := host.defaultLoads; (loads == 1) != tc.wantDefault || loads > 1 {
				t.Errorf("default profile loaded %d times", loads)
			}
		})
	}
}

func TestAppArmorProfileNilHost(t *testing.T) {
	if got, err := AppArmorProfile(context.Background(), nil, nil); got != "" || err != nil {
		t.Errorf("nil host, nothing asked: %q, %v", got, err)
	}
	sc := &runtime.LinuxContainerSecurityContext{ApparmorProfile: "localhost/x"}
	if _, err := AppArmorProfile(context.Background(), sc, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil host, Localhost: %v", err)
	}
}

// TestAppArmorDefaultLoadFails: a parser failure fails the container (it
// would otherwise run unconfined), and is not InvalidArgument: the request
// was fine.
func TestAppArmorDefaultLoadFails(t *testing.T) {
	host := &fakeAppArmor{enabled: true, loadErr: errors.New("apparmor_parser not found")}
	_, err := AppArmorProfile(context.Background(), nil, host)
	if err == nil || errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "apparmor_parser not found") {
		t.Fatalf("err = %v", err)
	}
}

// TestBuildAppArmorAndSELinux: the chosen profile reaches the spec's
// process (which execs copy); SELinux options put no label in the spec
// and are reported by name.
func TestBuildAppArmorAndSELinux(t *testing.T) {
	in := input(t, &runtime.ContainerConfig{})
	in.AppArmorProfile = "crid-default"
	if s := build(t, in); s.Process.ApparmorProfile != "crid-default" {
		t.Errorf("spec profile %q", s.Process.ApparmorProfile)
	}
	in = input(t, &runtime.ContainerConfig{})
	if s := build(t, in); s.Process.ApparmorProfile != "" {
		t.Errorf("unconfined spec has profile %q", s.Process.ApparmorProfile)
	}
	in = input(t, &runtime.ContainerConfig{Linux: &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
		SelinuxOptions: &runtime.SELinuxOption{Type: "spc_t"},
	}}})
	if s := build(t, in); s.Process.SelinuxLabel != "" || s.Linux.MountLabel != "" {
		t.Errorf("SELinux options gave labels %q, %q", s.Process.SelinuxLabel, s.Linux.MountLabel)
	}
	msg := SELinuxNotApplied("linux.security_context.selinux_options", in.Config.GetLinux().GetSecurityContext().GetSelinuxOptions())
	if !strings.Contains(msg, "linux.security_context.selinux_options") || !strings.Contains(msg, `type "spc_t"`) || !strings.Contains(msg, "not applied") {
		t.Errorf("SELinuxNotApplied = %q", msg)
	}
	if msg := SELinuxNotApplied("x", &runtime.SELinuxOption{}); msg != "" {
		t.Errorf("empty options reported: %q", msg)
	}
	// An empty message is what some clients send for "nothing".
	in = input(t, &runtime.ContainerConfig{Linux: &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
		SelinuxOptions: &runtime.SELinuxOption{},
	}}})
	build(t, in)
}
