package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// The report's parts for issue 18: the pull of real-shaped images, floors
// and their ratios, the sweep, the dead containers.

// floorTarget is issue 18's bar: every figure within 1.2x its floor.
const floorTarget = 1.2

func (t *table) pullScaleRows() {
	one := func(get func(p *PullResult) *PullOne) func(r *Result) cell {
		return func(r *Result) cell {
			if r.Pull == nil {
				return text("not run")
			}
			o := get(r.Pull)
			if o == nil {
				return text("-")
			}
			if !o.usable() {
				return text(t.outcomeCell(r, o.Outcome))
			}
			return num("%.2f", o.Seconds)
		}
	}
	t.row("pull of the many-files image (s)", one(func(p *PullResult) *PullOne { return p.Files }), nil)
	t.row("  its size, fetched (MB)", func(r *Result) cell {
		if r.Pull == nil || r.Pull.Files == nil || !r.Pull.Files.usable() {
			return text("-")
		}
		f := r.Pull.Files
		return text(fmt.Sprintf("%.1f, %.1f", float64(f.SizeBytes)/1e6, float64(f.BytesFetched)/1e6))
	}, nil)
	t.row("the first and the many-files image at once, wall (s)", func(r *Result) cell {
		if r.Pull == nil || r.Pull.Both == nil {
			return text("-")
		}
		b := r.Pull.Both
		if !b.usable() {
			return text(t.outcomeCell(r, b.Outcome))
		}
		return num("%.2f", b.WallSeconds)
	}, nil)
	t.row("  each, fetched (s; MB)", func(r *Result) cell {
		if r.Pull == nil || r.Pull.Both == nil || !r.Pull.Both.usable() {
			return text("-")
		}
		b := r.Pull.Both
		parts := make([]string, len(b.Seconds))
		for i, s := range b.Seconds {
			parts[i] = fmt.Sprintf("%.2f", s)
		}
		return text(fmt.Sprintf("%s; %.1f", strings.Join(parts, " + "), float64(b.BytesFetched)/1e6))
	}, nil)
}

// floorSource is the result that carries the floors: they are measured in
// one run (crid's).
func floorSource(results []*Result) (*FloorResult, *PullResult) {
	var f *FloorResult
	var p *PullResult
	for _, r := range results {
		if f == nil && r.Floor != nil && r.Floor.usable() {
			f = r.Floor
		}
		if p == nil && r.Pull != nil && r.Pull.FirstFloor.State != "" {
			p = r.Pull
		}
	}
	return f, p
}

// firstLevel is the smallest sweep level a result measured.
func firstLevel(r *Result) *LevelResult {
	if r.Sweep == nil {
		return nil
	}
	for _, lv := range r.Sweep.Levels {
		if lv.usable() {
			return lv
		}
	}
	return nil
}

// ratioRow is a row of a runtime figure against its floor.
func (t *table) ratioRow(label string, floor float64, format string, get func(r *Result) (float64, bool)) {
	row := []string{"  " + label}
	for _, r := range t.results {
		v, ok := get(r)
		switch {
		case !ok || math.IsNaN(v):
			row = append(row, "-")
		case floor > 0:
			row = append(row, fmt.Sprintf(format+" (%.2f×)", v, v/floor))
		default:
			row = append(row, fmt.Sprintf(format, v))
		}
	}
	target, verdict := "", ""
	if floor > 0 {
		target = fmt.Sprintf("floor "+format+"; ≤ %.1f× = "+format, floor, floorTarget, floor*floorTarget)
		if t.crid >= 0 {
			if v, ok := get(t.results[t.crid]); ok && !math.IsNaN(v) {
				verdict = "misses"
				if v <= floor*floorTarget {
					verdict = "meets"
				}
			}
		}
	}
	t.rows = append(t.rows, append(row, target, verdict))
}

