package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
)

// Profiles of the daemon at each sweep level, when it serves them
// (crid --debug-pprof-socket, given to crid-bench as -pprof-socket): a CPU
// profile while kubelet's list and status calls run back to back, then
// the mutex, block and heap profiles. They land in -profile-dir as
// <pods>-<kind>.pb.gz, for `go tool pprof`.

func pprofClient(socket string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
}

// fetchProfile saves one profile to path.
func fetchProfile(ctx context.Context, hc *http.Client, query, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://pprof/debug/pprof/"+query, nil)
	if err != nil {
		return fmt.Errorf("profile %s: %w", query, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("profile %s: %w", query, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile %s: %s", query, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("profile %s: %w", query, err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("profile %s: %w", query, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("profile %s: %w", query, err)
	}
	return nil
}

// profileLevel takes the level's profiles; a failure is logged, not fatal.
func (b *bench) profileLevel(ctx context.Context, pods int, running []*pod) {
	if b.o.pprofSocket == "" || b.o.profileDir == "" {
		return
	}
	if err := os.MkdirAll(b.o.profileDir, 0o755); err != nil {
		b.logf("profiles: %v", err)
		return
	}
	hc := pprofClient(b.o.pprofSocket)
	secs := max(1, int(b.o.cpuWindow.Seconds()))
	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	calls := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; pctx.Err() == nil; i++ {
			_, _, _ = b.listCall(pctx, sweepRPCs[i%len(sweepRPCs)], running[i%len(running)])
			calls++
		}
	}()
	path := filepath.Join(b.o.profileDir, fmt.Sprintf("%d-cpu-lists.pb.gz", pods))
	err := fetchProfile(ctx, hc, fmt.Sprintf("profile?seconds=%d", secs), path)
	cancel()
	wg.Wait()
	if err != nil {
		b.logf("profiles: %v", err)
		return
	}
	b.logf("profiles: CPU over %d list/status calls in %d s: %s", calls, secs, path)
	for _, kind := range []string{"mutex", "block", "heap", "goroutine"} {
		p := filepath.Join(b.o.profileDir, fmt.Sprintf("%d-%s.pb.gz", pods, kind))
		if err := fetchProfile(ctx, hc, kind, p); err != nil {
			b.logf("profiles: %v", err)
		}
	}
}
