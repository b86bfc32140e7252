// Package config owns crid's configuration: the TOML schema, its defaults,
// validation, and the rendering of the default file. Every option lives here
// once, with its documentation in the `doc` tag, so `crid config --default`
// can never drift from what the daemon accepts.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where crid looks for its configuration file.
const DefaultPath = "/etc/crid/crid.toml"

// DefaultRegistriesConf is crid's own registries.conf; unlike a file named
// elsewhere, it may be absent: no mirrors, no blocks.
const DefaultRegistriesConf = "/etc/crid/registries.conf"

// Config is the whole effective configuration of a crid daemon.
type Config struct {
	Socket          string   `toml:"socket" json:"socket" doc:"unix socket serving the CRI (created mode 0660, root-owned)"`
	RootDir         string   `toml:"root_dir" json:"root_dir" doc:"persistent state: records, image store, container layers"`
	RunDir          string   `toml:"run_dir" json:"run_dir" doc:"runtime state that must not outlive a boot: namespace pins, mounts, the monitor socket"`
	ShutdownTimeout Duration `toml:"shutdown_timeout" json:"shutdown_timeout" doc:"how long in-flight RPCs may run after SIGTERM before they are cut off"`
	Image           Image    `toml:"image" json:"image"`
	Network         Network  `toml:"network" json:"network"`
	Runtime         Runtime  `toml:"runtime" json:"runtime"`
	Stream          Stream   `toml:"stream" json:"stream"`
	Metrics         Metrics  `toml:"metrics" json:"metrics"`
	Stats           Stats    `toml:"stats" json:"stats"`
	NRI             NRI      `toml:"nri" json:"nri"`
}

// Stats configures how the stats lists (ListContainerStats,
// ListPodSandboxStats, ListPodSandboxMetrics and their Stream* forms) are
// sampled. Sampling every cgroup, writable layer and pod network on each
// list costs over a second at 1,000 pods; kubelet asks every few seconds.
// So the lists answer from samples that a background pass retakes once
// they are a period old, for as long as someone keeps asking (containerd
// collects its snapshot usage every 10 s the same way). The single
// ContainerStats and PodSandboxStats always sample anew.
type Stats struct {
	Period Duration `toml:"period" json:"period" doc:"how old a sample in the stats lists may grow before the background pass retakes it (it may be up to a quarter more, plus the pass itself); 0 samples on every call, as the single stats RPCs do"`
}

// Metrics configures the Prometheus endpoint. It is off unless an address
// is given: an operator opts in to one more listening port.
type Metrics struct {
	Address string `toml:"address" json:"address" doc:"host:port serving Prometheus metrics on GET /metrics; empty (the default) serves none. The metrics are counts and timings, naming no pod or container; keep it on loopback unless a scraper on another host needs it"`
}

// NRI configures the Node Resource Interface (github.com/containerd/nri):
// plugins that connect to crid's NRI socket, or that crid starts from
// plugin_path, see every pod and container as it is run, created, started,
// updated, stopped and removed, and may adjust containers before they are
// created. Enabled by default, as in containerd 2: node agents that rely on
// NRI then work without reconfiguring the runtime, and with no plugin
// connected it costs one listening socket.
type NRI struct {
	Enable                    bool     `toml:"enable" json:"enable" doc:"serve NRI plugins; false turns NRI off entirely (no socket, no plugins started)"`
	SocketPath                string   `toml:"socket_path" json:"socket_path" doc:"unix socket external NRI plugins connect to; a socket some other live process serves there stops crid at start rather than being taken over"`
	PluginPath                string   `toml:"plugin_path" json:"plugin_path" doc:"directory of pre-installed NRI plugins, started by crid at start (executables named like 10-name)"`
	PluginConfigPath          string   `toml:"plugin_config_path" json:"plugin_config_path" doc:"directory of configuration files for the pre-installed plugins (10-name.conf or name.conf)"`
	PluginRegistrationTimeout Duration `toml:"plugin_registration_timeout" json:"plugin_registration_timeout" doc:"a plugin that does not register within this time after connecting is dropped"`
	PluginRequestTimeout      Duration `toml:"plugin_request_timeout" json:"plugin_request_timeout" doc:"how long a plugin may take to answer one event; a plugin that times out is dropped and the call goes on without it, unless the plugin's own failure policy asks to fail the call"`
	CDISpecDirs               []string `toml:"cdi_spec_dirs" json:"cdi_spec_dirs" doc:"directories of CDI specs, in rising priority, that resolve the CDI devices (vendor.com/class=name) a plugin adds to a container"`
}

