package oci

import (
	"context"
	"fmt"
	"os"
	"syscall"

	"github.com/crid-dev/crid/oci/protocol"
)

// Create creates the container; its init waits before the user process
// (CRI CreateContainer). It returns the init's pid.
func (r *Runtime) Create(ctx context.Context, req CreateRequest) (int, error) {
	var reply protocol.CreateReply
	fds, gen, err := r.call(ctx, protocol.MethodCreate, protocol.CreateRequest{
		ID: req.ID, Spec: req.Spec, LogPath: req.LogPath, MaxLogLine: req.MaxLogLine,
		Stdin: req.Stdin, StdinOnce: req.StdinOnce, TTY: req.TTY,
	}, nil, &reply, false)
	if err != nil {
		return 0, fmt.Errorf("create container %s: %w", req.ID, err)
	}
	r.mu.Lock()
	r.tracked[req.ID] = &tracked{pid: reply.Pid, start: reply.InitStartTime, stdio: map[string]*os.File{}}
	moved := r.gen != gen
	c := r.client
	r.mu.Unlock()
	r.keepStdio(req.ID, reply.Stdio, fds)
	if moved && c != nil {
		// The monitor was replaced after replying: the new one has not
		// seen these pipes yet.
		r.adopt(ctx, c, req.ID)
	}
	return reply.Pid, nil
}

// Start releases the container's user process (CRI StartContainer).
func (r *Runtime) Start(ctx context.Context, id string) error {
	if _, _, err := r.call(ctx, protocol.MethodStart, protocol.IDRequest{ID: id}, nil, &protocol.StartReply{}, false); err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	return nil
}

// Kill sends sig to the container's init. Signalling a stopped container
// succeeds.
func (r *Runtime) Kill(ctx context.Context, id string, sig syscall.Signal) error {
	return r.kill(ctx, id, sig, false)
}

// KillAll sends sig to every process of the container's cgroup.
func (r *Runtime) KillAll(ctx context.Context, id string, sig syscall.Signal) error {
	return r.kill(ctx, id, sig, true)
}

func (r *Runtime) kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	if _, _, err := r.call(ctx, protocol.MethodKill, protocol.KillRequest{ID: id, Signal: int(sig), All: all}, nil, nil, true); err != nil {
		return fmt.Errorf("kill container %s with %v: %w", id, sig, err)
	}
	return nil
}

// Wait returns when the container has exited and its output is in the log.
// It waits on a session of its own: a stop with a long grace period holds
// no request slot of the main connection.
func (r *Runtime) Wait(ctx context.Context, id string) (Exit, error) {
	var e protocol.Exit
	if err := r.sessionCall(ctx, protocol.MethodWait, protocol.IDRequest{ID: id}, &e, true); err != nil {
		return Exit{}, fmt.Errorf("wait for container %s: %w", id, err)
	}
	r.exited(id)
	return *exitFrom(&e), nil
}

// State returns the container's state.
func (r *Runtime) State(ctx context.Context, id string) (State, error) {
	var s protocol.State
	if _, _, err := r.call(ctx, protocol.MethodState, protocol.IDRequest{ID: id}, nil, &s, true); err != nil {
		return State{}, fmt.Errorf("state of container %s: %w", id, err)
	}
	if s.Status == protocol.StatusStopped {
		r.exited(id)
	}
	return stateFrom(s), nil
}

// List returns every container the monitor manages, for reconciling the
// daemon's records after a restart.
func (r *Runtime) List(ctx context.Context) ([]State, error) {
	var l protocol.ListReply
	if _, _, err := r.call(ctx, protocol.MethodList, struct{}{}, nil, &l, true); err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]State, 0, len(l.Containers))
	for _, s := range l.Containers {
		out = append(out, stateFrom(s))
	}
	return out, nil
}

// Delete kills the container if it still runs, removes its cgroups,
// libcontainer state and records. Deleting an unknown container succeeds.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	if _, _, err := r.call(ctx, protocol.MethodDelete, protocol.IDRequest{ID: id}, nil, nil, true); err != nil {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	r.mu.Lock()
	if t := r.tracked[id]; t != nil {
		t.release()
		delete(r.tracked, id)
	}
	r.mu.Unlock()
	return nil
}

// ReopenLog reopens the container's log file (kubelet rotated it).
func (r *Runtime) ReopenLog(ctx context.Context, id string) error {
	if _, _, err := r.call(ctx, protocol.MethodReopenLog, protocol.IDRequest{ID: id}, nil, nil, true); err != nil {
		return fmt.Errorf("reopen log of container %s: %w", id, err)
	}
	return nil
}

// CloseStdin closes the container's stdin so it reads EOF.
func (r *Runtime) CloseStdin(ctx context.Context, id string) error {
	if _, _, err := r.call(ctx, protocol.MethodCloseStdin, protocol.IDRequest{ID: id}, nil, nil, true); err != nil {
		return fmt.Errorf("close stdin of container %s: %w", id, err)
	}
	r.mu.Lock()
	if t := r.tracked[id]; t != nil && t.stdio[protocol.StdioStdin] != nil {
		t.stdio[protocol.StdioStdin].Close()
		delete(t.stdio, protocol.StdioStdin)
	}
	r.mu.Unlock()
	return nil
}

// exited drops the stdio duplicates of a container known to have stopped:
// its pipes have no writer left.
func (r *Runtime) exited(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t := r.tracked[id]; t != nil {
		t.exited = true
		t.release()
	}
}
