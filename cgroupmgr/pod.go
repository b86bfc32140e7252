package cgroupmgr

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/cgroups/systemd"
)

// A cgroup path, as crid records it, names its driver by its form:
//
//	/kubepods/pod1/abc                      cgroupfs: a directory path
//	kubepods-besteffort-pod1.slice          systemd: a slice (a pod)
//	kubepods-besteffort-pod1.slice:crid:abc systemd: the scope crid-abc.scope
//	                                        in that slice (a container), runc's
//	                                        "slice:prefix:name" form
//
// so the monitor, which has no configuration of its own, can act on a path
// alone.

// ScopePrefix starts the name of every systemd scope crid creates
// (crid-<container id>.scope), as containerd's "cri-containerd" and CRI-O's
// "crio" do.
const ScopePrefix = "crid"

// ErrInvalidParent marks a cgroup parent the driver cannot use.
var ErrInvalidParent = errors.New("invalid cgroup parent")

// NormalizeParent checks a pod's cgroup parent as the driver expects it and
// returns the form crid records: an absolute, clean path for cgroupfs; a
// slice name for systemd. Like containerd and CRI-O, the systemd driver
// takes the base name of a path ("/test.slice", which critest sends, is
// "test.slice"). The slice name follows systemd's rules: "-" separates the
// levels of nesting ("kubepods-burstable.slice" is in "kubepods.slice"),
// so no component may be empty.
func (m *Manager) NormalizeParent(parent string) (string, error) {
	switch m.driver {
	case Systemd:
		base := path.Base(parent)
		if parent == "" || base == "/" || base == "." {
			return "", fmt.Errorf("%w: %q is not a systemd slice name (like \"kubepods-pod123.slice\")", ErrInvalidParent, parent)
		}
		if !strings.HasSuffix(base, ".slice") {
			return "", fmt.Errorf("%w: %q is not a systemd slice: the systemd cgroup driver needs a name ending in \".slice\" (like \"kubepods-pod123.slice\")", ErrInvalidParent, parent)
		}
		if _, err := systemd.ExpandSlice(base); err != nil || strings.Contains(base, ":") {
			return "", fmt.Errorf("%w: %q is not a valid systemd slice name: \"-\" separates nesting levels, so none may be empty (\"a--b.slice\", \"-a.slice\" and \"a-.slice\" are invalid)", ErrInvalidParent, parent)
		}
		return base, nil
	default:
		if !path.IsAbs(parent) || path.Clean(parent) != parent {
			return "", fmt.Errorf("%w: %q is not an absolute, clean cgroupfs path", ErrInvalidParent, parent)
		}
		return parent, nil
	}
}

// ValidateParent checks a pod's cgroup parent; see NormalizeParent.
func (m *Manager) ValidateParent(parent string) error {
	_, err := m.NormalizeParent(parent)
	return err
}

// DefaultPodParent is the cgroup of a pod whose request named no parent
// (crictl, critest): a child of crid's own parent, which crid creates and
// removes itself.
func (m *Manager) DefaultPodParent(defaultParent, sandboxID string) string {
	if m.driver == Systemd {
		return strings.TrimSuffix(defaultParent, ".slice") + "-pod" + sandboxID + ".slice"
	}
	return path.Join(defaultParent, "pod-"+sandboxID)
}

// ContainerPath is the cgroup of a container (or the infra process) in a
// pod: a leaf that ends in the container ID, as kubelet's stats expect
// (crid-<id>.scope with systemd).
func (m *Manager) ContainerPath(parent, id string) string {
	if m.driver == Systemd {
		return parent + ":" + ScopePrefix + ":" + id
	}
	return path.Join(parent, id)
}

// IsSystemdPath reports whether a recorded cgroup path is one of the
// systemd driver's (a slice, or slice:prefix:name).
func IsSystemdPath(p string) bool {
	_, err := Config(p)
	return err == nil && !path.IsAbs(p)
}