// Stream configures the streaming server behind Exec, Attach and
// PortForward: kubelet (or crictl) fetches a URL from those RPCs and
// connects to it. The URL carries a single-use token valid for a minute.
type Stream struct {
	Address     string   `toml:"address" json:"address" doc:"host:port the streaming server listens on; port 0 picks a free one. Keep it on loopback unless kubelet's proxy cannot reach it: the URLs are the only credential"`
	IdleTimeout Duration `toml:"idle_timeout" json:"idle_timeout" doc:"a stream with no traffic for this long is closed"`
}

// Image configures image pulls and the image store.
type Image struct {
	Root                     string   `toml:"root" json:"root" doc:"the image store (unpacked layers, config blobs, pull scratch space); may sit on another filesystem than root_dir, which keeps the containers' writable layers (KEP-4191 split image filesystem: ImageFsInfo then reports the two filesystems apart). Empty means <root_dir>/images"`
	RegistriesConf           string   `toml:"registries_conf" json:"registries_conf" doc:"crid's containers-registries.conf(5) file (and its .d directory): mirrors, blocked and insecure registries. At the default path it may be absent; any other path must exist. Empty: crid has no file of its own. Registries on loopback addresses are reached over plain HTTP without any of it"`
	ContainersRegistriesConf string   `toml:"containers_registries_conf" json:"containers_registries_conf" doc:"the containers-wide registries.conf (and its .d directory), used when neither crid's file nor its .d directory exists, as CRI-O and podman do; may be absent; empty: never"`
	SandboxImage             string   `toml:"sandbox_image" json:"sandbox_image" doc:"image of the pod infra (pause) process, pulled on first use and pinned in the store; empty: crid's built-in infra (crid-pause from a read-only rootfs crid makes: no image, no registry)"`
	PullProgressTimeout      Duration `toml:"pull_progress_timeout" json:"pull_progress_timeout" doc:"a pull that receives no bytes for this long fails"`
	ImportDir                string   `toml:"import_dir" json:"import_dir" doc:"image archives (docker-archive, oci-archive; plain, gzip or zstd) put here are imported when crid starts and when written or moved in, each file once (a bad one is logged and skipped until it changes); write elsewhere or to a dot-file and rename into place. Empty means <root_dir>/import"`
	// Bounds on one pull, so a crafted or broken image cannot exhaust the
	// node's connections, CPU, disk or inodes.
	MaxConcurrentDownloads      int   `toml:"max_concurrent_downloads" json:"max_concurrent_downloads" doc:"layers one pull downloads and unpacks at a time (as containerd's option of that name)"`
	MaxConcurrentDownloadsTotal int   `toml:"max_concurrent_downloads_total" json:"max_concurrent_downloads_total" doc:"layers all pulls together download and unpack at a time"`
	MaxLayers                   int   `toml:"max_layers" json:"max_layers" doc:"a manifest with more layers is refused (InvalidArgument) before anything is fetched (overlayfs stacks at most 500 lower dirs)"`
	MaxLayerBytes               int64 `toml:"max_layer_bytes" json:"max_layer_bytes" doc:"a layer whose uncompressed tar, or the file content it unpacks to, exceeds this many bytes fails the pull (ResourceExhausted)"`
	MaxLayerFiles               int64 `toml:"max_layer_files" json:"max_layer_files" doc:"a layer with more entries (files, dirs, links...) fails the pull (ResourceExhausted)"`
}

// Network configures pod networking through CNI.
type Network struct {
	CNIConfDir string   `toml:"cni_conf_dir" json:"cni_conf_dir" doc:"directory of CNI network configurations; the first one in lexical order is used"`
	CNIBinDirs []string `toml:"cni_bin_dirs" json:"cni_bin_dirs" doc:"directories searched for CNI plugin binaries"`
}

// Runtime configures how pods and containers are run.
type Runtime struct {
	CgroupDriver string `toml:"cgroup_driver" json:"cgroup_driver" doc:"cgroup manager: \"cgroupfs\" or \"systemd\" (must match kubelet's cgroupDriver)"`
	CgroupParent string `toml:"cgroup_parent" json:"cgroup_parent" doc:"cgroup of pods whose request names none: an absolute path for cgroupfs, a slice name for systemd; empty means \"/crid\" with cgroupfs and \"crid.slice\" with systemd"`
	Infra        string `toml:"infra" json:"infra" doc:"pause process per pod: \"when-needed\" (pods sharing one PID namespace) or \"always\""`
	PodShmSize   int64  `toml:"pod_shm_size" json:"pod_shm_size" doc:"size in bytes of each pod's /dev/shm tmpfs"`
	MonitorPath  string `toml:"monitor_path" json:"monitor_path" doc:"the crid-monitor binary; empty means crid-monitor beside the crid binary"`
	PausePath    string `toml:"pause_path" json:"pause_path" doc:"the crid-pause binary of the built-in infra (image.sandbox_image empty); empty means crid-pause beside the crid binary"`
	// DefaultHandler and Handlers are what a RuntimeClass's handler names.
	DefaultHandler string             `toml:"default_handler" json:"default_handler" doc:"the runtime handler of pods that name none (kubelet sends none without a RuntimeClass); one of runtime.handlers"`
	Handlers       map[string]Handler `toml:"handlers" json:"handlers" doc:"runtime handlers, one table each ([runtime.handlers.NAME]): what a RuntimeClass's handler field names; all run containers through runc's libcontainer, with the options of their table"`
}

