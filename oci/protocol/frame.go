package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// A frame is a 5-byte header — the payload length (big-endian uint32) and
// the number of file descriptors that travel with it (uint8) — followed by
// the payload. The descriptors are sent with SCM_RIGHTS in the same sendmsg
// as the frame's first bytes, so by the time a frame has been read whole its
// descriptors have arrived; the reader queues every descriptor it receives
// and hands each frame the number its header announces.
const (
	headerSize = 5
	// MaxPayload bounds one frame; a larger length is a protocol error
	// (garbage or a hostile peer), never an allocation.
	MaxPayload = 32 << 20
	// MaxFDs bounds the descriptors of one frame.
	MaxFDs = 16
	// minRead is the smallest read buffer: small frames come in one
	// recvmsg, and an idle connection holds no more than this while it
	// waits (the daemon keeps a connection per held exec). A larger frame
	// grows the buffer by doubling up to its announced size, so what a
	// header claims costs nothing until the bytes arrive.
	minRead = 4 << 10
)

// ErrProtocol marks a malformed frame; the connection cannot be resynchronised
// and must be closed.
var ErrProtocol = errors.New("protocol error")

// FrameConn reads and writes frames on a unix stream socket. Writes are
// serialised so frames from concurrent goroutines never interleave; reads
// must come from one goroutine.
type FrameConn struct {
	c   *net.UnixConn
	wmu sync.Mutex

	buf []byte // received, unconsumed bytes (reader only)
	oob []byte

	mu     sync.Mutex // guards fds and closed: Close may race the reader
	fds    []*os.File // received, unclaimed descriptors
	closed bool
}

// NewFrameConn wraps c.
func NewFrameConn(c *net.UnixConn) *FrameConn {
	return &FrameConn{c: c, oob: make([]byte, unix.CmsgSpace(MaxFDs*4))}
}

// Close closes the socket and every descriptor received but not yet claimed.
func (fc *FrameConn) Close() error {
	fc.mu.Lock()
	if fc.closed {
		fc.mu.Unlock()
		return nil
	}
	fc.closed = true
	fds := fc.fds
	fc.fds = nil
	fc.mu.Unlock()
	closeFiles(fds)
	return fc.c.Close()
}

// WriteFrame sends payload with fds attached. The caller keeps ownership of
// fds (the kernel duplicates them into the peer).
func (fc *FrameConn) WriteFrame(payload []byte, fds []*os.File) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("%w: frame of %d bytes exceeds %d", ErrProtocol, len(payload), MaxPayload)
	}
	if len(fds) > MaxFDs {
		return fmt.Errorf("%w: %d descriptors exceed %d per frame", ErrProtocol, len(fds), MaxFDs)
	}
	msg := make([]byte, headerSize+len(payload))
	binary.BigEndian.PutUint32(msg, uint32(len(payload)))
	msg[4] = byte(len(fds))
	copy(msg[headerSize:], payload)
	var oob []byte
	if len(fds) > 0 {
		raw := make([]int, len(fds))
		for i, f := range fds {
			fd, err := rawFD(f)
			if err != nil {
				return fmt.Errorf("write frame: descriptor %d: %w", i, err)
			}
			raw[i] = fd
		}
		oob = unix.UnixRights(raw...)
	}
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	n, _, err := fc.c.WriteMsgUnix(msg, oob, nil)
	if err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	// A stream socket may take a large frame in several pieces; the
	// descriptors went with the first.
	if n < len(msg) {
		if _, err := fc.c.Write(msg[n:]); err != nil {
			return fmt.Errorf("write frame: %w", err)
		}
	}
	return nil
}

