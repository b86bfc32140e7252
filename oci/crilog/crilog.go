// Package crilog writes container output in the CRI log format kubelet and
// crictl read:
//
//	<RFC3339Nano timestamp> <stdout|stderr> <P|F> <content>\n
//
// F ends a line; P marks a piece of a line longer than the maximum line size
// (the rest follows in later entries), or the last piece of output that
// ended without a newline. Both streams of a container share one
// file, which kubelet rotates by renaming it and asking for a reopen.
package crilog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// DefaultMaxLine is containerd's default max_container_log_line_size.
const DefaultMaxLine = 16 << 10

const (
	initialBuf = 4 << 10  // read buffer of a stream without long lines
	maxKeptOut = 64 << 10 // output buffer kept between reads
)

// Stream names an output stream.
type Stream string

// Streams.
const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
)

// File is one container's log file, shared by its streams. Each write is a
// whole batch of entries under the lock, so entries never interleave.
type File struct {
	mu   sync.Mutex
	path string
	f    *os.File
	// lost counts the output bytes (line content, without line ends)
	// of the entries a failing file (disk full, quota) could not take
	// since the last entry it did, and lostErr says why. Every later
	// write tries again: the first that succeeds is preceded by a
	// marker entry of the loss (lostMarker), so a full disk costs a
	// span of the log, marked, never the container's progress nor the
	// rest of its log.
	lost    int64
	lostErr error
	// torn is set when the file ends in the middle of a line (a writer
	// was killed or ran out of space mid-entry): the next entry starts
	// with a newline, so that it is not glued to the torn one and lost
	// with it to kubelet's parser.
	torn bool
}

// Open opens (creating it and its directory if needed) the log at path for
// appending.
func Open(path string) (*File, error) {
	f, torn, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &File{path: path, f: f, torn: torn}, nil
}

// openAppend opens path for appending and reports whether its last line
// is unterminated.
func openAppend(path string) (*os.File, bool, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, false, fmt.Errorf("create log directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|syscall.O_CLOEXEC, 0o640)
	if err != nil {
		return nil, false, fmt.Errorf("open log: %w", err)
	}
	torn, err := endsTorn(f)
	if err != nil {
		f.Close()
		return nil, false, fmt.Errorf("open log: %w", err)
	}
	return f, torn, nil
}

func endsTorn(f *os.File) (bool, error) {
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return false, err
	}
	var last [1]byte
	if _, err := f.ReadAt(last[:], st.Size()-1); err != nil {
		return false, err
	}
	return last[0] != '\n', nil
}

// Path returns the log's path.
func (l *File) Path() string { return l.path }

