package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// TestPprofSocket serves the profiles on a private unix socket and takes
// them away again.
func TestPprofSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "pprof.sock")
	if err := os.WriteFile(sock, nil, 0o644); err != nil { // a stale file from a killed daemon
		t.Fatal(err)
	}
	stop, err := startPprof(sock)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(sock)
	if err != nil || st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, %v: want a socket of mode 0600", st.Mode(), err)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	for _, path := range []string{"heap", "mutex", "block"} {
		resp, err := hc.Get("http://crid/debug/pprof/" + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Fatalf("%s: %s, %d bytes", path, resp.Status, len(body))
		}
	}
	stop()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket still there after stop: %v", err)
	}
}
