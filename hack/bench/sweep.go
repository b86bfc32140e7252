package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The sweep: at each level of running pods (kubelet's shape, pod network,
// one container each writing nothing until told to, a log directory), what
// kubelet's loops cost and what the runtime costs the node.
//
// Each level is filled from zero and torn down at its end, so that every
// level's fill and teardown are measured alike.

// SweepResult is the sweep phase of one runtime.
type SweepResult struct {
	Outcome
	// MaxPods bounds the levels this runtime was measured at (0: none);
	// levels above it are reported as skipped.
	MaxPods  int            `json:"max_pods"`
	More     int            `json:"more"`      // pods started at each level, per network
	Samples  int            `json:"samples"`   // calls of each list/status RPC
	LogLines int            `json:"log_lines"` // lines per second per container while logging
	Levels   []*LevelResult `json:"levels"`
}

// LevelResult is one level of the sweep.
type LevelResult struct {
	Outcome
	Pods         int     `json:"pods"`
	FillSeconds  float64 `json:"fill_seconds"` // starting the level's pods at -concurrency
	FillErrors   int     `json:"fill_errors"`
	FillFirstErr string  `json:"fill_first_err,omitempty"`
	// StartPod and StartHost are More pods started one after the other on
	// top of the level, on the pod network and on the host's.
	StartPod  *StartDists `json:"start_pod,omitempty"`
	StartHost *StartDists `json:"start_host,omitempty"`
	// PodTeardown and HostTeardown are the sequential teardowns of those
	// pods, per pod (StopContainer + RemoveContainer + StopPodSandbox +
	// RemovePodSandbox).
	PodTeardown  Dist `json:"pod_teardown"`
	HostTeardown Dist `json:"host_teardown"`
	// CNIAdd and CNIDel are the conflist alone at this level (the floor
	// phase's CNI part, a few times): what the plugins cost with this many
	// pods on the bridge and in iptables.
	CNIAdd Dist `json:"cni_add"`
	CNIDel Dist `json:"cni_del"`
	// RPCs are kubelet's relist and stats calls by name.
	RPCs    map[string]RPCDist `json:"rpcs,omitempty"`
	Idle    *LoadSample        `json:"idle,omitempty"`
	Logging *LoadSample        `json:"logging,omitempty"`
	Restart *RestartResult     `json:"restart,omitempty"`
	// Teardown is the whole level's stop+remove at -concurrency.
	TeardownSeconds float64     `json:"teardown_seconds"`
	TeardownErrors  int         `json:"teardown_errors"`
	TeardownErr     string      `json:"teardown_err,omitempty"`
	Leaks           *LeakReport `json:"leaks,omitempty"`
}

// StartDists are the latencies of pods started one after the other.
type StartDists struct {
	Sandbox  Dist   `json:"sandbox"` // RunPodSandbox
	Create   Dist   `json:"create"`  // CreateContainer
	Start    Dist   `json:"start"`   // StartContainer
	Pod      Dist   `json:"pod"`     // the three
	Errors   int    `json:"errors"`  // pods that failed
	FirstErr string `json:"first_err,omitempty"`
}

// RPCDist is one RPC's latency and the size of its last reply.
type RPCDist struct {
	Dist
	Bytes int `json:"bytes"`
	Items int `json:"items"`
}

// LoadSample is the runtime's memory and CPU at one moment of a level.
type LoadSample struct {
	Outcome
	Mem Snapshot `json:"mem"`
	CPU CPUUse   `json:"cpu"`
	// LinesPerSec is what a sample of containers wrote to their logs per
	// second during the CPU window (checks that they log when told to).
	LinesPerSec float64 `json:"lines_per_sec"`
}

// RestartResult is a kill -9 of the daemon and its restart at one level.
type RestartResult struct {
	Outcome
	// ServingSeconds runs from the kill to the first Version answered by
	// the restarted daemon (the restart command's own start included).
	ServingSeconds float64 `json:"serving_seconds"`
	// AllStatusSeconds runs from the kill to the moment every container
	// had answered one ContainerStatus that was right: RUNNING, with the
	// start time it had before the kill.
	AllStatusSeconds float64 `json:"all_status_seconds"`
	Containers       int     `json:"containers"`
	Wrong            int     `json:"wrong"` // containers never right before the deadline
	FirstWrong       string  `json:"first_wrong,omitempty"`
	NewPid           int     `json:"new_pid"`
}

// The list and status RPCs kubelet's relist and stats loops call.
var sweepRPCs = []string{
	"ListPodSandbox", "ListContainers", "ListContainerStats", "ListPodSandboxStats",
	"ListPodSandboxMetrics", "ContainerStatus", "PodSandboxStatus",
}

// loggerCommand idles until /bench-ctl/log exists, then writes lines lines
// a second (one echo each, one write each) until it goes away. The idle
// loop wakes every poll, so turning logging on takes up to that long.
func loggerCommand(lines int, poll time.Duration) []string {
	script := fmt.Sprintf(`while :; do if [ -e /bench-ctl/log ]; then i=0; while [ $i -lt %d ]; do echo "crid-bench line $i: a container writing %d lines a second to its log"; i=$((i+1)); done; sleep 1; else sleep %d; fi; done`,
		lines, lines, max(1, int(poll.Seconds())))
	return []string{"sh", "-c", script}
}

func (b *bench) ctlDir() string { return filepath.Join(b.o.logDir, "bench-ctl") }

// setLogging turns the sweep containers' logging on or off and waits until
// every container has seen the switch.
func (b *bench) setLogging(ctx context.Context, on bool) error {
	f := filepath.Join(b.ctlDir(), "log")
	wait := 2 * time.Second // a logging loop sleeps 1 s between bursts
	if on {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			return fmt.Errorf("logging switch: %w", err)
		}
		wait = b.o.logPoll + time.Second
	} else if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("logging switch: %w", err)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(wait):
		return nil
	}
}

