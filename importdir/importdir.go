// Package importdir imports the image archives an operator drops into a
// directory (image.import_dir), as k3s does for its air-gap images: those
// present when crid starts, then each one written or moved in while it
// runs (inotify). A file is imported once: its name, size and mtime are
// recorded with the outcome, so neither a restart nor a later event
// imports it again, and a bad archive is logged once and skipped, never
// retried in a loop; a file replaced by another (new size or mtime) is
// imported anew.
package importdir

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/imageservice"
	"github.com/crid-dev/crid/panicguard"
	"github.com/crid-dev/crid/records"
)

// recordKind holds one record per file seen.
const recordKind = "import-dir"

// Importer is the part of the image service the watcher needs.
type Importer interface {
	Import(ctx context.Context, r io.Reader) ([]imageservice.Imported, error)
}

// Seen is what is remembered of a file.
type Seen struct {
	Name    string    `json:"name"`
	Size    int64     `json:"size"`
	MtimeNs int64     `json:"mtime_ns"`
	At      time.Time `json:"at"`
	// Images are the IDs imported; Error the refusal, if it failed.
	Images []string `json:"images,omitempty"`
	Error  string   `json:"error,omitempty"`
}

// Watcher imports the archives of one directory.
type Watcher struct {
	dir     string
	images  Importer
	records *records.Store
	// imported, when set (tests), is called after each file is handled.
	imported func(Seen)
}

// New returns a watcher of dir, which it creates (mode 0700) if missing.
func New(dir string, images Importer, rs *records.Store) (*Watcher, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("import dir: %w", err)
	}
	return &Watcher{dir: dir, images: images, records: rs}, nil
}

// Run imports what dir holds, then what is added to it, until ctx ends.
// Imports are done one at a time, in name order for the initial scan.
func (w *Watcher) Run(ctx context.Context) (err error) {
	defer panicguard.Recover("import dir watcher", &err)
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("import dir: inotify: %w", err)
	}
	// Non-blocking: reads go through Go's poller, and Close ends a read
	// in progress.
	f := os.NewFile(uintptr(fd), "inotify")
	defer f.Close()
	if _, err := unix.InotifyAddWatch(fd, w.dir, unix.IN_CLOSE_WRITE|unix.IN_MOVED_TO|unix.IN_ONLYDIR); err != nil {
		return fmt.Errorf("import dir %s: watch: %w", w.dir, err)
	}
	// Watching before the scan: a file added meanwhile is seen by one or
	// both, and the records make the second a no-op.
	names := make(chan string, 64)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	go func() { readErr <- readEvents(f, names, stop) }() // ends when stop and f are closed
	defer func() { close(stop); f.Close(); <-readErr }()

	seen := w.load()
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return fmt.Errorf("import dir %s: %w", w.dir, err)
	}
	for _, e := range entries {
		w.consider(ctx, seen, e.Name())
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			readErr <- nil // for the deferred receive
			return fmt.Errorf("import dir %s: read events: %w", w.dir, err)
		case name := <-names:
			w.consider(ctx, seen, name)
		}
	}
}

// readEvents sends the name of each file an event reports, until stop is
// closed or f fails (closed).
func readEvents(f *os.File, names chan<- string, stop <-chan struct{}) (err error) {
	defer panicguard.Recover("import dir events", &err)
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			return err
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			end := off + unix.SizeofInotifyEvent + int(ev.Len)
			if end > n {
				break
			}
			name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:end]), "\x00")
			off = end
			if name != "" && ev.Mask&unix.IN_ISDIR == 0 {
				select {
				case names <- name:
				case <-stop:
					return nil
				}
			}
		}
	}
}

func recordID(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

func (w *Watcher) load() map[string]Seen {
	out := map[string]Seen{}
	recs, errs := w.records.Load(recordKind)
	for _, err := range errs {
		klog.ErrorS(err, "Skipping unreadable import dir record")
	}
	for _, r := range recs {
		s, err := records.Decode[Seen](r)
		if err != nil || recordID(s.Name) != r.ID {
			klog.ErrorS(err, "Skipping unreadable import dir record", "record", r.ID)
			continue
		}
		out[s.Name] = s
	}
	return out
}

// consider imports name if it is an archive not imported (or refused) in
// this very version before.
func (w *Watcher) consider(ctx context.Context, seen map[string]Seen, name string) {
	if strings.HasPrefix(name, ".") || strings.Contains(name, "/") {
		return // hidden or partial files (".x.tmp"): rename into place when done
	}
	path := filepath.Join(w.dir, name)
	// No symlink is followed: the file is in the directory or not at all.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			klog.ErrorS(err, "Import dir: cannot open", "file", path)
		}
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return
	}
	s := Seen{Name: name, Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano()}
	if old, ok := seen[name]; ok && old.Size == s.Size && old.MtimeNs == s.MtimeNs {
		return
	}
	start := time.Now()
	imported, err := w.images.Import(ctx, f)
	if ctx.Err() != nil {
		return // shutting down: tried again at the next start
	}
	s.At = time.Now()
	if err != nil {
		s.Error = err.Error()
		klog.ErrorS(err, "Import dir: archive refused; it is not retried until it changes", "file", path)
	} else {
		for _, im := range imported {
			s.Images = append(s.Images, im.Image.ID.String())
			klog.InfoS("Import dir: imported image", "file", path, "image", im.Image.ID, "tags", im.Names, "format", im.Format, "duration", time.Since(start))
		}
		sort.Strings(s.Images)
	}
	seen[name] = s
	if err := w.records.Put(recordKind, recordID(name), s); err != nil {
		klog.ErrorS(err, "Import dir: recording the outcome", "file", path)
	}
	if w.imported != nil {
		w.imported(s)
	}
}
