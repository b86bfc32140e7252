package crilog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
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
// row) would leave that one batch to be logged again by the successor:
// with a journal (a file path kept per stream, see journal.go) the
// successor finds out and only takes the batch out of the pipe. A line
// still unterminated (held in memory) is lost with the process, as before.
//
// tap, when not nil, sees every batch as it is read (attach clients).
// src must be the read end of a pipe in nonblocking mode, registered with
// Go's poller (Close interrupts the wait); anything else is copied by Copy.
func CopyPipe(dst *File, stream Stream, src *os.File, maxLine int, now func() time.Time, onErr func(error), tap func([]byte), journalPath string) error {
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
	if journalPath != "" && dst != nil {
		j, err := openJournal(journalPath)
		if err != nil {
			if onErr != nil {
				onErr(err)
			}
		} else {
			defer j.close()
			w.j = j
			recoverBatch(rc, j, dst)
		}
	}
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
			if w.j != nil {
				w.batchK, w.batchSum = k, sum(space[:k])
			}
			if err := w.add(k); err != nil {
				return err
			}
			// In the file: now the bytes may leave the pipe.
			if derr := discard(rc, k, nil); derr != nil {
				return w.end(derr)
			}
			if w.journaled {
				_ = w.j.clear()
			}
		}
		if err != nil {
			return w.end(err)
		}
	}
}

// RecoverPipe does what CopyPipe does first with its journal: it takes out
// of src the batch a killed predecessor had logged but not consumed, and
// cuts off a write of it the kill tore. A container's streams share one
// log, so its copiers call it for every stream before any of them writes
// (CopyPipe's own call then finds nothing).
func RecoverPipe(dst *File, src *os.File, journalPath string) {
	if dst == nil || journalPath == "" || !isPipe(src) {
		return
	}
	rc, err := src.SyscallConn()
	if err != nil {
		return
	}
	j, err := openJournal(journalPath)
	if err != nil {
		return
	}
	defer j.close()
	recoverBatch(rc, j, dst)
}

// recoverBatch takes out of the pipe the batch a killed predecessor had
// logged but not yet consumed, as its journal tells: only when those
// entries are in the log and those bytes still head the pipe.
func recoverBatch(rc syscall.RawConn, j *journal, dst *File) {
	r, ok := j.read()
	if !ok {
		return
	}
	defer func() { _ = j.clear() }()
	if r.k == 0 || r.k > 1<<20 || !dst.logged(r) {
		return
	}
	head := make([]byte, r.k)
	var n int
	err := rc.Read(func(fd uintptr) bool {
		sp, err := getStaging()
		if err != nil {
			return true
		}
		defer putStaging(sp)
		t, terr := unix.Tee(int(fd), sp.w, len(head), unix.SPLICE_F_NONBLOCK)
		for got := 0; terr == nil && got < int(t); {
			m, err := unix.Read(sp.r, head[got:t])
			if err != nil {
				if errors.Is(err, unix.EINTR) {
					continue
				}
				sp.broken = true
				return true
			}
			got += m
		}
		if terr == nil {
			n = int(t)
		}
		return true // never waits: an empty pipe holds no batch
	})
	if err != nil || n != len(head) || sum(head) != r.sumB {
		return
	}
	_ = discard(rc, n, head)
}

// beforeDiscard, when set by a test, runs between a batch's log write and
// its removal from the pipe; a non-nil error ends the copy there, as a kill
// of the process would.
var beforeDiscard func() error

