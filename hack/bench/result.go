package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Result is everything one `crid-bench run` measured on one runtime; run.sh
// writes one per runtime and `crid-bench report` prints them side by side.
type Result struct {
	Runtime     string    `json:"runtime"`      // label: crid, containerd
	Version     string    `json:"version"`      // from the Version RPC
	Started     time.Time `json:"started"`      // when the run began
	WallSeconds float64   `json:"wall_seconds"` // the whole run
	Params      Params    `json:"params"`

	Pull       *PullResult       `json:"pull,omitempty"`
	Seq        []*SeqResult      `json:"seq,omitempty"`
	Memory     *MemResult        `json:"memory,omitempty"`
	Concurrent *ConcurrentResult `json:"concurrent,omitempty"`
	Floor      *FloorResult      `json:"floor,omitempty"`
	Sweep      *SweepResult      `json:"sweep,omitempty"`
	Dead       *DeadResult       `json:"dead,omitempty"`
	FinalLeaks *LeakReport       `json:"final_leaks,omitempty"`
	Notes      []string          `json:"notes,omitempty"`
}

// Params are the knobs of a run, echoed in the report.
type Params struct {
	Pods           int      `json:"pods"`
	Concurrency    int      `json:"concurrency"`
	ConcurrentPods int      `json:"concurrent_pods"`
	MemPods        int      `json:"mem_pods"`
	Phases         []string `json:"phases"`
	Image          string   `json:"image"`
	StopTimeout    int64    `json:"stop_timeout"`
	Levels         []int    `json:"levels,omitempty"`
	MaxPods        int      `json:"max_pods,omitempty"`
	Dead           int      `json:"dead,omitempty"`
	MaxDead        int      `json:"max_dead,omitempty"`
}

// Outcome says whether a measured step could run at all.
type Outcome struct {
	// State is "ok", "unsupported" (the runtime answered Unimplemented),
	// "failed" (its first attempt failed otherwise) or "skipped".
	State string `json:"state"`
	Err   string `json:"err,omitempty"`
}

const (
	stateOK          = "ok"
	stateUnsupported = "unsupported"
	stateFailed      = "failed"
	stateSkipped     = "skipped"
)

func ok() Outcome { return Outcome{State: stateOK} }

// outcomeOf classifies the error of a step's first attempt.
func outcomeOf(err error) Outcome {
	if err == nil {
		return ok()
	}
	if isUnimplemented(err) {
		return Outcome{State: stateUnsupported, Err: err.Error()}
	}
	return Outcome{State: stateFailed, Err: err.Error()}
}

func isUnimplemented(err error) bool {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus().Code() == codes.Unimplemented
	}
	return false
}

func (o Outcome) usable() bool { return o.State == stateOK }

