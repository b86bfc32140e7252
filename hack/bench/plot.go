package main

import (
	"fmt"
	"image/color"
	"math"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// series is one line of the sweep plot: a value against the number of
// running pods, for one runtime.
type series struct {
	label string
	dash  []vg.Length
	get   func(lv *LevelResult) float64 // NaN: not measured
}

var (
	solid  []vg.Length
	dashed = []vg.Length{vg.Points(5), vg.Points(3)}
	dotted = []vg.Length{vg.Points(1), vg.Points(2)}
)

func rpcP99(name string) func(lv *LevelResult) float64 {
	return func(lv *LevelResult) float64 {
		d, ok := lv.RPCs[name]
		if !ok || !d.usable() {
			return math.NaN()
		}
		return d.P99
	}
}

var latencySeries = []series{
	{"pod start p50", solid, func(lv *LevelResult) float64 {
		if lv.StartPod == nil || !lv.StartPod.Pod.usable() {
			return math.NaN()
		}
		return lv.StartPod.Pod.P50
	}},
	{"ListContainers p99", dashed, rpcP99("ListContainers")},
	{"ListContainerStats p99", dotted, rpcP99("ListContainerStats")},
}

var memorySeries = []series{
	{"daemon PSS", solid, func(lv *LevelResult) float64 {
		if lv.Idle == nil || !lv.Idle.usable() {
			return math.NaN()
		}
		return mb(lv.Idle.Mem.DaemonKB)
	}},
	{"monitor/shims PSS", dashed, func(lv *LevelResult) float64 {
		if lv.Idle == nil || !lv.Idle.usable() {
			return math.NaN()
		}
		return mb(lv.Idle.Mem.HelpersKB)
	}},
}

// runtimeColors tell the runtimes apart in the plot.
var runtimeColors = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
}

// writePlot draws latency and memory against running pods, one line per
// runtime and measure, side by side, as a PNG. It reports whether there
// was anything to draw.
func writePlot(path string, results []*Result) (bool, error) {
	lat := newSweepPlot("Latency at N running pods", "ms (log)")
	mem := newSweepPlot("Memory (idle) at N running pods", "MB")
	lat.Y.Scale = plot.LogScale{}
	lat.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	drawn := false
	for i, r := range results {
		if r.Sweep == nil {
			continue
		}
		c := runtimeColors[i%len(runtimeColors)]
		for _, p := range []struct {
			plt *plot.Plot
			ss  []series
			log bool
		}{{lat, latencySeries, true}, {mem, memorySeries, false}} {
			for _, s := range p.ss {
				var pts plotter.XYs
				for _, lv := range r.Sweep.Levels {
					v := s.get(lv)
					if lv.State != stateOK || math.IsNaN(v) || (p.log && v <= 0) {
						continue
					}
					pts = append(pts, plotter.XY{X: float64(lv.Pods), Y: v})
				}
				if len(pts) == 0 {
					continue
				}
				line, points, err := plotter.NewLinePoints(pts)
				if err != nil {
					return false, fmt.Errorf("plot: %w", err)
				}
				line.Color, line.Dashes, line.Width = c, s.dash, vg.Points(1.5)
				points.Color, points.Shape = c, draw.CircleGlyph{}
				p.plt.Add(line, points)
				p.plt.Legend.Add(r.Runtime+" "+s.label, line, points)
				drawn = true
			}
		}
	}
	if !drawn {
		return false, nil
	}
	// Room above the lines for the legends.
	mem.Y.Min = 0
	mem.Y.Max *= 1.5
	lat.Y.Max *= 4
	const w, h = 12 * vg.Inch, 5 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Millimeter * 6, PadTop: vg.Millimeter * 2,
		PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	plots := [][]*plot.Plot{{lat, mem}}
	canvases := plot.Align(plots, tiles, dc)
	lat.Draw(canvases[0][0])
	mem.Draw(canvases[0][1])
	f, err := os.Create(path)
	if err != nil {
		return false, fmt.Errorf("plot: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return false, fmt.Errorf("plot %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("plot %s: %w", path, err)
	}
	return true, nil
}

func newSweepPlot(title, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "running pods (log)"
	p.Y.Label.Text = ylabel
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	p.Add(plotter.NewGrid())
	return p
}