// Config returns the opencontainers/cgroups configuration of a recorded
// cgroup path (see the forms above), with empty resources.
func Config(p string) (*cgroups.Cgroup, error) {
	cg := &cgroups.Cgroup{Resources: &cgroups.Resources{}}
	if path.IsAbs(p) {
		cg.Path = p
		return cg, nil
	}
	cg.Systemd = true
	if slice, rest, ok := strings.Cut(p, ":"); ok {
		prefix, name, ok := strings.Cut(rest, ":")
		if !ok || prefix == "" || name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("cgroup path %q is neither absolute nor slice:prefix:name", p)
		}
		if _, err := systemd.ExpandSlice(slice); err != nil {
			return nil, fmt.Errorf("cgroup path %q: %w", p, err)
		}
		cg.Parent, cg.ScopePrefix, cg.Name = slice, prefix, name
		return cg, nil
	}
	if _, err := systemd.ExpandSlice(p); err != nil {
		return nil, fmt.Errorf("cgroup path %q is neither absolute nor a systemd slice: %w", p, err)
	}
	// opencontainers/cgroups places a slice under its Parent: that must be
	// the slice the name itself nests in, as kubelet's manager sets it.
	cg.Parent, cg.Name = parentSlice(p), p
	return cg, nil
}

// parentSlice is the slice a slice nests in: "a-b-c.slice" is in
// "a-b.slice", "a.slice" in the root slice "-.slice".
func parentSlice(slice string) string {
	name := strings.TrimSuffix(slice, ".slice")
	i := strings.LastIndex(name, "-")
	if i <= 0 {
		return "-.slice"
	}
	return name[:i] + ".slice"
}

// Dir returns the cgroup v2 directory of a recorded cgroup path (under
// /sys/fs/cgroup), or the v1 path below each hierarchy's mount.
func Dir(p string) (string, error) {
	cg, err := Config(p)
	if err != nil {
		return "", err
	}
	if !cg.Systemd {
		return p, nil
	}
	if cg.ScopePrefix != "" {
		s, err := systemd.ExpandSlice(cg.Parent)
		if err != nil {
			return "", err
		}
		return path.Join(s, cg.ScopePrefix+"-"+cg.Name+".scope"), nil
	}
	return systemd.ExpandSlice(p)
}

// Remove deletes a cgroup crid created, in every hierarchy (with systemd,
// stops its unit). It fails while processes live in it. Removing a missing
// cgroup is not an error.
func (m *Manager) Remove(cgroupPath string) error {
	mgr, err := m.manager(cgroupPath)
	if err != nil {
		return err
	}
	if err := mgr.Destroy(); err != nil {
		return fmt.Errorf("remove cgroup %s: %w", cgroupPath, err)
	}
	return nil
}

// Create makes an empty cgroup in every hierarchy (with systemd, a
// transient slice).
func (m *Manager) Create(cgroupPath string) error {
	mgr, err := m.manager(cgroupPath)
	if err != nil {
		return err
	}
	if err := mgr.Apply(-1); err != nil {
		return fmt.Errorf("create cgroup %s: %w", cgroupPath, err)
	}
	return nil
}

// Exists reports whether the cgroup exists in the first hierarchy.
func (m *Manager) Exists(cgroupPath string) bool {
	mgr, err := m.manager(cgroupPath)
	if err != nil {
		return false
	}
	return mgr.Exists()
}

func (m *Manager) manager(cgroupPath string) (cgroups.Manager, error) {
	cg, err := Config(cgroupPath)
	if err != nil {
		return nil, err
	}
	if cg.Systemd != (m.driver == Systemd) {
		return nil, fmt.Errorf("cgroup path %q is not one of the %s driver's", cgroupPath, m.driver)
	}
	mgr, err := manager.New(cg)
	if err != nil {
		return nil, fmt.Errorf("cgroup manager for %s: %w", cgroupPath, err)
	}
	return mgr, nil
}