func (t *table) floorRows() {
	f, p := floorSource(t.results)
	if f == nil && p == nil {
		return
	}
	lvl := 0
	for _, r := range t.results {
		if lv := firstLevel(r); lv != nil {
			lvl = lv.Pods
			break
		}
	}
	t.section(fmt.Sprintf("Against the floor (runtime figure (ratio); pod figures: p50 of the sweep's pods started at %d running pods)", lvl))
	start := func(get func(s *StartDists) float64) func(r *Result) (float64, bool) {
		return func(r *Result) (float64, bool) {
			lv := firstLevel(r)
			if lv == nil || lv.StartPod == nil || !lv.StartPod.Pod.usable() {
				return 0, false
			}
			return get(lv.StartPod), true
		}
	}
	if f != nil {
		t.ratioRow("pod start, pod network (ms): netns + CNI ADD + container", f.PodUpMs(), "%.0f",
			start(func(s *StartDists) float64 { return s.Pod.P50 }))
		t.ratioRow("RunPodSandbox (ms): netns + CNI ADD", f.Netns.P50+f.CNIAdd.P50, "%.0f",
			start(func(s *StartDists) float64 { return s.Sandbox.P50 }))
		t.ratioRow("CreateContainer + StartContainer (ms): libcontainer", f.ContainerUp.P50, "%.0f",
			start(func(s *StartDists) float64 { return s.Create.P50 + s.Start.P50 }))
		t.ratioRow("pod teardown, pod network (ms): kill + Destroy + unmount + CNI DEL", f.PodDownMs(), "%.0f",
			func(r *Result) (float64, bool) {
				lv := firstLevel(r)
				if lv == nil || !lv.PodTeardown.usable() {
					return 0, false
				}
				return lv.PodTeardown.P50, true
			})
	}
	if p != nil {
		pull := func(get func(p *PullResult) (float64, bool)) func(r *Result) (float64, bool) {
			return func(r *Result) (float64, bool) {
				if r.Pull == nil {
					return 0, false
				}
				return get(r.Pull)
			}
		}
		floorOf := func(pf PullFloor) float64 {
			if !pf.usable() {
				return 0
			}
			return pf.Seconds
		}
		t.ratioRow("pull of the 5-layer image (s): curl | pigz -d | tar, layers in parallel", floorOf(p.FirstFloor), "%.2f",
			pull(func(p *PullResult) (float64, bool) { return p.First.Seconds, p.First.usable() }))
		t.ratioRow(fmt.Sprintf("pull of the many-files image (s, %d files)", p.FilesFloor.Files), floorOf(p.FilesFloor), "%.2f",
			pull(func(p *PullResult) (float64, bool) {
				return p.Files.Seconds, p.Files != nil && p.Files.usable()
			}))
		t.ratioRow("both at once (s)", floorOf(p.BothFloor), "%.2f",
			pull(func(p *PullResult) (float64, bool) {
				return p.Both.WallSeconds, p.Both != nil && p.Both.usable()
			}))
		for _, pf := range []PullFloor{p.FirstFloor, p.FilesFloor, p.BothFloor} {
			if !pf.usable() {
				t.note("pull floor: " + firstLine(pf.Err))
			}
		}
	}
	if f != nil {
		t.note(fmt.Sprintf("floors, p50 of %d: netns %.1f ms, CNI ADD %.1f ms, DEL %.1f ms; container (crid-bench-floor: overlay mount %.1f + libcontainer Create+Start %.1f + Exec %.1f ms) start %.1f ms, stop %.1f ms. Sums of p50s.",
			f.Iterations, f.Netns.P50, f.CNIAdd.P50, f.CNIDel.P50, f.Mount.P50, f.Create.P50, f.Exec.P50, f.ContainerUp.P50, f.ContainerDown.P50))
	}
}

