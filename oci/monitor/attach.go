package monitor

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/oci/protocol"
)

// attachSendBuffer is the socket buffer of one attach client: output that
// the client has not read within it costs the client its attach, never the
// container its log.
const attachSendBuffer = 1 << 20

// attach hands the daemon a socket that receives the container's output
// from now on (CRI Attach). Input does not pass through the monitor: the
// daemon holds the container's stdin (or pty) itself.
func (m *Monitor) attach(id string) ([]*os.File, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, err
	}
	<-c.ioReady
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("attach to %s: socketpair: %w", id, err)
	}
	mine, theirs := fds[0], fds[1]
	if err := unix.SetsockoptInt(mine, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, attachSendBuffer); err != nil {
		_ = unix.SetsockoptInt(mine, unix.SOL_SOCKET, unix.SO_SNDBUF, attachSendBuffer)
	}
	_ = unix.Shutdown(mine, unix.SHUT_RD) // nothing comes back this way
	c.mu.Lock()
	switch {
	case c.status == protocol.StatusStopped || c.outputEnded:
		c.mu.Unlock()
		unix.Close(mine)
		unix.Close(theirs)
		return nil, precondition("attach to %s: container is not running", id)
	}
	c.sinks = append(c.sinks, mine)
	c.mu.Unlock()
	return []*os.File{os.NewFile(uintptr(theirs), "attach")}, nil
}

// broadcast copies one read of output to every attach client. Sends never
// block: a client whose socket is full (or gone) is dropped.
func (c *container) broadcast(stream byte, data []byte, onDrop func(err error)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.sinks) == 0 {
		return
	}
	kept := c.sinks[:0]
	for _, fd := range c.sinks {
		if err := sendChunks(fd, stream, data); err != nil {
			unix.Close(fd)
			onDrop(err)
			continue
		}
		kept = append(kept, fd)
	}
	c.sinks = kept
}

// sendChunks sends data as messages of at most AttachMaxMessage bytes.
func sendChunks(fd int, stream byte, data []byte) error {
	msg := make([]byte, 0, min(len(data), protocol.AttachMaxMessage-1)+1)
	for len(data) > 0 {
		n := min(len(data), protocol.AttachMaxMessage-1)
		msg = append(append(msg[:0], stream), data[:n]...)
		if err := unix.Send(fd, msg, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// closeSinksLocked ends every attach: the clients read EOF.
func (c *container) closeSinksLocked() {
	for _, fd := range c.sinks {
		unix.Close(fd)
	}
	c.sinks = nil
}
