package crilog

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// A journal closes CopyPipe's last window: a kill after a batch's entries
// are in the log but before its bytes left the pipe. Before each log write
// CopyPipe records where the entries go and what they and the batch are;
// after the bytes left the pipe it clears the record. A successor that
// finds a record checks whether those entries are in the log and the
// batch still heads the pipe, and then only takes it out of the pipe.
//
// Record (little endian), at offset 0: valid (1 byte), log inode, offset
// of the entries, their length, their FNV-64a sum, batch length, batch sum.
const journalSize = 1 + 6*8

// journal is the record's file, mapped shared where the kernel allows: a
// store into the mapping is in the file (the page cache) at once and
// survives the process's kill, so recording and clearing a batch cost no
// system call (they were two of the nine a logged line cost the monitor).
type journal struct {
	f   *os.File
	mem []byte // nil: the mapping failed, pwrite instead
}

func openJournal(path string) (*journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open copy journal: %w", err)
	}
	j := &journal{f: f}
	// A mapping past the end of the file faults: give it its size (a
	// predecessor's record, if any, is kept).
	if st, err := f.Stat(); err == nil && (st.Size() >= journalSize || f.Truncate(journalSize) == nil) {
		if mem, err := unix.Mmap(int(f.Fd()), 0, journalSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err == nil {
			j.mem = mem
		}
	}
	return j, nil
}

func (j *journal) close() {
	if j.mem != nil {
		_ = unix.Munmap(j.mem)
		j.mem = nil
	}
	j.f.Close()
}

func sum(p []byte) uint64 {
	h := fnv.New64a()
	h.Write(p)
	return h.Sum64()
}

type record struct {
	ino, off, n, sumE, k, sumB uint64
}

// write records r. In the mapping the valid byte is cleared first and set
// last (stores keep their order): a kill in between leaves no record, which
// is right, as the log write comes after.
func (j *journal) write(r record) error {
	b := j.mem
	if b == nil {
		b = make([]byte, journalSize)
	}
	b[0] = 0
	for i, v := range []uint64{r.ino, r.off, r.n, r.sumE, r.k, r.sumB} {
		binary.LittleEndian.PutUint64(b[1+8*i:], v)
	}
	b[0] = 1
	if j.mem != nil {
		return nil
	}
	_, err := j.f.WriteAt(b, 0)
	return err
}

func (j *journal) clear() error {
	if j.mem != nil {
		j.mem[0] = 0
		return nil
	}
	_, err := j.f.WriteAt([]byte{0}, 0)
	return err
}

func (j *journal) read() (record, bool) {
	var b [journalSize]byte
	if j.mem != nil {
		copy(b[:], j.mem)
	} else if n, err := j.f.ReadAt(b[:], 0); n != journalSize || err != nil {
		return record{}, false
	}
	if b[0] != 1 {
		return record{}, false
	}
	var v [6]uint64
	for i := range v {
		v[i] = binary.LittleEndian.Uint64(b[1+8*i:])
	}
	return record{v[0], v[1], v[2], v[3], v[4], v[5]}, true
}

// logged reports whether the entries the record names are in l's file:
// the same file (inode), those bytes at that offset. When the file ends
// inside them (the kill cut the write: the kernel checks for it between
// pages), that torn tail is cut off, so the batch, still in the pipe, is
// logged again whole rather than after a fragment.
func (l *File) logged(r record) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(l.f.Fd()), &st); err != nil || st.Ino != r.ino {
		return false
	}
	size := uint64(st.Size)
	if size > r.off && size < r.off+r.n {
		if err := l.f.Truncate(int64(r.off)); err == nil {
			l.torn, _ = endsTorn(l.f)
		}
		return false
	}
	if size < r.off+r.n {
		return false
	}
	b := make([]byte, r.n)
	if _, err := l.f.ReadAt(b, int64(r.off)); err != nil {
		return false
	}
	return sum(b) == r.sumE
}

// writeJournaled appends p as write does, recording in j where it goes
// (and the batch of k bytes summing to sumB it comes from) first.
func (l *File) writeJournaled(p []byte, j *journal, k int, sumB uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	if err := l.resumeLocked(p); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(l.f.Fd()), &st); err != nil {
		return l.loseLocked(p, 0, err)
	}
	// A journal that cannot be written costs only the protection
	// against a repeated batch, never the output.
	_ = j.write(record{ino: st.Ino, off: uint64(st.Size), n: uint64(len(p)), sumE: sum(p), k: uint64(k), sumB: sumB})
	return l.appendLocked(p)
}
