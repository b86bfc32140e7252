// Command crid-monitor is crid's node-wide container monitor: the parent and
// child subreaper of every container's init, owner of their stdio and logs,
// recorder of their exits. The crid daemon starts it (or finds it running)
// and talks to it over a unix socket; it outlives daemon restarts. It links
// libcontainer and little else, so it starts fast and stays small.
//
// libcontainer re-executes this binary as "crid-monitor init" to set up
// each container: that path runs libcontainer.Init and nothing of ours.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/opencontainers/runc/libcontainer"
	// Registers the cgroup device-rule manager; without it Start fails
	// with "cgroup manager is not configured to set device rules".
	_ "github.com/opencontainers/cgroups/devices"
	// The C constructor that sets up namespaces before Go starts, in the
	// "init" re-exec; without it Start fails reading the child's pid.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"

	"github.com/crid-dev/crid/oci/crilog"
	"github.com/crid-dev/crid/oci/holder"
	"github.com/crid-dev/crid/oci/monitor"
)

func init() {
	// As runc does: the earliest Go code of the re-exec'd init, after
	// nsenter's constructor. Init never returns.
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "hold" {
		os.Exit(hold(os.Args[2:]))
	}
	fs := flag.NewFlagSet("crid-monitor", flag.ContinueOnError)
	runDir := fs.String("run-dir", "/run/crid/monitor", "socket, lock, log and libcontainer state (absolute)")
	stateDir := fs.String("state-dir", "/var/lib/crid/monitor", "per-container records and exit files (absolute)")
	maxLine := fs.Int("max-log-line", crilog.DefaultMaxLine, "CRI log lines longer than this are split into partial entries")
	readyFD := fs.Int("ready-fd", -1, `descriptor that receives "ok" (or the error) once the socket is served`)
	debug := fs.Bool("debug", false, "log debug messages")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "crid-monitor: unexpected argument %q\n", fs.Arg(0))
		os.Exit(2)
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	var ready *os.File
	if *readyFD >= 0 {
		ready = os.NewFile(uintptr(*readyFD), "ready")
		syscall.CloseOnExec(*readyFD)
	}
	// The monitor pins no directory: containers' bundles resolve against
	// absolute paths only.
	if err := os.Chdir("/"); err != nil {
		log.Error("chdir /", "err", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	survivePipeAndHangup()
	cfg := monitor.Config{RunDir: *runDir, StateDir: *stateDir, MaxLogLine: *maxLine, Log: log}
	if exe, err := os.Executable(); err == nil {
		cfg.HolderBinary = exe
	} else {
		log.Warn("Cannot find our own binary; running without a stdio holder", "err", err)
	}
	var err error
	if ready != nil {
		err = monitor.Run(ctx, cfg, ready)
	} else {
		err = monitor.Run(ctx, cfg, nil)
	}
	if err != nil {
		log.Error("crid-monitor failed", "err", err)
		os.Exit(1)
	}
}

// hold runs the stdio holder (package oci/holder), which the monitor starts
// as "crid-monitor hold": it keeps containers' output pipes and watches
// their inits while neither the monitor nor the daemon lives.
func hold(args []string) int {
	fs := flag.NewFlagSet("crid-monitor hold", flag.ContinueOnError)
	runDir := fs.String("run-dir", "/run/crid/monitor", "the monitor's run dir: the holder's socket, lock and log (absolute)")
	stateDir := fs.String("state-dir", "/var/lib/crid/monitor", "per-container records, where seen exits are written (absolute)")
	readyFD := fs.Int("ready-fd", -1, `descriptor that receives "ok" (or the error) once the socket is served`)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "crid-monitor hold: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "holder")
	if err := os.Chdir("/"); err != nil {
		log.Error("chdir /", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	survivePipeAndHangup()
	cfg := holder.Config{RunDir: *runDir, StateDir: *stateDir, Log: log}
	var err error
	if *readyFD >= 0 {
		ready := os.NewFile(uintptr(*readyFD), "ready")
		syscall.CloseOnExec(*readyFD)
		err = holder.Run(ctx, cfg, ready)
	} else {
		err = holder.Run(ctx, cfg, nil)
	}
	if err != nil {
		log.Error("crid-monitor hold failed", "err", err)
		return 1
	}
	return 0
}

// survivePipeAndHangup keeps a lost terminal or a closed pipe from killing
// the process. The signals are caught, never ignored: an ignored signal
// stays ignored across exec, so every container (libcontainer's init is our
// child) would start with SIGHUP and SIGPIPE ignored, unlike under any
// other runtime; a caught one is reset to its default by exec. The channel
// is never read: further signals are dropped once it holds one.
func survivePipeAndHangup() {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP, syscall.SIGPIPE)
}
