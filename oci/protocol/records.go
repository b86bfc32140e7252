package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Files under the monitor's state directory, one directory per container:
//
//	<state>/<id>/container.json  Record, written at create, rewritten at start
//	<state>/<id>/exit.json       Exit, written once by whoever reaped the init
//
// The daemon writes exit.json itself when it reaps an init while the monitor
// is down (it is the monitor's parent and a child subreaper); the monitor
// reads it when it notices the exit. Every write is write-temp then rename,
// so a reader sees a whole file or none; exit files are also fsynced (file
// and directory), as the exit is the one fact nobody can observe again.
const (
	RecordFile = "container.json"
	ExitFile   = "exit.json"
	// SeenExitFile is the exit the stdio holder saw (oci/holder) when it
	// could not know whether anyone else would: read only when ExitFile is
	// missing and the reader could not observe the exit itself.
	SeenExitFile = "exit-seen.json"
)

// Record is what the monitor keeps about a container across its own restart.
type Record struct {
	ID            string    `json:"id"`
	Pid           int       `json:"pid,omitempty"`
	InitStartTime uint64    `json:"initStartTime,omitempty"`
	CgroupsPath   string    `json:"cgroupsPath,omitempty"`
	MemoryCgroup  string    `json:"memoryCgroup,omitempty"` // absolute dir, for the OOM check
	LogPath       string    `json:"logPath,omitempty"`
	MaxLogLine    int       `json:"maxLogLine,omitempty"`
	Stdin         bool      `json:"stdin,omitempty"`
	StdinOnce     bool      `json:"stdinOnce,omitempty"`
	TTY           bool      `json:"tty,omitempty"`
	CreatedAt     time.Time `json:"createdAt"`
	StartedAt     time.Time `json:"startedAt,omitzero"`
	// Complete is false while the init is being created: a record left
	// incomplete by a crash names resources to clean up.
	Complete bool `json:"complete"`
	// Finished is set once the exit is recorded and the output drained
	// into the log; an exit without it still has output in its pipes.
	Finished bool `json:"finished,omitempty"`
}

// ValidID reports whether id is usable as a container ID and a file name:
// libcontainer's rule (letters, digits, _ + - .), not "." or "..", at most
// 1024 bytes.
func ValidID(id string) error {
	if id == "" || id == "." || id == ".." || len(id) > 1024 {
		return fmt.Errorf("invalid container ID %q", id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '_', c == '+', c == '-', c == '.':
		default:
			return fmt.Errorf("invalid container ID %q: character %q", id, c)
		}
	}
	return nil
}

// ContainerDir is the container's directory under stateDir.
func ContainerDir(stateDir, id string) string { return filepath.Join(stateDir, id) }

// WriteJSON atomically replaces path with v as JSON. With durable, the
// file and the rename are synced to disk, so they survive a machine crash;
// without, they survive any process crash (the page cache outlives the
// process), which is all a container record needs: a machine crash ends its
// containers too. Exit files are always durable.
func WriteJSON(path string, v any, durable bool) error {
	tmp, err := writeTemp(path, v, durable)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename %s: %w", path, err)
	}
	if !durable {
		return nil
	}
	return syncDir(filepath.Dir(path))
}

// WriteExit records e as the container's exit unless one is recorded
// already: the first writer wins, so the daemon and the monitor can never
// overwrite each other's observation. It reports whether e was written.
func WriteExit(stateDir, id string, e Exit) (bool, error) {
	if err := ValidID(id); err != nil {
		return false, err
	}
	path := filepath.Join(ContainerDir(stateDir, id), ExitFile)
	tmp, err := writeTemp(path, e, true)
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("link %s: %w", path, err)
	}
	return true, syncDir(filepath.Dir(path))
}

// ReadExit returns the recorded exit, or nil when there is none.
func ReadExit(stateDir, id string) (*Exit, error) {
	var e Exit
	ok, err := readJSON(filepath.Join(ContainerDir(stateDir, id), ExitFile), &e)
	if !ok {
		return nil, err
	}
	return &e, nil
}

// WriteSeenExit records the exit the stdio holder saw. It never creates
// the container's directory: a container removed meanwhile gets nothing.
// It is not synced: it is written at every exit, and only a process crash
// needs it (a machine crash ends the containers too).
func WriteSeenExit(stateDir, id string, e Exit) error {
	if err := ValidID(id); err != nil {
		return err
	}
	return WriteJSON(filepath.Join(ContainerDir(stateDir, id), SeenExitFile), e, false)
}

// ReadSeenExit returns the exit the stdio holder saw, or nil.
func ReadSeenExit(stateDir, id string) (*Exit, error) {
	var e Exit
	ok, err := readJSON(filepath.Join(ContainerDir(stateDir, id), SeenExitFile), &e)
	if !ok {
		return nil, err
	}
	return &e, nil
}

// ReadRecord returns the container's record, or nil when there is none.
func ReadRecord(stateDir, id string) (*Record, error) {
	var r Record
	ok, err := readJSON(filepath.Join(ContainerDir(stateDir, id), RecordFile), &r)
	if !ok {
		return nil, err
	}
	return &r, nil
}

func readJSON(path string, v any) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decode %s: %w", path, err)
	}
	return true, nil
}

func writeTemp(path string, v any, durable bool) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", path, err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := f.Write(b)
	var serr error
	if durable {
		serr = f.Sync()
	}
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return f.Name(), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
