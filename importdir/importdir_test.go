package importdir

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/crid-dev/crid/imageservice"
	"github.com/crid-dev/crid/records"
)

// fakeImporter records what it was asked to import; an archive reading
// "bad" is refused.
type fakeImporter struct {
	mu  sync.Mutex
	got []string
}

func (f *fakeImporter) Import(_ context.Context, r io.Reader) ([]imageservice.Imported, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.got = append(f.got, string(b))
	f.mu.Unlock()
	if string(b) == "bad" {
		return nil, errors.New("not an archive")
	}
	return nil, nil
}

func (f *fakeImporter) imports() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

type env struct {
	dir, recs string
	imp       *fakeImporter
}

func newEnv(t *testing.T) *env {
	base := t.TempDir()
	return &env{dir: filepath.Join(base, "import"), recs: filepath.Join(base, "records"), imp: &fakeImporter{}}
}

// start runs a watcher (as a daemon start does) and returns a channel of
// the files it handles and its stop.
func (e *env) start(t *testing.T) (<-chan Seen, func()) {
	t.Helper()
	rs, err := records.Open(e.recs)
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(e.dir, e.imp, rs)
	if err != nil {
		t.Fatal(err)
	}
	handled := make(chan Seen, 16)
	w.imported = func(s Seen) { handled <- s }
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	go func() { ended <- w.Run(ctx) }()
	return handled, func() {
		cancel()
		select {
		case err := <-ended:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not end after its context")
		}
		rs.Close()
	}
}

func next(t *testing.T, c <-chan Seen) Seen {
	t.Helper()
	select {
	case s := <-c:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no file handled within 10 s")
		return Seen{}
	}
}

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestImportDirOnceEach(t *testing.T) {
	e := newEnv(t)
	if err := os.MkdirAll(e.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(e.dir, "a.tar"), "archive a")
	write(t, filepath.Join(e.dir, "bad.tar"), "bad")
	write(t, filepath.Join(e.dir, ".partial"), "hidden")
	if err := os.Symlink("/etc/passwd", filepath.Join(e.dir, "link.tar")); err != nil {
		t.Fatal(err)
	}

	handled, stop := e.start(t)
	// Present at start: imported in name order; the bad one is recorded
	// with its error.
	if s := next(t, handled); s.Name != "a.tar" || s.Error != "" {
		t.Fatalf("first handled %+v", s)
	}
	if s := next(t, handled); s.Name != "bad.tar" || s.Error == "" {
		t.Fatalf("second handled %+v", s)
	}
	// Added while running: written in place, and renamed into place.
	write(t, filepath.Join(e.dir, "b.tar"), "archive b")
	if s := next(t, handled); s.Name != "b.tar" {
		t.Fatalf("handled %+v, want b.tar", s)
	}
	write(t, filepath.Join(e.dir, ".c.tmp"), "archive c")
	if err := os.Rename(filepath.Join(e.dir, ".c.tmp"), filepath.Join(e.dir, "c.tar")); err != nil {
		t.Fatal(err)
	}
	if s := next(t, handled); s.Name != "c.tar" {
		t.Fatalf("handled %+v, want c.tar", s)
	}
	stop()

	// A restart imports nothing again, the bad archive included...
	handled, stop = e.start(t)
	// ...until a file changes: the bad one, replaced, is tried again.
	write(t, filepath.Join(e.dir, ".bad.tmp"), "archive bad, fixed")
	if err := os.Rename(filepath.Join(e.dir, ".bad.tmp"), filepath.Join(e.dir, "bad.tar")); err != nil {
		t.Fatal(err)
	}
	if s := next(t, handled); s.Name != "bad.tar" || s.Error != "" {
		t.Fatalf("handled %+v, want the fixed bad.tar", s)
	}
	stop()
	want := []string{"archive a", "bad", "archive b", "archive c", "archive bad, fixed"}
	if got := e.imp.imports(); !slices.Equal(got, want) {
		t.Fatalf("imports %q, want %q (each once; no symlink, no hidden file)", got, want)
	}
}
