package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/admin"
	"github.com/crid-dev/crid/cgroupmgr"
	"github.com/crid-dev/crid/cni"
	"github.com/crid-dev/crid/config"
	"github.com/crid-dev/crid/cri"
	"github.com/crid-dev/crid/events"
	"github.com/crid-dev/crid/failpoint"
	"github.com/crid-dev/crid/hostcheck"
	"github.com/crid-dev/crid/imageservice"
	"github.com/crid-dev/crid/importdir"
	"github.com/crid-dev/crid/metrics"
	"github.com/crid-dev/crid/nri"
	"github.com/crid-dev/crid/oci"
	"github.com/crid-dev/crid/podsandbox"
	"github.com/crid-dev/crid/records"
)

// serve runs the daemon until SIGTERM or SIGINT. Shutdown stops accepting,
// lets in-flight RPCs finish within the configured bound and closes the
// records; it never touches pods or containers, which outlive the daemon.
func serve(cfg config.Config) error {
	ensureSbinPath()
	cgroups, err := cgroupmgr.New(cfg.Runtime.CgroupDriver)
	if err != nil {
		return fmt.Errorf("config: runtime.cgroup_driver: %w", err)
	}
	for _, dir := range []string{cfg.RootDir, cfg.RunDir} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	lock, err := lockRootDir(cfg.RootDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	plugins := nri.New(cfg.NRI, cri.Name, buildVersion())
	if err := plugins.CheckSocket(); err != nil {
		return err
	}

	store, err := records.Open(filepath.Join(cfg.RootDir, "records"))
	if err != nil {
		return err
	}
	defer store.Close()

	images, err := imageservice.New(imageservice.Options{
		Root:                     cfg.Image.Root,
		RootfsDir:                filepath.Join(cfg.RootDir, "rootfs"),
		Records:                  store,
		RegistriesConf:           cfg.Image.RegistriesConf,
		ContainersRegistriesConf: cfg.Image.ContainersRegistriesConf,
		SandboxImage:             cfg.Image.SandboxImage,
		ProgressTimeout:          cfg.Image.PullProgressTimeout.Std(),
		UserAgent:                "crid/" + buildVersion(),
		Limits: imageservice.Limits{
			FetchesPerPull: cfg.Image.MaxConcurrentDownloads,
			FetchesTotal:   cfg.Image.MaxConcurrentDownloadsTotal,
			MaxLayers:      cfg.Image.MaxLayers,
			MaxLayerBytes:  cfg.Image.MaxLayerBytes,
			MaxLayerFiles:  cfg.Image.MaxLayerFiles,
		},
	})
	if err != nil {
		return err
	}

	monitorPath, err := monitorBinary(cfg)
	if err != nil {
		return err
	}
	containers, err := oci.New(context.Background(), oci.Options{
		MonitorBinary: monitorPath,
		RunDir:        filepath.Join(cfg.RunDir, "monitor"),
		StateDir:      filepath.Join(cfg.RunDir, "containers"),
	})
	if err != nil {
		return fmt.Errorf("container monitor: %w", err)
	}
	// The monitor and the containers outlive the daemon: Close only drops
	// the connection.
	defer containers.Close()

	// Pod and container lifecycle events, for GetContainerEvents.
	bus := events.NewBroadcaster()
	ctrs, err := oci.NewContainers(context.Background(), containers, store, images, bus)
	if err != nil {
		return err
	}
	defer ctrs.Close() // ends the exit watcher before the monitor connection
	// The built-in infra's rootfs, when no sandbox image is configured:
	// made before the first pod may need it.
	var builtinRootfs string
	if cfg.Image.SandboxImage == "" {
		pause, err := besideCrid(cfg.Runtime.PausePath, "crid-pause")
		if err != nil {
			return err
		}
		if builtinRootfs, err = podsandbox.PrepareBuiltinRootfs(filepath.Join(cfg.RootDir, "infra"), pause); err != nil {
			return fmt.Errorf("config: image.sandbox_image is empty (the built-in infra): %w", err)
		}
	}

	// Checked once: pods with hostUsers: false need it (KEP-127). The
	// root dir and the rootfs dir are made passable (never listable) for
	// containers whose root is not the node's.
	for _, d := range []string{cfg.RootDir, filepath.Join(cfg.RootDir, "rootfs")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return err
		}
	}
	usernsErr := hostcheck.UsernsSupport(filepath.Join(cfg.RootDir, "rootfs"))
	if usernsErr != nil {
		klog.InfoS("Pods in user namespaces of their own are not supported on this node", "reason", usernsErr.Error())
	}
	usernsReason := ""
	if usernsErr != nil {
		usernsReason = usernsErr.Error()
	}
	// Before 6.3 a tmpfs (the pods' /dev/shm and files in run_dir) cannot
	// be idmapped: user-namespaced pods get them owned by their mapped
	// root instead. Tests arm the point to take that path on any kernel.
	noIdmapTmpfs := false
	if usernsErr == nil {
		idmapErr := failpoint.Inject("userns.idmap-tmpfs")
		if idmapErr == nil {
			idmapErr = hostcheck.IdmapTmpfs()
		}
		if idmapErr != nil {
			noIdmapTmpfs = true
			klog.InfoS("A tmpfs cannot be idmapped: user-namespaced pods' /dev/shm and files are owned by their mapped root", "reason", idmapErr.Error())
		}
	}

	network := cni.New(cfg.Network.CNIConfDir, cfg.Network.CNIBinDirs, filepath.Join(cfg.RootDir, "cni"))
	sandboxes, err := podsandbox.New(context.Background(), podsandbox.Options{
		RunDir:              filepath.Join(cfg.RunDir, "sandboxes"),
		Records:             store,
		CNI:                 network,
		Cgroups:             cgroups,
		DefaultCgroupParent: cfg.Runtime.CgroupParent,
		ShmSize:             cfg.Runtime.PodShmSize,
		Handlers:            sandboxHandlers(cfg.Runtime),
		Containers:          ctrs,
		Events:              bus,
		Infra: &podsandbox.PauseRunner{
			Runtime: containers,
			Images:  images,
			Cgroups: cgroups,
			Image:   cfg.Image.SandboxImage,
			// Empty when an image is configured.
			BuiltinRootfs: builtinRootfs,
		},
		UserNamespaces: usernsErr == nil,
		// KEP-5607: wherever pods may have user namespaces, they may on the
		// node's network too (the node's /sys bound in place of a sysfs).
		UserNamespacesHostNetwork: usernsErr == nil,
		UserNamespacesReason:      usernsReason,
		NoIdmapTmpfs:              noIdmapTmpfs,
	})
	if err != nil {
		return err
	}
	defer sandboxes.Close() // ends the infra watches; pods keep running
	// The rootfs (and image volumes) of a container or infra a crash kept
	// from its record would keep their layers and images in use for ever.
	if err := images.RemoveOrphanRootfs(func(id string) bool {
		_, err := ctrs.Get(context.Background(), id)
		if !errors.Is(err, oci.ErrNotFound) {
			return true
		}
		_, err = sandboxes.Get(id)
		return !errors.Is(err, podsandbox.ErrNotFound)
	}); err != nil {
		klog.ErrorS(err, "Removing the rootfs of containers and pods that were never created")
	}

	stopMetrics, err := serveMetrics(cfg.Metrics.Address, metrics.Sources{Pods: sandboxes.CountByState, Containers: ctrs.CountByState})
	if err != nil {
		return err
	}
	defer stopMetrics()

	streamL, err := net.Listen("tcp", cfg.Stream.Address)
	if err != nil {
		return fmt.Errorf("streaming server: listen on %s (stream.address): %w", cfg.Stream.Address, err)
	}
	srv, err := cri.New(cri.Options{
		Config:             cfg,
		Version:            buildVersion(),
		CNI:                network,
		Cgroups:            cgroups,
		Images:             images,
		Sandboxes:          sandboxes,
		Containers:         ctrs,
		Events:             bus,
		StreamListener:     streamL,
		NRI:                plugins,
		Register:           []func(grpc.ServiceRegistrar){admin.New(images).Register},
		UsernsSupport:      usernsErr,
		UsernsNoIdmapTmpfs: noIdmapTmpfs,
	})
	if err != nil {
		streamL.Close()
		return err
	}
	// NRI plugins connect (and the pre-installed ones start) before the
	// CRI serves, so none misses an event.
	if err := srv.StartNRI(); err != nil {
		streamL.Close()
		return err
	}
	defer srv.StopNRI()
	watcher, err := importdir.New(cfg.Image.ImportDir, images, store)
	if err != nil {
		streamL.Close()
		return err
	}
	l, err := listenSocket(cfg.Socket)
	if err != nil {
		return err
	}
	defer os.Remove(cfg.Socket)

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	// Archives in image.import_dir, imported while the daemon serves; the
	// watcher ends before the store closes.
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		if err := watcher.Run(watchCtx); err != nil {
			klog.ErrorS(err, "Import dir watcher stopped; archives added now are not imported until crid restarts", "dir", cfg.Image.ImportDir)
		}
	}()
	defer func() { stopWatch(); <-watchDone }()
	klog.InfoS("crid serving", "version", buildVersion(), "socket", cfg.Socket, "rootDir", cfg.RootDir,
		"runDir", cfg.RunDir, "streamAddress", srv.StreamAddress(), "metricsAddress", cfg.Metrics.Address,
		"cgroupDriver", cgroups.Driver(), "cgroupMode", cgroupmgr.Mode())
	printCrictlHint(os.Stderr, cfg.Socket)

	select {
	case err := <-served:
		return fmt.Errorf("serve %s: %w", cfg.Socket, err)
	case sig := <-signals:
		klog.InfoS("Shutting down", "signal", sig.String(), "timeout", cfg.ShutdownTimeout.Std())
	}
	bus.Close() // ends the GetContainerEvents streams
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(cfg.ShutdownTimeout.Std()):
		klog.InfoS("In-flight RPCs outlived the shutdown timeout; cancelling them")
		srv.Stop()
		<-stopped
	}
	if err := <-served; err != nil {
		klog.ErrorS(err, "Serve ended with an error")
	}
	klog.InfoS("crid stopped")
	return nil
}

