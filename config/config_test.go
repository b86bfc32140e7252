package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "crid.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRenderedDefaultsRoundTrip(t *testing.T) {
	out, err := Render(Default())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(writeFile(t, string(out)), false)
	if err != nil {
		t.Fatalf("rendered defaults do not load: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Fatalf("round trip changed the config:\n got %+v\nwant %+v", cfg, Default())
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults are invalid: %v", err)
	}
	// Every leaf option is written out with a comment above it.
	for _, key := range []string{"socket", "root_dir", "run_dir", "shutdown_timeout", "registries_conf",
		"sandbox_image", "pull_progress_timeout", "max_concurrent_downloads", "max_concurrent_downloads_total",
		"max_layers", "max_layer_bytes", "max_layer_files", "cni_conf_dir", "cni_bin_dirs", "cgroup_driver", "cgroup_parent", "infra", "pod_shm_size", "monitor_path", "address", "default_handler"} {
		i := strings.Index(string(out), "\n"+key+" = ")
		if i < 0 {
			t.Fatalf("option %s missing from rendered defaults:\n%s", key, out)
		}
		prev := string(out[:i])
		if !strings.HasPrefix(prev[strings.LastIndex(prev, "\n")+1:], "# ") {
			t.Fatalf("option %s has no comment line", key)
		}
	}
}

func TestRenderCoversEveryField(t *testing.T) {
	out, err := Render(Default())
	if err != nil {
		t.Fatal(err)
	}
	var walk func(reflect.Type)
	walk = func(tp reflect.Type) {
		for i := range tp.NumField() {
			f := tp.Field(i)
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[Duration]() {
				if !strings.Contains(string(out), "["+f.Tag.Get("toml")) {
					t.Errorf("table %s not rendered", f.Tag.Get("toml"))
				}
				walk(f.Type)
				continue
			}
			if f.Tag.Get("doc") == "" {
				t.Errorf("field %s has no doc tag", f.Name)
			}
			if f.Type.Kind() == reflect.Map && f.Type.Elem().Kind() == reflect.Struct {
				walk(f.Type.Elem())
			}
		}
	}
	walk(reflect.TypeFor[Config]())
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{name: "override", body: "socket = \"/tmp/x.sock\"\n[runtime]\ncgroup_driver = \"systemd\"\ncgroup_parent = \"crid.slice\"\n[image]\npull_progress_timeout = \"30s\"\n",
			check: func(t *testing.T, c Config) {
				if c.Socket != "/tmp/x.sock" || c.Runtime.CgroupDriver != "systemd" || c.Image.PullProgressTimeout.Std() != 30*time.Second {
					t.Fatalf("overrides not applied: %+v", c)
				}
				if c.RootDir != Default().RootDir {
					t.Fatalf("unset key lost its default: %q", c.RootDir)
				}
			}},
		{name: "unknown top-level key", body: "sockett = \"/x\"\n", wantErr: `unknown key "sockett"`},
		{name: "unknown nested key", body: "[network]\ncni_dir = \"/x\"\n", wantErr: `unknown key "network.cni_dir"`},
		{name: "wrong type", body: "[network]\ncni_bin_dirs = \"/opt/cni/bin\"\n", wantErr: "cni_bin_dirs"},
		{name: "bad duration", body: "shutdown_timeout = \"soon\"\n", wantErr: "shutdown_timeout"},
		{name: "syntax", body: "socket = \n", wantErr: "crid.toml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(writeFile(t, tc.body), false)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg)
		})
	}
}

