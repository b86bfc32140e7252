// Package cni connects pods to the network through CNI plugins (libcni).
// This file owns the network configuration: finding the default network in
// the conf dir and telling whether the node's network is ready.
package cni

import (
	"fmt"
	"sort"
	"sync"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
)

// Manager holds the CNI configuration locations.
type Manager struct {
	confDir  string
	binDirs  []string
	cacheDir string

	// podCIDR is kubelet's pod CIDR (UpdateRuntimeConfig), loaded from
	// cacheDir once.
	cidrOnce sync.Once
	cidrMu   sync.Mutex
	podCIDR  string
}

// New returns a manager for the network configs in confDir whose plugins are
// searched in binDirs. libcni keeps ADD results and configs in cacheDir,
// which must outlive the daemon so DEL can use what ADD did.
func New(confDir string, binDirs []string, cacheDir string) *Manager {
	return &Manager{confDir: confDir, binDirs: binDirs, cacheDir: cacheDir}
}

// DefaultNetwork loads the network crid attaches pods to: the first config in
// lexical order that loads, as kubelet's other runtimes pick it. Files are
// read as network config lists; libcni no longer supports the old
// single-plugin format.
func (m *Manager) DefaultNetwork() (*libcni.NetworkConfigList, error) {
	files, err := libcni.ConfFiles(m.confDir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		return nil, fmt.Errorf("read CNI config dir %s: %w", m.confDir, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no network config found in %s", m.confDir)
	}
	sort.Strings(files)
	var lastErr error
	for _, f := range files {
		list, err := libcni.NetworkConfFromFile(f)
		if err != nil {
			lastErr = fmt.Errorf("load CNI config %s: %w", f, err)
			continue
		}
		return list, nil
	}
	return nil, lastErr
}

// Ready reports nil when pods can be networked: a loadable default network
// whose every plugin binary is installed.
func (m *Manager) Ready() error {
	list, err := m.DefaultNetwork()
	if err != nil {
		return err
	}
	for _, p := range list.Plugins {
		if _, err := invoke.FindInPath(p.Network.Type, m.binDirs); err != nil {
			return fmt.Errorf("network %q: plugin %q not found in %v", list.Name, p.Network.Type, m.binDirs)
		}
	}
	return nil
}
