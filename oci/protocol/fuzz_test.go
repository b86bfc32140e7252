package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
)

// rawPair returns a connected pair of frame connections; the caller closes
// both.
func rawPair(tb testing.TB) (*FrameConn, *FrameConn) {
	tb.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	conn := func(fd int) *FrameConn {
		f := os.NewFile(uintptr(fd), "sock")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			tb.Fatal(err)
		}
		return NewFrameConn(c.(*net.UnixConn))
	}
	return conn(fds[0]), conn(fds[1])
}

func countFDs(tb testing.TB) int {
	tb.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	return len(es)
}

// refFrame is a frame as the wire format defines it.
type refFrame struct {
	payload []byte
	nfds    int
}

// referenceFrames decodes data as the doc comment of the format says, with
// fdsSent descriptors arriving with its first byte: the frames it holds,
// and whether it ends in a protocol error (rather than at its end or in a
// truncated frame, which the reader sees as EOF).
func referenceFrames(data []byte, fdsSent int) ([]refFrame, bool) {
	if fdsSent > MaxFDs {
		return nil, true // more than one frame may carry: truncated by the kernel
	}
	var frames []refFrame
	avail := fdsSent
	for len(data) >= headerSize {
		n, k := binary.BigEndian.Uint32(data), int(data[4])
		switch {
		case n > MaxPayload || k > MaxFDs:
			return frames, true
		case uint64(len(data)-headerSize) < uint64(n):
			return frames, false
		case k > avail:
			return frames, true
		}
		avail -= k
		frames = append(frames, refFrame{data[headerSize : headerSize+int(n)], k})
		data = data[headerSize+int(n):]
	}
	return frames, false
}

// split cuts data into pieces of the sizes cuts gives (each byte + 1), the
// rest in one piece.
func split(data, cuts []byte) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		n := len(data)
		if len(out) < len(cuts) {
			n = min(n, int(cuts[len(out)])+1)
		}
		out = append(out, data[:n])
		data = data[n:]
	}
	return out
}

// FuzzReadFrame sends arbitrary bytes, in arbitrary pieces and with up to
// 19 descriptors attached to the first, to the frame decoder; then sends
// frames cut from the same bytes, each with some descriptors, through
// WriteFrame. Oracle: no panic; the decoder returns exactly the frames the
// format defines, then EOF or ErrProtocol as the format says; a length
// prefix never makes it allocate more than what was sent (plus its read
// buffers); frames round-trip with their descriptors, which refer to the
// file sent; no descriptor is left open.
func FuzzReadFrame(f *testing.F) {
	frame := func(p string, nfds byte) []byte { return append(rawHeader(uint32(len(p)), nfds), p...) }
	f.Add(frame(`{"id":1,"method":"hello"}`, 0), []byte{3, 0, 200}, uint8(0))
	f.Add(append(frame("one", 1), frame("two", 0)...), []byte{}, uint8(1))
	f.Add(append(frame("a", 2), frame("b", 3)...), []byte{5, 5}, uint8(4))
	f.Add(rawHeader(MaxPayload, 0), []byte{}, uint8(0))                // a huge length, nothing behind it
	f.Add(append(rawHeader(MaxPayload+1, 0), 'x'), []byte{}, uint8(0)) // over the cap
	f.Add(append(frame("x", MaxFDs+1), frame("y", 0)...), []byte{1}, uint8(17))
	f.Add(frame("fds announced but not sent", 3), []byte{}, uint8(1))
	f.Add(append(frame("", 0), 0, 0), []byte{0, 0, 0, 0}, uint8(2))
	f.Add(bytes.Repeat([]byte{0}, 100), []byte{4, 4, 4}, uint8(0))

	// The first socket starts Go's network poller, which holds
	// descriptors of its own from then on.
	a, b := rawPair(f)
	a.Close()
	b.Close()
	f.Fuzz(func(t *testing.T, data, cuts []byte, nfds uint8) {
		before := countFDs(t)
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		var want syscall.Stat_t
		if err := syscall.Fstat(int(r.Fd()), &want); err != nil {
			t.Fatal(err)
		}
		checkDecode(t, data, cuts, int(nfds%20), r)
		checkRoundTrip(t, data, cuts, r, &want)
		r.Close()
		w.Close()
		if after := countFDs(t); after != before {
			t.Fatalf("%d descriptors open after the frames, %d before", after, before)
		}
	})
}