func (b *bench) sweepPod(tag string, s shape) *pod {
	p := b.newPod(tag, s)
	p.command = loggerCommand(b.o.logLines, b.o.logPoll)
	p.ctlMount = true
	return p
}

// sweepPhase runs every level.
func (b *bench) sweepPhase(ctx context.Context) *SweepResult {
	res := &SweepResult{Outcome: ok(), MaxPods: b.o.maxPods, More: b.o.more, Samples: b.o.samples, LogLines: b.o.logLines}
	if err := os.MkdirAll(b.ctlDir(), 0o755); err != nil {
		res.Outcome = Outcome{State: stateFailed, Err: err.Error()}
		return res
	}
	_ = os.Remove(filepath.Join(b.ctlDir(), "log"))
	sb, ctr := b.probe(ctx, kubeletShape)
	if !sb.usable() || !ctr.usable() {
		res.Outcome = sb
		if sb.usable() {
			res.Outcome = ctr
		}
		return res
	}
	b.host.leaks(ctx, 10*time.Second)
	for _, n := range b.o.levels {
		lv := &LevelResult{Outcome: ok(), Pods: n}
		res.Levels = append(res.Levels, lv)
		switch {
		case b.o.maxPods > 0 && n > b.o.maxPods:
			lv.Outcome = Outcome{State: stateSkipped, Err: fmt.Sprintf("above -max-pods=%d", b.o.maxPods)}
			continue
		case ctx.Err() != nil:
			lv.Outcome = Outcome{State: stateSkipped, Err: ctx.Err().Error()}
			continue
		}
		b.level(ctx, lv)
		if !b.daemonAlive() {
			break // the level says so; run's daemonGone notes it
		}
	}
	return res
}

// daemonAlive reports whether the runtime's daemon still runs.
func (b *bench) daemonAlive() bool {
	return b.o.daemonPid <= 0 || processRunning(b.o.daemonPid)
}

// processRunning is true while any thread of the process lives: a killed
// Go daemon's main thread is a zombie before its other threads have exited,
// and those still hold its files (the root_dir lock a restart needs).
func processRunning(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false
	}
	for _, t := range tasks {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		if err != nil {
			continue // that thread has just gone
		}
		i := bytes.LastIndexByte(stat, ')')
		if i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z' && stat[i+2] != 'X' {
			return true
		}
	}
	return false
}