// Handler is one runtime handler. Every handler runs containers through
// runc's libcontainer; a handler's table holds what differs for its pods.
type Handler struct {
	Infra string `toml:"infra" json:"infra" doc:"pause process for this handler's pods: \"when-needed\", \"always\", or empty for runtime.infra"`
}

// DefaultHandlerName is the handler crid always has unless configured
// otherwise: runc through libcontainer, with the global options.
const DefaultHandlerName = "runc"

// Default returns the configuration used when neither file nor flags say otherwise.
func Default() Config {
	return Config{
		Socket:          "/run/crid/crid.sock",
		RootDir:         "/var/lib/crid",
		RunDir:          "/run/crid",
		ShutdownTimeout: Duration(10 * time.Second),
		Image: Image{
			RegistriesConf:           DefaultRegistriesConf,
			ContainersRegistriesConf: "/etc/containers/registries.conf",
			SandboxImage:             "",
			PullProgressTimeout:      Duration(5 * time.Minute),

			MaxConcurrentDownloads:      3,
			MaxConcurrentDownloadsTotal: 12,
			MaxLayers:                   500,
			MaxLayerBytes:               32 << 30,
			MaxLayerFiles:               1_000_000,
		},
		Network: Network{
			CNIConfDir: "/etc/cni/net.d",
			CNIBinDirs: []string{"/opt/cni/bin"},
		},
		Runtime: Runtime{
			CgroupDriver:   "cgroupfs",
			CgroupParent:   "",
			Infra:          "when-needed",
			PodShmSize:     64 << 20,
			DefaultHandler: DefaultHandlerName,
			Handlers:       map[string]Handler{DefaultHandlerName: {}},
		},
		Stream: Stream{
			Address:     "127.0.0.1:0",
			IdleTimeout: Duration(4 * time.Hour),
		},
		Stats: Stats{Period: Duration(10 * time.Second)},
		NRI: NRI{
			Enable:                    true,
			SocketPath:                "/var/run/nri/nri.sock",
			PluginPath:                "/opt/nri/plugins",
			PluginConfigPath:          "/etc/nri/conf.d",
			PluginRegistrationTimeout: Duration(5 * time.Second),
			PluginRequestTimeout:      Duration(2 * time.Second),
			CDISpecDirs:               []string{"/etc/cdi", "/var/run/cdi"},
		},
	}
}

// Load reads the TOML file at path over the defaults. A missing file means
// defaults when missingOK is set (the default path); an explicitly named file
// must exist. Unknown keys are errors, so a typo never silently falls back to
// a default.
func Load(path string, missingOK bool) (Config, error) {
	cfg := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		if missingOK && errors.Is(err, os.ErrNotExist) {
			return cfg, nil
		}
		return cfg, fmt.Errorf("read config: %w", err)
	}
	md, err := toml.Decode(string(data), &cfg)
	if err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		return cfg, fmt.Errorf("config %s: unknown key %q", path, undecoded[0].String())
	}
	return cfg, nil
}

// Default pod cgroup parents, per driver, for an empty runtime.cgroup_parent.
const (
	DefaultCgroupfsParent = "/crid"
	DefaultSystemdParent  = "crid.slice"
)

