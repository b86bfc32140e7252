package oci

import (
	"context"
	"fmt"
)

// Exec runs cmd in a running container with the client's streams (CRI
// Exec through the streaming server), as the container's user, in its
// working directory and environment, and returns the exit.
func (c *Containers) Exec(ctx context.Context, idOrPrefix string, cmd []string, s Streams) (Exit, error) {
	ctr, err := c.Get(ctx, idOrPrefix)
	if err != nil {
		return Exit{}, err
	}
	if ctr.State != StateRunning {
		return Exit{}, fmt.Errorf("%w: container %s is %s, not running", ErrFailedPrecondition, ctr.ID, ctr.State)
	}
	if len(cmd) == 0 || cmd[0] == "" {
		return Exit{}, fmt.Errorf("%w: exec in container %s: empty command", ErrInvalidArgument, ctr.ID)
	}
	p := *ctr.Process
	p.Args = cmd
	p.ConsoleSize = nil
	x, err := c.rt.ExecStream(ctx, ctr.ID, &p, s)
	return x, c.execFailed(ctx, ctr.ID, err)
}

// Attach wires the client's streams to a running container's stdio (CRI
// Attach through the streaming server). Input goes through only when the
// container was created with stdin; the terminal mode is the container's.
func (c *Containers) Attach(ctx context.Context, idOrPrefix string, s Streams) error {
	ctr, err := c.Get(ctx, idOrPrefix)
	if err != nil {
		return err
	}
	if ctr.State != StateRunning {
		return fmt.Errorf("%w: attach to container %s: it is %s, not running", ErrFailedPrecondition, ctr.ID, ctr.State)
	}
	if !ctr.Config.GetStdin() {
		s.Stdin = nil
	}
	s.TTY = ctr.Config.GetTty()
	return c.rt.Attach(ctx, ctr.ID, ctr.Config.GetStdinOnce(), s)
}
