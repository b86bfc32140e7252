package protocol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/crid-dev/crid/panicguard"
)

// ErrConnLost says the connection ended before the reply came: the request
// may or may not have been carried out.
var ErrConnLost = errors.New("monitor connection lost")

// Client multiplexes calls over one connection: each call waits for the
// reply with its own ID, so a long wait never blocks other calls.
type Client struct {
	fc   *FrameConn
	done chan struct{} // closed when the read loop ends

	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan reply
	err     error // why the read loop ended
}

type reply struct {
	m   Message
	fds []*os.File
}

// Dial connects to the monitor's socket.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("dial monitor %s: %w", path, err)
	}
	return NewClient(NewFrameConn(c.(*net.UnixConn))), nil
}

// NewClient starts the client's read loop on fc; it ends when fc does.
func NewClient(fc *FrameConn) *Client {
	c := &Client{fc: fc, done: make(chan struct{}), pending: map[uint64]chan reply{}}
	go c.readLoop()
	return c
}

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Close ends the connection; pending calls fail with ErrConnLost.
func (c *Client) Close() error {
	err := c.fc.Close()
	<-c.done
	return err
}

func (c *Client) readLoop() {
	defer close(c.done)
	var err error
	defer func() {
		// A bug here ends this connection like a broken frame would:
		// pending calls fail, the daemon reconnects.
		c.fc.Close()
		c.mu.Lock()
		c.err = err
		c.pending = nil // callers still waiting see done
		c.mu.Unlock()
	}()
	defer panicguard.Recover("monitor client reader", &err)
	for {
		var payload []byte
		var fds []*os.File
		payload, fds, err = c.fc.ReadFrame()
		if err != nil {
			break
		}
		var m Message
		if err = json.Unmarshal(payload, &m); err != nil {
			CloseFiles(fds)
			err = fmt.Errorf("%w: undecodable reply: %v", ErrProtocol, err)
			break
		}
		c.mu.Lock()
		ch := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if ch == nil {
			CloseFiles(fds) // the caller gave up
			continue
		}
		ch <- reply{m: m, fds: fds}
	}
}

// Call sends a request and decodes the reply body into resp (when non-nil).
// It returns the descriptors that came with the reply, which the caller
// owns. A failed reply is returned as an *Error; a lost connection as
// ErrConnLost.
func (c *Client) Call(ctx context.Context, method string, req any, reqFds []*os.File, resp any) ([]*os.File, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode %s request: %w", method, err)
	}
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.pending == nil {
		err := c.err
		c.mu.Unlock()
		return nil, fmt.Errorf("%s: %w: %v", method, ErrConnLost, err)
	}
	c.next++
	id := c.next
	c.pending[id] = ch
	c.mu.Unlock()
	payload, err := json.Marshal(Message{ID: id, Method: method, Body: body})
	if err == nil {
		err = c.fc.WriteFrame(payload, reqFds)
	}
	if err != nil {
		c.forget(id)
		if errors.Is(err, ErrProtocol) {
			return nil, fmt.Errorf("%s: %w", method, err)
		}
		return nil, fmt.Errorf("%s: %w: %v", method, ErrConnLost, err)
	}
	select {
	case r := <-ch:
		return decodeReply(method, r, resp)
	case <-c.done:
		// The reply may have raced the end of the read loop.
		select {
		case r := <-ch:
			return decodeReply(method, r, resp)
		default:
		}
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		return nil, fmt.Errorf("%s: %w: %v", method, ErrConnLost, err)
	case <-ctx.Done():
		c.forget(id)
		// A reply delivered just before forget is ours to clean up.
		select {
		case r := <-ch:
			CloseFiles(r.fds)
		default:
		}
		return nil, fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

func decodeReply(method string, r reply, resp any) ([]*os.File, error) {
	if r.m.Error != nil {
		CloseFiles(r.fds)
		return nil, r.m.Error
	}
	if resp != nil {
		if err := json.Unmarshal(r.m.Body, resp); err != nil {
			CloseFiles(r.fds)
			return nil, fmt.Errorf("decode %s reply: %w", method, err)
		}
	}
	return r.fds, nil
}

func (c *Client) forget(id uint64) {
	c.mu.Lock()
	if c.pending != nil {
		delete(c.pending, id)
	}
	c.mu.Unlock()
}