// level measures one level: fill, idle load, RPCs, more pods, logging load,
// restart, teardown.
func (b *bench) level(ctx context.Context, lv *LevelResult) {
	n := lv.Pods
	pods := make([]*pod, n)
	for i := range pods {
		pods[i] = b.sweepPod(fmt.Sprintf("l%d", n), kubeletShape)
	}
	b.logf("sweep %d: starting %d pods at concurrency %d", n, n, b.o.concurrency)
	start := time.Now()
	errs := parallel(ctx, n, b.o.concurrency, func(ctx context.Context, i int) error {
		if err := b.runSandbox(ctx, pods[i]); err != nil {
			return err
		}
		return b.runContainer(ctx, pods[i])
	})
	lv.FillSeconds = time.Since(start).Seconds()
	var first error
	lv.FillErrors, first = countErrors(errs)
	if first != nil {
		lv.FillFirstErr = first.Error()
	}
	b.takeRPCTimes()
	b.logf("sweep %d: filled in %.1f s (%d errors)", n, lv.FillSeconds, lv.FillErrors)
	running := make([]*pod, 0, n)
	for _, p := range pods {
		if p.started {
			running = append(running, p)
		}
	}
	if len(running) == 0 {
		lv.Outcome = Outcome{State: stateFailed, Err: "no pod started: " + lv.FillFirstErr}
	} else {
		b.measureLevel(ctx, lv, running)
	}
	if !b.daemonAlive() {
		lv.Outcome = Outcome{State: stateFailed, Err: fmt.Sprintf("the daemon (pid %d) is gone", b.o.daemonPid)}
		return
	}
	// The level's teardown, with a fresh bound: an interrupted run must
	// still remove what it started.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.o.phaseTimeout)
	defer cancel()
	wall, nErr, err := b.teardownAll(tctx, pods)
	lv.TeardownSeconds, lv.TeardownErrors = wall.Seconds(), nErr
	if err != nil {
		lv.TeardownErr = err.Error()
	}
	b.takeRPCTimes()
	lv.Leaks = b.host.leaks(tctx, 20*time.Second)
	b.logf("sweep %d: torn down in %.1f s (%d errors), leaks: %s", n, lv.TeardownSeconds, nErr, lv.Leaks)
}

func (b *bench) measureLevel(ctx context.Context, lv *LevelResult, running []*pod) {
	settle(ctx, 2*time.Second)
	lv.Idle = b.loadSample(ctx, running)
	b.logf("sweep %d: idle daemon %.1f MB %.1f%% CPU, helpers %.1f MB %.1f%% CPU", lv.Pods,
		mb(lv.Idle.Mem.DaemonKB), lv.Idle.CPU.DaemonPct, mb(lv.Idle.Mem.HelpersKB), lv.Idle.CPU.HelpersPct)
	lv.RPCs = b.sampleRPCs(ctx, running)
	for _, name := range sweepRPCs {
		d := lv.RPCs[name]
		b.logf("sweep %d: %s p50 %.1f ms p99 %.1f ms (%s), %d items, %d bytes", lv.Pods, name, d.P50, d.P99, d.State, d.Items, d.Bytes)
	}
	b.profileLevel(ctx, lv.Pods, running)
	var more []*pod
	lv.StartPod, more = b.startMore(ctx, lv.Pods, kubeletShape)
	var moreHost []*pod
	lv.StartHost, moreHost = b.startMore(ctx, lv.Pods, shape{hostNetwork: true, pid: runtime.NamespaceMode_CONTAINER})
	lv.PodTeardown = b.teardownEach(ctx, more)
	lv.HostTeardown = b.teardownEach(ctx, moreHost)
	b.logf("sweep %d: pod start p50 %.0f ms (host network %.0f ms), teardown p50 %.0f ms (host network %.0f ms)", lv.Pods,
		lv.StartPod.Pod.P50, lv.StartHost.Pod.P50, lv.PodTeardown.P50, lv.HostTeardown.P50)
	if b.o.floors && b.o.conflist != "" && b.o.workDir != "" {
		dir := filepath.Join(b.o.workDir, "floor-level")
		ct, _, _, err := b.cniFloor(ctx, dir, 5, false)
		_ = os.RemoveAll(dir)
		if err != nil {
			lv.CNIAdd = Dist{Outcome: outcomeOf(err)}
		} else {
			lv.CNIAdd, lv.CNIDel = newDist(ok(), ct.add), newDist(ok(), ct.del)
			b.logf("sweep %d: the conflist alone: ADD p50 %.0f ms, DEL p50 %.0f ms", lv.Pods, lv.CNIAdd.P50, lv.CNIDel.P50)
		}
	}
	if err := b.setLogging(ctx, true); err != nil {
		lv.Logging = &LoadSample{Outcome: outcomeOf(err)}
	} else {
		lv.Logging = b.loadSample(ctx, running)
		b.logf("sweep %d: logging %.1f lines/s per container: daemon %.1f%% CPU, helpers %.1f%% CPU %.1f MB", lv.Pods,
			lv.Logging.LinesPerSec, lv.Logging.CPU.DaemonPct, lv.Logging.CPU.HelpersPct, mb(lv.Logging.Mem.HelpersKB))
	}
	if err := b.setLogging(ctx, false); err != nil {
		b.logf("logging off: %v", err)
	}
	if ctx.Err() == nil {
		lv.Restart = b.restart(ctx, running)
		b.logf("sweep %d: restart: serving after %.2f s, every status right after %.2f s (%s)", lv.Pods,
			lv.Restart.ServingSeconds, lv.Restart.AllStatusSeconds, lv.Restart.State)
	}
}