// Dist is a latency distribution in milliseconds.
type Dist struct {
	Outcome
	N    int     `json:"n"`
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	Min  float64 `json:"min_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// newDist summarises samples; percentiles are nearest-rank, so the p99 of
// 50 samples is the largest one.
func newDist(o Outcome, samples []time.Duration) Dist {
	d := Dist{Outcome: o, N: len(samples)}
	if len(samples) == 0 {
		if d.State == stateOK {
			d.Outcome = Outcome{State: stateFailed, Err: "no successful sample"}
		}
		return d
	}
	ms := make([]float64, len(samples))
	var sum float64
	for i, s := range samples {
		ms[i] = float64(s) / float64(time.Millisecond)
		sum += ms[i]
	}
	slices.Sort(ms)
	d.P50 = percentile(ms, 50)
	d.P99 = percentile(ms, 99)
	d.Min, d.Max = ms[0], ms[len(ms)-1]
	d.Mean = sum / float64(len(ms))
	return d
}

// percentile is the nearest-rank percentile p of sorted.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// SeqResult is one shape of the sequential pod start.
type SeqResult struct {
	Name        string `json:"name"`
	HostNetwork bool   `json:"host_network"`
	Pid         string `json:"pid"` // POD (unset) or CONTAINER
	Pods        int    `json:"pods"`
	Sandbox     Dist   `json:"sandbox"` // RunPodSandbox alone
	Total       Dist   `json:"total"`   // RunPodSandbox + CreateContainer + StartContainer
	// Create and Start are CreateContainer and StartContainer alone;
	// Container their sum per pod.
	Create    Dist `json:"create"`
	Start     Dist `json:"start"`
	Container Dist `json:"container"`
	// Errors counts pods that failed after the first one worked.
	Errors         int         `json:"errors"`
	FirstErr       string      `json:"first_err,omitempty"`
	TeardownErrors int         `json:"teardown_errors"`
	Leaks          *LeakReport `json:"leaks,omitempty"`
	// Infra counts the pause/infra processes running with all pods up.
	Infra int `json:"infra"`
}

// ConcurrentResult is the many-pods-at-once phase.
type ConcurrentResult struct {
	Outcome
	Pods        int `json:"pods"`
	Concurrency int `json:"concurrency"`
	// Containers is the outcome of CreateContainer+StartContainer; when not
	// ok the pods were sandboxes only.
	Containers     Outcome     `json:"containers"`
	StartSeconds   float64     `json:"start_seconds"`
	Started        int         `json:"started"`
	StartErrors    int         `json:"start_errors"`
	StopSeconds    float64     `json:"stop_seconds"`
	StopErrors     int         `json:"stop_errors"`
	FirstErr       string      `json:"first_err,omitempty"`
	DaemonPSSAtAll int64       `json:"daemon_pss_kb_at_all"` // with every pod running
	TotalPSSAtAll  int64       `json:"total_pss_kb_at_all"`
	Leaks          *LeakReport `json:"leaks,omitempty"`
	// RPCs are the latencies of each RPC of the start and the teardown.
	RPCs map[string]Dist `json:"rpcs,omitempty"`
}

// MemResult is the memory phase.
type MemResult struct {
	Outcome
	Pods       int      `json:"pods"`
	Containers Outcome  `json:"containers"` // not ok: pods were sandboxes only
	Idle       Snapshot `json:"idle"`
	Loaded     Snapshot `json:"loaded"`
	// MarginalKB is (Loaded.Total - Idle.Total) / Pods.
	MarginalKB float64 `json:"marginal_kb"`
}

// PullResult is the image pull phase.
type PullResult struct {
	Outcome
	First  PullOne `json:"first"`
	Second PullOne `json:"second"`
	// Twice lists blobs fetched more than once over both pulls.
	Twice []string `json:"twice,omitempty"`
	// Files is the many-files image; Both the first and the many-files
	// images removed and pulled at once.
	Files *PullOne        `json:"files,omitempty"`
	Both  *ConcurrentPull `json:"both,omitempty"`
	// The floors of the first image, the many-files one, and both at once.
	FirstFloor PullFloor `json:"first_floor"`
	FilesFloor PullFloor `json:"files_floor"`
	BothFloor  PullFloor `json:"both_floor"`
}

// ConcurrentPull is several images pulled at once.
type ConcurrentPull struct {
	Outcome
	Refs         []string  `json:"refs"`
	Seconds      []float64 `json:"seconds"` // each pull's own time
	WallSeconds  float64   `json:"wall_seconds"`
	BytesFetched int64     `json:"bytes_fetched"`
}

// PullOne is one image pulled through the counting proxy.
type PullOne struct {
	Outcome
	Ref            string  `json:"ref"`
	Layers         int     `json:"layers"`
	SizeBytes      int64   `json:"size_bytes"` // compressed layers + config
	Seconds        float64 `json:"seconds"`
	BlobsFetched   int     `json:"blobs_fetched"`
	BytesFetched   int64   `json:"bytes_fetched"`
	NewBlobBytes   int64   `json:"new_blob_bytes"` // bytes of blobs the earlier pull did not have
	AlreadyPresent bool    `json:"already_present,omitempty"`
	Present        bool    `json:"present_afterwards"`
}

func writeResult(path string, r *Result) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}

func readResult(path string) (*Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read result: %w", err)
	}
	r := &Result{}
	if err := json.Unmarshal(data, r); err != nil {
		return nil, fmt.Errorf("decode result %s: %w", path, err)
	}
	return r, nil
}

// firstLine trims a gRPC error to something that fits a table cell.
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
