package main

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestNewDist(t *testing.T) {
	var samples []time.Duration
	for i := 50; i >= 1; i-- {
		samples = append(samples, time.Duration(i)*time.Millisecond)
	}
	d := newDist(ok(), samples)
	if d.N != 50 || d.P50 != 25 || d.P99 != 50 || d.Min != 1 || d.Max != 50 || d.Mean != 25.5 {
		t.Fatalf("dist of 1..50 ms: %+v", d)
	}
	if d := newDist(ok(), nil); d.State != stateFailed {
		t.Fatalf("no samples: %+v", d)
	}
	if d := newDist(Outcome{State: stateUnsupported, Err: "x"}, nil); d.State != stateUnsupported {
		t.Fatalf("unsupported without samples: %+v", d)
	}
}

func TestOutcomeOf(t *testing.T) {
	unimpl := fmt.Errorf("CreateContainer in p: %w", status.Error(codes.Unimplemented, "method CreateContainer not implemented"))
	if o := outcomeOf(unimpl); o.State != stateUnsupported || !strings.Contains(o.Err, "not implemented") {
		t.Fatalf("wrapped Unimplemented: %+v", o)
	}
	if o := outcomeOf(status.Error(codes.Internal, "boom")); o.State != stateFailed {
		t.Fatalf("Internal: %+v", o)
	}
	if o := outcomeOf(errors.New("plain")); o.State != stateFailed {
		t.Fatalf("plain error: %+v", o)
	}
	if o := outcomeOf(nil); !o.usable() {
		t.Fatalf("nil: %+v", o)
	}
}

func TestLeafContains(t *testing.T) {
	id := strings.Repeat("ab", 32)
	owned := func(s string) bool { return s == id }
	for _, path := range []string{"/bench/crid/" + id, "/kubepods/pod1/cri-containerd-" + id + ".scope"} {
		if !(&proc{cgroups: []string{path}}).leafContains(owned) {
			t.Errorf("%s: not recognised as the container's", path)
		}
	}
	if (&proc{cgroups: []string{"/bench/crid/" + strings.Repeat("cd", 32)}}).leafContains(owned) {
		t.Error("another container's cgroup recognised")
	}
	p := &proc{cgroups: []string{"/", "/bench.x/containerd/abc"}}
	if !p.inCgroup("/bench.x/containerd") || p.inCgroup("/bench.x/contain") || p.inCgroup("/") {
		t.Error("inCgroup")
	}
}

// TestReport renders a complete peer beside a runtime that supports only
// sandboxes and phases that did not run, and round-trips them through JSON.
func TestReport(t *testing.T) {
	unsupported := Outcome{State: stateUnsupported, Err: "CreateContainer in bench-seq-0006: rpc error: code = Unimplemented desc = method CreateContainer not implemented"}
	var sb, total, create []time.Duration
	for i := range 50 {
		sb = append(sb, time.Duration(100+i)*time.Millisecond)
		total = append(total, time.Duration(300+i)*time.Millisecond)
		create = append(create, time.Duration(20+i)*time.Millisecond)
	}
	crid := &Result{Runtime: "crid", Version: "crid dev", Params: Params{Pods: 50, Concurrency: 10, ConcurrentPods: 100, MemPods: 50},
		Pull: &PullResult{Outcome: ok(), First: PullOne{Outcome: ok(), Seconds: 0.2, SizeBytes: 106e6, BytesFetched: 106e6},
			Second: PullOne{Outcome: ok(), Seconds: 0.05, BytesFetched: 5e6, NewBlobBytes: 5e6}},
		Memory: &MemResult{Outcome: ok(), Pods: 50, Containers: unsupported,
			Idle: Snapshot{DaemonKB: 20000, TotalKB: 20000}, Loaded: Snapshot{DaemonKB: 21000, TotalKB: 21000}, MarginalKB: 20},
		Concurrent: &ConcurrentResult{Outcome: ok(), Pods: 100, Concurrency: 10, Containers: unsupported, StartSeconds: 3, StopSeconds: 2,
			Leaks: &LeakReport{Clean: true}},
		FinalLeaks: &LeakReport{Items: []string{"1 veths on the bridge"}},
	}
	for _, s := range seqShapes {
		crid.Seq = append(crid.Seq, &SeqResult{Name: s.String(), Pods: 50, Sandbox: newDist(ok(), sb), Total: Dist{Outcome: unsupported}, Leaks: &LeakReport{Clean: true}})
	}
	for i, id := range []string{strings.Repeat("1", 64), strings.Repeat("2", 64)} {
		crid.Seq[2+i].Sandbox = Dist{Outcome: Outcome{State: stateFailed, Err: "create container " + id + ": boom"}}
		crid.Seq[2+i].Total = Dist{Outcome: crid.Seq[2+i].Sandbox.Outcome}
	}
	peer := &Result{Runtime: "containerd", Version: "containerd 1.6.20", Params: crid.Params,
		Pull:       &PullResult{Outcome: Outcome{State: stateFailed, Err: "registry down"}},
		Concurrent: &ConcurrentResult{Outcome: ok(), Pods: 100, Concurrency: 10, Containers: ok(), StartSeconds: 40, StopSeconds: 30, DaemonPSSAtAll: 60000, Leaks: &LeakReport{Clean: true}},
	}
	for _, s := range seqShapes {
		peer.Seq = append(peer.Seq, &SeqResult{Name: s.String(), Pods: 50, Sandbox: newDist(ok(), sb), Total: newDist(ok(), total),
			Create: newDist(ok(), create), Start: newDist(ok(), create), Container: newDist(ok(), create), Leaks: &LeakReport{Clean: true}})
	}
	dir := t.TempDir()
	var results []*Result
	for _, r := range []*Result{crid, peer} {
		path := filepath.Join(dir, r.Runtime+".json")
		if err := writeResult(path, r); err != nil {
			t.Fatal(err)
		}
		back, err := readResult(path)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, back)
	}
	var out bytes.Buffer
	if err := printReport(&out, results); err != nil {
		t.Fatal(err)
	}
	report := out.String()
	for _, want := range []string{
		"crid vs target",
		"≤ 159 (½ CRI-O 318)",           // pod p50: design.md's bar beats the peer here
		"≤ 174 (½ containerd here 349)", // pod p99: only the peer here has one
		"unsupported [",
		"(sandboxes only)",              // such figures get no verdict
		"< 58.6 (containerd here 58.6)", // daemon PSS at 100 pods
		"failed [",
		"not run",
		"1 veths on the bridge",
		"CreateContainer in <pod>: rpc error", // pod names left out of footnotes
		"create container <id>: boom",         // and long IDs
		"CreateContainer p50 / p99 (ms)",
		"create+start p50 / p99 (ms)",
		"44 / 69", // the peer's sequential CreateContainer
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	for _, e := range []string{"method CreateContainer not implemented", "boom"} {
		if n := strings.Count(report, e); n != 1 {
			t.Errorf("the same error makes %d footnotes, want 1:\n%s", n, report)
		}
	}
}