func (t *table) deadRows() {
	var n int
	for _, r := range t.results {
		if r.Dead != nil {
			n = max(n, r.Dead.Wanted)
		}
	}
	t.section(fmt.Sprintf("Dead containers: up to %d exited containers in stopped host-network pods", n))
	dead := func(f func(r *Result, d *DeadResult) cell) func(r *Result) cell {
		return func(r *Result) cell {
			if r.Dead == nil {
				return text("not run")
			}
			if !r.Dead.usable() {
				return text(t.outcomeCell(r, r.Dead.Outcome))
			}
			return f(r, r.Dead)
		}
	}
	t.row("exited containers created; wall (s)", dead(func(r *Result, d *DeadResult) cell {
		c := fmt.Sprintf("%d; %.0f", d.Created, d.CreateSeconds)
		if d.FirstErr != "" {
			c += t.note(r.Runtime + ": " + firstLine(d.FirstErr))
		}
		return text(c)
	}), nil)
	for _, name := range []string{"ListContainers", "ListPodSandbox"} {
		t.row(name+" under kubelet's 16 MiB: p50 / p99 (ms)", dead(func(r *Result, d *DeadResult) cell {
			for _, l := range d.Lists {
				if l.Name == name && l.Limit == kubeletMaxRecv {
					if l.Code != "OK" {
						return text(l.Code + t.note(r.Runtime+": "+name+" at 16 MiB: "+firstLine(l.Message)))
					}
					return text(fmt.Sprintf("%.0f / %.0f", l.P50, l.P99))
				}
			}
			return text("-")
		}), nil)
		t.row("  its reply, unbounded (MB; items)", dead(func(r *Result, d *DeadResult) cell {
			for _, l := range d.Lists {
				if l.Name == name && l.Limit == unbounded {
					if l.Code != "OK" {
						return text(l.Code + t.note(r.Runtime+": "+name+": "+firstLine(l.Message)))
					}
					return text(fmt.Sprintf("%.1f; %d", float64(l.Bytes)/(1<<20), l.Items))
				}
			}
			return text("-")
		}), nil)
	}
	for _, name := range []string{"StreamContainers", "StreamPodSandboxes"} {
		t.row(name+": p50 (ms); items in messages, largest (KB)", dead(func(r *Result, d *DeadResult) cell {
			for _, s := range d.Streams {
				if s.Name == name {
					if !s.usable() {
						return text(t.outcomeCell(r, s.Outcome))
					}
					return text(fmt.Sprintf("%.0f; %d in %d, %.0f", s.P50, s.Items, s.Messages, float64(s.MaxMsgBytes)/1024))
				}
			}
			return text("-")
		}), nil)
	}
	t.row("ContainerStatus of one: p50 / p99 (ms)", dead(func(r *Result, d *DeadResult) cell {
		if !d.Status.usable() {
			return text(t.outcomeCell(r, d.Status.Outcome))
		}
		return text(fmt.Sprintf("%.1f / %.1f", d.Status.P50, d.Status.P99))
	}), nil)
	t.row("daemon PSS with them (MB)", dead(func(r *Result, d *DeadResult) cell { return num("%.1f", mb(d.Mem.DaemonKB)) }), nil)
	t.row("remove all (s); errors", dead(func(r *Result, d *DeadResult) cell {
		c := fmt.Sprintf("%.0f; %d", d.RemoveSeconds, d.RemoveErrors)
		if d.RemoveErr != "" {
			c += t.note(r.Runtime + ": " + firstLine(d.RemoveErr))
		}
		return text(c)
	}), nil)
	t.row("  each tenth of the removal (s)", dead(func(r *Result, d *DeadResult) cell {
		parts := make([]string, len(d.Deciles))
		for i, s := range d.Deciles {
			parts[i] = fmt.Sprintf("%.1f", s)
		}
		return text(strings.Join(parts, " "))
	}), nil)
	t.row("  left on the host", dead(func(r *Result, d *DeadResult) cell { return text(d.Leaks.String()) }), nil)
}

// sweepMetric is one line of the sweep table.
type sweepMetric struct {
	label string
	get   func(lv *LevelResult) string
	// target is issue 18's flat-curve target, checked on crid's largest
	// measured level (first is crid's smallest); nil for none.
	target *sweepTarget
}

type sweepTarget struct {
	text  string
	check func(first, last *LevelResult) (bool, bool) // met, known
}

func distCell(d Dist, both bool) string {
	if d.State == "" {
		return "-"
	}
	if !d.usable() {
		return d.State
	}
	if both {
		return fmt.Sprintf("%.0f / %.0f", d.P50, d.P99)
	}
	return fmt.Sprintf("%.0f", d.P50)
}

func fineDist(d Dist) string {
	if d.State == "" {
		return "-"
	}
	if !d.usable() {
		return d.State
	}
	return fmt.Sprintf("%.1f / %.1f", d.P50, d.P99)
}

func loadCell(s *LoadSample, f func(s *LoadSample) string) string {
	if s == nil {
		return "-"
	}
	if !s.usable() {
		return s.State
	}
	return f(s)
}

func rpcUnder(name string, ms float64) *sweepTarget {
	return &sweepTarget{text: fmt.Sprintf("p99 < %.0f ms", ms), check: func(_, last *LevelResult) (bool, bool) {
		d, ok := last.RPCs[name]
		if !ok || !d.usable() {
			return false, false
		}
		return d.P99 < ms, true
	}}
}

