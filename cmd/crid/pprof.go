package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"time"

	"k8s.io/klog/v2"
)

// startPprof serves Go's profiles (CPU, heap, goroutines, and mutex and
// block profiles, which it turns on) on a unix socket only root can
// reach, for finding what grows with a node's load (hack/bench's
// -pprof-socket). Off unless --debug-pprof-socket names a socket.
func startPprof(path string) (stop func(), err error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("pprof socket %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("pprof socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("pprof socket: %w", err)
	}
	// One in 20 contended lock events and blocking of 100 µs or more:
	// cheap enough to leave on while profiling.
	runtime.SetMutexProfileFraction(20)
	runtime.SetBlockProfileRate(int((100 * time.Microsecond).Nanoseconds()))
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "pprof server ended", "socket", path)
		}
	}()
	klog.InfoS("Serving Go profiles (debug)", "socket", path)
	return func() {
		_ = srv.Close()
		<-done
		_ = os.Remove(path)
	}, nil
}
