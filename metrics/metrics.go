// Package metrics owns crid's Prometheus collectors and the /metrics
// endpoint. It is a leaf: the packages that do the work report through the
// small functions below (each one an atomic update, safe on any hot path,
// whether or not an endpoint is served), and the numbers that describe the
// node's current state (pods, containers by state) are read from the
// managers at scrape time through Sources, so they cannot drift from what
// the CRI reports. It imports no crid package.
package metrics

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// namespace prefixes every crid metric.
const namespace = "crid"

// Bucket bounds, in seconds, per kind of operation.
var (
	// rpcBuckets span a List (sub-millisecond) to a PullImage or a
	// RunPodSandbox kubelet gives up on (2 and 4 minutes).
	rpcBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 240}
	// pullBuckets: a cached image's manifest check to a large image over
	// a slow link.
	pullBuckets = []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
	// cniBuckets: loopback alone is milliseconds; bridge with portmap's
	// iptables calls is most of a second here.
	cniBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
)

var (
	rpcRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "grpc", Name: "requests_total",
		Help: "gRPC requests served, by service, method and status code (code != \"OK\" are the errors).",
	}, []string{"service", "method", "code"})
	rpcDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "grpc", Name: "request_duration_seconds",
		Help:    "Time from a gRPC request's arrival to its answer, by service and method.",
		Buckets: rpcBuckets,
	}, []string{"service", "method"})

	pullBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "image", Name: "pull_bytes_total",
		Help: "Bytes of image layers and configs received from registries, as sent (compressed).",
	})
	pullDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "image", Name: "pull_duration_seconds",
		Help:    "Duration of successful image pulls, download and unpack; concurrent pulls of one image count once.",
		Buckets: pullBuckets,
	})
	pullFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "image", Name: "pull_failures_total",
		Help: "Image pulls that failed; concurrent pulls of one image count once.",
	})

	cniDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "cni", Name: "operation_duration_seconds",
		Help:    "Duration of CNI operations on the pod network (the whole plugin chain), by operation (ADD, DEL).",
		Buckets: cniBuckets,
	}, []string{"operation"})
	cniErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "cni", Name: "operation_errors_total",
		Help: "CNI operations that failed, by operation (ADD, DEL).",
	}, []string{"operation"})

	oomKills = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "container", Name: "oom_kills_total",
		Help: "Containers whose exit was recorded with reason OOMKilled.",
	})
	monitorRestarts = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "monitor", Name: "restarts_total",
		Help: "Times crid-monitor was lost and a new monitor process took over the containers.",
	})
)

// eventCollectors are the event-driven metrics, registered in every registry.
var eventCollectors = []prometheus.Collector{
	rpcRequests, rpcDuration,
	pullBytes, pullDuration, pullFailures,
	cniDuration, cniErrors,
	oomKills, monitorRestarts,
}

func init() {
	// The CNI series exist from the start, at zero, so a rate over them
	// has a beginning.
	for _, op := range []string{CNIAdd, CNIDel} {
		cniDuration.WithLabelValues(op)
		cniErrors.WithLabelValues(op)
	}
}

// RPC records one answered gRPC call. fullMethod is gRPC's
// "/package.Service/Method"; code is the status code's name ("OK",
// "NotFound"...).
func RPC(fullMethod, code string, d time.Duration) {
	service, method := splitMethod(fullMethod)
	rpcRequests.WithLabelValues(service, method, code).Inc()
	rpcDuration.WithLabelValues(service, method).Observe(d.Seconds())
}

func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", full
}

// PullBytes counts n bytes received from a registry for a pull.
func PullBytes(n int) {
	if n > 0 {
		pullBytes.Add(float64(n))
	}
}

// PullDone records the end of one image download: its duration when it
// succeeded, a failure otherwise.
func PullDone(d time.Duration, err error) {
	if err != nil {
		pullFailures.Inc()
		return
	}
	pullDuration.Observe(d.Seconds())
}

// CNI operations, the label values of CNI.
const (
	CNIAdd = "ADD"
	CNIDel = "DEL"
)

// CNI records one CNI operation (CNIAdd, CNIDel) on the pod network.
func CNI(op string, d time.Duration, err error) {
	cniDuration.WithLabelValues(op).Observe(d.Seconds())
	if err != nil {
		cniErrors.WithLabelValues(op).Inc()
	}
}

// OOMKill counts a container exit recorded as OOMKilled.
func OOMKill() { oomKills.Inc() }

// MonitorRestart counts a new crid-monitor taking over after the old one
// was lost.
func MonitorRestart() { monitorRestarts.Inc() }