func sweepMetrics() []sweepMetric {
	ms := []sweepMetric{
		{"fill: start every pod at concurrency (s)", func(lv *LevelResult) string {
			s := fmt.Sprintf("%.1f", lv.FillSeconds)
			if lv.FillErrors > 0 {
				s += fmt.Sprintf(" (%d err)", lv.FillErrors)
			}
			return s
		}, nil},
		{"pod start p50 / p99 (ms)", func(lv *LevelResult) string {
			if lv.StartPod == nil {
				return "-"
			}
			return distCell(lv.StartPod.Pod, true)
		}, &sweepTarget{text: "p50 ≤ 1.25× its p50 at the first level", check: func(first, last *LevelResult) (bool, bool) {
			if first.StartPod == nil || last.StartPod == nil || !first.StartPod.Pod.usable() || !last.StartPod.Pod.usable() {
				return false, false
			}
			return last.StartPod.Pod.P50 <= 1.25*first.StartPod.Pod.P50, true
		}}},
		{"  RunPodSandbox", func(lv *LevelResult) string {
			if lv.StartPod == nil {
				return "-"
			}
			return distCell(lv.StartPod.Sandbox, true)
		}, nil},
		{"    the conflist alone: CNI ADD (floor)", func(lv *LevelResult) string { return distCell(lv.CNIAdd, true) }, nil},
		{"  CreateContainer", func(lv *LevelResult) string {
			if lv.StartPod == nil {
				return "-"
			}
			return distCell(lv.StartPod.Create, true)
		}, nil},
		{"  StartContainer", func(lv *LevelResult) string {
			if lv.StartPod == nil {
				return "-"
			}
			return distCell(lv.StartPod.Start, true)
		}, nil},
		{"pod start, host network p50 / p99 (ms)", func(lv *LevelResult) string {
			if lv.StartHost == nil {
				return "-"
			}
			return distCell(lv.StartHost.Pod, true)
		}, nil},
		{"pod teardown, one by one p50 / p99 (ms)", func(lv *LevelResult) string { return distCell(lv.PodTeardown, true) }, nil},
		{"  host network", func(lv *LevelResult) string { return distCell(lv.HostTeardown, true) }, nil},
		{"  the conflist alone: CNI DEL (floor)", func(lv *LevelResult) string { return distCell(lv.CNIDel, true) }, nil},
	}
	for _, name := range sweepRPCs {
		ms = append(ms, sweepMetric{name + " p50 / p99 (ms)", func(lv *LevelResult) string {
			d, ok := lv.RPCs[name]
			if !ok {
				return "-"
			}
			return fineDist(d.Dist)
		}, rpcUnder(name, 50)})
		if strings.HasPrefix(name, "List") {
			ms = append(ms, sweepMetric{"  reply (KB)", func(lv *LevelResult) string {
				d, ok := lv.RPCs[name]
				if !ok || !d.usable() {
					return "-"
				}
				return fmt.Sprintf("%.0f", float64(d.Bytes)/1024)
			}, nil})
		}
	}
	ms = append(ms,
		sweepMetric{"daemon PSS idle (MB)", func(lv *LevelResult) string {
			return loadCell(lv.Idle, func(s *LoadSample) string { return fmt.Sprintf("%.1f", mb(s.Mem.DaemonKB)) })
		}, &sweepTarget{text: "< 64 MB", check: func(_, last *LevelResult) (bool, bool) {
			if last.Idle == nil || !last.Idle.usable() {
				return false, false
			}
			return mb(last.Idle.Mem.DaemonKB) < 64, true
		}}},
		sweepMetric{"monitor/shims PSS idle (MB)", func(lv *LevelResult) string {
			return loadCell(lv.Idle, func(s *LoadSample) string {
				if s.Mem.Helpers > 1 {
					return fmt.Sprintf("%.1f in %d", mb(s.Mem.HelpersKB), s.Mem.Helpers)
				}
				return fmt.Sprintf("%.1f", mb(s.Mem.HelpersKB))
			})
		}, &sweepTarget{text: "< 48 MB", check: func(_, last *LevelResult) (bool, bool) {
			if last.Idle == nil || !last.Idle.usable() {
				return false, false
			}
			return mb(last.Idle.Mem.HelpersKB) < 48, true
		}}},
		sweepMetric{"daemon / monitor CPU idle (% of a core)", func(lv *LevelResult) string {
			return loadCell(lv.Idle, func(s *LoadSample) string { return fmt.Sprintf("%.1f / %.1f", s.CPU.DaemonPct, s.CPU.HelpersPct) })
		}, nil},
		sweepMetric{"logging: lines/s per container", func(lv *LevelResult) string {
			return loadCell(lv.Logging, func(s *LoadSample) string { return fmt.Sprintf("%.1f", s.LinesPerSec) })
		}, nil},
		sweepMetric{"logging: daemon / monitor CPU (%)", func(lv *LevelResult) string {
			return loadCell(lv.Logging, func(s *LoadSample) string { return fmt.Sprintf("%.1f / %.1f", s.CPU.DaemonPct, s.CPU.HelpersPct) })
		}, &sweepTarget{text: "monitor < 5%", check: func(_, last *LevelResult) (bool, bool) {
			if last.Logging == nil || !last.Logging.usable() {
				return false, false
			}
			return last.Logging.CPU.HelpersPct < 5, true
		}}},
		sweepMetric{"logging: daemon / monitor PSS (MB)", func(lv *LevelResult) string {
			return loadCell(lv.Logging, func(s *LoadSample) string {
				return fmt.Sprintf("%.1f / %.1f", mb(s.Mem.DaemonKB), mb(s.Mem.HelpersKB))
			})
		}, nil},
		sweepMetric{"kill -9: serving again (s)", func(lv *LevelResult) string {
			if lv.Restart == nil {
				return "-"
			}
			if lv.Restart.ServingSeconds == 0 {
				return lv.Restart.State
			}
			return fmt.Sprintf("%.2f", lv.Restart.ServingSeconds)
		}, &sweepTarget{text: "< 2 s", check: func(_, last *LevelResult) (bool, bool) {
			if last.Restart == nil || last.Restart.ServingSeconds == 0 {
				return false, false
			}
			return last.Restart.ServingSeconds < 2, true
		}}},
		sweepMetric{"kill -9: every ContainerStatus right (s)", func(lv *LevelResult) string {
			if lv.Restart == nil {
				return "-"
			}
			if !lv.Restart.usable() {
				return lv.Restart.State
			}
			return fmt.Sprintf("%.2f", lv.Restart.AllStatusSeconds)
		}, &sweepTarget{text: "< 5 s", check: func(_, last *LevelResult) (bool, bool) {
			if last.Restart == nil || !last.Restart.usable() {
				return false, false
			}
			return last.Restart.AllStatusSeconds < 5, true
		}}},
		sweepMetric{"teardown of the level at concurrency (s)", func(lv *LevelResult) string {
			s := fmt.Sprintf("%.1f", lv.TeardownSeconds)
			if lv.TeardownErrors > 0 {
				s += fmt.Sprintf(" (%d err)", lv.TeardownErrors)
			}
			return s
		}, nil},
		sweepMetric{"  left on the host", func(lv *LevelResult) string { return lv.Leaks.String() }, nil},
	)
	return ms
}

