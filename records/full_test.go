package records

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// A record write on a full disk fails with an error that is ENOSPC and
// names the file, leaves the previous record whole and no temporary file;
// once space is back the same write succeeds.
func TestPutOnFullDiskKeepsPreviousRecord(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: mounts tmpfs")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	s, err := Open(filepath.Join(dir, "records"))
	if err != nil {
		t.Fatal(err)
	}
	type rec struct{ Body string }
	if err := s.Put("kind", "a", rec{"old"}); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = f.Write(make([]byte, 4096))
	}
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling: %v", err)
	}

	err = s.Put("kind", "a", rec{strings.Repeat("new", 4096)})
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), filepath.Join(dir, "records", "kind")) {
		t.Fatalf("Put on a full disk: %v; want ENOSPC naming the path", err)
	}
	check := func(want string) {
		t.Helper()
		// Before Load, which removes temporary files.
		entries, _ := os.ReadDir(filepath.Join(dir, "records", "kind"))
		if len(entries) != 1 {
			t.Fatalf("files in the kind's directory: %v, want the record only", entries)
		}
		recs, errs := s.Load("kind")
		if len(errs) != 0 || len(recs) != 1 {
			t.Fatalf("load: %v, %v", recs, errs)
		}
		got, err := Decode[rec](recs[0])
		if err != nil || got.Body != want {
			t.Fatalf("record holds %.20q…, %v; want %.20q…", got.Body, err, want)
		}
	}
	check("old")

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("kind", "a", rec{strings.Repeat("new", 4096)}); err != nil {
		t.Fatal(err)
	}
	check(strings.Repeat("new", 4096))
}