// Validate checks every option and names the first bad key. It also fills
// in what depends on other options: an empty runtime.cgroup_parent becomes
// the driver's default.
func (c *Config) Validate() error {
	paths := []struct{ key, val string }{
		{"socket", c.Socket},
		{"root_dir", c.RootDir},
		{"run_dir", c.RunDir},
		{"network.cni_conf_dir", c.Network.CNIConfDir},
	}
	for _, p := range paths {
		if err := absPath(p.key, p.val); err != nil {
			return err
		}
	}
	// A registries file named on purpose must be there: a typo in its path
	// would otherwise silently drop every mirror and block it holds.
	for _, p := range []struct {
		key, val  string
		missingOK bool
	}{
		{"image.registries_conf", c.Image.RegistriesConf, c.Image.RegistriesConf == DefaultRegistriesConf},
		{"image.containers_registries_conf", c.Image.ContainersRegistriesConf, true},
	} {
		if p.val == "" {
			continue
		}
		if err := absPath(p.key, p.val); err != nil {
			return err
		}
		if _, err := os.Stat(p.val); err != nil && !(p.missingOK && errors.Is(err, os.ErrNotExist)) {
			return fmt.Errorf("config: %s: %w", p.key, err)
		}
	}
	for i, d := range c.Network.CNIBinDirs {
		if err := absPath(fmt.Sprintf("network.cni_bin_dirs[%d]", i), d); err != nil {
			return err
		}
	}
	if len(c.Network.CNIBinDirs) == 0 {
		return errors.New("config: network.cni_bin_dirs: at least one directory is required")
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("config: shutdown_timeout: must be positive, got %s", c.ShutdownTimeout)
	}
	if c.Image.PullProgressTimeout <= 0 {
		return fmt.Errorf("config: image.pull_progress_timeout: must be positive, got %s", c.Image.PullProgressTimeout)
	}
	if c.Image.Root == "" {
		c.Image.Root = filepath.Join(c.RootDir, "images")
	}
	if err := absPath("image.root", c.Image.Root); err != nil {
		return err
	}
	if c.Image.ImportDir == "" {
		c.Image.ImportDir = filepath.Join(c.RootDir, "import")
	}
	if err := absPath("image.import_dir", c.Image.ImportDir); err != nil {
		return err
	}
	for _, l := range []struct {
		key string
		val int64
	}{
		{"image.max_concurrent_downloads", int64(c.Image.MaxConcurrentDownloads)},
		{"image.max_concurrent_downloads_total", int64(c.Image.MaxConcurrentDownloadsTotal)},
		{"image.max_layers", int64(c.Image.MaxLayers)},
		{"image.max_layer_bytes", c.Image.MaxLayerBytes},
		{"image.max_layer_files", c.Image.MaxLayerFiles},
	} {
		if l.val <= 0 {
			return fmt.Errorf("config: %s: must be positive, got %d", l.key, l.val)
		}
	}
	// The store's paths go into overlay mount options, which cannot carry
	// these characters.
	for _, p := range []struct{ key, val string }{{"root_dir", c.RootDir}, {"image.root", c.Image.Root}} {
		if i := strings.IndexAny(p.val, ",:\\"); i >= 0 {
			return fmt.Errorf("config: %s: %q holds %q, which overlay mount options cannot carry", p.key, p.val, p.val[i])
		}
	}
	switch c.Runtime.CgroupDriver {
	case "cgroupfs":
		if c.Runtime.CgroupParent == "" {
			c.Runtime.CgroupParent = DefaultCgroupfsParent
		}
		if err := absPath("runtime.cgroup_parent", c.Runtime.CgroupParent); err != nil {
			return err
		}
	case "systemd":
		if c.Runtime.CgroupParent == "" {
			c.Runtime.CgroupParent = DefaultSystemdParent
		}
		if !validSliceName(c.Runtime.CgroupParent) {
			return fmt.Errorf("config: runtime.cgroup_parent: %q is not a systemd slice name (the systemd driver needs one, like \"crid.slice\"; \"-\" separates nesting levels, none may be empty)", c.Runtime.CgroupParent)
		}
	default:
		return fmt.Errorf("config: runtime.cgroup_driver: %q is not one of \"cgroupfs\", \"systemd\"", c.Runtime.CgroupDriver)
	}
	switch c.Runtime.Infra {
	case "when-needed", "always":
	default:
		return fmt.Errorf("config: runtime.infra: %q is not one of \"when-needed\", \"always\"", c.Runtime.Infra)
	}
	for _, p := range []struct{ key, val string }{
		{"runtime.monitor_path", c.Runtime.MonitorPath},
		{"runtime.pause_path", c.Runtime.PausePath},
	} {
		if p.val == "" {
			continue
		}
		if err := absPath(p.key, p.val); err != nil {
			return err
		}
	}
	if err := c.Runtime.validateHandlers(); err != nil {
		return err
	}
	if c.Runtime.PodShmSize < 4096 {
		return fmt.Errorf("config: runtime.pod_shm_size: %d is below one page", c.Runtime.PodShmSize)
	}
	if _, port, err := net.SplitHostPort(c.Stream.Address); err != nil {
		return fmt.Errorf("config: stream.address: %q is not host:port: %w", c.Stream.Address, err)
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("config: stream.address: port %q of %q is not a number from 0 to 65535", port, c.Stream.Address)
	}
	if c.Metrics.Address != "" {
		if _, port, err := net.SplitHostPort(c.Metrics.Address); err != nil {
			return fmt.Errorf("config: metrics.address: %q is not host:port: %w", c.Metrics.Address, err)
		} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return fmt.Errorf("config: metrics.address: port %q of %q is not a number from 0 to 65535", port, c.Metrics.Address)
		}
	}
	if c.Stats.Period < 0 {
		return fmt.Errorf("config: stats.period: must not be negative, got %s", c.Stats.Period)
	}
	if c.Stream.IdleTimeout <= 0 {
		return fmt.Errorf("config: stream.idle_timeout: must be positive, got %s", c.Stream.IdleTimeout)
	}
	return c.NRI.validate()
}

