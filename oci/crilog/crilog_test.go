package crilog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type entry struct {
	ts     time.Time
	stream string
	tag    string
	line   string
}

func parse(t *testing.T, path string) []entry {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var es []entry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), " ", 4)
		if len(parts) != 4 {
			t.Fatalf("malformed entry %q", sc.Text())
		}
		ts, err := time.Parse(time.RFC3339Nano, parts[0])
		if err != nil {
			t.Fatalf("timestamp of %q: %v", sc.Text(), err)
		}
		if parts[2] != "P" && parts[2] != "F" {
			t.Fatalf("tag of %q", sc.Text())
		}
		es = append(es, entry{ts, parts[1], parts[2], parts[3]})
	}
	return es
}

// chunkReader returns its chunks one Read at a time, as a pipe would.
type chunkReader struct{ chunks []string }

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	if c.chunks[0] == "" {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func copyChunks(t *testing.T, maxLine int, chunks ...string) []entry {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sub", "c.log")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fixed := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	if err := Copy(f, Stdout, &chunkReader{chunks: chunks}, maxLine, func() time.Time { return fixed }, nil); err != nil {
		t.Fatal(err)
	}
	f.Close()
	es := parse(t, path)
	for _, e := range es {
		if !e.ts.Equal(fixed) || e.stream != "stdout" {
			t.Fatalf("entry %+v: want stdout at %v", e, fixed)
		}
	}
	return es
}

func tags(es []entry) string {
	var b strings.Builder
	for _, e := range es {
		b.WriteString(e.tag + ":" + e.line + "|")
	}
	return b.String()
}

func TestCopyLines(t *testing.T) {
	for _, tc := range []struct {
		name    string
		maxLine int
		chunks  []string
		want    string
	}{
		{"full lines", 16, []string{"a\nbb\n"}, "F:a|F:bb|"},
		{"line across reads", 16, []string{"hel", "lo\nwor", "ld\n"}, "F:hello|F:world|"},
		{"empty lines", 16, []string{"\n\nx\n"}, "F:|F:|F:x|"},
		{"unterminated last line", 16, []string{"a\nbc"}, "F:a|P:bc|"},
		{"long line split", 4, []string{"abcdefghij\n"}, "P:abcd|P:efgh|F:ij|"},
		{"exactly max is one entry", 4, []string{"abcd\nefgh\n"}, "F:abcd|F:efgh|"},
		{"max plus one", 4, []string{"abcde\n"}, "P:abcd|F:e|"},
		{"split across reads", 4, []string{"ab", "cdef", "gh", "\n"}, "P:abcd|F:efgh|"},
		{"nothing", 4, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tags(copyChunks(t, tc.maxLine, tc.chunks...)); got != tc.want {
				t.Fatalf("got %s want %s", got, tc.want)
			}
		})
	}
}

func TestTimestampsAreRFC3339NanoUTC(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := Copy(f, Stderr, strings.NewReader("x\n"), 0, nil, nil); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b, _ := os.ReadFile(path)
	ts, rest, _ := strings.Cut(string(b), " ")
	if !strings.HasSuffix(ts, "Z") || rest != "stderr F x\n" {
		t.Fatalf("entry %q", b)
	}
	got, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil || got.Before(before.Add(-time.Second)) || got.After(time.Now().Add(time.Second)) {
		t.Fatalf("timestamp %q (%v) not near now", ts, err)
	}
}

// Two streams writing concurrently into one file: every entry stays whole
// and each stream's content survives byte for byte.
func TestConcurrentStreamsNoLossNoInterleave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	var wg sync.WaitGroup
	for _, s := range []Stream{Stdout, Stderr} {
		var b strings.Builder
		for i := 0; i < 20000; i++ {
			b.WriteString(strings.Repeat(string(s[3]), i%300))
			b.WriteByte('\n')
		}
		want[string(s)] = b.String()
		pr, pw := io.Pipe()
		wg.Add(2)
		go func() {
			defer wg.Done()
			io.Copy(pw, strings.NewReader(want[string(s)]))
			pw.Close()
		}()
		go func() {
			defer wg.Done()
			if err := Copy(f, s, pr, 100, nil, nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	f.Close()
	got := map[string]*strings.Builder{"stdout": {}, "stderr": {}}
	for _, e := range parse(t, path) {
		got[e.stream].WriteString(e.line)
		if e.tag == "F" {
			got[e.stream].WriteByte('\n')
		}
	}
	for s, w := range want {
		if got[s].String() != w {
			t.Fatalf("%s: reassembled %d bytes, want %d", s, got[s].Len(), len(w))
		}
	}
}

func TestReopenAfterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.log")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- Copy(f, Stdout, pr, 0, nil, nil) }()
	io.WriteString(pw, "one\n")
	waitFor(t, func() bool { b, _ := os.ReadFile(path); return strings.Contains(string(b), "one") })
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(pw, "two\n")
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), "F one") || strings.Contains(string(old), "two") || !strings.Contains(string(cur), "F two") {
		t.Fatalf("rotated %q current %q", old, cur)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("boom") }

func TestReadErrorIsReturned(t *testing.T) {
	if err := Copy(nil, Stdout, errReader{}, 0, nil, nil); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("err = %v", err)
	}
}

func TestNilFileDiscards(t *testing.T) {
	if err := Copy(nil, Stdout, strings.NewReader(strings.Repeat("x", 100000)+"\n"), 10, nil, nil); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not met")
}

// Long lines grow the read buffer from its small start up to the limit.
func TestLongLinesBeyondInitialBuffer(t *testing.T) {
	const maxLine = 20000
	long := strings.Repeat("z", 50000)
	exact := strings.Repeat("e", maxLine)
	es := copyChunks(t, maxLine, long[:3000], long[3000:]+"\n", exact+"\nshort\n")
	var got []string
	for _, e := range es {
		got = append(got, fmt.Sprintf("%s%d", e.tag, len(e.line)))
	}
	if want := "P20000 P20000 F10000 F20000 F5"; strings.Join(got, " ") != want {
		t.Fatalf("entries %v, want %s", got, want)
	}
}