func settle(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// loadSample reads PSS, then CPU over -cpu-window, and how fast a sample
// of the containers' logs grew meanwhile.
func (b *bench) loadSample(ctx context.Context, running []*pod) *LoadSample {
	s := &LoadSample{Outcome: ok()}
	var err error
	if s.Mem, err = takeSnapshot(b.o, b.ownContainer); err != nil {
		s.Outcome = outcomeOf(err)
		return s
	}
	sample := running[:min(len(running), 20)]
	lines0 := b.logLines(sample)
	start := time.Now()
	if s.CPU, err = measureCPU(ctx, b.o, b.ownContainer, b.o.cpuWindow); err != nil {
		s.Outcome = outcomeOf(err)
		return s
	}
	secs := time.Since(start).Seconds()
	if d := b.logLines(sample) - lines0; len(sample) > 0 {
		s.LinesPerSec = float64(d) / float64(len(sample)) / secs
	}
	return s
}

// logLines counts the lines of the pods' container logs.
func (b *bench) logLines(pods []*pod) int64 {
	var n int64
	for _, p := range pods {
		data, err := os.ReadFile(filepath.Join(b.o.logDir, p.uid, "sleep_0.log"))
		if err == nil {
			n += int64(bytes.Count(data, []byte{'\n'}))
		}
	}
	return n
}

// sampleRPCs calls each list and status RPC -samples times, one after the
// other. Status RPCs ask about a random running pod each time.
func (b *bench) sampleRPCs(ctx context.Context, running []*pod) map[string]RPCDist {
	out := map[string]RPCDist{}
	rng := rand.New(rand.NewPCG(uint64(len(running)), 18))
	for _, name := range sweepRPCs {
		var times []time.Duration
		var last proto.Message
		var items int
		outcome := ok()
		for i := range b.o.samples {
			if ctx.Err() != nil {
				break
			}
			p := running[rng.IntN(len(running))]
			start := time.Now()
			resp, n, err := b.listCall(ctx, name, p)
			if err != nil {
				if i == 0 {
					outcome = outcomeOf(fmt.Errorf("%s: %w", name, err))
					break
				}
				continue
			}
			times = append(times, time.Since(start))
			last, items = resp, n
		}
		d := RPCDist{Dist: newDist(outcome, times), Items: items}
		if last != nil {
			d.Bytes = proto.Size(last)
		}
		out[name] = d
	}
	return out
}

// listCall makes one of sweepRPCs and returns the reply and how many items
// it holds.
func (b *bench) listCall(ctx context.Context, name string, p *pod, opts ...grpc.CallOption) (proto.Message, int, error) {
	rt := b.c.rt
	ctx, cancel := context.WithTimeout(ctx, b.c.rpcTimeout)
	defer cancel()
	switch name {
	case "ListPodSandbox":
		r, err := rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{}, opts...)
		return r, len(r.GetItems()), err
	case "ListContainers":
		r, err := rt.ListContainers(ctx, &runtime.ListContainersRequest{}, opts...)
		return r, len(r.GetContainers()), err
	case "ListContainerStats":
		r, err := rt.ListContainerStats(ctx, &runtime.ListContainerStatsRequest{}, opts...)
		return r, len(r.GetStats()), err
	case "ListPodSandboxStats":
		r, err := rt.ListPodSandboxStats(ctx, &runtime.ListPodSandboxStatsRequest{}, opts...)
		return r, len(r.GetStats()), err
	case "ListPodSandboxMetrics":
		r, err := rt.ListPodSandboxMetrics(ctx, &runtime.ListPodSandboxMetricsRequest{}, opts...)
		return r, len(r.GetPodMetrics()), err
	case "ContainerStatus":
		r, err := rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: p.containerID}, opts...)
		return r, 1, err
	case "PodSandboxStatus":
		r, err := rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: p.sandboxID}, opts...)
		return r, 1, err
	}
	return nil, 0, fmt.Errorf("unknown RPC %s", name)
}

