package podsandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/cni"
	"github.com/crid-dev/crid/events"
	"github.com/crid-dev/crid/failpoint"
	"github.com/crid-dev/crid/panicguard"
)

// Handlers lists the runtime handlers pods may name: "" (the default)
// first, then the others in order.
func (m *Manager) Handlers() []string {
	if m.opts.Handlers == nil {
		return []string{"", "runc"}
	}
	names := make([]string, 0, len(m.opts.Handlers))
	for n := range m.opts.Handlers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// handler returns the options of a runtime handler, and whether it is one.
func (m *Manager) handler(name string) (Handler, bool) {
	if m.opts.Handlers == nil {
		return Handler{}, name == "" || name == "runc"
	}
	h, ok := m.opts.Handlers[name]
	return h, ok
}

// Run creates a pod sandbox and returns its ID. A request with the
// metadata of an existing pod fails with ErrAlreadyExists, unless that pod
// is the result of an earlier request with the same config whose client
// gave up: kubelet retries such a request and must get the pod.
//
// Creation runs to the end even when the client goes away, so a retry finds
// a complete pod; every step that creates something is undone when a later
// step fails.
func (m *Manager) Run(ctx context.Context, cfg *runtime.PodSandboxConfig, handler string) (string, error) {
	if err := m.validate(cfg, handler); err != nil {
		return "", err
	}
	key := nameKey(cfg.Metadata)
	for {
		m.mu.Lock()
		id, exists := m.names[key]
		if !exists {
			break
		}
		existing := m.sandboxes[id]
		if wait, busy := m.busy[id]; busy {
			m.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		if existing.TimedOut && proto.Equal(existing.Config, cfg) && existing.RuntimeHandler == handler {
			existing.TimedOut = false
			err := m.persist(existing)
			m.mu.Unlock()
			if err != nil {
				return "", err
			}
			klog.InfoS("Returning the sandbox of an earlier, timed-out request", "podSandboxID", id)
			return id, nil
		}
		m.mu.Unlock()
		return "", fmt.Errorf("%w: pod %s/%s (uid %s, attempt %d) is sandbox %s", ErrAlreadyExists,
			cfg.Metadata.Namespace, cfg.Metadata.Name, cfg.Metadata.Uid, cfg.Metadata.Attempt, id)
	}
	sb := &Sandbox{
		ID:             newID(),
		Config:         proto.Clone(cfg).(*runtime.PodSandboxConfig),
		RuntimeHandler: handler,
		State:          StateCreating,
		CreatedAt:      time.Now().UnixNano(),
		Namespaces:     map[string]string{},
	}
	if p := cfg.GetLinux().GetCgroupParent(); p != "" {
		// validate accepted it: this is the form the driver records
		// ("/test.slice" is "test.slice" for systemd).
		sb.CgroupParent, _ = m.opts.Cgroups.NormalizeParent(p)
	} else {
		// Named before the intent record is written, so the cleanup after
		// a crash knows which cgroup to remove.
		sb.CgroupParent = m.opts.Cgroups.DefaultPodParent(m.opts.DefaultCgroupParent, sb.ID)
		sb.OwnCgroup = true
	}
	done := make(chan struct{})
	m.sandboxes[sb.ID] = sb
	m.names[key] = sb.ID
	m.busy[sb.ID] = done
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.busy, sb.ID)
		m.mu.Unlock()
		close(done)
	}()

	// The intent record comes first: whatever a crash interrupts below,
	// the next start finds it and undoes it.
	if err := m.persist(sb); err != nil {
		m.forget(sb)
		return "", err
	}
	err := failpoint.Inject("sandbox.run.after-intent")
	if err == nil {
		err = m.create(context.WithoutCancel(ctx), sb)
	}
	var ready func()
	if err == nil {
		ready, err = m.ready(context.WithoutCancel(ctx), sb)
	}
	if err != nil {
		if undoErr := m.teardown(context.WithoutCancel(ctx), sb); undoErr != nil {
			klog.ErrorS(undoErr, "Undoing failed sandbox creation", "podSandboxID", sb.ID)
			err = errors.Join(err, undoErr)
		} else {
			m.forget(sb)
		}
		return "", err
	}
	m.mu.Lock()
	sb.State = StateReady
	sb.TimedOut = ctx.Err() != nil
	m.mu.Unlock()
	ready()
	if err := failpoint.Inject("sandbox.run.after-ready"); err != nil {
		return "", err
	}
	if err := m.persist(sb); err != nil {
		return "", err
	}
	if err := failpoint.Inject("sandbox.run.after-record"); err != nil {
		return "", err
	}
	m.publish(events.ContainerCreated, sb.ID)
	m.publish(events.ContainerStarted, sb.ID)
	if sb.TimedOut {
		klog.InfoS("Sandbox finished after its client gave up; kept for the retry", "podSandboxID", sb.ID)
	}
	return sb.ID, nil
}

