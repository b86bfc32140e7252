package hostcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"

	"github.com/crid-dev/crid/cni"
)

// defaultNetwork loads the network the daemon would attach pods to, with
// the daemon's own code.
func (h *Host) defaultNetwork() (*libcni.NetworkConfigList, error) {
	return cni.New(h.Config.Network.CNIConfDir, h.Config.Network.CNIBinDirs, "").DefaultNetwork()
}

// CNI checks the CNI config dir, that its first network loads, and that
// every plugin it names (IPAM plugins included) is in cni_bin_dirs. An
// empty dir is only a warning: a cluster's network add-on often writes its
// config after the node joins.
func (h *Host) CNI() Result {
	const name = "cni"
	dir := h.Config.Network.CNIConfDir
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !hasNetworkFile(entries)) {
		return warn(name, fmt.Sprintf("no network config in %s: pods other than hostNetwork ones wait until one appears", dir),
			"make install (writes the default bridge network crid0 on 10.88.0.0/16), or install the cluster's network add-on")
	}
	if err != nil {
		return fail(name, fmt.Sprintf("cannot read network.cni_conf_dir %s: %v", dir, err), "make it a directory crid can read")
	}
	list, err := h.defaultNetwork()
	if err != nil {
		return fail(name, err.Error(), "fix the first network config in "+dir+" (lexical order), or remove it")
	}
	var missing []string
	plugins := pluginTypes(list)
	for _, p := range plugins {
		if _, err := invoke.FindInPath(p, h.Config.Network.CNIBinDirs); err != nil {
			missing = append(missing, p)
		}
	}
	bins := strings.Join(h.Config.Network.CNIBinDirs, ":")
	if len(missing) > 0 {
		return fail(name, fmt.Sprintf("network %q names plugins not in %s: %s", list.Name, bins, strings.Join(missing, " ")),
			"make install (builds bridge, host-local, portmap and loopback into /opt/cni/bin), or install the plugins into network.cni_bin_dirs")
	}
	return ok(name, fmt.Sprintf("network %q (cniVersion %s) from %s: %s in %s", list.Name, list.CNIVersion, dir, strings.Join(plugins, " "), bins))
}

func hasNetworkFile(entries []os.DirEntry) bool {
	for _, e := range entries {
		if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".conf" || ext == ".conflist" || ext == ".json") {
			return true
		}
	}
	return false
}

// pluginTypes are the plugin binaries a network runs, IPAM ones included,
// in order and without repeats.
func pluginTypes(list *libcni.NetworkConfigList) []string {
	var out []string
	for _, p := range list.Plugins {
		for _, t := range []string{p.Network.Type, p.Network.IPAM.Type} {
			if t != "" && !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

// netfilterNeeds says which firewall tool a network's plugins call:
// "iptables" or "nftables" when a plugin names its backend, "any" when one
// uses netfilter with the plugins' default (iptables if present, else
// nftables), "" when none uses netfilter.
func netfilterNeeds(list *libcni.NetworkConfigList) []string {
	var needs []string
	for _, p := range list.Plugins {
		var conf struct {
			IPMasq        bool   `json:"ipMasq"`
			IPMasqBackend string `json:"ipMasqBackend"`
			Backend       string `json:"backend"`
		}
		if err := json.Unmarshal(p.Bytes, &conf); err != nil {
			continue
		}
		var need string
		switch p.Network.Type {
		case "portmap", "firewall":
			need = conf.Backend
		case "bridge", "ptp":
			if !conf.IPMasq {
				continue
			}
			need = conf.IPMasqBackend
		default:
			continue
		}
		if need == "" || need == "firewalld" {
			need = "any"
		}
		if !slices.Contains(needs, need) {
			needs = append(needs, need)
		}
	}
	return needs
}

// Firewall checks for the iptables and nft binaries that the default
// network's plugins call (bridge's ipMasq, portmap).
func (h *Host) Firewall() Result {
	const name = "iptables/nftables"
	ipt, iptErr := h.LookPath("iptables")
	nft, nftErr := h.LookPath("nft")
	var found []string
	if iptErr == nil {
		found = append(found, ipt+iptablesBackend(ipt))
	}
	if nftErr == nil {
		found = append(found, nft)
	}
	detail := "neither iptables nor nft found"
	if len(found) > 0 {
		detail = strings.Join(found, ", ")
	}
	list, err := h.defaultNetwork()
	if err != nil {
		if len(found) == 0 {
			return warn(name, detail+"; no network to tell whether one is needed", "apt-get install iptables (bridge ipMasq and portmap call it)")
		}
		return ok(name, detail)
	}
	for _, need := range netfilterNeeds(list) {
		switch {
		case need == "iptables" && iptErr != nil:
			return fail(name, fmt.Sprintf("network %q asks for the iptables backend; %s", list.Name, detail), "apt-get install iptables")
		case need == "nftables" && nftErr != nil:
			return fail(name, fmt.Sprintf("network %q asks for the nftables backend; %s", list.Name, detail), "apt-get install nftables")
		case need == "any" && len(found) == 0:
			return fail(name, fmt.Sprintf("network %q masquerades or maps ports; %s", list.Name, detail), "apt-get install iptables")
		}
	}
	return ok(name, detail)
}

// iptablesBackend names the kernel interface an iptables binary drives,
// from where Debian's alternatives link it.
func iptablesBackend(path string) string {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return ""
	}
	switch base := filepath.Base(real); {
	case strings.Contains(base, "nft"):
		return " (nf_tables)"
	case strings.Contains(base, "legacy"):
		return " (legacy)"
	}
	return ""
}

// sbinDirs are added to PATH by the daemon before it runs CNI plugins.
var sbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}

// lookPath finds file on PATH or in the sbin dirs, as the daemon's plugins
// will.
func lookPath(file string) (string, error) {
	if p, err := exec.LookPath(file); err == nil {
		return p, nil
	}
	for _, d := range sbinDirs {
		p := filepath.Join(d, file)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH or in %s", file, strings.Join(sbinDirs, " "))
}
