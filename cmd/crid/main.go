// Command crid is the crid daemon: a Kubernetes container runtime serving
// the CRI over a unix socket. `crid` runs the daemon; `crid check` checks
// the host for what the daemon needs; `crid images import|export` loads
// archives into and writes them from the running daemon's store; `crid config --default` prints every
// option with its default; `crid --version` prints what crid was built from.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/config"
)

// version and gitCommit are set at build time with
// -ldflags "-X main.version=… -X main.gitCommit=…".
var version, gitCommit = "", ""

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "config":
			return configCommand(args[1:])
		case "check":
			return checkCommand(args[1:])
		case "images":
			return imagesCommand(args[1:])
		case "version":
			return versionCommand()
		}
	}
	fs, load := configFlags("crid")
	showVersion := fs.Bool("version", false, "print the version of crid and of the libraries it was built with, and exit")
	pprofSocket := fs.String("debug-pprof-socket", "", "debug: serve Go's CPU, heap, mutex and block profiles on this unix socket (off when empty)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		return versionCommand()
	}
	cfg, err := load()
	if err != nil {
		fmt.Fprintf(os.Stderr, "crid: %v\n", err)
		return 2
	}
	defer klog.Flush()
	if *pprofSocket != "" {
		stop, err := startPprof(*pprofSocket)
		if err != nil {
			klog.ErrorS(err, "crid failed")
			return 1
		}
		defer stop()
	}
	if err := serve(cfg); err != nil {
		klog.ErrorS(err, "crid failed")
		return 1
	}
	return 0
}

func configCommand(args []string) int {
	fs := flag.NewFlagSet("crid config", flag.ContinueOnError)
	def := fs.Bool("default", false, "print the default configuration, every option with a comment")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if !*def {
		fmt.Fprintln(os.Stderr, "usage: crid config --default")
		return 2
	}
	out, err := config.Render(config.Default())
	if err != nil {
		fmt.Fprintf(os.Stderr, "crid: %v\n", err)
		return 1
	}
	os.Stdout.Write(out)
	return 0
}

// configFlags returns the daemon's flags and a loader to call after Parse:
// it reads the config file and lays the flags that were given over it
// (flags left unset never override the file), then validates. The daemon
// and `crid check` share it, so the check sees what the daemon would.
func configFlags(name string) (*flag.FlagSet, func() (config.Config, error)) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	klog.InitFlags(fs)
	d := config.Default()
	path := fs.String("config", config.DefaultPath, "configuration file (TOML); see `crid config --default`")
	socket := fs.String("socket", d.Socket, "CRI unix socket")
	rootDir := fs.String("root-dir", d.RootDir, "persistent state directory")
	runDir := fs.String("run-dir", d.RunDir, "runtime state directory")
	registries := fs.String("registries-conf", d.Image.RegistriesConf, "crid's containers-registries.conf file (may be absent at the default path; empty: none)")
	containersRegistries := fs.String("containers-registries-conf", d.Image.ContainersRegistriesConf, "containers-wide registries.conf, used when crid's own is absent (empty: never)")
	sandboxImage := fs.String("sandbox-image", d.Image.SandboxImage, "pod infra (pause) image")
	cniConf := fs.String("cni-conf-dir", d.Network.CNIConfDir, "CNI network config directory")
	cniBin := fs.String("cni-bin-dirs", strings.Join(d.Network.CNIBinDirs, ","), "comma-separated CNI plugin directories")
	cgroupDriver := fs.String("cgroup-driver", d.Runtime.CgroupDriver, `cgroup driver: "cgroupfs" or "systemd"`)
	cgroupParent := fs.String("cgroup-parent", d.Runtime.CgroupParent, `cgroup of pods that name none: a path (cgroupfs) or a slice (systemd); empty: the driver's default`)
	streamAddr := fs.String("stream-address", d.Stream.Address, "host:port of the exec/attach/port-forward streaming server (port 0: any free port)")
	metricsAddr := fs.String("metrics-address", d.Metrics.Address, "host:port serving Prometheus metrics on /metrics; empty: none")
	nriSocket := fs.String("nri-socket", d.NRI.SocketPath, "unix socket NRI plugins connect to")
	shutdown := fs.Duration("shutdown-timeout", d.ShutdownTimeout.Std(), "bound on in-flight RPCs at shutdown")
	return fs, func() (config.Config, error) {
		if fs.NArg() > 0 {
			return d, fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		cfg, err := config.Load(*path, !set["config"])
		if err != nil {
			return cfg, err
		}
		overrides := []struct {
			flag string
			dst  *string
			val  string
		}{
			{"socket", &cfg.Socket, *socket},
			{"stream-address", &cfg.Stream.Address, *streamAddr},
			{"metrics-address", &cfg.Metrics.Address, *metricsAddr},
			{"root-dir", &cfg.RootDir, *rootDir},
			{"run-dir", &cfg.RunDir, *runDir},
			{"registries-conf", &cfg.Image.RegistriesConf, *registries},
			{"containers-registries-conf", &cfg.Image.ContainersRegistriesConf, *containersRegistries},
			{"sandbox-image", &cfg.Image.SandboxImage, *sandboxImage},
			{"cni-conf-dir", &cfg.Network.CNIConfDir, *cniConf},
			{"cgroup-driver", &cfg.Runtime.CgroupDriver, *cgroupDriver},
			{"cgroup-parent", &cfg.Runtime.CgroupParent, *cgroupParent},
			{"nri-socket", &cfg.NRI.SocketPath, *nriSocket},
		}
		for _, o := range overrides {
			if set[o.flag] {
				*o.dst = o.val
			}
		}
		if set["cni-bin-dirs"] {
			cfg.Network.CNIBinDirs = strings.Split(*cniBin, ",")
		}
		if set["shutdown-timeout"] {
			cfg.ShutdownTimeout = config.Duration(*shutdown)
		}
		return cfg, cfg.Validate()
	}
}