// Reopen opens the path again (after kubelet renamed the file to rotate it)
// and switches writes to the new file.
func (l *File) Reopen() error {
	f, torn, err := openAppend(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f, l.torn = f, torn
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Close closes the file; later writes are dropped.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// write appends p. A failing file must never block the container: what
// it cannot take is counted as lost (see File.lost), and the error is
// returned only when the loss starts, for the caller to report once.
func (l *File) write(p []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	if err := l.resumeLocked(p); err != nil {
		return err
	}
	return l.appendLocked(p)
}

// resumeLocked, before p is written, ends a torn line and writes the
// marker of a loss. When the file still fails, p is counted as lost and
// the error returned if it starts a loss (else nil: p is dropped quietly);
// the caller then writes nothing.
func (l *File) resumeLocked(p []byte) error {
	if l.torn {
		if _, err := l.f.Write([]byte{'\n'}); err != nil {
			return l.loseLocked(p, 0, err)
		}
		l.torn = false
	}
	if l.lost == 0 {
		return nil
	}
	m := lostMarker(time.Now(), l.lost, l.lostErr)
	if n, err := l.f.Write(m); err != nil {
		l.torn = n > 0
		return l.loseLocked(p, 0, err)
	}
	l.lost, l.lostErr = 0, nil
	return nil
}

// appendLocked writes p, counting what a failure leaves out as lost.
func (l *File) appendLocked(p []byte) error {
	n, err := l.f.Write(p)
	if err != nil {
		l.torn = n > 0 && p[n-1] != '\n'
		return l.loseLocked(p, n, err)
	}
	return nil
}

// errLostQuietly is returned by loseLocked for a loss already reported.
var errLostQuietly = errors.New("log output lost")

// loseLocked counts the entries of p from the one holding byte n on as
// lost to err. It returns err when this starts a loss, errLostQuietly
// when one is going on.
func (l *File) loseLocked(p []byte, n int, err error) error {
	first := l.lost == 0 && l.lostErr == nil
	l.lost += lostContent(p, n)
	if l.lostErr == nil {
		l.lostErr = err
	}
	if first {
		return err
	}
	return errLostQuietly
}

// lostContent returns how many bytes of line content the entries of p
// hold from the one holding byte n on.
func lostContent(p []byte, n int) int64 {
	start := bytes.LastIndexByte(p[:n], '\n') + 1
	var lost int64
	for e := range bytes.SplitAfterSeq(p[start:], []byte{'\n'}) {
		// <timestamp> <stream> <tag> <content>\n
		rest := e
		for range 3 {
			if i := bytes.IndexByte(rest, ' '); i >= 0 {
				rest = rest[i+1:]
			} else {
				rest = nil
			}
		}
		lost += int64(len(bytes.TrimSuffix(rest, []byte{'\n'})))
	}
	return lost
}

// lostMarker is the entry that stands for the output a failing file could
// not take, written where the log resumes:
//
//	<timestamp> stderr F [crid: <n> bytes of output lost: <error>]
//
// on stderr, as a full line of its own, so kubelet and crictl show it
// like any line. n counts the bytes of the lost lines without their line
// ends; the timestamp is the resumption's.
func lostMarker(now time.Time, n int64, err error) []byte {
	why := "write failed"
	var errno syscall.Errno
	if errors.As(err, &errno) {
		why = errno.Error()
	} else if err != nil {
		why = err.Error()
	}
	line := fmt.Appendf(nil, "[crid: %d bytes of output lost: %s]", n, why)
	return appendEntry(nil, now.UTC().AppendFormat(nil, time.RFC3339Nano), Stderr, 'F', bytes.ReplaceAll(line, []byte{'\n'}, []byte{' '}))
}

// Copy reads r until EOF and writes its lines as entries of stream to dst
// (nil discards them). Lines longer than maxLine bytes are split into P
// entries of maxLine bytes; an unterminated last line becomes an F entry.
// Every entry of one read shares one timestamp, taken when the read
// returned. A write error is reported through onErr once when output
// starts to be lost, and copying goes on, so the container never blocks
// on its output; the log resumes, marked, once the file takes writes
// again.
func Copy(dst *File, stream Stream, r io.Reader, maxLine int, now func() time.Time, onErr func(error)) error {
	w := newLineWriter(dst, stream, maxLine, now, onErr)
	for {
		m, err := r.Read(w.space())
		if m > 0 {
			if err := w.add(m); err != nil {
				return err
			}
		}
		if err != nil {
			return w.end(err)
		}
	}
}

// lineWriter turns a stream's bytes into log entries: the part of Copy
// and CopyPipe that does not depend on how the bytes are read.
type lineWriter struct {
	dst     *File
	stream  Stream
	maxLine int
	limit   int // up to one byte more than a line
	now     func() time.Time
	onErr   func(error)
	buf     []byte
	n       int // bytes of buf holding an unfinished line
	out, ts []byte
	// With a journal (CopyPipe), add's write records the batch it
	// comes from: batchK bytes summing to batchSum; journaled says
	// that the last add wrote a record.
	j         *journal
	batchK    int
	batchSum  uint64
	journaled bool
}

func newLineWriter(dst *File, stream Stream, maxLine int, now func() time.Time, onErr func(error)) *lineWriter {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	if now == nil {
		now = time.Now
	}
	// Up to one byte more than a line, so that a line of exactly maxLine
	// bytes and its newline fit and make one F entry. The buffer starts
	// small and grows only while a long line is pending: an idle container
	// costs little.
	limit := maxLine + 1
	return &lineWriter{dst: dst, stream: stream, maxLine: maxLine, limit: limit, now: now, onErr: onErr,
		buf: make([]byte, min(initialBuf, limit))}
}

// space is where the next read goes: never empty.
func (w *lineWriter) space() []byte {
	if w.n == len(w.buf) && len(w.buf) < w.limit {
		w.buf = append(w.buf, make([]byte, min(2*len(w.buf), w.limit)-len(w.buf))...)
	}
	return w.buf[w.n:]
}

// beforeWrite, when set by a test, runs between a read and the log write
// of its entries; a non-nil error ends the copy there, as a kill of the
// process would.
var beforeWrite func() error

// add writes the entries that the m bytes just read into space complete.
// They are in the file when it returns; an error is only beforeWrite's.
func (w *lineWriter) add(m int) error {
	w.n += m
	w.ts = w.now().UTC().AppendFormat(w.ts[:0], time.RFC3339Nano)
	start := 0
	for {
		i := bytes.IndexByte(w.buf[start:w.n], '\n')
		if i < 0 {
			break
		}
		w.out = appendEntry(w.out, w.ts, w.stream, 'F', w.buf[start:start+i])
		start += i + 1
	}
	if w.n-start == w.limit {
		w.out = appendEntry(w.out, w.ts, w.stream, 'P', w.buf[:w.maxLine])
		start = w.maxLine
	}
	w.n = copy(w.buf, w.buf[start:w.n])
	if beforeWrite != nil {
		if err := beforeWrite(); err != nil {
			return err
		}
	}
	w.journaled = w.j != nil && w.dst != nil && len(w.out) > 0
	w.flush(w.journaled)
	return nil
}

func (w *lineWriter) flush(journaled bool) {
	if w.dst != nil && len(w.out) > 0 {
		var err error
		if journaled {
			err = w.dst.writeJournaled(w.out, w.j, w.batchK, w.batchSum)
		} else {
			err = w.dst.write(w.out)
		}
		if err != nil && !errors.Is(err, errLostQuietly) && w.onErr != nil {
			w.onErr(err)
		}
	}
	w.out = w.out[:0]
	if cap(w.out) > maxKeptOut {
		w.out = nil // a burst's buffer is not kept for an idle stream
	}
}

// end writes an unterminated last line as a P entry, as conmon does: the
// output did not end the line, and kubelet adds no newline to a P entry
// (a container that ran `echo -n DONE` has the termination message
// "DONE", which a [Conformance] spec checks). It also tells a normal end
// (EOF, a closed terminal, a closed file) from a read error.
func (w *lineWriter) end(err error) error {
	if w.n > 0 {
		w.ts = w.now().UTC().AppendFormat(w.ts[:0], time.RFC3339Nano)
		w.out = appendEntry(w.out, w.ts, w.stream, 'P', w.buf[:w.n])
		w.n = 0
		w.flush(false)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.EIO) || errors.Is(err, os.ErrClosed) {
		// EIO: a terminal's master once the slave side is
		// closed; ErrClosed: the copier was told to stop.
		return nil
	}
	return fmt.Errorf("read %s: %w", w.stream, err)
}

func appendEntry(out, ts []byte, stream Stream, tag byte, line []byte) []byte {
	out = append(out, ts...)
	out = append(out, ' ')
	out = append(out, stream...)
	out = append(out, ' ', tag, ' ')
	out = append(out, line...)
	return append(out, '\n')
}
