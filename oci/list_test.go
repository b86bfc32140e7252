package oci

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// List answers from what crid knows and asks the monitor nothing: these
// Containers have no runtime at all (a monitor request would panic on
// it), yet every filter works, busy containers are left out, the order is
// oldest first and the caller gets copies.
func TestListAsksTheMonitorNothing(t *testing.T) {
	c := &Containers{m: map[string]*Container{}, names: map[string]string{}, busy: map[string]bool{}, creating: map[string]*createAttempt{}}
	states := []string{StateRunning, StateCreated, StateExited}
	for i := range 300 {
		id := fmt.Sprintf("%02x%062d", i%256, i)
		c.m[id] = &Container{ID: id, SandboxID: fmt.Sprintf("pod%d", i%3), State: states[i%3], CreatedAt: int64(1000 - i),
			Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: fmt.Sprint(i)}, Labels: map[string]string{"n": fmt.Sprint(i % 2)}}}
	}
	busy := fmt.Sprintf("%02x%062d", 7, 7)
	c.busy[busy] = true
	ctx := context.Background()

	all := c.List(ctx, Filter{})
	if len(all) != 299 {
		t.Fatalf("%d containers listed, want 299 (one is busy)", len(all))
	}
	for i, ctr := range all {
		if ctr.ID == busy {
			t.Fatal("a container being created or removed is listed")
		}
		if i > 0 && ctr.CreatedAt < all[i-1].CreatedAt {
			t.Fatal("not oldest first")
		}
	}
	running := c.List(ctx, Filter{State: StateRunning})
	if len(running) != 100 {
		t.Fatalf("%d running, want 100", len(running))
	}
	for _, ctr := range running {
		if ctr.State != StateRunning {
			t.Fatalf("state filter let %s through", ctr.State)
		}
	}
	if got := c.List(ctx, Filter{SandboxID: "pod1", State: StateCreated, Selector: map[string]string{"n": "1"}}); len(got) != 49 {
		t.Fatalf("pod, state and label filters: %d, want 49 (50, less the busy one)", len(got))
	}
	if got := c.List(ctx, Filter{Selector: map[string]string{"n": "1", "other": "x"}}); len(got) != 0 {
		t.Fatalf("a label no container has: %d listed", len(got))
	}
	one := c.List(ctx, Filter{ID: fmt.Sprintf("%02x%062d", 9, 9)[:62]})
	if len(one) != 1 || !strings.HasSuffix(one[0].ID, "9") {
		t.Fatalf("ID prefix: %v", one)
	}
	one[0].State = StateExited
	if c.m[one[0].ID].State == StateExited {
		t.Fatal("List handed out its own record, not a copy")
	}
}

// The pod index answers InSandbox and a List by whole pod ID, and follows
// removals.
func TestPodIndex(t *testing.T) {
	c := &Containers{m: map[string]*Container{}, names: map[string]string{}, busy: map[string]bool{}, creating: map[string]*createAttempt{}}
	pod := func(i int) string { return fmt.Sprintf("%064x", i) }
	var all []*Container
	for i := range 30 {
		ctr := &Container{ID: fmt.Sprintf("c%02d", i), SandboxID: pod(i % 3), CreatedAt: int64(i), Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "x"}}}
		c.addLocked(ctr)
		all = append(all, ctr)
	}
	ids := c.InSandbox(pod(1))
	slices.Sort(ids)
	if len(ids) != 10 || ids[0] != "c01" || ids[9] != "c28" {
		t.Fatalf("InSandbox: %v", ids)
	}
	if got := c.List(context.Background(), Filter{SandboxID: pod(2)}); len(got) != 10 || got[0].ID != "c02" || got[9].ID != "c29" {
		t.Fatalf("List by whole pod ID: %d containers", len(got))
	}
	for _, ctr := range all {
		if ctr.SandboxID == pod(1) {
			c.deleteLocked(ctr)
		}
	}
	if ids := c.InSandbox(pod(1)); len(ids) != 0 || len(c.bySandbox) != 2 || len(c.m) != 20 {
		t.Fatalf("after removing pod 1's: InSandbox %v, %d pods indexed, %d containers", ids, len(c.bySandbox), len(c.m))
	}
	if got := c.List(context.Background(), Filter{SandboxID: pod(1)}); len(got) != 0 {
		t.Fatalf("List of a pod with none: %d", len(got))
	}
}