// printSweep prints the sweep: a row per measure and runtime, a column per
// level, and issue 18's target checked on crid's largest level.
func printSweep(w io.Writer, results []*Result) error {
	var levels []int
	seen := map[int]bool{}
	for _, r := range results {
		if r.Sweep == nil {
			continue
		}
		for _, lv := range r.Sweep.Levels {
			if !seen[lv.Pods] {
				seen[lv.Pods] = true
				levels = append(levels, lv.Pods)
			}
		}
	}
	if len(levels) == 0 {
		return nil
	}
	fmt.Fprintln(w, "Sweep: kubelet-shape pods (pod network, pid CONTAINER, a log directory), one busybox container each;")
	fmt.Fprintln(w, "each level filled from zero, measured, torn down.")
	var notes []string
	for _, r := range results {
		if r.Sweep == nil {
			continue
		}
		s := r.Sweep
		bound := "every level"
		if s.MaxPods > 0 {
			bound = fmt.Sprintf("levels up to %d pods (bounded by -max-pods)", s.MaxPods)
		}
		fmt.Fprintf(w, "%s: %s; %d pods started one by one per network at each level; %d calls per RPC; logging %d lines/s\n",
			r.Runtime, bound, s.More, s.Samples, s.LogLines)
		if !s.usable() {
			fmt.Fprintf(w, "%s: sweep %s: %s\n", r.Runtime, s.State, firstLine(s.Err))
		}
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := []string{"", "runtime"}
	for _, n := range levels {
		header = append(header, fmt.Sprintf("%d pods", n))
	}
	header = append(header, "issue 18 target", "crid")
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, m := range sweepMetrics() {
		for ri, r := range results {
			if r.Sweep == nil {
				continue
			}
			label := ""
			if ri == firstSweep(results) {
				label = m.label
			}
			row := []string{label, r.Runtime}
			byPods := map[int]*LevelResult{}
			for _, lv := range r.Sweep.Levels {
				byPods[lv.Pods] = lv
			}
			for _, n := range levels {
				lv := byPods[n]
				switch {
				case lv == nil:
					row = append(row, "-")
				case lv.State == stateSkipped:
					row = append(row, "skipped")
				case !lv.usable() && lv.StartPod == nil:
					row = append(row, lv.State)
					if lv.Err != "" {
						notes = appendOnce(notes, fmt.Sprintf("%s at %d pods: %s", r.Runtime, n, firstLine(lv.Err)))
					}
				default:
					row = append(row, m.get(lv))
				}
			}
			tgt, verdict := "", ""
			if m.target != nil && r.Runtime == "crid" {
				tgt = m.target.text
				first, last := firstLevel(r), lastLevel(r)
				if first != nil && last != nil {
					if met, known := m.target.check(first, last); known {
						verdict = fmt.Sprintf("misses at %d", last.Pods)
						if met {
							verdict = fmt.Sprintf("meets at %d", last.Pods)
						}
					}
				}
			}
			fmt.Fprintln(tw, strings.Join(append(row, tgt, verdict), "\t"))
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print sweep: %w", err)
	}
	for _, r := range results {
		if r.Sweep == nil {
			continue
		}
		for _, lv := range r.Sweep.Levels {
			for _, sd := range []*StartDists{lv.StartPod, lv.StartHost} {
				if sd != nil && sd.FirstErr != "" {
					notes = appendOnce(notes, fmt.Sprintf("%s at %d pods: %d pods failed to start: %s", r.Runtime, lv.Pods, sd.Errors, firstLine(sd.FirstErr)))
				}
			}
			if lv.FillFirstErr != "" {
				notes = appendOnce(notes, fmt.Sprintf("%s filling %d pods: %s", r.Runtime, lv.Pods, firstLine(lv.FillFirstErr)))
			}
			if lv.Restart != nil && lv.Restart.Err != "" {
				notes = appendOnce(notes, fmt.Sprintf("%s restart at %d pods: %s", r.Runtime, lv.Pods, firstLine(lv.Restart.Err)))
			}
			for _, name := range sweepRPCs {
				if d, ok := lv.RPCs[name]; ok && d.Err != "" {
					notes = appendOnce(notes, fmt.Sprintf("%s %s: %s", r.Runtime, name, firstLine(d.Err)))
				}
			}
			if lv.TeardownErr != "" {
				notes = appendOnce(notes, fmt.Sprintf("%s teardown of %d pods: %s", r.Runtime, lv.Pods, firstLine(lv.TeardownErr)))
			}
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "CPU in % of one core over the CPU window; PSS in MB of 1024 kB. Logging: each container echoes its lines one write each, then sleeps 1 s.")
	fmt.Fprintln(w, "kill -9 times run from the SIGKILL to the first Version answered, and to every container having answered one ContainerStatus")
	fmt.Fprintln(w, "that says RUNNING with its start time from before the kill (the restart command's own start included).")
	for _, n := range notes {
		fmt.Fprintln(w, "- "+n)
	}
	return nil
}

func appendOnce(list []string, s string) []string {
	s = longID.ReplaceAllString(podName.ReplaceAllString(s, "<pod>"), "<id>")
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func firstSweep(results []*Result) int {
	for i, r := range results {
		if r.Sweep != nil {
			return i
		}
	}
	return -1
}

func lastLevel(r *Result) *LevelResult {
	if r.Sweep == nil {
		return nil
	}
	var last *LevelResult
	for _, lv := range r.Sweep.Levels {
		if lv.usable() {
			last = lv
		}
	}
	return last
}
