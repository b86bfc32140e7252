package hostcheck

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// kubeadmConfig is where kubeadm writes kubelet's configuration.
const kubeadmConfig = "/var/lib/kubelet/config.yaml"

// kubeletSettings are the KubeletConfiguration fields that must agree with
// crid, from its file and its flags (flags win, as in kubelet).
type kubeletSettings struct {
	CgroupDriver             string `yaml:"cgroupDriver"`
	ContainerRuntimeEndpoint string `yaml:"containerRuntimeEndpoint"`
	FailCgroupV1             *bool  `yaml:"failCgroupV1"`
	// source says where they came from, for the message.
	source string
}

// Kubelet checks kubelet's settings against crid's: the same cgroup driver,
// crid's socket as its runtime endpoint, and on a cgroup v1 host
// failCgroupV1: false, without which kubelet 1.35 and newer will not start.
// With no kubelet found it says what to set.
func (h *Host) Kubelet(l cgroupLayout) Result {
	const name = "kubelet"
	endpoint := "unix://" + h.Config.Socket
	driver := h.Config.Runtime.CgroupDriver
	v1 := l.Mode == "v1" || l.Mode == "hybrid"
	want := fmt.Sprintf("containerRuntimeEndpoint: %s, cgroupDriver: %s", endpoint, driver)
	if v1 {
		want += ", failCgroupV1: false"
	}
	k, err := h.kubeletSettings()
	if err != nil {
		return fail(name, err.Error(), "fix kubelet's configuration file")
	}
	if k == nil {
		if v1 {
			return warn(name, "no kubelet found; on this cgroup "+l.Mode+" host it needs failCgroupV1: false", "give kubelet "+want)
		}
		return ok(name, "no kubelet found; give it "+want)
	}
	kd := k.CgroupDriver
	if kd == "" {
		kd = "cgroupfs" // kubelet's default
	}
	var problems []string
	if kd != driver {
		problems = append(problems, fmt.Sprintf("cgroupDriver %s, crid's is %s", kd, driver))
	}
	if v1 && (k.FailCgroupV1 == nil || *k.FailCgroupV1) {
		problems = append(problems, "failCgroupV1 is not false on a cgroup "+l.Mode+" host")
	}
	if len(problems) > 0 {
		return fail(name, fmt.Sprintf("%s: %s", k.source, strings.Join(problems, "; ")), "give kubelet "+want)
	}
	if k.ContainerRuntimeEndpoint != endpoint && k.ContainerRuntimeEndpoint != h.Config.Socket {
		return warn(name, fmt.Sprintf("%s: containerRuntimeEndpoint %q is not crid's %s", k.source, k.ContainerRuntimeEndpoint, endpoint),
			"set containerRuntimeEndpoint: "+endpoint)
	}
	return ok(name, fmt.Sprintf("%s: %s", k.source, want))
}

// kubeletSettings finds kubelet's configuration: the file named by
// Host.KubeletConfig, else the --config of a running kubelet (with its
// flags laid over it), else kubeadm's default file. Nil means none found.
func (h *Host) kubeletSettings() (*kubeletSettings, error) {
	path, flags := h.KubeletConfig, map[string]string{}
	if path == "" {
		var args []string
		if args = h.kubeletArgs(); args != nil {
			flags = parseFlags(args)
			path = flags["config"]
		} else if exists(h.path(kubeadmConfig)) {
			path = kubeadmConfig
		}
	}
	if path == "" && len(flags) == 0 {
		return nil, nil
	}
	k := &kubeletSettings{source: "kubelet flags"}
	if path != "" {
		// A running kubelet's path is in the host's view; a fixture's is
		// under Root, like every other host path.
		full := path
		if h.KubeletConfig == "" {
			full = h.path(path)
		}
		b, err := os.ReadFile(full)
		if err != nil {
			return nil, fmt.Errorf("kubelet config: %w", err)
		}
		if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(k); err != nil {
			return nil, fmt.Errorf("kubelet config %s: %w", path, err)
		}
		k.source = path
	}
	if v, ok := flags["cgroup-driver"]; ok {
		k.CgroupDriver = v
	}
	if v, ok := flags["container-runtime-endpoint"]; ok {
		k.ContainerRuntimeEndpoint = v
	}
	if v, ok := flags["fail-cgroupv1"]; ok {
		b := v != "false"
		k.FailCgroupV1 = &b
	}
	return k, nil
}

// kubeletArgs returns the arguments of a running kubelet, or nil.
func (h *Host) kubeletArgs() []string {
	cmdlines, _ := filepath.Glob(h.path("/proc/[0-9]*/cmdline"))
	for _, p := range cmdlines {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if filepath.Base(argv[0]) == "kubelet" {
			return argv[1:]
		}
	}
	return nil
}

// parseFlags reads "--name=value", "--name value" and "--name" (true)
// flags into a map.
func parseFlags(args []string) map[string]string {
	out := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		a = strings.TrimLeft(a, "-")
		if k, v, found := strings.Cut(a, "="); found {
			out[k] = v
			continue
		}
		if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			out[a] = args[i+1]
			i++
			continue
		}
		out[a] = "true"
	}
	return out
}