// serveMetrics serves the Prometheus endpoint on addr until the returned
// stop is called; an empty addr serves nothing.
func serveMetrics(addr string, src metrics.Sources) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ms, err := metrics.Listen(addr, src)
	if err != nil {
		return nil, err
	}
	served := make(chan struct{})
	go func() { // ends at Shutdown
		defer close(served)
		if err := ms.Serve(); err != nil {
			klog.ErrorS(err, "Metrics endpoint stopped")
		}
	}()
	klog.InfoS("Serving metrics", "address", ms.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := ms.Shutdown(ctx); err != nil {
			klog.ErrorS(err, "Stopping the metrics endpoint")
		}
		<-served
	}, nil
}

// ensureSbinPath puts the sbin directories on PATH: CNI plugins exec
// iptables, and a daemon started from a user's shell may lack them.
func ensureSbinPath() {
	path := os.Getenv("PATH")
	for _, dir := range []string{"/usr/local/sbin", "/usr/sbin", "/sbin"} {
		if !slices.Contains(filepath.SplitList(path), dir) {
			path += string(os.PathListSeparator) + dir
		}
	}
	os.Setenv("PATH", path)
}

// monitorBinary is the configured crid-monitor, or the one beside crid.
func monitorBinary(cfg config.Config) (string, error) {
	return besideCrid(cfg.Runtime.MonitorPath, "crid-monitor")
}

// besideCrid is configured when set, else the binary named name in the
// directory of the running crid.
func besideCrid(configured, name string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find %s: %w", name, err)
	}
	return filepath.Join(filepath.Dir(self), name), nil
}

// printCrictlHint writes, once crid listens, the crictl command lines that
// talk to it, ready to paste: what a new user of `make run` needs next.
func printCrictlHint(w io.Writer, socket string) {
	ep := "unix://" + socket
	fmt.Fprintf(w, "crid is listening. Talk to it with:\n  crictl --runtime-endpoint %s --image-endpoint %s version\n  crictl --runtime-endpoint %s --image-endpoint %s info\n",
		ep, ep, ep, ep)
}

// sandboxHandlers maps the configured runtime handlers, and "" (what
// kubelet sends without a RuntimeClass) to the default one.
func sandboxHandlers(rt config.Runtime) map[string]podsandbox.Handler {
	hs := map[string]podsandbox.Handler{}
	for _, name := range rt.HandlerNames() {
		hs[name] = podsandbox.Handler{InfraAlways: rt.HandlerInfra(name) == "always"}
	}
	hs[""] = hs[rt.DefaultHandler]
	return hs
}
