package podsandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/events"
	"github.com/crid-dev/crid/failpoint"
)

// Stop stops the pod: its containers, its infra process, its network (CNI DEL, so the IP
// lease is released) and its namespaces. The record stays until Remove.
// Stopping a stopped pod does nothing.
func (m *Manager) Stop(ctx context.Context, idOrPrefix string) error {
	sb, unlock, err := m.lock(ctx, idOrPrefix)
	if errors.Is(err, ErrNotFound) {
		return nil // CRI: stopping an unknown pod is not an error
	}
	if err != nil {
		return err
	}
	defer unlock()
	return m.stop(ctx, sb)
}

// stop is Stop with the sandbox held.
func (m *Manager) stop(ctx context.Context, sb *Sandbox) error {
	if sb.State == StateReady {
		if err := m.stopping(ctx, sb); err != nil {
			return fmt.Errorf("stop the pod's containers: %w", err)
		}
	}
	if err := m.release(ctx, sb); err != nil {
		return err
	}
	m.mu.Lock()
	was := sb.State
	sb.State = StateNotReady
	m.mu.Unlock()
	if err := m.persist(sb); err != nil {
		return err
	}
	if err := failpoint.Inject("sandbox.stop.after-record"); err != nil {
		return err
	}
	if was == StateReady {
		m.publish(events.ContainerStopped, sb.ID)
	}
	return nil
}

// release undoes everything of a running pod but its directory, cgroup and
// record: infra process, network, namespaces, /dev/shm. Each step is
// idempotent and is recorded as done, so a crash in the middle resumes.
func (m *Manager) release(ctx context.Context, sb *Sandbox) error {
	if m.opts.Containers != nil {
		if err := m.opts.Containers.StopAll(ctx, sb.ID); err != nil {
			return fmt.Errorf("stop the pod's containers: %w", err)
		}
	}
	if err := failpoint.Inject("sandbox.stop.after-containers"); err != nil {
		return err
	}
	m.unwatch(sb.ID) // its exit is this stop's doing
	if m.opts.Infra != nil && sb.InfraPid != 0 {
		if err := m.opts.Infra.Stop(ctx, sb); err != nil {
			return fmt.Errorf("stop infra process: %w", err)
		}
	}
	if err := failpoint.Inject("sandbox.stop.after-infra"); err != nil {
		return err
	}
	if sb.NetworkReady || (!sb.HostNetwork() && sb.State != StateNotReady) {
		// DEL runs whether or not ADD completed, and also when the
		// namespace is gone: only then is no lease left behind.
		a := m.attachment(sb)
		if !pinned(a.NetNS) {
			a.NetNS = ""
		}
		if err := m.opts.CNI.Teardown(ctx, a); err != nil {
			return err
		}
		m.mu.Lock()
		sb.NetworkReady = false
		sb.IPs = nil
		m.mu.Unlock()
	}
	if err := failpoint.Inject("sandbox.stop.after-cni"); err != nil {
		return err
	}
	dir := m.dir(sb.ID)
	if err := errors.Join(unpinNamespaces(pinsIn(dir)), unmountShm(dir)); err != nil {
		return err
	}
	m.mu.Lock()
	sb.Namespaces = map[string]string{}
	sb.ShmPath = ""
	m.mu.Unlock()
	return failpoint.Inject("sandbox.stop.after-unpin")
}

// removeTimeout bounds a pod's teardown once its removal is recorded; it
// no longer follows the client's deadline.
const removeTimeout = 2 * time.Minute

// Remove removes the pod and everything it owns: it stops it first if it
// runs. Removing an unknown pod is not an error.
func (m *Manager) Remove(ctx context.Context, idOrPrefix string) error {
	sb, unlock, err := m.lock(ctx, idOrPrefix)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unlock()
	m.mu.Lock()
	wasReady := sb.State == StateReady
	m.mu.Unlock()
	if wasReady {
		if err := m.stopping(ctx, sb); err != nil {
			return fmt.Errorf("stop the pod's containers: %w", err)
		}
	}
	m.mu.Lock()
	sb.State = StateRemoving
	m.mu.Unlock()
	if err := m.persist(sb); err != nil {
		return err
	}
	if err := failpoint.Inject("sandbox.remove.after-intent"); err != nil {
		return err
	}
	// Once the removal is recorded it is carried through whatever the
	// client does: a teardown cut off by a cancelled call left the pod
	// half-removed and hidden from List, so kubelet never retried it.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
	defer cancel()
	if err := m.teardown(tctx, sb); err != nil {
		// Listed again (as not ready), so kubelet's next sweep retries.
		m.mu.Lock()
		sb.State = StateNotReady
		m.mu.Unlock()
		if perr := m.persist(sb); perr != nil {
			klog.ErrorS(perr, "Recording a failed removal", "podSandboxID", sb.ID)
		}
		return err
	}
	m.forget(sb)
	m.removed(ctx, sb)
	if wasReady { // removed without a stop first
		m.publish(events.ContainerStopped, sb.ID)
	}
	m.publish(events.ContainerDeleted, sb.ID)
	return nil
}

// teardown removes everything a sandbox may own, whatever state it got to:
// the undo of a failed create, of a crash, and the body of Remove.
func (m *Manager) teardown(ctx context.Context, sb *Sandbox) error {
	if err := m.release(ctx, sb); err != nil {
		return err
	}
	if m.opts.Containers != nil {
		if err := m.opts.Containers.RemoveAll(ctx, sb.ID); err != nil {
			return fmt.Errorf("remove the pod's containers: %w", err)
		}
	}
	if err := failpoint.Inject("sandbox.remove.after-containers"); err != nil {
		return err
	}
	if m.opts.Infra != nil {
		if err := m.opts.Infra.Remove(ctx, sb); err != nil {
			return fmt.Errorf("remove infra container: %w", err)
		}
	}
	if err := failpoint.Inject("sandbox.remove.after-infra"); err != nil {
		return err
	}
	if sb.OwnCgroup && sb.CgroupParent != "" {
		if err := m.opts.Cgroups.Remove(sb.CgroupParent); err != nil {
			return err
		}
	}
	if err := failpoint.Inject("sandbox.remove.after-cgroup"); err != nil {
		return err
	}
	if err := os.RemoveAll(m.dir(sb.ID)); err != nil {
		return fmt.Errorf("remove sandbox dir: %w", err)
	}
	if err := failpoint.Inject("sandbox.remove.after-dir"); err != nil {
		return err
	}
	klog.V(2).InfoS("Sandbox torn down", "podSandboxID", sb.ID)
	return nil
}

// pinned reports whether p is a mounted namespace pin.
func pinned(p string) bool {
	if p == "" {
		return false
	}
	fi, err := os.Stat(p)
	if err != nil {
		return false
	}
	parent, err := os.Stat(filepath.Dir(p))
	if err != nil {
		return false
	}
	// A bind-mounted nsfs file sits on another device than its directory.
	return devOf(fi) != devOf(parent)
}
