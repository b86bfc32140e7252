package oci

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

// A size nobody can apply is still taken, so the stream's sender never
// blocks, and the loop ends when the channel closes.
func TestResizeLoopDrainsWithoutPty(t *testing.T) {
	sizes := make(chan TerminalSize)
	done := make(chan struct{})
	go func() { resizeLoop(nil, sizes); close(done) }()
	for range 3 {
		select {
		case sizes <- TerminalSize{Width: 80, Height: 24}:
		case <-time.After(5 * time.Second):
			t.Fatal("resize loop does not take sizes")
		}
	}
	close(sizes)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("resize loop outlived its channel")
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("client gone") }

// Only a failed write to the client is an error (the process is then
// killed); the process's EOF is not.
func TestCopyOutput(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func(w *os.File) { _, _ = w.Write([]byte("hello")); w.Close() }(w)
	pr, pw := io.Pipe()
	got := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(pr); got <- b }()
	if err := copyOutput(pw, r); err != nil {
		t.Fatalf("copy to a reading client: %v", err)
	}
	pw.Close()
	if b := <-got; string(b) != "hello" {
		t.Fatalf("client got %q", b)
	}
	r.Close()

	r, w, err = os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func(w *os.File) { _, _ = w.Write([]byte("hello")); w.Close() }(w)
	if err := copyOutput(failingWriter{}, r); err == nil {
		t.Fatal("a client that cannot be written to is not reported")
	}
}
