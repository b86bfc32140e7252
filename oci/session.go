package oci

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/crid-dev/crid/oci/protocol"
)

// A session is a connection to the monitor of its own, for one request that
// waits as long as a container or a process lives (Wait, ExecSync, a
// streamed exec). The monitor serves a bounded number of requests at a time
// per connection; on the main connection such waits (an idle terminal can
// be held for hours) would take those slots one by one until no create,
// start, stop or state call of any pod on the node got through. A session
// costs one descriptor on each side and ends with its request, so what
// long waits hold grows with the requests that hold them, and nothing is
// global. The monitor kills an exec whose session ends before its exit was
// collected: a daemon that dies or gives up leaves no process behind.
type session struct {
	*protocol.Client
	unbind func() bool
}

// Close ends the session; calls in flight fail with ErrConnLost. Closing
// twice is harmless.
func (s *session) Close() {
	s.unbind()
	_ = s.Client.Close()
}

// sessionRetry is the pause before dialling again when the monitor's
// socket does not take a connection while the main connection lives (its
// backlog is full for a moment).
const sessionRetry = 20 * time.Millisecond

// session dials a connection of its own once the monitor serves, waiting
// out a monitor restart as calls on the main connection do. The session
// also ends when the Runtime closes.
func (r *Runtime) session(ctx context.Context) (*session, error) {
	for {
		main, _, err := r.conn(ctx)
		if err != nil {
			return nil, err
		}
		c, err := protocol.Dial(ctx, protocol.SocketPath(r.opts.RunDir))
		if err == nil {
			return &session{Client: c, unbind: context.AfterFunc(r.ctx, func() { _ = c.Close() })}, nil
		}
		// A monitor that stopped serving is seen on the main connection
		// as well: then the next conn waits for its successor.
		t := time.NewTimer(sessionRetry)
		select {
		case <-main.Done():
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("oci: connect to the monitor: %w (%w)", ctx.Err(), err)
		case <-r.ctx.Done():
			t.Stop()
			return nil, errors.New("oci: runtime closed")
		}
		t.Stop()
	}
}

// sessionCall runs one long call on a session of its own; with retry, a
// call cut short by the loss of the monitor is repeated on its successor.
func (r *Runtime) sessionCall(ctx context.Context, method string, req, resp any, retry bool) error {
	for {
		s, err := r.session(ctx)
		if err != nil {
			return err
		}
		_, err = s.Call(ctx, method, req, nil, resp)
		s.Close()
		if err != nil && errors.Is(err, protocol.ErrConnLost) && retry && ctx.Err() == nil {
			if !sleep(ctx, sessionRetry) {
				return fmt.Errorf("%s: %w", method, ctx.Err())
			}
			continue
		}
		if err != nil {
			return mapError(err)
		}
		return nil
	}
}
