// Package metricstest reads crid's metrics in tests: the value of one
// series, gathered from a fresh registry, so a test can compare before and
// after the code it drives.
package metricstest

import (
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/crid-dev/crid/metrics"
)

// Value returns the value of the series name{labels} (a counter's or a
// gauge's value, a histogram's observation count), or 0 when there is no
// such series yet. labels must name every label of the series.
func Value(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := metrics.NewRegistry(metrics.Sources{}).Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !sameLabels(m.GetLabel(), labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func sameLabels(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, l := range got {
		if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
			return false
		}
	}
	return true
}
