package crilog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// CopyPipe is Copy for a container's output pipe, which others (the stdio
// holder, the daemon) keep open too so that a successor can copy what the
// pipe still holds when this process is killed. Copy would lose whatever it
// had read but not yet written to the log at the kill: a read consumes the
// bytes. CopyPipe takes them from the pipe only once their entries are in
// the log file: it copies the head of the pipe without consuming it
// (tee(2) into a private pipe), writes the entries, then discards exactly
// those bytes. A kill between the write and the discard (two syscalls in a
// row) leaves that one batch to be logged again by the successor; a kill
// anywhere else loses nothing that ended in a newline. A line still
// unterminated (held in memory) is lost with the process, as before.
//
// tap, when not nil, sees every batch as it is read (attach clients).
// src must be the read end of a pipe in nonblocking mode, registered with
// Go's poller (Close interrupts the wait); anything else is copied by Copy.
func CopyPipe(dst *File, stream Stream, src *os.File, maxLine int, now func() time.Time, onErr func(error), tap func([]byte)) error {
	var r io.Reader = src
	if tap != nil {
		r = &tapReader{r: src, tap: tap}
	}
	if !isPipe(src) {
		return Copy(dst, stream, r, maxLine, now, onErr)
	}
	rc, err := src.SyscallConn()
	if err != nil {
		return Copy(dst, stream, r, maxLine, now, onErr)
	}
	w := newLineWriter(dst, stream, maxLine, now, onErr)
	// Where discarded bytes go: never w's buffer, which add has just
	// rearranged (an unfinished line moved to its start).
	scratch := make([]byte, initialBuf)
	for {
		space := w.space()
		k, err := peek(rc, space)
		if errors.Is(err, unix.EINVAL) && k == 0 {
			// Not a pipe after all (tee refuses): plain reads.
			return Copy(dst, stream, r, maxLine, now, onErr)
		}
		if k > 0 {
			if tap != nil {
				tap(space[:k])
			}
			if err := w.add(k); err != nil {
				return err
			}
			// In the file: now the bytes may leave the pipe.
			if derr := discard(rc, k, scratch); derr != nil {
				return w.end(derr)
			}
		}
		if err != nil {
			return w.end(err)
		}
	}
}

// beforeDiscard, when set by a test, runs between a batch's log write and
// its removal from the pipe; a non-nil error ends the copy there, as a kill
// of the process would.
var beforeDiscard func() error

// peek copies up to len(p) bytes from the head of the pipe into p without
// consuming them, waiting until there are some. It returns io.EOF once the
// pipe is empty and has no writer left.
func peek(rc interface {
	Read(func(uintptr) bool) error
}, p []byte) (int, error) {
	sp, err := getStaging()
	if err != nil {
		return 0, err
	}
	defer putStaging(sp)
	var (
		n    int
		terr error
	)
	err = rc.Read(func(fd uintptr) bool {
		var t int64
		t, terr = unix.Tee(int(fd), sp.w, len(p), unix.SPLICE_F_NONBLOCK)
		n = int(t)
		return !errors.Is(terr, unix.EAGAIN)
	})
	if err != nil {
		return 0, closed(err)
	}
	if terr != nil {
		if errors.Is(terr, unix.EINTR) {
			return 0, nil
		}
		return 0, fmt.Errorf("tee: %w", terr)
	}
	if n == 0 {
		return 0, io.EOF
	}
	// The staging pipe holds exactly those n bytes: read them all out,
	// so that it goes back to the pool empty.
	for got := 0; got < n; {
		m, err := unix.Read(sp.r, p[got:n])
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			sp.broken = true
			return 0, fmt.Errorf("read staging pipe: %w", err)
		}
		got += m
	}
	return n, nil
}

// discard consumes k bytes from the head of the pipe: the bytes peek
// returned, still there since nobody else reads the pipe.
func discard(rc interface {
	Read(func(uintptr) bool) error
}, k int, scratch []byte) error {
	if beforeDiscard != nil {
		if err := beforeDiscard(); err != nil {
			return err
		}
	}
	for k > 0 {
		p := scratch[:min(k, len(scratch))]
		var (
			m    int
			rerr error
		)
		err := rc.Read(func(fd uintptr) bool {
			m, rerr = unix.Read(int(fd), p)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if err != nil {
			return closed(err)
		}
		if rerr != nil {
			if errors.Is(rerr, unix.EINTR) {
				continue
			}
			return fmt.Errorf("consume: %w", rerr)
		}
		if m == 0 {
			return io.EOF
		}
		k -= m
	}
	return nil
}

// closed reports a failed wait of the poller: we set no deadline, so the
// file was closed under us, which ends the copy as Copy's ErrClosed does.
func closed(err error) error { return fmt.Errorf("%w: %v", os.ErrClosed, err) }

func isPipe(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeNamedPipe != 0
}

// staging is a private pipe that peek tees into. A few are kept for reuse,
// so a node of idle containers holds no extra descriptors for them.
type staging struct {
	r, w   int
	broken bool // not known empty: closed instead of reused
}

const maxIdleStaging = 4

var stagingPool struct {
	mu   sync.Mutex
	idle []*staging
}

func getStaging() (*staging, error) {
	stagingPool.mu.Lock()
	if n := len(stagingPool.idle); n > 0 {
		sp := stagingPool.idle[n-1]
		stagingPool.idle = stagingPool.idle[:n-1]
		stagingPool.mu.Unlock()
		return sp, nil
	}
	stagingPool.mu.Unlock()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, fmt.Errorf("staging pipe: %w", err)
	}
	return &staging{r: p[0], w: p[1]}, nil
}

func putStaging(sp *staging) {
	stagingPool.mu.Lock()
	if !sp.broken && len(stagingPool.idle) < maxIdleStaging {
		stagingPool.idle = append(stagingPool.idle, sp)
		stagingPool.mu.Unlock()
		return
	}
	stagingPool.mu.Unlock()
	unix.Close(sp.r)
	unix.Close(sp.w)
}

// tapReader shows what it reads to tap.
type tapReader struct {
	r   io.Reader
	tap func([]byte)
}

func (t *tapReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.tap(p[:n])
	}
	return n, err
}