func (m *Manager) create(ctx context.Context, sb *Sandbox) error {
	dir := m.dir(sb.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create sandbox dir: %w", err)
	}
	if err := failpoint.Inject("sandbox.run.after-dir"); err != nil {
		return err
	}

	if sb.OwnCgroup {
		if err := m.opts.Cgroups.Create(sb.CgroupParent); err != nil {
			return err
		}
	}
	if err := failpoint.Inject("sandbox.run.after-cgroup"); err != nil {
		return err
	}

	sb.Hostname = sb.Config.Hostname
	if sb.HostNetwork() {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("host name: %w", err)
		}
		sb.Hostname = h
	}
	var kinds []nsKind
	if !sb.HostNetwork() {
		kinds = append(kinds, nsNet, nsUTS)
	}
	if !sb.HostIPC() {
		kinds = append(kinds, nsIPC)
	}
	setup := nsSetup{hostname: sb.Hostname, sysctls: sb.Config.GetLinux().GetSysctls()}
	var pins map[nsKind]string
	var err error
	if sb.usernsMode() == runtime.NamespaceMode_POD {
		pins, err = pinUsernsNamespaces(filepath.Join(dir, "ns"), kinds, sb.options().GetUsernsOptions(), setup)
	} else {
		pins, err = pinNamespaces(filepath.Join(dir, "ns"), kinds, setup)
	}
	for k, p := range pins {
		sb.Namespaces[string(k)] = p
	}
	if err != nil {
		return err
	}
	if err := failpoint.Inject("sandbox.run.after-netns"); err != nil {
		return err
	}

	if err := writePodFiles(dir, sb.Config, sb.Hostname, sb.HostNetwork()); err != nil {
		return err
	}
	owner := shmOwner{}
	if uid, gid, ok := sb.UsernsRoot(); ok && m.opts.NoIdmapTmpfs {
		if err := chownPodFiles(dir, int(uid), int(gid)); err != nil {
			return err
		}
		owner = shmOwner{set: true, uid: uid, gid: gid}
		sb.PodFilesOwned = true
	}
	if !sb.HostIPC() {
		if sb.ShmPath, err = mountShm(dir, m.opts.ShmSize, owner); err != nil {
			return err
		}
	}
	if err := failpoint.Inject("sandbox.run.after-files"); err != nil {
		return err
	}

	// CNI ADD and the infra process need only the pinned namespaces: run
	// them at the same time.
	var netErr, infraErr error
	var infraPid int
	var pidPin string
	netDone := make(chan struct{})
	go func() { // ends with the CNI ADD; create waits for it
		defer close(netDone)
		defer panicguard.Recover("pod network setup", &netErr)
		netErr = m.setupNetwork(ctx, sb)
	}()
	if m.needsInfra(sb) {
		if infraPid, infraErr = m.opts.Infra.Start(ctx, sb); infraErr == nil {
			pidPin, infraErr = m.holdInfra(ctx, sb, infraPid)
		}
	}
	<-netDone
	sb.InfraPid = infraPid
	if pidPin != "" {
		sb.Namespaces[string(nsPID)] = pidPin
	}
	if err := errors.Join(netErr, infraErr); err != nil {
		return err
	}
	if err := failpoint.Inject("sandbox.run.after-infra-start"); err != nil {
		return err
	}
	return nil
}

