// Package failpoint lets tests inject faults at named steps of a real
// daemon or monitor: a panic, a SIGKILL of the process itself, an error
// or a delay. Points are configured from the environment the process
// starts with,
//
//	CRID_FAILPOINTS="pull.layer=panic,sandbox.run.netns=kill"
//
// and an unconfigured process pays one atomic load per point. Only a
// process's own environment configures it, so it grants nothing to anyone
// who could not already change how crid is started.
package failpoint

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// EnvVar names the variable read once, at the first Inject.
const EnvVar = "CRID_FAILPOINTS"

// OnceEnvVar names a directory that makes every armed point act once per
// directory rather than once per process: a point acts only if it can
// create the file of its name there. A crash test needs it where the
// crashed process is started again with the same environment (the daemon
// respawns a killed monitor with its own), which would otherwise crash
// again at the same step, forever.
const OnceEnvVar = "CRID_FAILPOINTS_ONCE"

// ErrInjected marks an error returned by an "error" point.
var ErrInjected = errors.New("injected fault")

type action struct {
	kind  string // panic, kill, error, sleep
	sleep time.Duration
}

var (
	once    sync.Once
	points  map[string]action
	onceDir string
)

func load() {
	spec := os.Getenv(EnvVar)
	if spec == "" {
		return
	}
	m, err := Parse(spec)
	if err != nil {
		klog.ErrorS(err, "Ignoring fault points", "env", EnvVar)
		return
	}
	klog.InfoS("Fault points armed", "env", EnvVar, "points", spec)
	points = m
	onceDir = os.Getenv(OnceEnvVar)
}

// Parse reads a "name=action,…" list; actions are panic, kill, error and
// sleep:<duration>.
func Parse(spec string) (map[string]action, error) {
	m := map[string]action{}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, act, ok := strings.Cut(item, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("fault point %q: want name=action", item)
		}
		switch {
		case act == "panic" || act == "kill" || act == "error":
			m[name] = action{kind: act}
		case strings.HasPrefix(act, "sleep:"):
			d, err := time.ParseDuration(strings.TrimPrefix(act, "sleep:"))
			if err != nil || d < 0 {
				return nil, fmt.Errorf("fault point %q: bad sleep duration", item)
			}
			m[name] = action{kind: "sleep", sleep: d}
		default:
			return nil, fmt.Errorf("fault point %q: unknown action %q (panic, kill, error, sleep:<d>)", item, act)
		}
	}
	return m, nil
}

// Inject acts at point name when the environment arms it: it panics,
// kills the process with SIGKILL (no deferred function runs, as in a
// crash), sleeps, or returns an error wrapping ErrInjected. Unarmed, it
// returns nil.
func Inject(name string) error {
	once.Do(load)
	if points == nil {
		return nil
	}
	a, ok := points[name]
	if !ok || !firstHit(name) {
		return nil
	}
	klog.InfoS("Fault point hit", "point", name, "action", a.kind)
	switch a.kind {
	case "panic":
		panic("fault point " + name)
	case "kill":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL cannot be caught: the process ends here
	case "sleep":
		time.Sleep(a.sleep)
		return nil
	}
	return fmt.Errorf("%w at %s", ErrInjected, name)
}

// firstHit claims point name in onceDir; without onceDir every hit acts.
func firstHit(name string) bool {
	if onceDir == "" {
		return true
	}
	f, err := os.OpenFile(filepath.Join(onceDir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return false // taken by an earlier hit, or unusable: act never rather than always
	}
	_ = f.Close()
	return true
}
