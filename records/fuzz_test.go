package records

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fuzzKind and fuzzID name the record file the decoder is fed.
const (
	fuzzKind = "k"
	fuzzID   = "rec-1"
)

// fuzzDir returns a fresh directory, on tmpfs when /dev/shm is one: every
// Put fsyncs a file and a directory, which on a busy disk stalls the
// fuzzer for seconds at a time, and durability is not what is fuzzed.
func fuzzDir(t *testing.T) string {
	var st unix.Statfs_t
	if unix.Statfs("/dev/shm", &st) != nil || st.Type != unix.TMPFS_MAGIC {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("/dev/shm", "crid-fuzz-records-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// validFile returns the bytes Put writes for v under fuzzID.
func validFile(tb testing.TB, v any) []byte {
	tb.Helper()
	s, err := Open(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Put(fuzzKind, fuzzID, v); err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(s.dir, fuzzKind, fuzzID+fileExt))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzRecordFile feeds arbitrary bytes to the records decoder as a record
// file left on disk, and round-trips arbitrary IDs and payloads through Put
// and Load. A record Load accepts must be exactly what a Put wrote: its
// checksum matches its payload, the payload decodes, the ID is the file's.
// Anything else (torn, corrupted, empty) must come back as an error naming
// the file, never as a record; a Put with an ID that is not a plain file
// name must fail and write nothing.
func FuzzRecordFile(f *testing.F) {
	good := validFile(f, payload{Name: "one", Count: 1, Blob: strings.Repeat("x", 40)})
	f.Add(good, fuzzID, []byte(`{"name":"n","count":2}`))
	f.Add(good[:len(good)/2], "a", []byte(`null`))                                     // torn write
	f.Add(bytes.Replace(good, []byte(`"one"`), []byte(`"two"`), 1), "b", []byte(`[]`)) // payload changed
	f.Add(bytes.Replace(good, []byte(`"version":1`), []byte(`"version":2`), 1), "..", []byte(`1`))
	f.Add(bytes.Replace(good, []byte(fuzzID), []byte("rec-2"), 1), "../x", []byte(`"s"`))
	f.Add(validFile(f, nil), ".hidden", []byte(`{}`))
	f.Add([]byte(`{"version":1,"id":"rec-1","checksum":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}`), "a/b", []byte("not json"))
	f.Add([]byte{}, "x\x00y", []byte(`<&>`))
	f.Fuzz(func(t *testing.T, file []byte, id string, data []byte) {
		s, err := Open(fuzzDir(t))
		if err != nil {
			t.Fatal(err)
		}
		checkDecode(t, s, file)
		checkRoundTrip(t, s, id, data)
	})
}

// checkDecode writes file as a record and as the debris of an interrupted
// write, and loads the kind.
func checkDecode(t *testing.T, s *Store, file []byte) {
	kindDir := filepath.Join(s.dir, fuzzKind)
	if err := os.MkdirAll(kindDir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(kindDir, fuzzID+fileExt)
	debris := filepath.Join(kindDir, tmpPrefix+"0123-"+fuzzID+fileExt)
	for _, p := range []string{path, debris} {
		if err := os.WriteFile(p, file, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	recs, errs := s.Load(fuzzKind)
	if _, err := os.Lstat(debris); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("debris of an interrupted write left in place: %v", err)
	}
	if len(recs)+len(errs) != 1 {
		t.Fatalf("one file gave %d records and %d errors: %v", len(recs), len(errs), errs)
	}
	if len(errs) == 1 {
		if !strings.Contains(errs[0].Error(), path) {
			t.Errorf("error %q does not name %s", errs[0], path)
		}
		return
	}
	rec := recs[0]
	// Checked from the raw bytes, independently of the decoder: a record
	// is valid only if its envelope says so. encoding/json matches keys
	// case-insensitively, so any spelling of a field may be the one used.
	var env map[string]json.RawMessage
	if err := json.Unmarshal(file, &env); err != nil {
		t.Fatalf("accepted a record that is not a JSON object: %v", err)
	}
	field := func(name string, ok func(json.RawMessage) bool) bool {
		for k, v := range env {
			if strings.EqualFold(k, name) && ok(v) {
				return true
			}
		}
		return false
	}
	str := func(want string) func(json.RawMessage) bool {
		return func(v json.RawMessage) bool {
			var s string
			return json.Unmarshal(v, &s) == nil && s == want
		}
	}
	if !field("version", func(v json.RawMessage) bool {
		var n int
		return json.Unmarshal(v, &n) == nil && n == formatVersion
	}) {
		t.Errorf("accepted a record without version %d", formatVersion)
	}
	if rec.ID != fuzzID || !field("id", str(fuzzID)) {
		t.Errorf("accepted a record not holding id %q as %q", fuzzID, rec.ID)
	}
	if !field("checksum", str(checksum(rec.Data))) {
		t.Errorf("accepted a record whose payload %q has no matching checksum", rec.Data)
	}
	if !field("data", func(v json.RawMessage) bool { return bytes.Equal(v, rec.Data) }) {
		t.Errorf("payload %q is not in the file", rec.Data)
	}
	if _, err := Decode[any](rec); err != nil {
		t.Errorf("accepted a record whose payload %q does not decode: %v", rec.Data, err)
	}
	otherBoot := func(v json.RawMessage) bool { return !str(s.bootID)(v) }
	if !rec.Stale && !field("boot_id", str(s.bootID)) || rec.Stale && !field("boot_id", otherBoot) && field("boot_id", str(s.bootID)) {
		t.Errorf("record in boot %s: stale %v", s.bootID, rec.Stale)
	}
}

func checkRoundTrip(t *testing.T, s *Store, id string, data []byte) {
	const kind = "rt"
	var v any = string(data)
	if json.Valid(data) {
		v = json.RawMessage(data)
	}
	want, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	before := storeFiles(t, s.dir)
	err = s.Put(kind, id, v)
	if checkName("id", id) != nil {
		if err == nil {
			t.Fatalf("Put accepted the id %q", id)
		}
		if after := storeFiles(t, s.dir); !equalSets(before, after, filepath.Join(s.dir, kind)) {
			t.Fatalf("a refused Put changed the store: %v -> %v", before, after)
		}
		return
	}
	if err != nil {
		// A valid name the file system refuses (too long): nothing may
		// be left but the kind's directory.
		if after := storeFiles(t, s.dir); !equalSets(before, after, filepath.Join(s.dir, kind)) {
			t.Fatalf("a failed Put (%v) left %v", err, after)
		}
		return
	}
	recs, errs := s.Load(kind)
	if len(errs) != 0 || len(recs) != 1 {
		t.Fatalf("load after put of %q: %d records, errors %v", id, len(recs), errs)
	}
	if recs[0].ID != id || !bytes.Equal(recs[0].Data, want) || recs[0].Stale {
		t.Fatalf("round trip of %q/%q gave %q/%q (stale %v)", id, want, recs[0].ID, recs[0].Data, recs[0].Stale)
	}
	files := storeFiles(t, filepath.Join(s.dir, kind))
	if len(files) != 1 || files[0] != filepath.Join(s.dir, kind, id+fileExt) {
		t.Fatalf("put of %q wrote %v", id, files)
	}
}

// storeFiles lists every path under dir.
func storeFiles(t *testing.T, dir string) []string {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// equalSets reports whether a and b hold the same paths, ignoring extra.
func equalSets(a, b []string, extra string) bool {
	set := map[string]bool{}
	for _, p := range a {
		set[p] = true
	}
	n := 0
	for _, p := range b {
		if p == extra && !set[p] {
			continue
		}
		if !set[p] {
			return false
		}
		n++
	}
	return n == len(set)
}
