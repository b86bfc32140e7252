package imageservice

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/crid-dev/crid/failpoint"
	"github.com/crid-dev/crid/panicguard"
)

// A panic in a flight's call fails that call, for every waiter, and the
// key is free again afterwards.
func TestFlightPanicFailsThatCallOnly(t *testing.T) {
	var g flightGroup[int]
	_, err := g.Do(context.Background(), "k", func(context.Context) (int, error) { panic("boom") })
	if !errors.Is(err, panicguard.ErrPanic) {
		t.Fatalf("Do = %v, want ErrPanic", err)
	}
	v, err := g.Do(context.Background(), "k", func(context.Context) (int, error) { return 7, nil })
	if err != nil || v != 7 {
		t.Fatalf("next call on the key = %d, %v", v, err)
	}
}

// childEnv marks the re-executed test binary of TestLayerPanicFailsThePull.
const childEnv = "IMAGESERVICE_TEST_CHILD"

// With the pull.layer fault point armed to panic, a pull fails with an
// error wrapping panicguard.ErrPanic, leaves nothing behind, and the
// service goes on answering. Fault points are read from the environment
// once per process, so the test runs itself in a child process.
func TestLayerPanicFailsThePull(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLayerPanicFailsThePull$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), childEnv+"=1", failpoint.EnvVar+"=pull.layer=panic")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	e := newEnv(t)
	e.reg.push("app", "v1", basicImage(t, imageSpec{}))
	for range 2 {
		_, err := e.svc.Pull(context.Background(), e.reg.ref("app:v1"), nil)
		if !errors.Is(err, panicguard.ErrPanic) {
			t.Fatalf("pull: %v, want ErrPanic", err)
		}
		t.Logf("error: %v", err)
		e.assertEmptyStore(t)
	}
	// An image without layers fetches none: it still pulls.
	e.reg.push("empty", "v1", newImage(t, imageSpec{}))
	e.mustPull(t, e.reg.ref("empty:v1"))
}
