package oci

import (
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/metrics/metricstest"
	"github.com/crid-dev/crid/records"
)

// An exit recorded as OOMKilled is counted once, however often it is
// observed; other exits are not counted. CountByState follows the states
// without asking the monitor and leaves out containers being created.
func TestOOMKillsAndStateCounts(t *testing.T) {
	store, err := records.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	c := &Containers{records: store, m: map[string]*Container{}, names: map[string]string{}, busy: map[string]bool{}}
	add := func(id, state string) *Container {
		ctr := &Container{ID: id, State: state, Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: id}}}
		c.m[id] = ctr
		return ctr
	}
	oom, failed := add("oom", StateRunning), add("failed", StateRunning)
	add("new", StateCreated)
	add("creating", StateCreated)
	c.busy["creating"] = true

	want := map[string]int{StateCreated: 1, StateRunning: 2, StateExited: 0}
	if got := c.CountByState(); !equalCounts(got, want) {
		t.Errorf("counts %v, want %v", got, want)
	}
	kills := func() float64 { return metricstest.Value(t, "crid_container_oom_kills_total", map[string]string{}) }
	before := kills()
	c.setExit(oom, &Exit{Code: 137, OOMKilled: true, FinishedAt: time.Now()})
	c.setExit(oom, &Exit{Code: 137, OOMKilled: true, FinishedAt: time.Now()}) // seen again: the first observation wins
	c.setExit(failed, &Exit{Code: 1, FinishedAt: time.Now()})
	if got := kills(); got != before+1 {
		t.Errorf("OOM kills counted %v, want %v", got, before+1)
	}
	if oom.Reason != "OOMKilled" || failed.Reason != "Error" {
		t.Errorf("reasons %q %q", oom.Reason, failed.Reason)
	}
	want = map[string]int{StateCreated: 1, StateRunning: 0, StateExited: 2}
	if got := c.CountByState(); !equalCounts(got, want) {
		t.Errorf("counts after the exits %v, want %v", got, want)
	}
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
