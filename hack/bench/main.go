// Command crid-bench measures a CRI runtime over its unix socket, so that
// crid and its peers (Debian's containerd) are measured side by side on the
// same machine in the same run. hack/bench/run.sh starts each runtime with
// private state, runs `crid-bench run` against it, stops it, and prints
// `crid-bench report` of all results; `make bench` runs that script.
//
// Subcommands:
//
//	run      measure one runtime, write its result as JSON
//	report   print results side by side with design.md's targets
//	image    build and push the pull benchmark's images to the registry
//	wait     wait until a CRI endpoint answers
//	cleanup  stop and remove every container and sandbox of an endpoint
//
// Phases of run (-phases), in this order:
//
//	pull        a 5-layer ~106 MB image into the empty store, then an image
//	            sharing 4 of its layers, through a counting proxy in front of
//	            the local registry (time, bytes, blobs fetched twice)
//	memory      PSS of the daemon, its shims/monitor and pause processes,
//	            idle and with -mem-pods running pods; marginal PSS per pod
//	seq         -pods pods started one after the other (RunPodSandbox +
//	            CreateContainer + StartContainer), p50/p99 of the pod and of
//	            RunPodSandbox alone, on the pod network and host network,
//	            pid POD (unset) and pid CONTAINER (kubelet)
//	concurrent  -concurrent-pods pods at -concurrency: wall time to start
//	            all and to stop+remove all, errors, leaks
//
// A step the runtime does not support (Unimplemented, or its first attempt
// fails) is reported as such and the run goes on. Benchmarks print numbers;
// they never fail on timings.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "run":
		err = cmdRun(args)
	case "report":
		err = cmdReport(args)
	case "image":
		err = cmdImage(args)
	case "wait":
		err = cmdWait(args)
	case "cleanup":
		err = cmdCleanup(args)
	case "-h", "--help", "help":
		usage()
		return
	default:
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "crid-bench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: crid-bench run|report|image|wait|cleanup [flags]  (crid-bench <cmd> -h for flags; see hack/bench/run.sh)")
}

var allPhases = []string{"pull", "memory", "seq", "concurrent", "floor", "sweep", "dead"}

// options are the flags of `run`.
type options struct {
	runtimeName    string
	endpoint       string
	daemonPid      int
	out            string
	phases         []string
	pods           int
	concurrency    int
	concurrentPods int
	memPods        int
	memSettle      time.Duration
	image          string
	pauseImage     string
	stopTimeout    int64
	rpcTimeout     time.Duration
	pullTimeout    time.Duration
	phaseTimeout   time.Duration
	registry       string
	proxyListen    string
	// What belongs to this run on the host.
	workDir      string
	marker       string
	logDir       string
	cgroupParent string
	bridge       string
	netName      string
	ipamDir      string
	checkFlags   bool
	// The sweep.
	levels         []int
	more           int
	samples        int
	logLines       int
	logPoll        time.Duration
	cpuWindow      time.Duration
	maxPods        int
	restartCmd     string
	restartTimeout time.Duration
	pprofSocket    string
	profileDir     string
	// Dead containers.
	dead    int
	maxDead int
	// Floors.
	floors          bool
	floorIterations int
	floorHelper     string
	rootfs          string
	conflist        string
	cniBinDirs      []string
}

func (o *options) has(phase string) bool { return slices.Contains(o.phases, phase) }

func parseRunFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var phases string
	fs.StringVar(&o.runtimeName, "runtime", "", "label of the runtime measured (crid, containerd)")
	fs.StringVar(&o.endpoint, "endpoint", "", "CRI socket: unix:///path or /path")
	fs.IntVar(&o.daemonPid, "daemon-pid", 0, "PID of the runtime's daemon (for memory)")
	fs.StringVar(&o.out, "out", "", "write the result as JSON to this file (default: print the report)")
	fs.StringVar(&phases, "phases", strings.Join(allPhases, ","), "comma-separated phases: "+strings.Join(allPhases, ","))
	fs.IntVar(&o.pods, "pods", 50, "pods per shape in the sequential phase")
	fs.IntVar(&o.concurrency, "concurrency", 10, "concurrent pod starts/teardowns")
	fs.IntVar(&o.concurrentPods, "concurrent-pods", 100, "pods in the concurrent phase")
	fs.IntVar(&o.memPods, "mem-pods", 50, "running pods in the memory phase")
	fs.DurationVar(&o.memSettle, "mem-settle", 3*time.Second, "wait after starting the memory phase's pods before reading PSS")
	fs.StringVar(&o.image, "image", "registry.k8s.io/e2e-test-images/busybox:1.29-2", "container image (sleep 3600)")
	fs.StringVar(&o.pauseImage, "pause-image", "registry.k8s.io/pause:3.10", "sandbox image, pulled before the pod phases")
	fs.Int64Var(&o.stopTimeout, "stop-timeout", 0, "StopContainer timeout in seconds (busybox sleep as PID 1 ignores SIGTERM)")
	fs.DurationVar(&o.rpcTimeout, "rpc-timeout", 2*time.Minute, "bound on each RPC (RunPodSandbox gets twice this, as with kubelet)")
	fs.DurationVar(&o.pullTimeout, "pull-timeout", 5*time.Minute, "bound on each PullImage")
	fs.DurationVar(&o.phaseTimeout, "phase-timeout", 10*time.Minute, "bound on each phase")
	fs.StringVar(&o.registry, "registry", "127.0.0.1:5000", "local registry holding the bench images")
	fs.StringVar(&o.proxyListen, "proxy", "127.0.0.1:5099", "address of the counting registry proxy the runtime pulls the bench images through (must be an insecure registry in its config)")
	fs.StringVar(&o.workDir, "work-dir", "", "the run's work dir: mounts under it, and processes naming it, are the runtime's")
	fs.StringVar(&o.marker, "marker", "", "value of CRID_BENCH_RUN in the environment of the runtime's processes")
	fs.StringVar(&o.logDir, "log-dir", "", "pod log directories go here")
	fs.StringVar(&o.cgroupParent, "cgroup-parent", "", "cgroup parent of every pod (cgroupfs path)")
	fs.StringVar(&o.bridge, "bridge", "", "CNI bridge of the runtime's network (leak check)")
	fs.StringVar(&o.netName, "net-name", "", "CNI network name (leak check)")
	fs.StringVar(&o.ipamDir, "ipam-dir", "", "host-local dataDir of the network (leak check)")
	fs.BoolVar(&o.checkFlags, "check-flags", false, "only check the flags (run.sh does before starting any runtime)")
	var levels, cniBinDirs string
	fs.StringVar(&levels, "levels", "10,100,500,1000", "sweep: comma-separated numbers of running pods")
	fs.IntVar(&o.more, "more", 20, "sweep: pods started one after the other at each level, on each network")
	fs.IntVar(&o.samples, "samples", 30, "calls of each list/status RPC at each level (and of ContainerStatus among the dead)")
	fs.IntVar(&o.logLines, "log-lines", 10, "sweep: lines per second each container writes while logging")
	fs.DurationVar(&o.logPoll, "log-poll", 10*time.Second, "sweep: how often an idle container looks for the switch to start logging (whole seconds)")
	fs.DurationVar(&o.cpuWindow, "cpu-window", 10*time.Second, "sweep: window over which CPU use is read")
	fs.IntVar(&o.maxPods, "max-pods", 0, "sweep: skip levels above this (0: none), to bound a slow runtime")
	fs.StringVar(&o.restartCmd, "restart-cmd", "", "sweep: command that starts the daemon again after a kill -9 and prints its pid (run.sh writes one)")
	fs.DurationVar(&o.restartTimeout, "restart-timeout", 2*time.Minute, "sweep: give up on a restarted daemon's statuses after this")
	fs.StringVar(&o.pprofSocket, "pprof-socket", "", "sweep: the daemon's Go profiles socket (crid --debug-pprof-socket): profile each level")
	fs.StringVar(&o.profileDir, "profile-dir", "", "sweep: where the profiles go")
	fs.IntVar(&o.dead, "dead", 20000, "dead: exited containers (and their stopped pods)")
	fs.IntVar(&o.maxDead, "max-dead", 0, "dead: at most this many (0: no bound), to bound a slow runtime")
	fs.BoolVar(&o.floors, "floors", true, "measure the floors (CNI, libcontainer, pulls): properties of the machine, measured once, in crid's run")
	fs.IntVar(&o.floorIterations, "floor-iterations", 20, "floor: iterations of the CNI and container floors")
	fs.StringVar(&o.floorHelper, "floor-helper", "", "floor: the crid-bench-floor binary (default: beside crid-bench)")
	fs.StringVar(&o.rootfs, "rootfs", "", "floor: read-only tree with bin/busybox (the test bed's busybox-root)")
	fs.StringVar(&o.conflist, "conflist", "", "floor: the runtime's CNI conflist")
	fs.StringVar(&cniBinDirs, "cni-bin-dirs", "/opt/cni/bin", "floor: CNI plugin dirs, comma-separated")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	for _, f := range strings.Split(levels, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-levels: %q is not a number of pods", f)
		}
		o.levels = append(o.levels, n)
	}
	slices.Sort(o.levels)
	o.cniBinDirs = strings.Split(cniBinDirs, ",")
	for _, p := range strings.Split(phases, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(allPhases, p) {
			return nil, fmt.Errorf("unknown phase %q (phases: %s)", p, strings.Join(allPhases, ","))
		}
		o.phases = append(o.phases, p)
	}
	switch {
	case o.runtimeName == "" || o.endpoint == "":
		return nil, errors.New("-runtime and -endpoint are required")
	case o.has("memory") && o.daemonPid <= 0:
		return nil, errors.New("the memory phase needs -daemon-pid")
	case o.logDir == "":
		return nil, errors.New("-log-dir is required")
	case o.pods < 1 || o.concurrency < 1 || o.concurrentPods < 1 || o.memPods < 1:
		return nil, errors.New("-pods, -concurrency, -concurrent-pods and -mem-pods must be at least 1")
	case o.has("sweep") && (len(o.levels) == 0 || o.more < 1 || o.samples < 1 || o.logLines < 1):
		return nil, errors.New("the sweep needs -levels, and -more, -samples and -log-lines of at least 1")
	case o.has("sweep") && o.daemonPid <= 0:
		return nil, errors.New("the sweep needs -daemon-pid")
	case o.has("dead") && o.dead < 1:
		return nil, errors.New("-dead must be at least 1")
	}
	return o, nil
}