// peek copies up to len(p) bytes from the head of the pipe into p without
// consuming them, waiting until there are some. It returns io.EOF once the
// pipe is empty and has no writer left.
func peek(rc syscall.RawConn, p []byte) (int, error) {
	var (
		sp    *staging
		n     int
		terr  error
		first = true
	)
	defer func() {
		if sp != nil {
			putStaging(sp)
		}
	}()
	err := rc.Read(func(fd uintptr) bool {
		// An empty pipe that still has writers is waited on without a
		// staging pipe: a copier waits most of its life, and thousands
		// of them each holding one emptied the pool, so that every
		// batch made and closed a pipe (three system calls and a pipe's
		// allocation a line). poll, not FIONREAD: an ended pipe is
		// empty too, and no event would come to wake the wait.
		if first {
			first = false
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if k, err := unix.Poll(pfd, 0); err == nil && k == 0 {
				return false
			}
		}
		if sp == nil {
			if sp, terr = getStaging(); terr != nil {
				return true
			}
		}
		var t int64
		t, terr = unix.Tee(int(fd), sp.w, len(p), unix.SPLICE_F_NONBLOCK)
		n = int(t)
		return !errors.Is(terr, unix.EAGAIN)
	})
	if err != nil {
		return 0, closed(err)
	}
	if sp == nil { // getStaging failed
		return 0, terr
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
// returned, still there since nobody else reads the pipe. They are spliced
// to /dev/null, without a copy or a buffer (a 4 KiB one per copier was
// 8 MB of the monitor at 1,000 containers); into scratch (or a pooled
// buffer, when nil) where the kernel cannot splice.
func discard(rc syscall.RawConn, k int, scratch []byte) error {
	if beforeDiscard != nil {
		if err := beforeDiscard(); err != nil {
			return err
		}
	}
	null := devNull()
	var pooled *[]byte
	defer func() {
		if pooled != nil {
			discardBufs.Put(pooled)
		}
	}()
	for k > 0 {
		var (
			m    int
			rerr error
		)
		err := rc.Read(func(fd uintptr) bool {
			if null >= 0 {
				var n int64
				n, rerr = unix.Splice(int(fd), nil, null, nil, k, unix.SPLICE_F_NONBLOCK)
				m = int(n)
				if !errors.Is(rerr, unix.EINVAL) {
					return !errors.Is(rerr, unix.EAGAIN)
				}
				null = -1 // not spliceable here: read instead
			}
			if scratch == nil {
				pooled = discardBufs.Get().(*[]byte)
				scratch = *pooled
			}
			m, rerr = unix.Read(int(fd), scratch[:min(k, len(scratch))])
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

// discardBufs are read buffers for discard where splice fails.
var discardBufs = sync.Pool{New: func() any { b := make([]byte, initialBuf); return &b }}

// devNull is /dev/null open for writing, shared by every copier; -1 when
// it cannot be opened.
var devNull = sync.OnceValue(func() int {
	fd, err := unix.Open("/dev/null", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
})

// closed reports a failed wait of the poller: we set no deadline, so the
// file was closed under us, which ends the copy as Copy's ErrClosed does.
func closed(err error) error { return fmt.Errorf("%w: %v", os.ErrClosed, err) }

func isPipe(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeNamedPipe != 0
}

// staging is a private pipe that peek tees into, taken only for the
// moment of a tee and its read (never while waiting). The pool is filled
// to maxIdleStaging at its first use and keeps that many: a steady number
// of descriptors whatever the number of containers (the soak tests count
// them), with more made, and closed on return, only while more than that
// many copiers tee at once.
type staging struct {
	r, w   int
	broken bool // not known empty: closed instead of reused
}

const maxIdleStaging = 4

var stagingPool struct {
	mu     sync.Mutex
	idle   []*staging
	filled bool
}

func getStaging() (*staging, error) {
	stagingPool.mu.Lock()
	defer stagingPool.mu.Unlock()
	if !stagingPool.filled {
		stagingPool.filled = true
		for range maxIdleStaging {
			sp, err := newStaging()
			if err != nil {
				break
			}
			stagingPool.idle = append(stagingPool.idle, sp)
		}
	}
	if n := len(stagingPool.idle); n > 0 {
		sp := stagingPool.idle[n-1]
		stagingPool.idle = stagingPool.idle[:n-1]
		return sp, nil
	}
	return newStaging()
}

func newStaging() (*staging, error) {
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
