// Package podsandbox owns pod sandboxes: the namespaces a pod's containers
// share (pinned under the run dir), the infra process when the pod needs a
// PID 1, hostname, resolv.conf, hosts and /dev/shm, namespaced sysctls, the
// pod network through CNI, the pod cgroup, and the sandbox records.
package podsandbox

import (
	"fmt"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// State is a sandbox's lifecycle state. creating and removing are the
// intent records of a step in progress: a daemon that dies meanwhile finds
// them at start and undoes the step.
type State string

const (
	StateCreating State = "creating"
	StateReady    State = "ready"
	StateNotReady State = "notready"
	StateRemoving State = "removing"
)

// Sandbox is one pod sandbox.
type Sandbox struct {
	ID             string                    `json:"id"`
	Config         *runtime.PodSandboxConfig `json:"-"`
	RuntimeHandler string                    `json:"runtime_handler"`
	State          State                     `json:"state"`
	CreatedAt      int64                     `json:"created_at"`
	// Namespaces are the pinned namespaces by kind ("net", "ipc", "uts");
	// a kind the pod takes from the host is absent.
	Namespaces map[string]string `json:"namespaces"`
	// IPs are the pod's addresses from CNI, IPv4 first.
	IPs []string `json:"ips,omitempty"`
	// NetworkReady is set between a successful CNI ADD and its DEL.
	NetworkReady bool   `json:"network_ready"`
	Hostname     string `json:"hostname"`
	// CgroupParent is the pod cgroup its containers go under; OwnCgroup
	// is set when crid created it (no parent in the request).
	CgroupParent string `json:"cgroup_parent"`
	OwnCgroup    bool   `json:"own_cgroup"`
	// InfraPid is the infra (pause) process, 0 when the pod has none.
	InfraPid int `json:"infra_pid,omitempty"`
	// ShmPath is the pod's /dev/shm, empty for host IPC.
	ShmPath string `json:"shm_path,omitempty"`
	// PodFilesOwned is set for a pod in a user namespace of its own on a
	// node that cannot idmap a tmpfs: its /dev/shm and files are owned by
	// the pod's mapped root, to be bind-mounted without idmap.
	PodFilesOwned bool `json:"pod_files_owned,omitempty"`
	// TimedOut marks the result of a RunPodSandbox whose client gave up
	// before it finished: a retry with the same config gets this pod.
	TimedOut bool `json:"timed_out,omitempty"`
}

// nameKey identifies a pod as kubelet does: one sandbox per name,
// namespace, UID and attempt.
func nameKey(m *runtime.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%d", m.Name, m.Namespace, m.Uid, m.Attempt)
}

// NamespaceMode returns the pod's mode for a namespace option.
func (sb *Sandbox) options() *runtime.NamespaceOption {
	return sb.Config.GetLinux().GetSecurityContext().GetNamespaceOptions()
}

// HostNetwork reports whether the pod uses the node's network.
func (sb *Sandbox) HostNetwork() bool { return sb.options().GetNetwork() == runtime.NamespaceMode_NODE }

// HostIPC reports whether the pod uses the node's IPC namespace.
func (sb *Sandbox) HostIPC() bool { return sb.options().GetIpc() == runtime.NamespaceMode_NODE }

// PidMode is the pod's PID namespace mode: POD (one shared namespace, held
// by the infra process), CONTAINER or NODE.
func (sb *Sandbox) PidMode() runtime.NamespaceMode { return sb.options().GetPid() }

// NetNS is the pinned network namespace, empty for host network.
func (sb *Sandbox) NetNS() string { return sb.Namespaces[string(nsNet)] }

// Dir is the pod's directory under the run dir.
func (m *Manager) dir(id string) string { return m.opts.RunDir + "/" + id }

// PodFile is the path of one of the pod's files its containers mount:
// "resolv.conf", "hosts" or "hostname".
func (m *Manager) PodFile(sb *Sandbox, name string) string { return m.dir(sb.ID) + "/" + name }

func (sb *Sandbox) clone() *Sandbox {
	c := *sb
	c.Namespaces = make(map[string]string, len(sb.Namespaces))
	for k, v := range sb.Namespaces {
		c.Namespaces[k] = v
	}
	c.IPs = append([]string(nil), sb.IPs...)
	return &c
}

// matchesLabels reports whether every selector label is on the pod.
func matchesLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}