// signalContext is cancelled on SIGINT/SIGTERM so that teardowns still run
// with a fresh, bounded context. The signal is logged: a run cut short
// says why.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(os.Stderr, "crid-bench: got %v at %s: stopping (what was started is still removed)\n", s, time.Now().Format("15:04:05"))
			cancel()
		case <-ctx.Done():
		}
		signal.Stop(sigs)
	}()
	return ctx, cancel
}

func cmdRun(args []string) error {
	o, err := parseRunFlags(args)
	if err != nil || o.checkFlags {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	c, err := dial(o.endpoint, o.rpcTimeout, o.pullTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	res := &Result{Runtime: o.runtimeName, Started: time.Now(), Params: Params{
		Pods: o.pods, Concurrency: o.concurrency, ConcurrentPods: o.concurrentPods, MemPods: o.memPods,
		Phases: o.phases, Image: o.image, StopTimeout: o.stopTimeout,
		Levels: o.levels, MaxPods: o.maxPods, Dead: o.dead, MaxDead: o.maxDead,
	}}
	if res.Version, err = c.waitReady(ctx, 30*time.Second, nil); err != nil {
		return fmt.Errorf("%s at %s: %w", o.runtimeName, o.endpoint, err)
	}
	b := newBench(o, c, nil)
	b.logf("measuring %s at %s: phases %s", res.Version, o.endpoint, strings.Join(o.phases, ","))
	b.host = newHostProbe(o)

	// daemonGone notes, once, that the daemon died: later phases are skipped.
	gone := false
	daemonGone := func() bool {
		if !gone && o.daemonPid > 0 && !processRunning(o.daemonPid) {
			gone = true
			res.Notes = append(res.Notes, fmt.Sprintf("the daemon (pid %d) exited during the run; later phases skipped", o.daemonPid))
			b.logf("the daemon (pid %d) exited", o.daemonPid)
		}
		return gone
	}
	phase := func(name string, fn func(context.Context)) {
		if !o.has(name) || ctx.Err() != nil || daemonGone() {
			return
		}
		// The sweep bounds each level by -phase-timeout itself; the dead
		// phase grows with -dead.
		bound := o.phaseTimeout
		switch name {
		case "sweep":
			bound *= time.Duration(len(o.levels) + 1)
		case "dead":
			bound += time.Duration(o.dead) * 200 * time.Millisecond
		}
		pctx, cancel := context.WithTimeout(ctx, bound)
		defer cancel()
		start := time.Now()
		fn(pctx)
		b.logf("phase %s done in %.1f s", name, time.Since(start).Seconds())
	}
	phase("pull", func(ctx context.Context) { res.Pull = b.pullPhase(ctx) })
	if o.has("memory") || o.has("seq") || o.has("concurrent") || o.has("sweep") || o.has("dead") {
		for _, ref := range []string{o.image, o.pauseImage} {
			if err := b.ensureImage(ctx, ref); err != nil {
				res.Notes = append(res.Notes, fmt.Sprintf("pre-pull: %v", err))
				b.logf("pre-pull: %v", err)
			}
		}
	}
	phase("memory", func(ctx context.Context) { res.Memory = b.memoryPhase(ctx) })
	phase("seq", func(ctx context.Context) {
		for _, s := range seqShapes {
			if ctx.Err() != nil || daemonGone() {
				break
			}
			res.Seq = append(res.Seq, b.seqPhase(ctx, s))
		}
	})
	phase("concurrent", func(ctx context.Context) { res.Concurrent = b.concurrentPhase(ctx) })
	if o.floors {
		phase("floor", func(ctx context.Context) { res.Floor = b.floorPhase(ctx) })
	}
	phase("sweep", func(ctx context.Context) { res.Sweep = b.sweepPhase(ctx) })
	phase("dead", func(ctx context.Context) { res.Dead = b.deadPhase(ctx) })
	if ctx.Err() != nil {
		res.Notes = append(res.Notes, "interrupted")
	}
	// Whatever a phase left behind, on any path: remove it with a fresh,
	// bounded context and report what stays on the host.
	cctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := removeEverything(cctx, c, o.stopTimeout); err != nil {
		res.Notes = append(res.Notes, fmt.Sprintf("final cleanup: %v", firstLine(err.Error())))
	}
	res.FinalLeaks = b.host.leaks(cctx, 10*time.Second)
	res.WallSeconds = time.Since(res.Started).Seconds()
	b.logf("done in %.1f s; left on the host: %s", res.WallSeconds, res.FinalLeaks)
	if o.out == "" {
		return printReport(os.Stdout, []*Result{res})
	}
	return writeResult(o.out, res)
}

func cmdReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	plotPath := fs.String("plot", "", "also draw the sweep's latency and memory against running pods into this PNG")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("usage: crid-bench report RESULT.json [RESULT.json]")
	}
	var results []*Result
	for _, path := range fs.Args() {
		r, err := readResult(path)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	if err := printReport(os.Stdout, results); err != nil {
		return err
	}
	if *plotPath == "" {
		return nil
	}
	drawn, err := writePlot(*plotPath, results)
	if err != nil {
		return err
	}
	if drawn {
		fmt.Printf("\nplot: %s\n", *plotPath)
	}
	return nil
}

func cmdImage(args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	reg := fs.String("registry", "127.0.0.1:5000", "registry to push the bench images to (plain HTTP)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	return ensureBenchImages(ctx, *reg, func(f string, a ...any) {
		fmt.Fprintf(os.Stderr, "crid-bench image: "+f+"\n", a...)
	})
}

func cmdWait(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ContinueOnError)
	endpoint := fs.String("endpoint", "", "CRI socket")
	pid := fs.Int("pid", 0, "fail early when this process exits")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := dial(*endpoint, 10*time.Second, time.Minute)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, stop := signalContext()
	defer stop()
	alive := func() error {
		if *pid > 0 {
			if err := syscall.Kill(*pid, 0); err != nil {
				return fmt.Errorf("pid %d: %w", *pid, err)
			}
		}
		return nil
	}
	v, err := c.waitReady(ctx, *timeout, alive)
	if err != nil {
		return fmt.Errorf("%s: %w", *endpoint, err)
	}
	fmt.Println(v)
	return nil
}

func cmdCleanup(args []string) error {
	fs := flag.NewFlagSet("cleanup", flag.ContinueOnError)
	endpoint := fs.String("endpoint", "", "CRI socket")
	timeout := fs.Duration("timeout", 3*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := dial(*endpoint, 2*time.Minute, time.Minute)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if _, err := c.waitReady(ctx, 5*time.Second, nil); err != nil {
		return fmt.Errorf("%s: %w", *endpoint, err)
	}
	return removeEverything(ctx, c, 0)
}