// validate checks the [nri] table; its paths matter only when NRI is on.
func (n *NRI) validate() error {
	if !n.Enable {
		return nil
	}
	for _, p := range []struct{ key, val string }{
		{"nri.socket_path", n.SocketPath},
		{"nri.plugin_path", n.PluginPath},
		{"nri.plugin_config_path", n.PluginConfigPath},
	} {
		if err := absPath(p.key, p.val); err != nil {
			return err
		}
	}
	for i, d := range n.CDISpecDirs {
		if err := absPath(fmt.Sprintf("nri.cdi_spec_dirs[%d]", i), d); err != nil {
			return err
		}
	}
	// sun_path holds 108 bytes with the terminating NUL.
	if len(n.SocketPath) > 107 {
		return fmt.Errorf("config: nri.socket_path: %q is longer than a unix socket path may be (107 bytes)", n.SocketPath)
	}
	if n.PluginRegistrationTimeout <= 0 {
		return fmt.Errorf("config: nri.plugin_registration_timeout: must be positive, got %s", n.PluginRegistrationTimeout)
	}
	if n.PluginRequestTimeout <= 0 {
		return fmt.Errorf("config: nri.plugin_request_timeout: must be positive, got %s", n.PluginRequestTimeout)
	}
	return nil
}

// validateHandlers checks the handler names (a RuntimeClass's handler is
// a DNS label), their options and the default.
func (r *Runtime) validateHandlers() error {
	if len(r.Handlers) == 0 {
		return errors.New("config: runtime.handlers: at least one handler is required")
	}
	for name, h := range r.Handlers {
		if !validHandlerName(name) {
			return fmt.Errorf("config: runtime.handlers: %q is not a handler name (a lowercase DNS label of at most 63 characters, as a RuntimeClass's handler)", name)
		}
		switch h.Infra {
		case "", "when-needed", "always":
		default:
			return fmt.Errorf("config: runtime.handlers.%s.infra: %q is not one of \"when-needed\", \"always\" or empty", name, h.Infra)
		}
	}
	if _, ok := r.Handlers[r.DefaultHandler]; !ok {
		return fmt.Errorf("config: runtime.default_handler: %q is not one of runtime.handlers (%s)", r.DefaultHandler, strings.Join(r.HandlerNames(), ", "))
	}
	return nil
}

// HandlerNames lists the configured handlers in order.
func (r *Runtime) HandlerNames() []string {
	names := make([]string, 0, len(r.Handlers))
	for n := range r.Handlers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// HandlerInfra is the infra mode of a handler's pods.
func (r *Runtime) HandlerInfra(name string) string {
	if h, ok := r.Handlers[name]; ok && h.Infra != "" {
		return h.Infra
	}
	return r.Infra
}

// validHandlerName is an RFC 1123 label: what the API server accepts in a
// RuntimeClass's handler.
func validHandlerName(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validSliceName follows systemd's rules for slice unit names: "a-b.slice"
// nests in "a.slice", so no "-"-separated component may be empty.
func validSliceName(s string) bool {
	name, ok := strings.CutSuffix(s, ".slice")
	if !ok || name == "" || strings.ContainsAny(name, "/:") {
		return false
	}
	for c := range strings.SplitSeq(name, "-") {
		if c == "" {
			return false
		}
	}
	return true
}

func absPath(key, val string) error {
	if val == "" {
		return fmt.Errorf("config: %s: must not be empty", key)
	}
	if !filepath.IsAbs(val) {
		return fmt.Errorf("config: %s: %q is not an absolute path", key, val)
	}
	return nil
}

// Duration is a time.Duration written as a Go duration string ("10s", "5m").
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: %w", b, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d Duration) String() string { return time.Duration(d).String() }

// Std returns the value as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }
