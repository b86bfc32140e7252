package cni

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/klog/v2"
)

// podCIDRFile keeps the pod CIDR kubelet gave (UpdateRuntimeConfig) across
// daemon restarts.
const podCIDRFile = "crid-pod-cidr"

// ErrInvalidPodCIDR marks a pod CIDR that does not parse.
var ErrInvalidPodCIDR = errors.New("invalid pod CIDR")

// SetPodCIDR stores the node's pod CIDR ("10.88.1.0/24", or an IPv4 and an
// IPv6 CIDR separated by a comma) and hands it to plugins that declare the
// ipRanges capability on every later ADD. It is written to disk first, so
// a restart keeps it. An invalid CIDR changes nothing.
func (m *Manager) SetPodCIDR(cidr string) error {
	norm, err := parsePodCIDR(cidr)
	if err != nil {
		return err
	}
	m.loadPodCIDR()
	m.cidrMu.Lock()
	defer m.cidrMu.Unlock()
	if norm == m.podCIDR {
		return nil
	}
	if err := writeFileAtomic(filepath.Join(m.cacheDir, podCIDRFile), []byte(norm+"\n")); err != nil {
		return fmt.Errorf("record pod CIDR: %w", err)
	}
	m.podCIDR = norm
	klog.InfoS("Pod CIDR set", "podCIDR", norm)
	return nil
}

// PodCIDR returns the stored pod CIDR, "" when none was given.
func (m *Manager) PodCIDR() string {
	m.loadPodCIDR()
	m.cidrMu.Lock()
	defer m.cidrMu.Unlock()
	return m.podCIDR
}

func (m *Manager) loadPodCIDR() {
	m.cidrOnce.Do(func() {
		b, err := os.ReadFile(filepath.Join(m.cacheDir, podCIDRFile))
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if err != nil {
			klog.ErrorS(err, "Reading the stored pod CIDR; pods get their network's own ranges until kubelet sends it again")
			return
		}
		norm, err := parsePodCIDR(strings.TrimSpace(string(b)))
		if err != nil {
			klog.ErrorS(err, "Ignoring the stored pod CIDR")
			return
		}
		m.cidrMu.Lock()
		m.podCIDR = norm
		m.cidrMu.Unlock()
	})
}

// parsePodCIDR checks a comma-separated list of at most one IPv4 and one
// IPv6 CIDR and returns it normalised to network addresses.
func parsePodCIDR(s string) (string, error) {
	parts := strings.Split(s, ",")
	if len(parts) > 2 {
		return "", fmt.Errorf("%w %q: at most one IPv4 and one IPv6 CIDR", ErrInvalidPodCIDR, s)
	}
	var out []string
	var v4, v6 int
	for _, p := range parts {
		_, n, err := net.ParseCIDR(strings.TrimSpace(p))
		if err != nil {
			return "", fmt.Errorf("%w %q: %v", ErrInvalidPodCIDR, s, err)
		}
		if n.IP.To4() != nil {
			v4++
		} else {
			v6++
		}
		out = append(out, n.String())
	}
	if v4 > 1 || v6 > 1 {
		return "", fmt.Errorf("%w %q: at most one IPv4 and one IPv6 CIDR", ErrInvalidPodCIDR, s)
	}
	return strings.Join(out, ","), nil
}

// ipRanges is the ipRanges capability argument for the pod CIDR: one range
// set per CIDR (CNI conventions), nil without one.
func (m *Manager) ipRanges() [][]map[string]string {
	cidr := m.PodCIDR()
	if cidr == "" {
		return nil
	}
	var sets [][]map[string]string
	for _, c := range strings.Split(cidr, ",") {
		sets = append(sets, []map[string]string{{"subnet": c}})
	}
	return sets
}

// writeFileAtomic replaces path with data: written to a temporary file,
// synced, renamed over, the directory synced.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
