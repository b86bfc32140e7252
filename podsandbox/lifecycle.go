package podsandbox

import "context"

// Lifecycle is told about pods at the points of their lifecycle that
// outside observers must see in order: the CRI layer wires NRI plugins
// here. Each method gets a copy of the sandbox.
type Lifecycle interface {
	// Ready is called when a pod is fully set up, before it becomes
	// ready and visible to List and Get. An error fails Run, which then
	// tears the pod down, as it does for any other failed step. On
	// success, done is called once the pod is ready.
	Ready(ctx context.Context, sb *Sandbox) (done func(), err error)
	// Stopping is called when a ready pod stops (Stop, or Remove of a
	// ready pod), once its containers have stopped and before its infra
	// process, network and namespaces go.
	Stopping(ctx context.Context, sb *Sandbox)
	// Removed is called when a pod and everything it owned are gone.
	Removed(ctx context.Context, sb *Sandbox)
}

// SetLifecycle installs l. Call it before the manager serves requests.
func (m *Manager) SetLifecycle(l Lifecycle) { m.lifecycle = l }

// ready runs the Ready hook, if any.
func (m *Manager) ready(ctx context.Context, sb *Sandbox) (func(), error) {
	if m.lifecycle == nil {
		return func() {}, nil
	}
	done, err := m.lifecycle.Ready(ctx, sb.clone())
	if err != nil {
		return nil, err
	}
	if done == nil {
		done = func() {}
	}
	return done, nil
}

// stopping stops a ready pod's containers and runs the Stopping hook;
// without a hook it does nothing (release stops the containers).
func (m *Manager) stopping(ctx context.Context, sb *Sandbox) error {
	if m.lifecycle == nil {
		return nil
	}
	if m.opts.Containers != nil {
		if err := m.opts.Containers.StopAll(ctx, sb.ID); err != nil {
			return err
		}
	}
	m.lifecycle.Stopping(ctx, sb.clone())
	return nil
}

// removed runs the Removed hook, if any.
func (m *Manager) removed(ctx context.Context, sb *Sandbox) {
	if m.lifecycle != nil {
		m.lifecycle.Removed(ctx, sb.clone())
	}
}
