package main

import (
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
)

// The peers' figures of design.md's "Targets" (containerd 2 and CRI-O,
// measured on this kind of machine), the bar crid is held to beside the
// peers measured in the same run.
var designBar = struct {
	podStartP50Ms, concStartS, concStopS, marginalKB, daemonAt100MB, pullS float64
}{
	podStartP50Ms: 318,  // CRI-O, sequential RunPodSandbox+CreateContainer+StartContainer p50
	concStartS:    28.5, // CRI-O, 100 pods at concurrency 10
	concStopS:     19.5, // CRI-O, stop+remove of those 100 pods
	marginalKB:    344,  // CRI-O, marginal PSS per running pod (containerd 2: 5.6 MB)
	daemonAt100MB: 73,   // CRI-O, daemon PSS at 100 pods
	pullS:         0.44, // containerd 2, 106 MB 5-layer image from a local registry
}

// table accumulates rows and footnotes.
type table struct {
	results []*Result
	crid    int // index of crid's result, -1 when absent
	rows    [][]string
	notes   []string
}

func (t *table) section(title string) {
	t.rows = append(t.rows, nil, []string{title})
}

// Footnotes leave out pod names and container IDs, so that one error seen
// in several phases makes one footnote.
var (
	podName = regexp.MustCompile(`bench-[a-z]+-[0-9]{4,}`)
	longID  = regexp.MustCompile(`\b[0-9a-f]{64}\b`)
)

// note records a footnote and returns its marker.
func (t *table) note(text string) string {
	text = longID.ReplaceAllString(podName.ReplaceAllString(text, "<pod>"), "<id>")
	for i, n := range t.notes {
		if n == text {
			return fmt.Sprintf(" [%d]", i+1)
		}
	}
	t.notes = append(t.notes, text)
	return fmt.Sprintf(" [%d]", len(t.notes))
}

// outcomeCell is the cell of a step that did not run, with a footnote.
func (t *table) outcomeCell(r *Result, o Outcome) string {
	if o.Err == "" {
		return o.State
	}
	return o.State + t.note(r.Runtime+": "+firstLine(o.Err))
}

// cell is one value of a row: its text, and its number for the target.
type cell struct {
	text    string
	value   float64 // NaN when not a number
	partial bool    // measured without some step (sandboxes only): no verdict
}

func num(format string, v float64) cell { return cell{text: fmt.Sprintf(format, v), value: v} }
func text(s string) cell                { return cell{text: s, value: math.NaN()} }

// target is a row's bar: at most (or below) factor times the best of
// design.md's peer figure and the peers measured in this run.
type target struct {
	factor float64 // 0.5: "at most half"; 1: "below"
	bar    float64 // design.md's peer figure, NaN for none
	barWho string
	format string
	strict bool // "below" rather than "at most"
}

// row adds a row whose cells come from get, with tg's target (nil: none).
func (t *table) row(label string, get func(r *Result) cell, tg *target) {
	row := []string{"  " + label}
	cells := make([]cell, len(t.results))
	for i, r := range t.results {
		cells[i] = get(r)
		row = append(row, cells[i].text)
	}
	targetText, verdict := "", ""
	if tg != nil {
		best, who := tg.bar, tg.barWho
		for i, r := range t.results {
			if i == t.crid || math.IsNaN(cells[i].value) || cells[i].partial {
				continue
			}
			if math.IsNaN(best) || cells[i].value < best {
				best, who = cells[i].value, r.Runtime+" here"
			}
		}
		if !math.IsNaN(best) {
			limit := best * tg.factor
			op := "≤"
			if tg.strict {
				op = "<"
			}
			share := ""
			if tg.factor != 1 {
				share = "½ "
			}
			targetText = fmt.Sprintf("%s %s (%s%s %s)", op, fmt.Sprintf(tg.format, limit), share, who, fmt.Sprintf(tg.format, best))
			if t.crid >= 0 && !math.IsNaN(cells[t.crid].value) {
				v := cells[t.crid].value
				if cells[t.crid].partial {
					verdict = "(sandboxes only)"
				} else if v < limit || (!tg.strict && v == limit) {
					verdict = "meets"
				} else {
					verdict = "misses"
				}
			}
		}
	}
	t.rows = append(t.rows, append(row, targetText, verdict))
}

