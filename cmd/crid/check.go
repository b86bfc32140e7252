package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/crid-dev/crid/hostcheck"
)

// checkCommand runs the host doctor with the daemon's own configuration
// (file and flags): one line per requirement, exit status 1 on any fail.
func checkCommand(args []string) int {
	fs, load := configFlags("crid check")
	kubeletConfig := fs.String("kubelet-config", "", "kubelet's configuration file (default: a running kubelet's --config, else "+"/var/lib/kubelet/config.yaml)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := load()
	if err != nil {
		fmt.Fprintf(os.Stderr, "crid check: %v\n", err)
		return 2
	}
	monitor, err := monitorBinary(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "crid check: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	h := hostcheck.New(cfg, monitor)
	if h.PausePath, err = besideCrid(cfg.Runtime.PausePath, "crid-pause"); err != nil {
		fmt.Fprintf(os.Stderr, "crid check: %v\n", err)
		return 2
	}
	h.KubeletConfig = *kubeletConfig
	results := h.Run(ctx)
	if err := hostcheck.Format(os.Stdout, results); err != nil {
		fmt.Fprintf(os.Stderr, "crid check: %v\n", err)
		return 2
	}
	if hostcheck.Failed(results) {
		return 1
	}
	return 0
}