// startMore starts -more pods of shape s one after the other, timing each
// step, and returns them for teardown.
func (b *bench) startMore(ctx context.Context, level int, s shape) (*StartDists, []*pod) {
	res := &StartDists{}
	var sbT, crT, stT, podT []time.Duration
	var pods []*pod
	tag := fmt.Sprintf("m%d", level)
	if s.hostNetwork {
		tag = fmt.Sprintf("h%d", level)
	}
	for range b.o.more {
		if ctx.Err() != nil {
			break
		}
		p := b.sweepPod(tag, s)
		pods = append(pods, p)
		t0 := time.Now()
		err := b.runSandbox(ctx, p)
		t1 := time.Now()
		if err == nil {
			err = b.createContainer(ctx, p)
		}
		t2 := time.Now()
		if err == nil {
			err = b.startContainer(ctx, p)
		}
		t3 := time.Now()
		if err != nil {
			res.Errors++
			if res.FirstErr == "" {
				res.FirstErr = err.Error()
			}
			continue
		}
		sbT, crT, stT, podT = append(sbT, t1.Sub(t0)), append(crT, t2.Sub(t1)), append(stT, t3.Sub(t2)), append(podT, t3.Sub(t0))
	}
	res.Sandbox, res.Create, res.Start, res.Pod = newDist(ok(), sbT), newDist(ok(), crT), newDist(ok(), stT), newDist(ok(), podT)
	b.takeRPCTimes()
	return res, pods
}

// teardownEach tears pods down one after the other and times each.
func (b *bench) teardownEach(ctx context.Context, pods []*pod) Dist {
	var times []time.Duration
	var firstErr error
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.o.phaseTimeout)
	defer cancel()
	for _, p := range pods {
		start := time.Now()
		if err := b.teardown(tctx, p); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if p.started {
			times = append(times, time.Since(start))
		}
	}
	b.takeRPCTimes()
	if firstErr != nil {
		b.logf("teardown: %v", firstErr)
	}
	return newDist(ok(), times)
}