// printReport prints one table with a column per runtime.
func printReport(w io.Writer, results []*Result) error {
	t := &table{results: results, crid: -1}
	for i, r := range results {
		if r.Runtime == "crid" {
			t.crid = i
		}
	}
	header := []string{""}
	for _, r := range results {
		header = append(header, r.Runtime)
	}
	header = append(header, "target (design.md)", "crid vs target")
	t.rows = append(t.rows, header)
	versions := []string{"  version"}
	for _, r := range results {
		versions = append(versions, r.Version)
	}
	t.rows = append(t.rows, versions)

	// A phase no runtime ran makes no section.
	ran := func(f func(r *Result) bool) bool { return slices.ContainsFunc(results, f) }
	if ran(func(r *Result) bool { return r.Pull != nil }) {
		t.pullRows()
	}
	if ran(func(r *Result) bool { return r.Memory != nil }) {
		t.memoryRows()
	}
	if ran(func(r *Result) bool { return len(r.Seq) > 0 }) {
		t.seqRows()
	}
	if ran(func(r *Result) bool { return r.Concurrent != nil }) {
		t.concurrentRows()
	}
	t.floorRows()
	if ran(func(r *Result) bool { return r.Dead != nil }) {
		t.deadRows()
	}

	t.section("Run")
	t.row("wall time of the run", func(r *Result) cell { return num("%.0f s", r.WallSeconds) }, nil)
	t.row("left on the host at the end", func(r *Result) cell { return text(r.FinalLeaks.String()) }, nil)
	for _, r := range results {
		for _, n := range r.Notes {
			t.note(r.Runtime + ": " + n)
		}
	}

	p := results[0].Params
	var params []string
	if ran(func(r *Result) bool { return len(r.Seq) > 0 }) {
		params = append(params, fmt.Sprintf("%d pods per sequential shape", p.Pods))
	}
	if ran(func(r *Result) bool { return r.Concurrent != nil }) {
		params = append(params, fmt.Sprintf("%d pods at concurrency %d", p.ConcurrentPods, p.Concurrency))
	}
	if ran(func(r *Result) bool { return r.Memory != nil }) {
		params = append(params, fmt.Sprintf("%d pods for memory", p.MemPods))
	}
	params = append(params, "image "+p.Image, fmt.Sprintf("StopContainer timeout %d s", p.StopTimeout))
	fmt.Fprintf(w, "crid-bench: %s\n\n", strings.Join(params, ", "))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, row := range t.rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print report: %w", err)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Targets: crid at most half the best peer (design.md's containerd 2 / CRI-O figure or a peer measured here),")
	fmt.Fprintln(w, "daemon PSS below every peer's. p99 is nearest-rank (of 50 samples: the largest). MB = 1024 kB of smaps.")
	fmt.Fprintln(w, "A figure marked \"sandboxes only\" was measured without containers, which the runtime did not support.")
	for i, n := range t.notes {
		fmt.Fprintf(w, "[%d] %s\n", i+1, n)
	}
	if ran(func(r *Result) bool { return r.Sweep != nil }) {
		fmt.Fprintln(w)
		return printSweep(w, results)
	}
	return nil
}

func mb(kb int64) float64 { return float64(kb) / 1024 }

func (t *table) pullRows() {
	t.section("Image pull (local registry, empty store, pull + unpack)")
	pull := func(r *Result, second bool) (*PullOne, cell, bool) {
		if r.Pull == nil {
			return nil, text("not run"), false
		}
		one := &r.Pull.First
		if second {
			one = &r.Pull.Second
		}
		if !r.Pull.usable() && one.State == "" {
			return one, text(t.outcomeCell(r, r.Pull.Outcome)), false
		}
		if !one.usable() {
			return one, text(t.outcomeCell(r, one.Outcome)), false
		}
		return one, cell{}, true
	}
	t.row("pull of a 5-layer image (s)", func(r *Result) cell {
		one, c, ok := pull(r, false)
		if !ok {
			return c
		}
		return num("%.2f", one.Seconds)
	}, &target{factor: 0.5, bar: designBar.pullS, barWho: "containerd 2", format: "%.2f"})
	t.row("  its size, fetched (MB)", func(r *Result) cell {
		one, c, ok := pull(r, false)
		if !ok {
			return c
		}
		return text(fmt.Sprintf("%.1f, %.1f", float64(one.SizeBytes)/1e6, float64(one.BytesFetched)/1e6))
	}, nil)
	t.row("pull of an image sharing 4 layers (s)", func(r *Result) cell {
		one, c, ok := pull(r, true)
		if !ok {
			return c
		}
		return num("%.2f", one.Seconds)
	}, &target{factor: 0.5, bar: math.NaN(), format: "%.2f"})
	t.row("  fetched again of what the first had (MB)", func(r *Result) cell {
		one, c, ok := pull(r, true)
		if !ok {
			return c
		}
		return num("%.1f", float64(one.BytesFetched-one.NewBlobBytes)/1e6)
	}, nil)
	t.row("blobs fetched twice", func(r *Result) cell {
		if r.Pull == nil || !r.Pull.First.usable() || !r.Pull.Second.usable() {
			return text("-")
		}
		return num("%.0f", float64(len(r.Pull.Twice)))
	}, nil)
	t.pullScaleRows()
}

