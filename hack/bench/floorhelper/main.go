// Command crid-bench-floor measures the floor of a container start and
// teardown on this machine: what libcontainer alone costs, linked into a
// binary as small as crid-monitor (libcontainer re-executes its own binary
// as the container's init, so a large binary's package inits would be
// counted). crid-bench runs it in its floor phase and reads its JSON.
//
// Each iteration: an overlay mount of a fresh upper dir over the given
// rootfs; libcontainer Create + Start (init up to the exec fifo) + Exec of
// `busybox sleep` in new mount, PID, IPC, UTS and cgroup namespaces,
// joining a given network namespace, with a cgroup under -cgroup-parent and
// stdio on /dev/null; then SIGKILL, wait, Destroy, unmount.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	// Device rules for the cgroup manager, and the C constructor of the
	// init re-exec (see platform-notes.md).
	_ "github.com/opencontainers/cgroups/devices"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init() // never returns
	}
}

// Sample is one iteration, in milliseconds.
type Sample struct {
	MountMs    float64 `json:"mount_ms"`
	CreateMs   float64 `json:"create_ms"` // Create + Start: init waits at the exec fifo
	ExecMs     float64 `json:"exec_ms"`   // Exec: the process runs
	KillMs     float64 `json:"kill_ms"`   // SIGKILL + wait for the exit
	DestroyMs  float64 `json:"destroy_ms"`
	UnmountMs  float64 `json:"unmount_ms"`
	StartTotal float64 `json:"start_total_ms"` // mount + create + exec
	StopTotal  float64 `json:"stop_total_ms"`  // kill + destroy + unmount
}

func main() {
	rootfs := flag.String("rootfs", "", "read-only lower dir holding bin/busybox")
	work := flag.String("work", "", "scratch dir (state, upper and work dirs, mount points)")
	cgParent := flag.String("cgroup-parent", "", "cgroupfs parent of the containers' cgroups")
	netns := flag.String("netns", "", "network namespace to join (a pinned path); empty: a new one")
	n := flag.Int("n", 20, "iterations")
	flag.Parse()
	if *rootfs == "" || *work == "" || *cgParent == "" {
		fmt.Fprintln(os.Stderr, "usage: crid-bench-floor -rootfs DIR -work DIR -cgroup-parent PATH [-netns PATH] [-n N]")
		os.Exit(2)
	}
	var out []Sample
	for i := range *n {
		s, err := once(*rootfs, *work, *cgParent, *netns, i)
		if err != nil {
			fmt.Fprintln(os.Stderr, "crid-bench-floor:", err)
			os.Exit(1)
		}
		out = append(out, s)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "crid-bench-floor:", err)
		os.Exit(1)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func once(rootfs, work, cgParent, netns string, i int) (s Sample, retErr error) {
	id := fmt.Sprintf("floor-%d-%04d", os.Getpid(), i)
	dir := filepath.Join(work, id)
	upper, wdir, merged := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	for _, d := range []string{upper, wdir, merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return s, fmt.Errorf("mkdir: %w", err)
		}
	}
	defer os.RemoveAll(dir)

	t0 := time.Now()
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", rootfs, upper, wdir)
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		return s, fmt.Errorf("mount overlay: %w", err)
	}
	mounted := true
	defer func() {
		if mounted {
			_ = unix.Unmount(merged, unix.MNT_DETACH)
		}
	}()
	t1 := time.Now()

	spec := specconv.Example()
	spec.Root = &specs.Root{Path: merged}
	spec.Process.Terminal = false
	spec.Process.Args = []string{"/bin/busybox", "sleep", "3600"}
	spec.Hostname = id
	spec.Linux.CgroupsPath = filepath.Join(cgParent, id)
	if netns != "" {
		for k, ns := range spec.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				spec.Linux.Namespaces[k].Path = netns
			}
		}
	}
	config, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: id, Spec: spec})
	if err != nil {
		return s, fmt.Errorf("convert spec: %w", err)
	}
	c, err := libcontainer.Create(filepath.Join(work, "state"), id, config)
	if err != nil {
		return s, fmt.Errorf("create: %w", err)
	}
	destroyed := false
	defer func() {
		if !destroyed {
			_ = c.Signal(unix.SIGKILL)
			_ = c.Destroy()
		}
	}()
	p := &libcontainer.Process{Args: spec.Process.Args, Env: spec.Process.Env, Cwd: "/", Init: true}
	if err := c.Start(p); err != nil {
		return s, fmt.Errorf("start: %w", err)
	}
	t2 := time.Now()
	if err := c.Exec(); err != nil {
		return s, fmt.Errorf("exec: %w", err)
	}
	t3 := time.Now()
	if st, err := c.Status(); err != nil || st != libcontainer.Running {
		return s, fmt.Errorf("container is %v after exec (%v)", st, err)
	}

	t4 := time.Now()
	if err := c.Signal(unix.SIGKILL); err != nil {
		return s, fmt.Errorf("kill: %w", err)
	}
	// Wait reports the death by SIGKILL as an error: only the exit counts.
	_, _ = p.Wait()
	t5 := time.Now()
	if err := c.Destroy(); err != nil {
		return s, fmt.Errorf("destroy: %w", err)
	}
	destroyed = true
	t6 := time.Now()
	if err := unix.Unmount(merged, 0); err != nil {
		return s, fmt.Errorf("unmount: %w", err)
	}
	mounted = false
	t7 := time.Now()
	s = Sample{
		MountMs: ms(t1.Sub(t0)), CreateMs: ms(t2.Sub(t1)), ExecMs: ms(t3.Sub(t2)),
		KillMs: ms(t5.Sub(t4)), DestroyMs: ms(t6.Sub(t5)), UnmountMs: ms(t7.Sub(t6)),
		StartTotal: ms(t3.Sub(t0)), StopTotal: ms(t7.Sub(t4)),
	}
	return s, nil
}
