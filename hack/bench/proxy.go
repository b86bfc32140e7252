package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sync"
	"time"
)

// countingProxy forwards registry requests to the local registry and counts
// the blob bytes it serves, so a pull's download volume can be checked.
type countingProxy struct {
	srv *http.Server
	ln  net.Listener

	mu    sync.Mutex
	blobs map[string]int64 // digest -> bytes served since the last take
	gets  map[string]int   // digest -> completed GETs since the last take
}

var blobPath = regexp.MustCompile(`^/v2/.+/blobs/(sha256:[0-9a-f]{64})$`)

func startProxy(listen, upstream string) (*countingProxy, error) {
	target, err := url.Parse("http://" + upstream)
	if err != nil {
		return nil, fmt.Errorf("registry address %q: %w", upstream, err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("proxy listen: %w", err)
	}
	p := &countingProxy{ln: ln, blobs: map[string]int64{}, gets: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	p.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m := blobPath.FindStringSubmatch(r.URL.Path)
			if m == nil || r.Method != http.MethodGet {
				rp.ServeHTTP(w, r)
				return
			}
			cw := &countingWriter{ResponseWriter: w}
			rp.ServeHTTP(cw, r)
			p.mu.Lock()
			p.blobs[m[1]] += cw.n
			if cw.status/100 == 2 {
				p.gets[m[1]]++
			}
			p.mu.Unlock()
		}),
	}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// take returns and resets the counts.
func (p *countingProxy) take() (map[string]int64, map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, g := p.blobs, p.gets
	p.blobs, p.gets = map[string]int64{}, map[string]int{}
	return b, g
}

func (p *countingProxy) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("stop proxy: %w", err)
	}
	return nil
}

type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *countingWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