func (t *table) memoryRows() {
	var pods int
	for _, r := range t.results {
		if r.Memory != nil {
			pods = r.Memory.Pods
		}
	}
	t.section("Memory, PSS (kubelet-shape pods on the pod network, busybox sleep; containers' own processes not counted)")
	mem := func(r *Result, loaded bool) (*MemResult, cell, bool) {
		if r.Memory == nil {
			return nil, text("not run"), false
		}
		if !r.Memory.usable() && (loaded || r.Memory.Idle.DaemonKB == 0) {
			return r.Memory, text(t.outcomeCell(r, r.Memory.Outcome)), false
		}
		return r.Memory, cell{}, true
	}
	sandboxesOnly := func(r *Result, c cell) cell {
		if r.Memory != nil && !r.Memory.Containers.usable() {
			c.partial = true
			c.text += t.note(r.Runtime + ": " + firstLine(r.Memory.Containers.Err))
		}
		return c
	}
	t.row("daemon idle (MB)", func(r *Result) cell {
		m, c, ok := mem(r, false)
		if !ok {
			return c
		}
		return num("%.1f", mb(m.Idle.DaemonKB))
	}, nil)
	t.row("everything idle (MB)", func(r *Result) cell {
		m, c, ok := mem(r, false)
		if !ok {
			return c
		}
		return text(fmt.Sprintf("%.1f (%d helpers, %d pause)", mb(m.Idle.TotalKB), m.Idle.Helpers, m.Idle.Infra))
	}, nil)
	t.row(fmt.Sprintf("daemon with %d pods (MB)", pods), func(r *Result) cell {
		m, c, ok := mem(r, true)
		if !ok {
			return c
		}
		return sandboxesOnly(r, num("%.1f", mb(m.Loaded.DaemonKB)))
	}, nil)
	t.row(fmt.Sprintf("shims/monitors with %d pods (MB)", pods), func(r *Result) cell {
		m, c, ok := mem(r, true)
		if !ok {
			return c
		}
		return text(fmt.Sprintf("%.1f in %d", mb(m.Loaded.HelpersKB), m.Loaded.Helpers))
	}, nil)
	t.row(fmt.Sprintf("pause/infra with %d pods (MB)", pods), func(r *Result) cell {
		m, c, ok := mem(r, true)
		if !ok {
			return c
		}
		s := fmt.Sprintf("%.1f in %d", mb(m.Loaded.InfraKB), m.Loaded.Infra)
		if m.Loaded.Other > 0 {
			s += t.note(fmt.Sprintf("%s: %d other processes (%.1f MB) counted: %s", r.Runtime, m.Loaded.Other, mb(m.Loaded.OtherKB), strings.Join(m.Loaded.OtherCmds, "; ")))
		}
		return text(s)
	}, nil)
	t.row(fmt.Sprintf("everything with %d pods (MB)", pods), func(r *Result) cell {
		m, c, ok := mem(r, true)
		if !ok {
			return c
		}
		return num("%.1f", mb(m.Loaded.TotalKB))
	}, nil)
	t.row("marginal per running pod (KB)", func(r *Result) cell {
		m, c, ok := mem(r, true)
		if !ok {
			return c
		}
		return sandboxesOnly(r, num("%.0f", m.MarginalKB))
	}, &target{factor: 0.5, bar: designBar.marginalKB, barWho: "CRI-O", format: "%.0f"})
}

