package crilog

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fullFs mounts a small tmpfs at a fresh directory and fills it; free
// removes the filler. Both end with the test.
func fullFs(t *testing.T) (dir string, free func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root: mounts tmpfs")
	}
	dir = t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir, func() {
		if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
			t.Fatal(err)
		}
	}
}

func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}

// On a full disk the container's output is counted, not written, and its
// copy goes on; the error is reported once; when space is back the log
// resumes with one marker entry saying how much was lost and why, then
// the new lines, all well-formed CRI entries.
func TestFullDiskMarksLostOutput(t *testing.T) {
	dir, free := fullFs(t)
	path := filepath.Join(dir, "c.log")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var errs []error
	onErr := func(err error) { errs = append(errs, err) }
	copyLines := func(s ...string) {
		t.Helper()
		if err := Copy(f, Stdout, &chunkReader{chunks: s}, 0, nil, onErr); err != nil {
			t.Fatal(err)
		}
	}
	fill(t, dir) // the log is empty: no page of its own to write into
	copyLines("lost one\n", "lost two\n")
	copyLines(strings.Repeat("x", 100) + "\n")
	if len(errs) != 1 || !errors.Is(errs[0], syscall.ENOSPC) {
		t.Fatalf("errors reported: %v; want one ENOSPC", errs)
	}
	free()
	start := time.Now().UTC()
	copyLines("after\n")
	es := parse(t, path)
	want := []string{"[crid: 116 bytes of output lost: no space left on device]", "after"}
	if len(es) != len(want) {
		t.Fatalf("log %+v, want lines %q", es, want)
	}
	for i, e := range es {
		if e.line != want[i] || e.tag != "F" {
			t.Fatalf("entry %d: %+v, want F %q", i, e, want[i])
		}
	}
	if es[0].stream != "stderr" || es[0].ts.Before(start.Truncate(time.Second)) {
		t.Fatalf("marker %+v: want stderr, stamped at the resumption", es[0])
	}
	if len(errs) != 1 {
		t.Fatalf("errors reported after resuming: %v", errs)
	}
}

// A write the disk cuts short leaves a torn entry: the log resumes on a
// new line, the torn entry's content counted as lost.
func TestLostContentCountsFromTornEntry(t *testing.T) {
	p := []byte("2024-01-01T00:00:00Z stdout F abc\n2024-01-01T00:00:00Z stdout P defgh\n2024-01-01T00:00:00Z stderr F ij\n")
	first := len("2024-01-01T00:00:00Z stdout F abc\n")
	for _, tc := range []struct {
		n    int
		want int64
	}{{0, 10}, {first, 7}, {first + 3, 7}, {len(p) - 1, 2}} {
		if got := lostContent(p, tc.n); got != tc.want {
			t.Errorf("lostContent(p, %d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}