func checkDecode(t *testing.T, data, cuts []byte, fdsSent int, file *os.File) {
	pieces := split(data, cuts)
	if len(pieces) == 0 {
		fdsSent = 0 // nothing to carry them
	}
	wantFrames, wantProto := referenceFrames(data, fdsSent)
	a, b := rawPair(t)
	sent := make(chan struct{})
	go func() { // ends when every piece is written or the reader closed b
		defer close(sent)
		for i, p := range pieces {
			var oob []byte
			if i == 0 && fdsSent > 0 {
				raw := make([]int, fdsSent)
				for j := range raw {
					raw[j] = int(file.Fd())
				}
				oob = syscall.UnixRights(raw...)
			}
			if _, _, err := a.c.WriteMsgUnix(p, oob, nil); err != nil {
				return
			}
		}
		a.c.CloseWrite()
	}()

	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	var got []refFrame
	var rerr error
	for {
		p, fds, err := b.ReadFrame()
		if err != nil {
			rerr = err
			break
		}
		got = append(got, refFrame{p, len(fds)})
		CloseFiles(fds)
	}
	runtime.ReadMemStats(&m1)
	b.Close()
	<-sent
	a.Close()

	if len(got) != len(wantFrames) {
		t.Fatalf("decoded %d frames, the bytes hold %d (then error %v)", len(got), len(wantFrames), rerr)
	}
	for i := range got {
		if !bytes.Equal(got[i].payload, wantFrames[i].payload) || got[i].nfds != wantFrames[i].nfds {
			t.Fatalf("frame %d: %d bytes with %d fds, want %d bytes with %d fds", i, len(got[i].payload), got[i].nfds, len(wantFrames[i].payload), wantFrames[i].nfds)
		}
	}
	switch {
	case wantProto && !errors.Is(rerr, ErrProtocol):
		t.Fatalf("error %v after the frames, want a protocol error", rerr)
	case !wantProto && !errors.Is(rerr, io.EOF):
		t.Fatalf("error %v after the frames, want EOF", rerr)
	}
	// Each read may take a buffer of minRead; everything else is
	// proportional to the bytes that arrived, whatever the headers say.
	reads := uint64(len(pieces) + len(data)/4096 + 4)
	if alloc, limit := m1.TotalAlloc-m0.TotalAlloc, reads*minRead+8*uint64(len(data))+1<<20; alloc > limit {
		t.Fatalf("decoding %d bytes in %d pieces allocated %d bytes (limit %d)", len(data), len(pieces), alloc, limit)
	}
}

func checkRoundTrip(t *testing.T, data, cuts []byte, file *os.File, want *syscall.Stat_t) {
	payloads := split(data, cuts)
	if len(payloads) > 64 {
		payloads = payloads[:64]
	}
	nfds := func(i int) int {
		if i < len(cuts) {
			return int(cuts[i]) % (MaxFDs + 1)
		}
		return 0
	}
	a, b := rawPair(t)
	defer a.Close()
	defer b.Close()
	werr := make(chan error, 1)
	go func() { // ends when every frame is written or a write fails
		for i, p := range payloads {
			fds := make([]*os.File, nfds(i))
			for j := range fds {
				fds[j] = file
			}
			if err := a.WriteFrame(p, fds); err != nil {
				werr <- err
				return
			}
		}
		werr <- a.c.CloseWrite()
	}()
	for i, p := range payloads {
		got, fds, err := b.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		for _, fd := range fds {
			var st syscall.Stat_t
			if err := syscall.Fstat(int(fd.Fd()), &st); err != nil || st.Dev != want.Dev || st.Ino != want.Ino {
				t.Errorf("frame %d: a descriptor is not the file sent: %v", i, err)
			}
		}
		CloseFiles(fds)
		if !bytes.Equal(got, p) || len(fds) != nfds(i) {
			t.Fatalf("frame %d: %d bytes with %d fds, sent %d bytes with %d", i, len(got), len(fds), len(p), nfds(i))
		}
	}
	if _, _, err := b.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: %v, want EOF", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
}
