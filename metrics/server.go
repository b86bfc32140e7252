package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"
)

// Sources give the state gauges their values. They are called at every
// scrape, from the scrape's goroutine, and must only read memory (no I/O):
// a scrape must never wait on a pod or a container. A nil source is left out.
type Sources struct {
	// Pods counts the pod sandboxes by state ("ready", "notready"), as
	// ListPodSandbox shows them.
	Pods func() map[string]int
	// Containers counts the containers by state ("created", "running",
	// "exited"), as ListContainers shows them.
	Containers func() map[string]int
}

// NewRegistry returns a registry of crid's metrics, the state gauges read
// from src, and the Go runtime's and the process's metrics. It is private
// to crid: libraries that register on Prometheus' default registry do not
// leak into it.
func NewRegistry(src Sources) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(eventCollectors...)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&stateCollector{src: src},
	)
	return reg
}

var (
	podsDesc = prometheus.NewDesc(namespace+"_pod_sandboxes", "Pod sandboxes by state, as ListPodSandbox shows them.", []string{"state"}, nil)
	ctrsDesc = prometheus.NewDesc(namespace+"_containers", "Containers by state, as ListContainers shows them.", []string{"state"}, nil)
)

// stateCollector reads the gauges of the node's current state at scrape
// time, so no event can be missed or counted twice.
type stateCollector struct{ src Sources }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- podsDesc
	ch <- ctrsDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	collectStates(ch, podsDesc, c.src.Pods)
	collectStates(ch, ctrsDesc, c.src.Containers)
}

// collectStates emits one gauge per state. A panicking source fails this
// metric in the scrape (Gather runs collectors on goroutines of its own,
// where a panic would end the daemon).
func collectStates(ch chan<- prometheus.Metric, desc *prometheus.Desc, count func() map[string]int) {
	if count == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			ch <- prometheus.NewInvalidMetric(desc, fmt.Errorf("panic reading %s: %v", desc, r))
		}
	}()
	for state, n := range count() {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(n), state)
	}
}

// Server serves /metrics over HTTP.
type Server struct {
	l   net.Listener
	srv *http.Server
}

// Listen binds addr (host:port; port 0 picks a free one) for the endpoint.
// The daemon calls it before serving the CRI, so a bad address stops crid
// at start.
func Listen(addr string, src Sources) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s (metrics.address): %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(NewRegistry(src), promhttp.HandlerOpts{
		ErrorLog:      errorLog{},
		ErrorHandling: promhttp.ContinueOnError, // a failing collector costs its own metric only
		// Scrapes read memory only; a client that opens more than this at
		// once waits for an answer of 503.
		MaxRequestsInFlight: 4,
		Timeout:             30 * time.Second,
	}))
	return &Server{l: l, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}}, nil
}

// Addr is the address the endpoint listens on.
func (s *Server) Addr() net.Addr { return s.l.Addr() }

// Serve answers scrapes until Shutdown; it then returns nil.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.l); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: serve %s: %w", s.l.Addr(), err)
	}
	return nil
}

// Shutdown stops listening and waits, within ctx, for scrapes in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}

// errorLog sends promhttp's errors (a failing collector, a broken write)
// to crid's log.
type errorLog struct{}

func (errorLog) Println(v ...any) { klog.ErrorS(nil, "Metrics scrape", "error", fmt.Sprint(v...)) }