// ReadFrame returns the next frame's payload and descriptors. The caller owns
// the descriptors. Any error leaves the connection unusable.
func (fc *FrameConn) ReadFrame() ([]byte, []*os.File, error) {
	if err := fc.fill(headerSize); err != nil {
		return nil, nil, err
	}
	n := binary.BigEndian.Uint32(fc.buf)
	nfds := int(fc.buf[4])
	if n > MaxPayload {
		return nil, nil, fmt.Errorf("%w: frame length %d exceeds %d", ErrProtocol, n, MaxPayload)
	}
	if nfds > MaxFDs {
		return nil, nil, fmt.Errorf("%w: frame announces %d descriptors, max %d", ErrProtocol, nfds, MaxFDs)
	}
	total := headerSize + int(n)
	if err := fc.fill(total); err != nil {
		return nil, nil, err
	}
	payload := make([]byte, n)
	copy(payload, fc.buf[headerSize:total])
	fc.buf = fc.buf[total:]
	if len(fc.buf) == 0 {
		fc.buf = nil // let a large frame's buffer go
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if nfds > len(fc.fds) {
		return nil, nil, fmt.Errorf("%w: frame announces %d descriptors, %d received", ErrProtocol, nfds, len(fc.fds))
	}
	fds := fc.fds[:nfds:nfds]
	fc.fds = append([]*os.File(nil), fc.fds[nfds:]...)
	return payload, fds, nil
}

// fill reads until at least n bytes are buffered.
func (fc *FrameConn) fill(n int) error {
	for len(fc.buf) < n {
		if len(fc.buf) == cap(fc.buf) {
			grown := make([]byte, len(fc.buf), max(minRead, min(n, 2*cap(fc.buf))))
			copy(grown, fc.buf)
			fc.buf = grown
		}
		chunk := fc.buf[len(fc.buf):cap(fc.buf)]
		m, oobn, flags, _, err := fc.c.ReadMsgUnix(chunk, fc.oob)
		m, oobn = max(m, 0), max(oobn, 0) // -1 on some errors
		if oobn > 0 {
			if perr := fc.takeRights(fc.oob[:oobn]); perr != nil {
				return perr
			}
		}
		if flags&unix.MSG_CTRUNC != 0 {
			return fmt.Errorf("%w: descriptors truncated (more than %d in one message)", ErrProtocol, MaxFDs)
		}
		fc.buf = fc.buf[:len(fc.buf)+m]
		if err != nil {
			return err
		}
		if m == 0 && oobn == 0 {
			return io.EOF
		}
	}
	return nil
}

func (fc *FrameConn) takeRights(oob []byte) error {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return fmt.Errorf("%w: control message: %v", ErrProtocol, err)
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for _, m := range msgs {
		raw, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue // credentials or other messages: not ours
		}
		for _, fd := range raw {
			f := os.NewFile(uintptr(fd), "received")
			if fc.closed {
				f.Close() // Close already drained the queue
				continue
			}
			fc.fds = append(fc.fds, f)
		}
	}
	if len(fc.fds) > 4*MaxFDs {
		return fmt.Errorf("%w: %d unclaimed descriptors", ErrProtocol, len(fc.fds))
	}
	return nil
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}

// CloseFiles closes every non-nil file of fs.
func CloseFiles(fs []*os.File) { closeFiles(fs) }

// rawFD returns f's descriptor without f.Fd's side effect of switching a
// pollable file to blocking mode — which would also switch the peer's copy,
// since both share one open file description. The caller keeps f open.
func rawFD(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// Dup returns a duplicate of f that is close-on-exec and, when
// nonblocking, registered with Go's poller so a Read can be interrupted by
// Close. f is left as it was.
func Dup(f *os.File, nonblocking bool) (*os.File, error) {
	fd, err := rawFD(f)
	if err != nil {
		return nil, err
	}
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup %s: %w", f.Name(), err)
	}
	if nonblocking {
		if err := unix.SetNonblock(nfd, true); err != nil {
			unix.Close(nfd)
			return nil, fmt.Errorf("dup %s: %w", f.Name(), err)
		}
	}
	return os.NewFile(uintptr(nfd), f.Name()), nil
}
