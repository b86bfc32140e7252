// Package hostcheck is crid's host doctor (`crid check`): one small check
// per thing crid needs from the node — kernel, filesystems, cgroups,
// namespaces, seccomp, CNI, firewall binaries, its own files and kubelet's
// settings — each answering ok, warn or fail with the fix. The fixed host
// paths (/proc, /sys, /run/systemd, /var/lib/kubelet, library dirs) are read
// under Host.Root, so the checks run against fixture trees in tests; the
// paths that come from crid's configuration are used as they are.
package hostcheck

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/crid-dev/crid/config"
)

// Level is how a requirement stands.
type Level int

const (
	// OK means the requirement is met.
	OK Level = iota
	// Warn means crid runs, but something an operator should know about
	// (a feature missing, a kubelet setting to make) holds.
	Warn
	// Fail means crid, or pods on it, will not work until it is fixed.
	Fail
)

func (l Level) String() string {
	switch l {
	case OK:
		return "ok"
	case Warn:
		return "warn"
	default:
		return "fail"
	}
}

// Result is one requirement's verdict: what was found and, unless it is ok,
// what to do.
type Result struct {
	Name   string
	Level  Level
	Detail string
	Fix    string
}

func ok(name, detail string) Result { return Result{Name: name, Level: OK, Detail: detail} }

func warn(name, detail, fix string) Result {
	return Result{Name: name, Level: Warn, Detail: detail, Fix: fix}
}

func fail(name, detail, fix string) Result {
	return Result{Name: name, Level: Fail, Detail: detail, Fix: fix}
}

// Host is the node under check. New fills every field for the real host;
// tests replace the root and the probes.
type Host struct {
	// Root prefixes the fixed host paths ("/" on a real node).
	Root string
	// Config is crid's effective configuration (file and flags).
	Config config.Config
	// MonitorPath is the crid-monitor binary the daemon would run.
	MonitorPath string
	// PausePath is the crid-pause binary of the built-in infra.
	PausePath string
	// KubeletConfig names kubelet's configuration file; empty means the one
	// a running kubelet was given, else kubeadm's default path.
	KubeletConfig string

	// LookPath finds a binary as the daemon's PATH (with the sbin dirs) would.
	LookPath func(file string) (string, error)
	// FSType returns the statfs magic of the filesystem holding path.
	FSType func(path string) (int64, error)
	// TryIdmap makes an idmapped mount of a scratch tmpfs and removes it.
	TryIdmap func() error
	// Serving reports whether something answers on the CRI socket.
	Serving func(socket string) bool
	// HasImage asks the daemon on socket whether image is in its store.
	HasImage func(ctx context.Context, socket, image string) (bool, error)
}

// New returns the real host, checked against cfg.
func New(cfg config.Config, monitorPath string) *Host {
	return &Host{
		Root:        "/",
		Config:      cfg,
		MonitorPath: monitorPath,
		LookPath:    lookPath,
		FSType:      fsType,
		TryIdmap:    tryIdmap,
		Serving:     serving,
		HasImage:    hasImage,
	}
}

// path is a fixed host path under Root.
func (h *Host) path(p string) string { return filepath.Join(h.Root, p) }

// Run runs every check, in the order an operator fixes things: kernel
// first, kubelet last.
func (h *Host) Run(ctx context.Context) []Result {
	mode := h.cgroupLayout()
	return []Result{
		h.Kernel(),
		h.Overlay(),
		h.CgroupMode(mode),
		h.CgroupControllers(mode),
		h.UserNamespaces(),
		h.IdmappedMounts(),
		h.Seccomp(),
		h.AppArmor(),
		h.CNI(),
		h.Firewall(),
		h.Infra(ctx),
		h.Monitor(),
		h.Socket(),
		h.StateDirs(),
		h.CgroupDriver(),
		h.Kubelet(mode),
	}
}

// Failed reports whether any result is a fail.
func Failed(results []Result) bool {
	for _, r := range results {
		if r.Level == Fail {
			return true
		}
	}
	return false
}

// Format writes one aligned line per result: level, name, what was found
// and, unless it is ok, the fix.
func Format(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range results {
		line := r.Detail
		if r.Fix != "" && r.Level != OK {
			line += " — fix: " + r.Fix
		}
		line = strings.ReplaceAll(line, "\n", " ")
		if _, err := fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Level, r.Name, line); err != nil {
			return err
		}
	}
	return tw.Flush()
}
