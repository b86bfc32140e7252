package cni

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/crid-dev/crid/failpoint"
	"github.com/crid-dev/crid/metrics"
)

// ifName is the pod's interface, as kubelet's other runtimes name it.
const ifName = "eth0"

// Attachment identifies one pod's connection to the network.
type Attachment struct {
	// SandboxID is the CNI container ID.
	SandboxID string
	// NetNS is the pinned network namespace; empty on DEL when it is gone.
	NetNS        string
	PodName      string
	PodNamespace string
	PodUID       string
	PortMappings []PortMapping
}

// PortMapping is one host port forwarded to the pod (the portMappings
// capability of the portmap plugin).
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// Result is what ADD gave the pod.
type Result struct {
	Network string
	IPs     []net.IP // IPv4 first, as kubelet takes the first as the pod IP
}

func (m *Manager) runtimeConf(a Attachment) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: a.SandboxID,
		NetNS:       a.NetNS,
		IfName:      ifName,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", a.PodNamespace},
			{"K8S_POD_NAME", a.PodName},
			{"K8S_POD_INFRA_CONTAINER_ID", a.SandboxID},
			{"K8S_POD_UID", a.PodUID},
		},
	}
	var pms []PortMapping
	for _, pm := range a.PortMappings {
		if pm.HostPort > 0 {
			pm.Protocol = strings.ToLower(pm.Protocol)
			pms = append(pms, pm)
		}
	}
	if len(pms) > 0 {
		rt.CapabilityArgs = map[string]any{"portMappings": pms}
	}
	// libcni passes it only to plugins declaring "ipRanges": true.
	if r := m.ipRanges(); r != nil {
		if rt.CapabilityArgs == nil {
			rt.CapabilityArgs = map[string]any{}
		}
		rt.CapabilityArgs["ipRanges"] = r
	}
	return rt
}

func (m *Manager) cniConfig() *libcni.CNIConfig {
	return libcni.NewCNIConfigWithCacheDir(m.binDirs, m.cacheDir, nil)
}

// Setup attaches the pod's network namespace to the default network. On
// failure it deletes what the plugins may have set up, so no lease leaks.
func (m *Manager) Setup(ctx context.Context, a Attachment) (*Result, error) {
	list, err := m.DefaultNetwork()
	if err != nil {
		return nil, fmt.Errorf("network not ready: %w", err)
	}
	rt := m.runtimeConf(a)
	start := time.Now()
	res, err := m.cniConfig().AddNetworkList(ctx, list, rt)
	metrics.CNI(metrics.CNIAdd, time.Since(start), err)
	if err == nil {
		// After the plugins set the pod up and took a lease: tests make
		// the setup fail (error) or crash (panic) here and look for leaks.
		err = failpoint.Inject("cni.setup")
	}
	if err != nil {
		// DEL must run even though ADD failed: the bridge plugin may hold a
		// lease already. Use a fresh context: ctx may be the reason.
		if delErr := m.del(context.WithoutCancel(ctx), m.cniConfig(), list, rt); delErr != nil {
			err = errors.Join(err, fmt.Errorf("undo: %w", delErr))
		}
		return nil, fmt.Errorf("CNI ADD on network %q: %w", list.Name, err)
	}
	out, err := parseResult(res)
	if err != nil {
		return nil, fmt.Errorf("CNI ADD on network %q: %w", list.Name, err)
	}
	out.Network = list.Name
	return out, nil
}

// Teardown detaches the pod: DEL with the network config that ADD used,
// from libcni's cache, falling back to the current default network. It
// runs also when the namespace is gone, so host-side state (IP lease,
// port-forwarding rules) is always released.
func (m *Manager) Teardown(ctx context.Context, a Attachment) error {
	rt := m.runtimeConf(a)
	cfg := m.cniConfig()
	list, err := m.DefaultNetwork()
	if cachedList, cachedErr := m.cachedNetwork(cfg, list, rt); cachedErr == nil && cachedList != nil {
		list = cachedList
	} else if err != nil {
		return fmt.Errorf("CNI DEL: no cached or current network config: %w", err)
	}
	if err := m.del(ctx, cfg, list, rt); err != nil {
		return fmt.Errorf("CNI DEL on network %q: %w", list.Name, err)
	}
	return nil
}

// del runs DEL of the whole plugin chain and records it.
func (m *Manager) del(ctx context.Context, cfg *libcni.CNIConfig, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	start := time.Now()
	err := cfg.DelNetworkList(ctx, list, rt)
	metrics.CNI(metrics.CNIDel, time.Since(start), err)
	return err
}

// cachedNetwork returns the network config libcni cached at ADD for this
// attachment, or nil when there is none.
func (m *Manager) cachedNetwork(cfg *libcni.CNIConfig, current *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (*libcni.NetworkConfigList, error) {
	if current == nil {
		return nil, nil
	}
	b, _, err := cfg.GetNetworkListCachedConfig(current, rt)
	if err != nil || len(b) == 0 {
		return nil, err
	}
	return libcni.NetworkConfFromBytes(b)
}

func parseResult(res types.Result) (*Result, error) {
	r, err := types100.GetResult(res)
	if err != nil {
		return nil, fmt.Errorf("convert result: %w", err)
	}
	out := &Result{}
	var v6 []net.IP
	for _, ip := range r.IPs {
		if ip.Address.IP.To4() != nil {
			out.IPs = append(out.IPs, ip.Address.IP)
		} else {
			v6 = append(v6, ip.Address.IP)
		}
	}
	out.IPs = append(out.IPs, v6...)
	return out, nil
}
