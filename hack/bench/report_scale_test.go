package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func ms(vals ...int) []time.Duration {
	out := make([]time.Duration, len(vals))
	for i, v := range vals {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

// level builds a measured level whose pod start p50 is podMs and whose
// lists' p99 is listMs.
func level(pods int, podMs, listMs int) *LevelResult {
	start := &StartDists{Sandbox: newDist(ok(), ms(podMs/2)), Create: newDist(ok(), ms(podMs/4)),
		Start: newDist(ok(), ms(podMs/4)), Pod: newDist(ok(), ms(podMs))}
	rpcs := map[string]RPCDist{}
	for _, name := range sweepRPCs {
		rpcs[name] = RPCDist{Dist: newDist(ok(), ms(listMs/2, listMs)), Bytes: pods * 1024, Items: pods}
	}
	load := &LoadSample{Outcome: ok(), Mem: Snapshot{DaemonKB: int64(40+pods/10) * 1024, HelpersKB: 20 * 1024, Helpers: 1},
		CPU: CPUUse{DaemonPct: 0.5, HelpersPct: 1.5, Helpers: 1}, LinesPerSec: 9.9}
	return &LevelResult{Outcome: ok(), Pods: pods, FillSeconds: float64(pods) / 10, StartPod: start, StartHost: start,
		PodTeardown: newDist(ok(), ms(podMs)), RPCs: rpcs, Idle: load, Logging: load,
		Restart:         &RestartResult{Outcome: ok(), ServingSeconds: 0.4, AllStatusSeconds: 1.5, Containers: pods},
		TeardownSeconds: float64(pods) / 20, Leaks: &LeakReport{Clean: true}}
}

// TestScaleReport renders the sweep, the floors and the dead containers of
// crid beside a bounded containerd, and checks the ratios, the targets'
// verdicts, the bound and the ResourceExhausted list are said.
func TestScaleReport(t *testing.T) {
	crid := &Result{Runtime: "crid", Params: Params{Pods: 50},
		Sweep: &SweepResult{Outcome: ok(), More: 20, Samples: 30, LogLines: 10,
			Levels: []*LevelResult{level(10, 100, 4), level(100, 110, 20), level(1000, 200, 80)}},
		Floor: &FloorResult{Outcome: ok(), Iterations: 20, Netns: newDist(ok(), ms(2)), CNIAdd: newDist(ok(), ms(48)),
			ContainerUp: newDist(ok(), ms(30)), ContainerDown: newDist(ok(), ms(20)), CNIDel: newDist(ok(), ms(30))},
		Pull: &PullResult{Outcome: ok(), First: PullOne{Outcome: ok(), Seconds: 1.2}, Second: PullOne{Outcome: ok()},
			Files:      &PullOne{Outcome: ok(), Seconds: 3},
			Both:       &ConcurrentPull{Outcome: ok(), Seconds: []float64{1, 3}, WallSeconds: 3.5},
			FirstFloor: PullFloor{Outcome: ok(), Seconds: 1}, FilesFloor: PullFloor{Outcome: ok(), Seconds: 2, Files: 22500},
			BothFloor: PullFloor{Outcome: ok(), Seconds: 3}},
		Dead: &DeadResult{Outcome: ok(), Wanted: 20000, Created: 20000, CreateSeconds: 400,
			Lists: []DeadList{
				{Name: "ListContainers", Limit: kubeletMaxRecv, Code: "ResourceExhausted", Message: "grpc: received message larger than max (20000000 vs. 16777216)",
					Dist: Dist{Outcome: Outcome{State: stateFailed}}},
				{Name: "ListContainers", Limit: unbounded, Code: "OK", Dist: newDist(ok(), ms(300)), Bytes: 20 << 20, Items: 20000},
			},
			Streams: []DeadStream{{Name: "StreamContainers", Dist: newDist(ok(), ms(350)), Items: 20000, Messages: 200, MaxMsgBytes: 100 << 10}},
			Status:  newDist(ok(), ms(1, 2)), RemoveSeconds: 300, Deciles: []float64{30, 30, 31}, Leaks: &LeakReport{Clean: true}},
	}
	peer := &Result{Runtime: "containerd", Params: Params{Pods: 50},
		Sweep: &SweepResult{Outcome: ok(), MaxPods: 100, More: 20, Samples: 30, LogLines: 10,
			Levels: []*LevelResult{level(10, 400, 10), level(100, 500, 30),
				{Outcome: Outcome{State: stateSkipped, Err: "above -max-pods=100"}, Pods: 1000}}},
	}
	var out bytes.Buffer
	if err := printReport(&out, []*Result{crid, peer}); err != nil {
		t.Fatal(err)
	}
	report := out.String()
	for _, want := range []string{
		"pod start, pod network (ms): netns + CNI ADD + container",
		"100 (1.25×)", // crid's pod start over netns+ADD+container = 80
		"400 (5.00×)", // the peer's
		"floor 80; ≤ 1.2× = 96",
		"1.20 (1.20×)", // the 5-layer pull against its floor
		"ResourceExhausted [",
		"received message larger than max",
		"20.0; 20000",
		"20000 in 200, 100",
		"30.0 30.0 31.0",
		"levels up to 100 pods (bounded by -max-pods)",
		"skipped",
		"p50 ≤ 1.25× its p50 at the first level",
		"misses at 1000", // pod start 200 > 1.25×100, lists' p99 80 > 50
		"meets at 1000",  // the monitor under 48 MB, the restart under 2 s
		"kill -9: every ContainerStatus right (s)",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	path := filepath.Join(t.TempDir(), "sweep.png")
	drawn, err := writePlot(path, []*Result{crid, peer})
	if err != nil || !drawn {
		t.Fatalf("plot: drawn %v, %v", drawn, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("plot is not a PNG: % x", data[:min(8, len(data))])
	}
	if drawn, err := writePlot(filepath.Join(t.TempDir(), "none.png"), []*Result{{Runtime: "crid"}}); err != nil || drawn {
		t.Fatalf("plot without a sweep: drawn %v, %v", drawn, err)
	}
}

func TestLoggerCommand(t *testing.T) {
	cmd := loggerCommand(10, 10*time.Second)
	if len(cmd) != 3 || cmd[0] != "sh" || !strings.Contains(cmd[2], "-lt 10") || !strings.Contains(cmd[2], "sleep 10") {
		t.Fatalf("logger command: %q", cmd)
	}
	if cmd := loggerCommand(3, 0); !strings.Contains(cmd[2], "sleep 1;") || !strings.Contains(cmd[2], "else sleep 1;") {
		t.Fatalf("a poll under a second rounds up to 1 s: %q", cmd)
	}
}

func TestProcessRunning(t *testing.T) {
	if !processRunning(os.Getpid()) {
		t.Fatal("this process is not running")
	}
	if processRunning(1 << 30) {
		t.Fatal("a pid that cannot exist runs")
	}
}

func TestParseRunFlagsLevels(t *testing.T) {
	o, err := parseRunFlags([]string{"-runtime", "x", "-endpoint", "/s", "-daemon-pid", "1", "-log-dir", "/l", "-levels", "100, 10"})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.levels) != 2 || o.levels[0] != 10 || o.levels[1] != 100 {
		t.Fatalf("levels %v, want sorted [10 100]", o.levels)
	}
	if _, err := parseRunFlags([]string{"-runtime", "x", "-endpoint", "/s", "-daemon-pid", "1", "-log-dir", "/l", "-levels", "ten"}); err == nil {
		t.Fatal("-levels=ten accepted")
	}
	if _, err := parseRunFlags([]string{"-runtime", "x", "-endpoint", "/s", "-log-dir", "/l", "-phases", "sweep"}); err == nil {
		t.Fatal("a sweep without -daemon-pid accepted")
	}
}
