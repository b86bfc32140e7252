// Package cgroupmgr owns crid's cgroups: the driver (cgroupfs or systemd),
// the host's cgroup mode, and, as pods and containers arrive, their cgroups
// and stats. Everything goes through github.com/opencontainers/cgroups so v1,
// hybrid and v2 hosts share one code path.
package cgroupmgr

import (
	"fmt"
	"os"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/systemd"
)

// Driver names the cgroup manager, as kubelet's cgroupDriver does.
type Driver string

const (
	// Cgroupfs writes the cgroup filesystem directly.
	Cgroupfs Driver = "cgroupfs"
	// Systemd delegates cgroups to systemd as transient units.
	Systemd Driver = "systemd"
)

// Manager is the node's cgroup manager.
type Manager struct {
	driver  Driver
	cpuacct mountOnce // v1 cpuacct hierarchy, for CPUUsage
}

// New checks that driver can work on this host: the systemd driver needs
// systemd running as the init system (PID 1), which it asks for every
// slice and scope over D-Bus.
func New(driver string) (*Manager, error) {
	switch d := Driver(driver); d {
	case Cgroupfs:
		return &Manager{driver: d}, nil
	case Systemd:
		if !systemd.IsRunningSystemd() {
			return nil, fmt.Errorf("cgroup driver %q needs systemd as the init system, but PID 1 here is %s: set runtime.cgroup_driver = %q (and kubelet's cgroupDriver: cgroupfs) on this host", d, initName(), Cgroupfs)
		}
		return &Manager{driver: d}, nil
	default:
		return nil, fmt.Errorf("unknown cgroup driver %q (want %q or %q)", driver, Cgroupfs, Systemd)
	}
}

// Driver returns the configured driver.
func (m *Manager) Driver() Driver { return m.driver }

// Mode describes the host's cgroup layout: "v2" (unified), "hybrid" (v1
// controllers with a v2 mount beside them) or "v1".
func Mode() string {
	switch {
	case cgroups.IsCgroup2UnifiedMode():
		return "v2"
	case cgroups.IsCgroup2HybridMode():
		return "hybrid"
	default:
		return "v1"
	}
}

// initName names PID 1 for error messages.
func initName() string {
	b, err := os.ReadFile("/proc/1/comm")
	if err != nil {
		return "not systemd"
	}
	return strings.TrimSpace(string(b))
}
