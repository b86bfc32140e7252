package protocol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/panicguard"
)

// Handler serves one request. It owns fds (and must close those it does not
// keep). It returns the reply body and descriptors to send with it; ServeConn
// closes replyFds once sent, so a handler hands over duplicates.
type Handler func(ctx context.Context, method string, body json.RawMessage, fds []*os.File) (reply any, replyFds []*os.File, err error)

// Errorf returns an error carrying code; wrapping it with %w keeps the code.
func Errorf(code Code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of the first *Error in err's chain, or
// CodeInternal.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ServeConn reads requests from fc until it fails or ctx ends and serves each
// in its own goroutine, at most maxInFlight at a time (the reader waits for a
// slot, so a flooding peer slows itself down). The cap is per connection:
// calls that wait for long (wait, exec_wait) come on connections of their
// own, one per waiting request, so they never take the slots of the
// lifecycle calls on the daemon's main connection. A frame that cannot be
// decoded ends the connection, never the process; a panicking handler
// becomes an internal error reply to its request, logged with its stack. The
// context given to handlers is cancelled when the connection ends, so
// blocking calls such as wait return and what a connection owns (a streamed
// exec) can be let go. ServeConn returns after every handler it started has
// returned.
func ServeConn(ctx context.Context, fc *FrameConn, h Handler, maxInFlight int) (err error) {
	defer panicguard.Recover("monitor connection reader", &err)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { fc.Close() })
	defer stop()
	slots := make(chan struct{}, max(maxInFlight, 1))
	for {
		payload, fds, err := fc.ReadFrame()
		if err != nil {
			cancel()
			fc.Close()
			return err
		}
		var m Message
		if err := json.Unmarshal(payload, &m); err != nil || m.Method == "" {
			CloseFiles(fds)
			cancel()
			fc.Close()
			if err == nil {
				err = errors.New("request without a method")
			}
			return fmt.Errorf("%w: undecodable request: %v", ErrProtocol, err)
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			CloseFiles(fds)
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			reply := serveOne(ctx, h, m, fds)
			// A reply that cannot be written means the peer is gone;
			// the read loop sees that too.
			_ = fc.WriteFrame(reply.payload, reply.fds)
			CloseFiles(reply.fds)
		}()
	}
}

type encoded struct {
	payload []byte
	fds     []*os.File
}

func serveOne(ctx context.Context, h Handler, m Message, fds []*os.File) (out encoded) {
	var perr error
	defer func() {
		if perr != nil {
			out = encodeError(m.ID, perr)
		}
	}()
	defer panicguard.Recover("monitor request "+m.Method, &perr)
	body, rfds, err := h(ctx, m.Method, m.Body, fds)
	if err != nil {
		CloseFiles(rfds)
		return encodeError(m.ID, err)
	}
	raw, err := json.Marshal(body)
	if err != nil {
		CloseFiles(rfds)
		return encodeError(m.ID, fmt.Errorf("encode %s reply: %w", m.Method, err))
	}
	payload, err := json.Marshal(Message{ID: m.ID, Body: raw})
	if err == nil && len(payload) > MaxPayload {
		err = fmt.Errorf("%s reply of %d bytes exceeds the frame limit", m.Method, len(payload))
	}
	if err != nil {
		CloseFiles(rfds)
		return encodeError(m.ID, err)
	}
	return encoded{payload: payload, fds: rfds}
}

func encodeError(id uint64, err error) encoded {
	payload, _ := json.Marshal(Message{ID: id, Error: &Error{Code: CodeOf(err), Message: err.Error()}})
	return encoded{payload: payload}
}

// Decode unmarshals a request body, reporting a bad body as
// invalid_argument.
func Decode(body json.RawMessage, v any) error {
	if len(body) == 0 {
		body = json.RawMessage("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return Errorf(CodeInvalidArgument, "malformed request body: %v", err)
	}
	return nil
}

// Listener serves a unix listener's connections with ServeConn: the one
// accept loop of the monitor and the stdio holder.
type Listener struct {
	Handle      Handler
	MaxInFlight int
	Log         *slog.Logger
	// Accepted, when set, runs for each connection before it is served;
	// Ended after it ended.
	Accepted, Ended func()
}

// Serve accepts until ctx ends (which closes l), then waits for the
// connections' handlers. Running out of descriptors is retried after a
// pause; any other accept error ends it.
func (sl Listener) Serve(ctx context.Context, l *net.UnixListener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		conn, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
				sl.Log.Warn("Accept failed; retrying", "err", err)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		if sl.Accepted != nil {
			sl.Accepted()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if sl.Ended != nil {
				defer sl.Ended()
			}
			err := ServeConn(ctx, NewFrameConn(conn), sl.Handle, sl.MaxInFlight)
			if err != nil && !errors.Is(err, io.EOF) && ctx.Err() == nil {
				sl.Log.Warn("Connection ended", "err", err)
			}
		}()
	}
}