func (m *Manager) needsInfra(sb *Sandbox) bool {
	h, _ := m.handler(sb.RuntimeHandler)
	return m.opts.Infra != nil && (h.InfraAlways || sb.PidMode() == runtime.NamespaceMode_POD)
}

func (m *Manager) setupNetwork(ctx context.Context, sb *Sandbox) error {
	if sb.HostNetwork() {
		return nil
	}
	res, err := m.opts.CNI.Setup(ctx, m.attachment(sb))
	if err != nil {
		return err
	}
	sb.NetworkReady = true
	for _, ip := range res.IPs {
		sb.IPs = append(sb.IPs, ip.String())
	}
	return failpoint.Inject("sandbox.run.after-cni")
}

func (m *Manager) attachment(sb *Sandbox) cni.Attachment {
	md := sb.Config.Metadata
	a := cni.Attachment{SandboxID: sb.ID, NetNS: sb.NetNS(), PodName: md.Name, PodNamespace: md.Namespace, PodUID: md.Uid}
	for _, pm := range sb.Config.PortMappings {
		a.PortMappings = append(a.PortMappings, cni.PortMapping{
			HostPort: pm.HostPort, ContainerPort: pm.ContainerPort, Protocol: pm.Protocol.String(), HostIP: pm.HostIp,
		})
	}
	return a
}

// validate checks what only the sandbox manager can: handler, cgroup
// parent, sysctls. Nothing has been created when it fails.
func (m *Manager) validate(cfg *runtime.PodSandboxConfig, handler string) error {
	if _, ok := m.handler(handler); !ok {
		return fmt.Errorf("%w: runtime_handler %q is not configured (crid's runtime.handlers: %q)", ErrInvalid, handler, m.Handlers())
	}
	if p := cfg.GetLinux().GetCgroupParent(); p != "" {
		if err := m.opts.Cgroups.ValidateParent(p); err != nil {
			return fmt.Errorf("%w: config.linux.cgroup_parent: %w", ErrInvalid, err)
		}
	}
	opts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	for key, val := range cfg.GetLinux().GetSysctls() {
		kind, ok := namespacedSysctl(key)
		switch {
		case !ok || !validSysctlName(key):
			return fmt.Errorf("%w: config.linux.sysctls: %q is not a namespaced sysctl", ErrInvalid, key)
		case kind == nsNet && opts.GetNetwork() == runtime.NamespaceMode_NODE:
			return fmt.Errorf("%w: config.linux.sysctls: %q would change the node's network namespace", ErrInvalid, key)
		case kind == nsIPC && opts.GetIpc() == runtime.NamespaceMode_NODE:
			return fmt.Errorf("%w: config.linux.sysctls: %q would change the node's IPC namespace", ErrInvalid, key)
		case val == "" || strings.ContainsAny(val, "\n\x00"):
			return fmt.Errorf("%w: config.linux.sysctls: %q has an invalid value %q", ErrInvalid, key, val)
		}
	}
	if err := ValidateUserns("config.linux.security_context.namespace_options.userns_options", opts.GetUsernsOptions()); err != nil {
		return err
	}
	if UsernsMode(opts.GetUsernsOptions()) == runtime.NamespaceMode_POD && !m.opts.UserNamespaces {
		return fmt.Errorf("%w: config.linux.security_context.namespace_options.userns_options: this node does not support user namespaces: %s", ErrInvalid, m.opts.UserNamespacesReason)
	}
	if UsernsMode(opts.GetUsernsOptions()) == runtime.NamespaceMode_POD && opts.GetNetwork() == runtime.NamespaceMode_NODE && !m.opts.UserNamespacesHostNetwork {
		return fmt.Errorf("%w: config.linux.security_context.namespace_options: a pod in a user namespace of its own cannot use the node's network on this node", ErrInvalid)
	}
	if opts.GetPid() == runtime.NamespaceMode_TARGET {
		return fmt.Errorf("%w: config.linux.security_context.namespace_options.pid: TARGET applies to containers, not pods", ErrInvalid)
	}
	return nil
}

func validSysctlName(key string) bool {
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return key[0] != '.' && key[len(key)-1] != '.' && !strings.Contains(key, "..")
}