func (t *table) seqRows() {
	var pods int
	for _, r := range t.results {
		pods = max(pods, r.Params.Pods)
	}
	for i, s := range seqShapes {
		t.section(fmt.Sprintf("Pod start, sequential, %d pods: %s", pods, s))
		seq := func(r *Result) *SeqResult {
			if i < len(r.Seq) {
				return r.Seq[i]
			}
			return nil
		}
		dist := func(total, p99 bool) func(r *Result) cell {
			return func(r *Result) cell {
				s := seq(r)
				if s == nil {
					return text("not run")
				}
				d := s.Sandbox
				if total {
					d = s.Total
				}
				if !d.usable() {
					return text(t.outcomeCell(r, d.Outcome))
				}
				v := d.P50
				if p99 {
					v = d.P99
				}
				return num("%.0f", v)
			}
		}
		podBar := designBar.podStartP50Ms
		t.row("pod (run+create+start) p50 (ms)", dist(true, false), &target{factor: 0.5, bar: podBar, barWho: "CRI-O", format: "%.0f"})
		t.row("pod (run+create+start) p99 (ms)", dist(true, true), &target{factor: 0.5, bar: math.NaN(), format: "%.0f"})
		t.row("RunPodSandbox p50 (ms)", dist(false, false), nil)
		t.row("RunPodSandbox p99 (ms)", dist(false, true), nil)
		pair := func(get func(*SeqResult) Dist) func(r *Result) cell {
			return func(r *Result) cell {
				s := seq(r)
				if s == nil {
					return text("not run")
				}
				d := get(s)
				if d.State == "" {
					return text("-") // a result from before these were measured
				}
				if !d.usable() {
					return text(t.outcomeCell(r, d.Outcome))
				}
				return text(fmt.Sprintf("%.0f / %.0f", d.P50, d.P99))
			}
		}
		t.row("CreateContainer p50 / p99 (ms)", pair(func(s *SeqResult) Dist { return s.Create }), nil)
		t.row("StartContainer p50 / p99 (ms)", pair(func(s *SeqResult) Dist { return s.Start }), nil)
		t.row("create+start p50 / p99 (ms)", pair(func(s *SeqResult) Dist { return s.Container }), nil)
		t.row("pause/infra processes, all pods running", func(r *Result) cell {
			s := seq(r)
			if s == nil || !s.Sandbox.usable() {
				return text("-")
			}
			return text(fmt.Sprintf("%d for %d pods", s.Infra, s.Pods-s.Errors))
		}, nil)
		t.row("errors, teardown errors, leaks", func(r *Result) cell {
			s := seq(r)
			if s == nil {
				return text("not run")
			}
			c := fmt.Sprintf("%d, %d, %s", s.Errors, s.TeardownErrors, s.Leaks)
			if s.FirstErr != "" {
				c += t.note(r.Runtime + ": " + firstLine(s.FirstErr))
			}
			return text(c)
		}, nil)
	}
}

func (t *table) concurrentRows() {
	var pods, conc int
	for _, r := range t.results {
		if r.Concurrent != nil {
			pods, conc = r.Concurrent.Pods, r.Concurrent.Concurrency
		}
	}
	t.section(fmt.Sprintf("%d pods at concurrency %d (kubelet shape, pod network)", pods, conc))
	get := func(f func(r *Result, c *ConcurrentResult) cell) func(r *Result) cell {
		return func(r *Result) cell {
			c := r.Concurrent
			if c == nil {
				return text("not run")
			}
			if !c.usable() {
				return text(t.outcomeCell(r, c.Outcome))
			}
			return f(r, c)
		}
	}
	only := func(r *Result, c *ConcurrentResult, v cell) cell {
		if !c.Containers.usable() {
			v.partial = true
			v.text += t.note(r.Runtime + ": " + firstLine(c.Containers.Err))
		}
		return v
	}
	t.row("start all, wall (s)", get(func(r *Result, c *ConcurrentResult) cell {
		return only(r, c, num("%.1f", c.StartSeconds))
	}), &target{factor: 0.5, bar: designBar.concStartS, barWho: "CRI-O", format: "%.1f"})
	t.row("stop+remove all, wall (s)", get(func(r *Result, c *ConcurrentResult) cell {
		return only(r, c, num("%.1f", c.StopSeconds))
	}), &target{factor: 0.5, bar: designBar.concStopS, barWho: "CRI-O", format: "%.1f"})
	for _, name := range []string{"RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"} {
		t.row("  "+name+" p50 / p99 (ms)", get(func(r *Result, c *ConcurrentResult) cell {
			d, found := c.RPCs[name]
			if !found {
				return text("-")
			}
			return text(fmt.Sprintf("%.0f / %.0f", d.P50, d.P99))
		}), nil)
	}
	t.row("errors (start, stop)", get(func(r *Result, c *ConcurrentResult) cell {
		s := fmt.Sprintf("%d, %d", c.StartErrors, c.StopErrors)
		if c.FirstErr != "" {
			s += t.note(r.Runtime + ": " + firstLine(c.FirstErr))
		}
		return text(s)
	}), nil)
	t.row("leaked", get(func(r *Result, c *ConcurrentResult) cell { return text(c.Leaks.String()) }), nil)
	t.row(fmt.Sprintf("daemon PSS with %d pods (MB)", pods), get(func(r *Result, c *ConcurrentResult) cell {
		return only(r, c, num("%.1f", mb(c.DaemonPSSAtAll)))
	}), &target{factor: 1, strict: true, bar: designBar.daemonAt100MB, barWho: "CRI-O", format: "%.1f"})
}
