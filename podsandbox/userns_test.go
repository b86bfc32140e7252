package podsandbox

import (
	"errors"
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestValidateUserns: the inputs critest and kubelet send, good and bad;
// every refusal is ErrInvalid naming the field.
func TestValidateUserns(t *testing.T) {
	one := []*runtime.IDMapping{{ContainerId: 0, HostId: 1000, Length: 100000}}
	two := []*runtime.IDMapping{one[0], {ContainerId: 0, HostId: 2000, Length: 100000}}
	for _, c := range []struct {
		name string
		u    *runtime.UserNamespace
		want string // "" for accepted, else a piece of the error
	}{
		{"unset", nil, ""},
		{"NODE", &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE}, ""},
		{"POD", &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: one, Gids: one}, ""},
		{"POD two uid mappings", &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: two, Gids: one}, "f.uids: mode POD needs exactly one mapping, got 2"},
		{"POD two gid mappings", &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: one, Gids: two}, "f.gids: mode POD needs exactly one mapping"},
		{"POD no mappings", &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD}, "f.uids: mode POD needs exactly one mapping, got 0"},
		{"POD 0 unmapped", &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: []*runtime.IDMapping{{ContainerId: 1, HostId: 1000, Length: 100000}}, Gids: one}, "f.uids[0]: container ID 0 must be mapped"},
		{"POD length 0", &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: one, Gids: []*runtime.IDMapping{{HostId: 1000}}}, "f.gids[0]: length must not be 0"},
		{"POD past the last ID", &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: []*runtime.IDMapping{{HostId: 1 << 31, Length: 1 << 31}}, Gids: one}, "run past"},
		{"NODE with mappings", &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE, Uids: one}, "f: mode NODE takes no uids"},
		{"CONTAINER", &runtime.UserNamespace{Mode: runtime.NamespaceMode_CONTAINER}, "f.mode CONTAINER is not supported"},
		{"TARGET", &runtime.UserNamespace{Mode: runtime.NamespaceMode_TARGET}, "f.mode TARGET is not supported"},
	} {
		err := ValidateUserns("f", c.u)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.want != "" && (err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v, want ErrInvalid with %q", c.name, err, c.want)
		}
	}
}

// TestUsernsModeUnset: unset options are the node's user namespace, not
// POD (the zero NamespaceMode).
func TestUsernsModeUnset(t *testing.T) {
	if m := UsernsMode(nil); m != runtime.NamespaceMode_NODE {
		t.Errorf("UsernsMode(nil) = %s, want NODE", m)
	}
	sb := &Sandbox{Config: &runtime.PodSandboxConfig{}}
	if _, _, ok := sb.UsernsRoot(); ok || sb.usernsMode() != runtime.NamespaceMode_NODE {
		t.Errorf("a pod without userns options has a user namespace of its own")
	}
}
