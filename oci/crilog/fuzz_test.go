package crilog

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// logEntry is one parsed CRI log line.
type logEntry struct {
	ts      []byte
	stream  Stream
	tag     byte
	content []byte
}

// parseLog splits the CRI log b into entries, strictly as kubelet's parser
// reads them: "<RFC3339Nano> <stdout|stderr> <P|F> <content>\n", the
// timestamp in UTC. It fails on the first line that is not one, and on a
// last line without its newline.
func parseLog(b []byte) ([]logEntry, error) {
	var out []logEntry
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return out, fmt.Errorf("line %d: no newline: %q", len(out)+1, b)
		}
		line := b[:i]
		b = b[i+1:]
		ts, rest, ok := bytes.Cut(line, []byte(" "))
		if !ok {
			return out, fmt.Errorf("line %d: no timestamp: %q", len(out)+1, line)
		}
		t, err := time.Parse(time.RFC3339Nano, string(ts))
		if err != nil || t.Location() != time.UTC {
			return out, fmt.Errorf("line %d: timestamp %q: %v", len(out)+1, ts, err)
		}
		stream, rest, ok := bytes.Cut(rest, []byte(" "))
		if !ok || (string(stream) != string(Stdout) && string(stream) != string(Stderr)) {
			return out, fmt.Errorf("line %d: stream %q", len(out)+1, stream)
		}
		if len(rest) < 2 || (rest[0] != 'P' && rest[0] != 'F') || rest[1] != ' ' {
			return out, fmt.Errorf("line %d: tag of %q", len(out)+1, line)
		}
		out = append(out, logEntry{ts: ts, stream: Stream(stream), tag: rest[0], content: rest[2:]})
	}
	return out, nil
}

// FuzzCopy writes arbitrary container output, read in arbitrary pieces,
// with an arbitrary maximum line size, after arbitrary bytes already in the
// log file (an earlier writer's lines, a torn last entry), and reads the
// file back as kubelet would. Oracle: the old bytes are untouched; every
// entry written parses, re-encodes to exactly its bytes and starts at a
// line of its own; P entries are exactly the maximum size and F entries at
// most that; the contents, P pieces joined and each F ending a line, are
// the output (an unterminated last line is a last, shorter P entry).
func FuzzCopy(f *testing.F) {
	f.Add([]byte(nil), []byte("hello\nworld\n"), []byte{3, 1}, uint16(0), false)
	f.Add([]byte("2024-05-06T07:08:09.123456789Z stdout F old\n"), []byte("no newline at the end"), []byte{0}, uint16(4), true)
	f.Add([]byte("2024-05-06T07:08:09.123456789Z stdout P tor"), []byte("next\n"), []byte{}, uint16(0), false)
	f.Add([]byte(nil), []byte("abcdefghij\n\n\nklmno"), []byte{1, 1, 1, 5}, uint16(3), false)
	f.Add([]byte(nil), bytes.Repeat([]byte("x"), 5000), []byte{255, 7}, uint16(1000), true)
	f.Add([]byte("\n"), []byte("\r\n\x00\xff\n"), []byte{2}, uint16(1), false)
	f.Fuzz(func(t *testing.T, prefix, output, cuts []byte, maxLine uint16, stderr bool) {
		ml := int(maxLine % 600) // 0 means the default
		stream := Stdout
		if stderr {
			stream = Stderr
		}
		var chunks []string
		for rest := output; len(rest) > 0; {
			n := len(rest)
			if len(chunks) < len(cuts) {
				n = min(n, int(cuts[len(chunks)])+1)
			}
			chunks = append(chunks, string(rest[:n]))
			rest = rest[n:]
		}
		path := filepath.Join(t.TempDir(), "c.log")
		if err := os.WriteFile(path, prefix, 0o640); err != nil {
			t.Fatal(err)
		}
		l, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		fixed := time.Date(2024, 5, 6, 7, 8, 9, 120000000, time.UTC)
		err = Copy(l, stream, &chunkReader{chunks: chunks}, ml, func() time.Time { return fixed },
			func(err error) { t.Errorf("write error: %v", err) })
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, prefix) {
			t.Fatalf("the log's earlier bytes changed: %q -> %q", prefix, b)
		}
		written := b[len(prefix):]
		if len(prefix) > 0 && prefix[len(prefix)-1] != '\n' && len(written) > 0 {
			// A torn last entry is ended, so the next entry starts a
			// line of its own instead of being glued to it.
			if written[0] != '\n' {
				t.Fatalf("first entry glued to the unterminated line %q: %q", prefix, written)
			}
			written = written[1:]
		}
		es, err := parseLog(written)
		if err != nil {
			t.Fatalf("written log does not parse: %v\n%q", err, written)
		}
		if ml == 0 {
			ml = DefaultMaxLine
		}
		wantTS := fixed.Format(time.RFC3339Nano)
		var got, reenc []byte
		for i, e := range es {
			if string(e.ts) != wantTS || e.stream != stream {
				t.Fatalf("entry %d: %s %s, want %s %s", i, e.ts, e.stream, wantTS, stream)
			}
			switch {
			case e.tag == 'P' && len(e.content) != ml && !(i == len(es)-1 && len(e.content) < ml):
				t.Fatalf("entry %d: partial entry of %d bytes, max line %d", i, len(e.content), ml)
			case e.tag == 'F' && len(e.content) > ml:
				t.Fatalf("entry %d: full entry of %d bytes, max line %d", i, len(e.content), ml)
			}
			got = append(got, e.content...)
			if e.tag == 'F' {
				got = append(got, '\n')
			}
			reenc = appendEntry(reenc, e.ts, e.stream, e.tag, e.content)
		}
		if !bytes.Equal(reenc, written) {
			t.Fatalf("entries re-encode to %q, the file holds %q", reenc, written)
		}
		want := output
		if !bytes.Equal(got, want) {
			t.Fatalf("log holds %q, the container wrote %q", got, output)
		}
	})
}
