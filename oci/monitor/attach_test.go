package monitor

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/oci/protocol"
)

func seqpacketPair(t *testing.T) (mine, theirs int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[1]) })
	return fds[0], fds[1]
}

// Output reaches every attach client tagged with its stream, in messages
// no larger than AttachMaxMessage; a client that stops reading is dropped
// once its socket is full, and the others keep receiving.
func TestBroadcastDropsSlowClient(t *testing.T) {
	c := newContainer(protocol.Record{ID: "x"})
	fast, fastPeer := seqpacketPair(t)
	slow, _ := seqpacketPair(t)
	_ = unix.SetsockoptInt(slow, unix.SOL_SOCKET, unix.SO_SNDBUF, 256<<10) // holds a full message, not many
	c.sinks = []int{fast, slow}
	var drops []error
	onDrop := func(err error) { drops = append(drops, err) }

	big := bytes.Repeat([]byte("x"), protocol.AttachMaxMessage+10)
	c.broadcast(protocol.AttachStderr, big, onDrop)
	buf := make([]byte, protocol.AttachMaxMessage+100)
	total := 0
	for total < len(big) {
		n, err := unix.Read(fastPeer, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n > protocol.AttachMaxMessage || buf[0] != protocol.AttachStderr {
			t.Fatalf("message of %d bytes tagged %d", n, buf[0])
		}
		total += n - 1
	}
	for i := 0; len(drops) == 0 && i < 1000; i++ {
		c.broadcast(protocol.AttachStdout, []byte("line\n"), onDrop)
		if _, err := unix.Read(fastPeer, buf); err != nil {
			t.Fatal(err)
		}
	}
	if len(drops) != 1 || !errors.Is(drops[0], unix.EAGAIN) {
		t.Fatalf("drops: %v", drops)
	}
	if len(c.sinks) != 1 || c.sinks[0] != fast {
		t.Fatalf("sinks after the drop: %v", c.sinks)
	}
	c.mu.Lock()
	c.closeSinksLocked()
	c.mu.Unlock()
	if n, err := unix.Read(fastPeer, buf); n != 0 || err != nil {
		t.Fatalf("after the output ended the client reads %d bytes, %v; want EOF", n, err)
	}
}