// restart kills the daemon with SIGKILL, starts it again with -restart-cmd
// and times how long until it serves and until every container's status is
// right again.
func (b *bench) restart(ctx context.Context, running []*pod) *RestartResult {
	res := &RestartResult{Outcome: ok(), Containers: len(running)}
	if b.o.restartCmd == "" {
		res.Outcome = Outcome{State: stateSkipped, Err: "no -restart-cmd"}
		return res
	}
	// What each container's status says before the kill.
	before := make([]int64, len(running))
	errs := parallel(ctx, len(running), b.o.concurrency, func(ctx context.Context, i int) error {
		st, err := call(ctx, b.c.rpcTimeout, b.c.rt.ContainerStatus, &runtime.ContainerStatusRequest{ContainerId: running[i].containerID})
		if err != nil {
			return err
		}
		if st.GetStatus().GetState() != runtime.ContainerState_CONTAINER_RUNNING {
			return fmt.Errorf("container of %s is %s before the kill", running[i].name, st.GetStatus().GetState())
		}
		before[i] = st.GetStatus().GetStartedAt()
		return nil
	})
	if n, err := countErrors(errs); n > 0 {
		res.Outcome = outcomeOf(fmt.Errorf("%d statuses before the kill failed: %w", n, err))
		return res
	}
	// A connection of its own that retries every 10 ms: the shared one
	// backs off after the daemon goes away.
	pc, err := dialFast(b.o.endpoint, b.c.rpcTimeout)
	if err != nil {
		res.Outcome = outcomeOf(err)
		return res
	}
	defer pc.Close()

	old := b.o.daemonPid
	killed := time.Now()
	if err := killAndWait(old, 10*time.Second); err != nil {
		res.Outcome = outcomeOf(err)
		return res
	}
	pid, err := runRestartCmd(ctx, b.o.restartCmd)
	if err != nil {
		res.Outcome = outcomeOf(err)
		return res
	}
	b.o.daemonPid, res.NewPid = pid, pid
	deadline := killed.Add(b.o.restartTimeout)
	for {
		if _, err := call(ctx, time.Second, pc.rt.Version, &runtime.VersionRequest{}); err == nil {
			res.ServingSeconds = time.Since(killed).Seconds()
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil || !processRunning(pid) {
			res.Outcome = Outcome{State: stateFailed, Err: fmt.Sprintf("not serving %s after the kill (daemon running: %v)", b.o.restartTimeout, processRunning(pid))}
			return res
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Every container until its status is right, round after round.
	var mu sync.Mutex
	pending := make([]int, len(running))
	for i := range pending {
		pending[i] = i
	}
	lastWrong := map[int]string{}
	for len(pending) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		var still []int
		parallel(ctx, len(pending), b.o.concurrency, func(ctx context.Context, k int) error {
			i := pending[k]
			st, err := call(ctx, time.Second, pc.rt.ContainerStatus, &runtime.ContainerStatusRequest{ContainerId: running[i].containerID})
			why := ""
			switch {
			case err != nil:
				why = firstLine(err.Error())
			case st.GetStatus().GetState() != runtime.ContainerState_CONTAINER_RUNNING:
				why = "state " + st.GetStatus().GetState().String()
			case st.GetStatus().GetStartedAt() != before[i]:
				why = fmt.Sprintf("started_at %d, was %d", st.GetStatus().GetStartedAt(), before[i])
			}
			mu.Lock()
			defer mu.Unlock()
			if why != "" {
				still = append(still, i)
				lastWrong[i] = why
			}
			return nil
		})
		slices.Sort(still)
		pending = still
		if len(pending) > 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	res.AllStatusSeconds = time.Since(killed).Seconds()
	if len(pending) > 0 {
		res.Wrong = len(pending)
		res.FirstWrong = running[pending[0]].name + ": " + lastWrong[pending[0]]
		res.Outcome = Outcome{State: stateFailed, Err: fmt.Sprintf("%d of %d containers without a right status %s after the kill: %s",
			len(pending), len(running), b.o.restartTimeout, res.FirstWrong)}
	}
	return res
}

// killAndWait sends SIGKILL to pid and waits until it is gone or a zombie
// (its descriptors, the socket's among them, are closed by then).
func killAndWait(pid int, bound time.Duration) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return fmt.Errorf("daemon pid %d: %w", pid, err)
	}
	if err := p.Signal(os.Kill); err != nil {
		return fmt.Errorf("kill -9 %d: %w", pid, err)
	}
	deadline := time.Now().Add(bound)
	for processRunning(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d still runs %s after SIGKILL", pid, bound)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// runRestartCmd runs the command run.sh wrote to start the daemon again; it
// prints the new daemon's pid.
func runRestartCmd(ctx context.Context, cmd string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := execOutput(ctx, cmd)
	if err != nil {
		return 0, fmt.Errorf("restart command %s: %w", cmd, err)
	}
	var pid int
	if _, err := fmt.Sscanf(strings.TrimSpace(out), "%d", &pid); err != nil || pid <= 0 {
		return 0, fmt.Errorf("restart command %s printed %q, not a pid", cmd, out)
	}
	return pid, nil
}
