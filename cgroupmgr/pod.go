package cgroupmgr

import (
	"fmt"
	"path"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
)

// ValidateParent checks a pod's cgroup parent as the driver expects it:
// an absolute, clean path for cgroupfs; a slice name for systemd.
func (m *Manager) ValidateParent(parent string) error {
	switch m.driver {
	case Systemd:
		if !strings.HasSuffix(parent, ".slice") || strings.Contains(parent, "/") {
			return fmt.Errorf("cgroup parent %q is not a systemd slice name (like \"kubepods-pod123.slice\")", parent)
		}
	default:
		if !path.IsAbs(parent) || path.Clean(parent) != parent {
			return fmt.Errorf("cgroup parent %q is not an absolute, clean cgroupfs path", parent)
		}
	}
	return nil
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
// pod: a leaf that ends in the container ID, as kubelet's stats expect.
func (m *Manager) ContainerPath(parent, id string) string {
	if m.driver == Systemd {
		return parent + ":crid:" + id
	}
	return path.Join(parent, id)
}

// Remove deletes a cgroup crid created, in every hierarchy. It fails while
// processes live in it. Removing a missing cgroup is not an error.
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

// Create makes an empty cgroup in every hierarchy.
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
	cg := &cgroups.Cgroup{Resources: &cgroups.Resources{}}
	if m.driver == Systemd {
		cg.Systemd = true
		cg.Parent, cg.Name = path.Dir(cgroupPath), path.Base(cgroupPath)
	} else {
		cg.Path = cgroupPath
	}
	mgr, err := manager.New(cg)
	if err != nil {
		return nil, fmt.Errorf("cgroup manager for %s: %w", cgroupPath, err)
	}
	return mgr, nil
}
