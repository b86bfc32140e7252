package records

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

type payload struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
	Blob  string `json:"blob"`
}

func mustOpen(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPutLoadDelete(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	if err := s.Put("sandboxes", "a1", payload{Name: "one", Count: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("sandboxes", "a1", payload{Name: "one", Count: 2}); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("sandboxes", "b2", payload{Name: "two"}); err != nil {
		t.Fatal(err)
	}
	recs, errs := s.Load("sandboxes")
	if len(errs) != 0 || len(recs) != 2 {
		t.Fatalf("load: %d records, errors %v", len(recs), errs)
	}
	got, err := Decode[payload](recs[0])
	if err != nil || got.Count != 2 || recs[0].Stale {
		t.Fatalf("record a1 = %+v, stale %v, err %v", got, recs[0].Stale, err)
	}
	if err := s.Delete("sandboxes", "a1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("sandboxes", "a1"); err != nil {
		t.Fatalf("second delete must be a no-op: %v", err)
	}
	if recs, _ := s.Load("sandboxes"); len(recs) != 1 || recs[0].ID != "b2" {
		t.Fatalf("after delete: %+v", recs)
	}
	if recs, errs := s.Load("containers"); len(recs) != 0 || len(errs) != 0 {
		t.Fatalf("missing kind should load empty, got %v %v", recs, errs)
	}
}

func TestRejectsEscapingNames(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	for _, id := range []string{"", ".", "..", "../x", "a/b", ".hidden", "a\x00b"} {
		if err := s.Put("sandboxes", id, payload{}); err == nil {
			t.Errorf("id %q accepted", id)
		}
	}
	if err := s.Put("../k", "id", payload{}); err == nil {
		t.Error("kind ../k accepted")
	}
}

func TestCorruptRecordIsReportedAndSkipped(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if err := s.Put("images", "good", payload{Name: "ok"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("images", "flipped", payload{Name: "will change"}); err != nil {
		t.Fatal(err)
	}
	kdir := filepath.Join(dir, "images")
	// Garbage, a truncated file, and a payload edited behind the checksum.
	if err := os.WriteFile(filepath.Join(kdir, "garbage.json"), []byte("\x00\x01not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(filepath.Join(kdir, "good.json"))
	if err := os.WriteFile(filepath.Join(kdir, "torn.json"), good[:len(good)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	fl, _ := os.ReadFile(filepath.Join(kdir, "flipped.json"))
	fl = []byte(strings.Replace(string(fl), "will change", "was changed", 1))
	if err := os.WriteFile(filepath.Join(kdir, "flipped.json"), fl, 0o600); err != nil {
		t.Fatal(err)
	}
	recs, errs := s.Load("images")
	if len(recs) != 1 || recs[0].ID != "good" {
		t.Fatalf("want only the good record, got %+v", recs)
	}
	if len(errs) != 3 {
		t.Fatalf("want 3 errors (garbage, torn, checksum), got %v", errs)
	}
	joined := fmt.Sprint(errs)
	for _, want := range []string{"garbage.json", "torn.json", "checksum mismatch"} {
		if !strings.Contains(joined, want) {
			t.Errorf("errors %v do not mention %s", errs, want)
		}
	}
}

func TestStaleRecordFromEarlierBoot(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if err := s.Put("sandboxes", "old", payload{Name: "before reboot"}); err != nil {
		t.Fatal(err)
	}
	s.bootID = "another-boot"
	if err := s.Put("sandboxes", "new", payload{Name: "this boot"}); err != nil {
		t.Fatal(err)
	}
	recs, errs := mustOpen(t, dir).Load("sandboxes")
	if len(errs) != 0 || len(recs) != 2 {
		t.Fatalf("load: %v %v", recs, errs)
	}
	for _, r := range recs {
		if want := r.ID == "new"; r.Stale != want {
			t.Errorf("record %s: stale=%v, want %v", r.ID, r.Stale, want)
		}
	}
}

func TestWriteAfterClose(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("sandboxes", "x", payload{}); err != ErrClosed {
		t.Fatalf("put after close: %v", err)
	}
}

// The crash tests re-run this test binary as a child that updates a record
// and SIGKILLs itself at a chosen step of the write. The parent then loads
// the store as a restarted daemon would.
const crashEnv = "CRID_RECORDS_CRASH"

func TestMain(m *testing.M) {
	if spec := os.Getenv(crashEnv); spec != "" {
		crashChild(spec)
	}
	os.Exit(m.Run())
}

func crashChild(spec string) {
	step, dir, _ := strings.Cut(spec, ":")
	s, err := Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	crashPoint = func(at string) {
		if at == step {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
	if err := s.Put("containers", "c1", newValue); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(4)
	}
	os.Exit(0) // the step was never reached
}

var (
	oldValue = payload{Name: "old", Count: 1, Blob: strings.Repeat("o", 64<<10)}
	newValue = payload{Name: "new", Count: 2, Blob: strings.Repeat("n", 128<<10)}
)

func TestCrashDuringWriteLeavesOldOrNew(t *testing.T) {
	for _, tc := range []struct {
		step string
		want string
	}{
		{"partial-write", "old"},
		{"written", "old"},
		{"synced", "old"},
		{"renamed", "new"},
	} {
		t.Run(tc.step, func(t *testing.T) {
			dir := t.TempDir()
			s := mustOpen(t, dir)
			if err := s.Put("containers", "c1", oldValue); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), crashEnv+"="+tc.step+":"+dir)
			out, err := cmd.CombinedOutput()
			ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("child was not killed at %s: %v\n%s", tc.step, err, out)
			}
			if tc.step != "renamed" {
				debris, _ := filepath.Glob(filepath.Join(dir, "containers", tmpPrefix+"*"))
				if len(debris) != 1 {
					t.Fatalf("expected the interrupted temp file on disk, found %v", debris)
				}
			}
			recs, errs := mustOpen(t, dir).Load("containers")
			if len(errs) != 0 || len(recs) != 1 {
				t.Fatalf("after crash: records %v, errors %v", recs, errs)
			}
			got, err := Decode[payload](recs[0])
			if err != nil {
				t.Fatal(err)
			}
			want := oldValue
			if tc.want == "new" {
				want = newValue
			}
			if got != want {
				t.Fatalf("after crash at %s: got record %q, want %q", tc.step, got.Name, want.Name)
			}
			if debris, _ := filepath.Glob(filepath.Join(dir, "containers", tmpPrefix+"*")); len(debris) != 0 {
				t.Fatalf("load left debris: %v", debris)
			}
		})
	}
}