// TestNRIDisabledSkipsItsPaths: with enable = false nothing of [nri] is
// used, so its paths are not checked either.
func TestNRIDisabledSkipsItsPaths(t *testing.T) {
	c := Default()
	c.NRI = NRI{Enable: false, SocketPath: "relative.sock"}
	if err := c.Validate(); err != nil {
		t.Fatalf("disabled NRI with unused bad paths: %v", err)
	}
	c.NRI.Enable = true
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "nri.socket_path:") {
		t.Fatalf("enabled NRI with a relative socket: error %v, want it to name nri.socket_path", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.toml")
	cfg, err := Load(missing, true)
	if err != nil || !reflect.DeepEqual(cfg, Default()) {
		t.Fatalf("missing default file should give defaults, got %v", err)
	}
	if _, err := Load(missing, false); err == nil {
		t.Fatal("an explicitly named missing file must be an error")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		key    string
		mutate func(c *Config)
	}{
		{"socket", func(c *Config) { c.Socket = "crid.sock" }},
		{"root_dir", func(c *Config) { c.RootDir = "" }},
		{"run_dir", func(c *Config) { c.RunDir = "run" }},
		{"shutdown_timeout", func(c *Config) { c.ShutdownTimeout = 0 }},
		{"image.pull_progress_timeout", func(c *Config) { c.Image.PullProgressTimeout = -1 }},
		{"runtime.pause_path", func(c *Config) { c.Runtime.PausePath = "crid-pause" }},
		{"image.registries_conf", func(c *Config) { c.Image.RegistriesConf = "r.conf" }},
		{"image.max_concurrent_downloads", func(c *Config) { c.Image.MaxConcurrentDownloads = 0 }},
		{"image.max_concurrent_downloads_total", func(c *Config) { c.Image.MaxConcurrentDownloadsTotal = -1 }},
		{"image.max_layers", func(c *Config) { c.Image.MaxLayers = 0 }},
		{"image.max_layer_bytes", func(c *Config) { c.Image.MaxLayerBytes = 0 }},
		{"image.max_layer_files", func(c *Config) { c.Image.MaxLayerFiles = -5 }},
		{"root_dir", func(c *Config) { c.RootDir = "/var/lib/crid,upperdir=/" }},
		{"root_dir", func(c *Config) { c.RootDir = "/var/lib/cr:id" }},
		{"image.root", func(c *Config) { c.Image.Root = "images" }},
		{"image.root", func(c *Config) { c.Image.Root = "/mnt/img,upperdir=/" }},
		{"network.cni_conf_dir", func(c *Config) { c.Network.CNIConfDir = "" }},
		{"network.cni_bin_dirs[1]", func(c *Config) { c.Network.CNIBinDirs = []string{"/opt/cni/bin", "bin"} }},
		{"network.cni_bin_dirs", func(c *Config) { c.Network.CNIBinDirs = nil }},
		{"runtime.cgroup_driver", func(c *Config) { c.Runtime.CgroupDriver = "cgroupv1" }},
		{"runtime.cgroup_parent", func(c *Config) { c.Runtime.CgroupParent = "crid" }},
		{"runtime.cgroup_parent", func(c *Config) { c.Runtime.CgroupDriver = "systemd"; c.Runtime.CgroupParent = "/crid" }},
		{"runtime.cgroup_parent", func(c *Config) { c.Runtime.CgroupDriver = "systemd"; c.Runtime.CgroupParent = "crid--x.slice" }},
		{"runtime.infra", func(c *Config) { c.Runtime.Infra = "sometimes" }},
		{"runtime.pod_shm_size", func(c *Config) { c.Runtime.PodShmSize = 0 }},
		{"runtime.monitor_path", func(c *Config) { c.Runtime.MonitorPath = "crid-monitor" }},
		{"metrics.address", func(c *Config) { c.Metrics.Address = "127.0.0.1" }},
		{"metrics.address", func(c *Config) { c.Metrics.Address = "127.0.0.1:99999" }},
		{"nri.socket_path", func(c *Config) { c.NRI.SocketPath = "nri.sock" }},
		{"nri.socket_path", func(c *Config) { c.NRI.SocketPath = "/" + strings.Repeat("x", 120) }},
		{"nri.plugin_path", func(c *Config) { c.NRI.PluginPath = "" }},
		{"nri.plugin_config_path", func(c *Config) { c.NRI.PluginConfigPath = "conf.d" }},
		{"nri.plugin_registration_timeout", func(c *Config) { c.NRI.PluginRegistrationTimeout = 0 }},
		{"nri.plugin_request_timeout", func(c *Config) { c.NRI.PluginRequestTimeout = -1 }},
		{"nri.cdi_spec_dirs[1]", func(c *Config) { c.NRI.CDISpecDirs = []string{"/etc/cdi", "cdi"} }},
		{"runtime.default_handler", func(c *Config) { c.Runtime.DefaultHandler = "kata" }},
		{"runtime.handlers", func(c *Config) { c.Runtime.Handlers = nil }},
		{"runtime.handlers", func(c *Config) { c.Runtime.Handlers["Test_Handler"] = Handler{} }},
		{"runtime.handlers", func(c *Config) { c.Runtime.Handlers["-x"] = Handler{} }},
		{"runtime.handlers", func(c *Config) { c.Runtime.Handlers[strings.Repeat("h", 64)] = Handler{} }},
		{"runtime.handlers.test-handler.infra", func(c *Config) { c.Runtime.Handlers["test-handler"] = Handler{Infra: "never"} }},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			c := Default()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.key+":") {
				t.Fatalf("error %v, want it to name %s", err, tc.key)
			}
		})
	}
}

