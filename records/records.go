// Package records persists the daemon's records (sandboxes, containers,
// images) crash-safely, one file per record, so that a kill -9 at any point
// leaves each record either as it was or as it was about to become.
//
// A write goes to a temporary file in the same directory, is fsynced, renamed
// over the record and the directory is fsynced: rename is atomic, so readers
// and a restarted daemon see the old or the new bytes, never a mix. Each file
// carries a checksum of its payload and the boot ID it was written in: a torn
// or corrupted file is reported and skipped at load, and a record from an
// earlier boot is marked Stale, because /run on these nodes is a disk and
// survives reboots while the processes, mounts and namespaces it describes
// do not.
package records

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

const (
	fileExt   = ".json"
	tmpPrefix = ".tmp-"
	// formatVersion is bumped when the envelope changes incompatibly.
	formatVersion = 1
)

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("records: store is closed")

// Store is a directory of record kinds, each a directory of record files.
type Store struct {
	dir    string
	bootID string

	mu     sync.RWMutex // held for reading by writes in flight, for writing by Close
	closed bool
}

// Record is one loaded record.
type Record struct {
	ID      string
	Data    json.RawMessage
	Updated time.Time
	// Stale is set when the record was written during an earlier boot: the
	// host resources it names (processes, mounts, netns pins) are gone.
	Stale bool
}

// envelope is the on-disk form of a record.
type envelope struct {
	Version  int             `json:"version"`
	ID       string          `json:"id"`
	BootID   string          `json:"boot_id"`
	Updated  time.Time       `json:"updated"`
	Checksum string          `json:"checksum"`
	Data     json.RawMessage `json:"data"`
}

// Open returns the store rooted at dir, creating it if needed.
func Open(dir string) (*Store, error) {
	bootID, err := BootID()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("records: create %s: %w", dir, err)
	}
	return &Store{dir: dir, bootID: bootID}, nil
}

// BootID returns the kernel's identifier of the current boot.
func BootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("records: read boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Put writes the record kind/id with v marshalled as JSON, replacing any
// earlier version atomically.
func (s *Store) Put(kind, id string, v any) error {
	if err := checkName("kind", kind); err != nil {
		return err
	}
	if err := checkName("id", id); err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("records: encode %s/%s: %w", kind, id, err)
	}
	env, err := json.Marshal(envelope{
		Version:  formatVersion,
		ID:       id,
		BootID:   s.bootID,
		Updated:  time.Now().UTC(),
		Checksum: checksum(data),
		Data:     data,
	})
	if err != nil {
		return fmt.Errorf("records: encode %s/%s: %w", kind, id, err)
	}

	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	dir := filepath.Join(s.dir, kind)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("records: create %s: %w", dir, err)
	}
	if err := writeAtomic(dir, id+fileExt, env); err != nil {
		return fmt.Errorf("records: write %s/%s: %w", kind, id, err)
	}
	return nil
}

// Delete removes the record kind/id. Deleting a missing record is not an error.
func (s *Store) Delete(kind, id string) error {
	if err := checkName("kind", kind); err != nil {
		return err
	}
	if err := checkName("id", id); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	dir := filepath.Join(s.dir, kind)
	if err := os.Remove(filepath.Join(dir, id+fileExt)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("records: delete %s/%s: %w", kind, id, err)
	}
	return syncDir(dir)
}

// Load returns every readable record of kind. Files that cannot be read or
// are corrupt are skipped and returned as errors, so one bad file never stops
// the daemon; leftover temporary files of interrupted writes are removed.
func (s *Store) Load(kind string) ([]Record, []error) {
	if err := checkName("kind", kind); err != nil {
		return nil, []error{err}
	}
	dir := filepath.Join(s.dir, kind)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, []error{fmt.Errorf("records: list %s: %w", dir, err)}
	}
	var (
		recs []Record
		errs []error
	)
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(dir, name)
		if strings.HasPrefix(name, tmpPrefix) {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("records: remove debris %s: %w", path, err))
			}
			continue
		}
		if e.IsDir() || !strings.HasSuffix(name, fileExt) {
			continue
		}
		rec, err := s.read(path, strings.TrimSuffix(name, fileExt))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		recs = append(recs, rec)
	}
	return recs, errs
}

func (s *Store) read(path, id string) (Record, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Record{}, fmt.Errorf("records: read %s: %w", path, err)
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return Record{}, fmt.Errorf("records: corrupt record %s: %w", path, err)
	}
	switch {
	case env.Version != formatVersion:
		return Record{}, fmt.Errorf("records: %s: unsupported format version %d", path, env.Version)
	case env.ID != id:
		return Record{}, fmt.Errorf("records: corrupt record %s: holds id %q", path, env.ID)
	case len(env.Data) == 0:
		// Put always writes a payload; without one the checksum would
		// be the empty input's and the record would pass as valid.
		return Record{}, fmt.Errorf("records: corrupt record %s: no data", path)
	case env.Checksum != checksum(env.Data):
		return Record{}, fmt.Errorf("records: corrupt record %s: checksum mismatch", path)
	}
	return Record{ID: id, Data: env.Data, Updated: env.Updated, Stale: env.BootID != s.bootID}, nil
}

// Close waits for writes in flight and refuses new ones.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// Decode unmarshals a record's payload.
func Decode[T any](r Record) (T, error) {
	var v T
	if err := json.Unmarshal(r.Data, &v); err != nil {
		return v, fmt.Errorf("records: decode %s: %w", r.ID, err)
	}
	return v, nil
}

func checksum(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// checkName keeps kinds and IDs to single, ordinary path elements so a
// record can never be written outside the store. They must be valid UTF-8:
// the envelope's JSON would replace a bad byte of the ID, and the record
// would no longer load.
func checkName(what, name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || strings.HasPrefix(name, ".") || !utf8.ValidString(name) {
		return fmt.Errorf("records: invalid %s %q", what, name)
	}
	return nil
}

// crashPoint is called between the steps of a write. Tests set it to kill
// the process at a chosen step; it is nil otherwise.
var crashPoint func(step string)

func reach(step string) {
	if crashPoint != nil {
		crashPoint(step)
	}
}

func writeAtomic(dir, name string, data []byte) (err error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, tmpPrefix+hex.EncodeToString(rnd[:])+"-"+name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	// Two writes, so a crash test can stop the process with half a file
	// on disk.
	half := len(data) / 2
	if _, err = f.Write(data[:half]); err != nil {
		return err
	}
	reach("partial-write")
	if _, err = f.Write(data[half:]); err != nil {
		return err
	}
	reach("written")
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	reach("synced")
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	reach("renamed")
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
