package oci

import (
	"context"
	"fmt"
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