// An unset image.root is the store's place before the key existed, so an
// upgrade finds its images.
func TestImageRootDefaultsUnderRootDir(t *testing.T) {
	c := Default()
	c.RootDir = "/srv/crid"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Image.Root != "/srv/crid/images" {
		t.Fatalf("image.root %q, want /srv/crid/images", c.Image.Root)
	}
}

func TestCgroupParentDefaultsPerDriver(t *testing.T) {
	for driver, want := range map[string]string{"cgroupfs": "/crid", "systemd": "crid.slice"} {
		c := Default()
		c.Runtime.CgroupDriver = driver
		if err := c.Validate(); err != nil {
			t.Fatalf("%s: %v", driver, err)
		}
		if c.Runtime.CgroupParent != want {
			t.Errorf("%s: default cgroup parent %q, want %q", driver, c.Runtime.CgroupParent, want)
		}
	}
	c := Default()
	c.Runtime.CgroupDriver, c.Runtime.CgroupParent = "systemd", "kubepods-besteffort.slice"
	if err := c.Validate(); err != nil || c.Runtime.CgroupParent != "kubepods-besteffort.slice" {
		t.Fatalf("a set parent must stay: %q %v", c.Runtime.CgroupParent, err)
	}
}

// The metrics endpoint is off unless asked for; an address from the file
// is taken as given, port 0 included.
func TestMetricsOffByDefault(t *testing.T) {
	if a := Default().Metrics.Address; a != "" {
		t.Fatalf("default metrics.address %q: the endpoint must be off by default", a)
	}
	cfg, err := Load(writeFile(t, "[metrics]\naddress = \"127.0.0.1:0\"\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil || cfg.Metrics.Address != "127.0.0.1:0" {
		t.Fatalf("metrics.address %q: %v", cfg.Metrics.Address, err)
	}
}

// crid's registries.conf may be absent at its default path (no mirrors, no
// blocks) and so may the containers-wide one; a file named elsewhere must
// exist, and its absence names the key at start.
func TestRegistriesConfPresence(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope", "registries.conf")
	present := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(present, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		own     string
		wide    string
		wantKey string // "" means valid
	}{
		{"defaults, both absent on this machine or not", DefaultRegistriesConf, "/etc/containers/registries.conf", ""},
		{"named and present", present, missing, ""},
		{"named and missing", missing, present, "image.registries_conf:"},
		{"none of crid's own", "", missing, ""},
		{"no containers-wide fallback", present, "", ""},
		{"relative own", "registries.conf", "", "image.registries_conf:"},
		{"relative containers-wide", present, "registries.conf", "image.containers_registries_conf:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Image.RegistriesConf, c.Image.ContainersRegistriesConf = tc.own, tc.wide
			err := c.Validate()
			switch {
			case tc.wantKey == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.wantKey != "" && (err == nil || !strings.Contains(err.Error(), tc.wantKey)):
				t.Fatalf("Validate: %v, want an error naming %s", err, tc.wantKey)
			}
		})
	}
}

// Handlers come from tables of their own; runc, the default, stays beside
// them; each handler's infra mode falls back to runtime.infra.
func TestHandlers(t *testing.T) {
	cfg, err := Load(writeFile(t, "[runtime]\ninfra = \"when-needed\"\n[runtime.handlers.test-handler]\ninfra = \"always\"\n[runtime.handlers.plain]\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Runtime.HandlerNames(); !reflect.DeepEqual(got, []string{"plain", "runc", "test-handler"}) {
		t.Fatalf("handlers %q", got)
	}
	for name, want := range map[string]string{"runc": "when-needed", "plain": "when-needed", "test-handler": "always", "unknown": "when-needed"} {
		if got := cfg.Runtime.HandlerInfra(name); got != want {
			t.Errorf("HandlerInfra(%q) = %q, want %q", name, got, want)
		}
	}
	if cfg.Runtime.DefaultHandler != "runc" {
		t.Errorf("default handler %q", cfg.Runtime.DefaultHandler)
	}
	// A rendered config with handlers loads back the same.
	out, err := Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Load(writeFile(t, string(out)), false)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !reflect.DeepEqual(back.Runtime.Handlers, cfg.Runtime.Handlers) {
		t.Errorf("round trip: %+v, want %+v", back.Runtime.Handlers, cfg.Runtime.Handlers)
	}
	// Default() hands out a fresh map each time.
	d := Default()
	d.Runtime.Handlers["x"] = Handler{}
	if _, ok := Default().Runtime.Handlers["x"]; ok {
		t.Error("Default() shares its handlers map")
	}
}
