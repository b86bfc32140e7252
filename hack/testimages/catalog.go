package main

import (
	"bytes"
	"embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// The registries critest v1.37.0 pulls from (pkg/framework, pkg/validate
// consts.go, pkg/benchmark/image.go). hack/registries-mirror.conf.in maps
// each of them to the local registry, which serves their images under the
// same paths with the host stripped.
const (
	hostK8s    = "registry.k8s.io" // e2e-test-images/*, pause
	hostGCR    = "gcr.io"          // k8s-staging-cri-tools/*
	hostOldK8s = "k8s.gcr.io"      // pause, for the "same image from two registries" spec
	hostECR    = "public.ecr.aws"  // docker/library/busybox, benchmarks only
)

// UpstreamHosts lists the registries above.
var UpstreamHosts = []string{hostK8s, hostGCR, hostOldK8s, hostECR}

// pathEnv is the PATH every upstream image sets.
const pathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// labelStandsIn names, on every image, the upstream repository it stands
// in for. It shows in `crictl inspecti` and keeps look-alikes that share
// content (the e2e busybox and the benchmark busybox) distinct images, as
// they are upstream: a shared image ID would make removing one remove both.
const labelStandsIn = "dev.crid.testbed.stands-in-for"

//go:embed files
var files embed.FS

// A Repo is one or more tags of one image in the local registry.
type Repo struct {
	Name  string   // repository path in the local registry
	Hosts []string // upstream registries critest names it under
	Tags  []string
	Image *Image
	Note  string // what it contains, for the listing
}

// Refs are the references critest uses for the repo's tags.
func (r Repo) Refs() []string {
	var refs []string
	for _, h := range r.Hosts {
		for _, t := range r.Tags {
			refs = append(refs, h+"/"+r.Name+":"+t)
		}
	}
	return refs
}

// Stage is the directory hack/test-images.sh fills on the host before the
// build, holding what cannot be produced here in Go:
//
//	busybox-root/   bin/busybox from Debian's busybox package and the glibc
//	                files it loads (lib/x86_64-linux-gnu/..., lib64/...)
//	bin/            static programs: pause-3.9, pause-3.10, nnp, webserver
type Stage struct {
	Dir string
}

func (s Stage) busyboxRoot() string    { return filepath.Join(s.Dir, "busybox-root") }
func (s Stage) bin(name string) string { return filepath.Join(s.Dir, "bin", name) }

// catalog accumulates the first error of the image definitions.
type catalog struct {
	stage Stage
	err   error
}

func (c *catalog) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// asset returns an embedded file of files/.
func (c *catalog) asset(name string) []byte {
	data, err := files.ReadFile("files/" + name)
	if err != nil {
		c.fail(fmt.Errorf("embedded asset: %w", err))
	}
	return data
}

// program returns a staged static binary.
func (c *catalog) program(name string) []byte {
	data, err := os.ReadFile(c.stage.bin(name))
	if err != nil {
		c.fail(fmt.Errorf("%w: %w", errNoStage, err))
	}
	return data
}

// busybox runs the staged busybox with args and returns its output.
func (c *catalog) busybox(args ...string) string {
	bin := filepath.Join(c.stage.busyboxRoot(), "bin", "busybox")
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		c.fail(fmt.Errorf("%w: run %s %s: %w", errNoStage, bin, strings.Join(args, " "), err))
	}
	return string(out)
}

// busyboxRoot is the root file system of the official busybox image, with
// Debian's dynamically linked busybox: every applet a hard link to
// /bin/busybox, stand-ins for the applets Debian's build lacks, and the
// users and groups of the official image.
func (c *catalog) busyboxRoot() *Tree {
	t := NewTree()
	t.Dirs("bin", "dev", "etc", "home", "lib", "lib64", "usr", "usr/sbin",
		"var", "var/spool", "var/spool/mail", "var/www")
	t.Dir("root", 0o700, 0, 0)
	t.Dir("tmp", 0o1777, 0, 0)
	t.AddHostDir(c.stage.busyboxRoot())
	for _, applet := range strings.Fields(c.busybox("--list")) {
		if applet != "busybox" {
			t.HardLink("bin/"+applet, "bin/busybox")
		}
	}
	t.File("bin/pgrep", 0o755, c.asset("busybox/pgrep"))
	t.File("bin/ipcs", 0o755, c.asset("busybox/ipcs"))
	t.File("etc/passwd", 0o644, c.asset("busybox/passwd"))
	t.File("etc/group", 0o644, c.asset("busybox/group"))
	t.File("etc/shadow", 0o640, c.asset("busybox/shadow"))
	t.File("etc/nsswitch.conf", 0o644, c.asset("busybox/nsswitch.conf"))
	return t
}

// baseLayer is the busybox root every image starts from.
func (c *catalog) baseLayer() LayerSpec {
	// "BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1) multi-call binary."
	version := strings.TrimSpace(strings.SplitN(c.busybox(), "\n", 2)[0])
	version = strings.TrimSuffix(version, " multi-call binary.")
	if c.err != nil {
		return LayerSpec{}
	}
	return LayerSpec{
		Tree:      c.busyboxRoot(),
		CreatedBy: version + ", dynamic, glibc from the host; applets hard-linked in /bin",
	}
}

// concat joins an embedded base file and extra lines.
func concat(base []byte, lines ...string) []byte {
	var b bytes.Buffer
	b.Write(base)
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	return b.Bytes()
}

// marker is the layer of cri-tools' images/image-test: `ADD $TEST $TEST`
// of an empty file, which makes each tag a distinct image.
func marker(name string) LayerSpec {
	t := NewTree()
	t.File(name, 0o644, nil)
	return LayerSpec{Tree: t, CreatedBy: fmt.Sprintf("ADD %s %s", name, name)}
}

// config is the configuration of an image derived from busybox (CMD sh).
func config(standsIn string) ImageConfig {
	return ImageConfig{
		Env:    []string{pathEnv},
		Cmd:    []string{"sh"},
		Labels: map[string]string{labelStandsIn: standsIn},
	}
}

// Catalog defines every image critest v1.37.0 pulls, plus the pause image
// crid uses for its sandboxes, from the inputs in st.
func Catalog(st Stage) ([]Repo, error) {
	c := &catalog{stage: st}
	base := c.baseLayer()
	if c.err != nil {
		return nil, c.err
	}
	var repos []Repo
	add := func(r Repo) { repos = append(repos, r) }

	// The default test image of every spec.
	add(Repo{
		Name: "e2e-test-images/busybox", Hosts: []string{hostK8s}, Tags: []string{"1.29-2"},
		Image: &Image{Layers: []LayerSpec{base}, Config: config(hostK8s + "/e2e-test-images/busybox"), List: true},
		Note:  "busybox root (sh and the usual applets, root/www-data/nobody)",
	})

	c.webServers(base, add)

	// Security context: no_new_privs keeps the setuid bit of nnp from
	// taking effect ("Effective uid: 1000" rather than 0).
	nnp := NewTree()
	nnp.File("usr/local/bin/nnp", 0o4755, c.program("nnp"))
	nnpCfg := ImageConfig{
		Env:        []string{pathEnv},
		Entrypoint: []string{"/usr/local/bin/nnp"},
		Labels:     map[string]string{labelStandsIn: hostK8s + "/e2e-test-images/nonewprivs"},
	}
	add(Repo{
		Name: "e2e-test-images/nonewprivs", Hosts: []string{hostK8s}, Tags: []string{"1.3"},
		Image: &Image{Layers: []LayerSpec{base, {Tree: nnp, CreatedBy: "COPY nnp /usr/local/bin/nnp (setuid root)"}}, Config: nnpCfg, List: true},
		Note:  "setuid-root /usr/local/bin/nnp printing \"Effective uid: N\"",
	})

	// cri-tools' images/image-user: busybox with a USER, for ImageStatus'
	// uid and username. Which user does not matter beyond the field.
	users := []struct{ name, user string }{
		{"test-image-user-uid", "1002"},
		{"test-image-user-username", "www-data"},
		{"test-image-user-uid-group", "1003:1004"},
		{"test-image-user-username-group", "www-data:1004"},
	}
	for _, u := range users {
		cfg := config(hostGCR + "/k8s-staging-cri-tools/" + u.name)
		cfg.User = u.user
		add(Repo{
			Name: "k8s-staging-cri-tools/" + u.name, Hosts: []string{hostGCR}, Tags: []string{"latest"},
			Image: &Image{Layers: []LayerSpec{base}, Config: cfg, List: true},
			Note:  "busybox root, USER " + u.user,
		})
	}

	// cri-tools' images/image-predefined-group, for SupplementalGroupsPolicy:
	// `adduser -u 1000 -D default-user && addgroup -g 50000
	// group-defined-in-image && addgroup default-user group-defined-in-image`.
	pg := NewTree()
	pg.File("etc/passwd", 0o644, concat(c.asset("busybox/passwd"),
		"default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh"))
	pg.File("etc/group", 0o644, concat(c.asset("busybox/group"),
		"default-user:x:1000:", "group-defined-in-image:x:50000:default-user"))
	pg.File("etc/shadow", 0o640, concat(c.asset("busybox/shadow"),
		"default-user:!:10933:0:99999:7:::"))
	pg.Dir("home/default-user", 0o755, 1000, 1000)
	pgCfg := config(hostGCR + "/k8s-staging-cri-tools/test-image-predefined-group")
	pgCfg.User = "1000"
	add(Repo{
		Name: "k8s-staging-cri-tools/test-image-predefined-group", Hosts: []string{hostGCR}, Tags: []string{"latest"},
		Image: &Image{Layers: []LayerSpec{base, {Tree: pg, CreatedBy: "adduser -u 1000 -D default-user && addgroup -g 50000 group-defined-in-image && addgroup default-user group-defined-in-image"}}, Config: pgCfg, List: true},
		Note:  "busybox root + default-user 1000 in group-defined-in-image 50000, USER 1000",
	})

	// cri-tools' images/image-test: one empty marker file per image, so
	// that each is distinct; test-image-tags is one image under 3 tags.
	// test-image-digest cannot match the digest critest pins (the public
	// image's) and is pushed only for completeness.
	for _, name := range []string{"test-image-1", "test-image-2", "test-image-3", "test-image-latest", "test-image-digest"} {
		add(Repo{
			Name: "k8s-staging-cri-tools/" + name, Hosts: []string{hostGCR}, Tags: []string{"latest"},
			Image: &Image{Layers: []LayerSpec{base, marker(name)}, Config: config(hostGCR + "/k8s-staging-cri-tools/" + name), List: true},
			Note:  "busybox root + /" + name,
		})
	}
	add(Repo{
		Name: "k8s-staging-cri-tools/test-image-tags", Hosts: []string{hostGCR}, Tags: []string{"1", "2", "3"},
		Image: &Image{Layers: []LayerSpec{base, marker("same-image")}, Config: config(hostGCR + "/k8s-staging-cri-tools/test-image-tags"), List: true},
		Note:  "ONE image: busybox root + /same-image",
	})
	for _, tag := range []string{"test", "all"} {
		add(Repo{
			Name: "k8s-staging-cri-tools/test-image-tag", Hosts: []string{hostGCR}, Tags: []string{tag},
			Image: &Image{Layers: []LayerSpec{base, marker(tag)}, Config: config(hostGCR + "/k8s-staging-cri-tools/test-image-tag"), List: true},
			Note:  "busybox root + /" + tag,
		})
	}

	// Pause images. critest pulls pause:3.9 from two registries and expects
	// one image with exactly those two names; crid's sandbox image is 3.10,
	// a different binary (its -v prints its version), so a different image.
	for _, v := range []string{"3.9", "3.10"} {
		t := NewTree()
		t.File("pause", 0o755, c.program("pause-"+v))
		hosts := []string{hostK8s}
		note := "crid's sandbox image: static /pause"
		if v == "3.9" {
			hosts = append(hosts, hostOldK8s)
			note = "static /pause (critest's same-image-two-registries specs)"
		}
		add(Repo{
			Name: "pause", Hosts: hosts, Tags: []string{v},
			Image: &Image{
				Layers: []LayerSpec{{Tree: t, CreatedBy: "ADD bin/pause-linux-" + runtime.GOARCH + " /pause"}},
				Config: ImageConfig{
					Env:        []string{pathEnv},
					Entrypoint: []string{"/pause"},
					User:       "65535:65535",
					WorkingDir: "/",
					Labels:     map[string]string{labelStandsIn: hostK8s + "/pause"},
				},
				List: true,
			},
			Note: note,
		})
	}

	// The image listing benchmark's busybox tags: one OCI image.
	add(Repo{
		Name: "docker/library/busybox", Hosts: []string{hostECR},
		Tags:  []string{"1.35.0-glibc", "1-uclibc", "1", "1-glibc", "1-musl"},
		Image: &Image{Layers: []LayerSpec{base}, Config: config(hostECR + "/docker/library/busybox"), Format: OCI, List: true},
		Note:  "busybox root, OCI index (benchmarks only)",
	})

	if c.err != nil {
		return nil, c.err
	}
	for _, r := range repos {
		for _, l := range r.Image.Layers {
			if err := l.Tree.Err(); err != nil {
				return nil, fmt.Errorf("image %s: layer %q: %w", r.Name, l.CreatedBy, err)
			}
		}
	}
	return repos, nil
}

// webServers defines the nginx and httpd look-alikes, all served by the
// static webserver program (csrc/webserver.c) under the name of the server
// it plays.
func (c *catalog) webServers(base LayerSpec, add func(Repo)) {
	ngxLayer := c.nginxLayer()
	maintainer := "NGINX Docker Maintainers <docker-maint@nginx.com>"
	add(Repo{
		Name: "e2e-test-images/nginx", Hosts: []string{hostK8s}, Tags: []string{"1.14-2"},
		Image: &Image{
			Layers: []LayerSpec{base, ngxLayer},
			Config: ImageConfig{
				Env:          []string{pathEnv, "NGINX_VERSION=1.14.2"},
				Cmd:          []string{"nginx", "-g", "daemon off;"},
				ExposedPorts: map[string]struct{}{"80/tcp": {}},
				StopSignal:   "SIGTERM",
				Labels:       map[string]string{"maintainer": maintainer, labelStandsIn: hostK8s + "/e2e-test-images/nginx"},
			},
			List: true,
		},
		Note: "nginx look-alike on :80, PID 1 titled \"nginx: master process ...\", /var/run/nginx.pid",
	})

	// cri-tools' images/hostnet-nginx: nginx:1.25.0 with a default.conf
	// listening on 12003. Published per architecture, as a plain manifest.
	hn := NewTree()
	hn.File("docker-entrypoint.sh", 0o755, c.asset("hostnet-nginx/docker-entrypoint.sh"))
	hn.Dirs("docker-entrypoint.d")
	hn.File("etc/nginx/conf.d/default.conf", 0o644, c.asset("hostnet-nginx/default.conf"))
	add(Repo{
		Name: "k8s-staging-cri-tools/hostnet-nginx-" + runtime.GOARCH, Hosts: []string{hostGCR}, Tags: []string{"latest"},
		Image: &Image{
			Layers: []LayerSpec{base, ngxLayer, {Tree: hn, CreatedBy: "COPY default.conf /etc/nginx/conf.d/default.conf (listen 12003)"}},
			Config: ImageConfig{
				Env:          []string{pathEnv, "NGINX_VERSION=1.25.0", "NJS_VERSION=0.7.12", "PKG_RELEASE=1~bullseye"},
				Entrypoint:   []string{"/docker-entrypoint.sh"},
				Cmd:          []string{"nginx", "-g", "daemon off;"},
				ExposedPorts: map[string]struct{}{"80/tcp": {}},
				StopSignal:   "SIGQUIT",
				Labels:       map[string]string{"maintainer": maintainer, labelStandsIn: hostGCR + "/k8s-staging-cri-tools/hostnet-nginx-" + runtime.GOARCH},
			},
		},
		Note: "nginx look-alike on :12003 (host network specs), single manifest",
	})

	// httpd:2.4.39-alpine, as e2e-test-images/httpd:2.4.39-4 is built on.
	// The multi-container spec waits for a log line containing "httpd".
	hd := NewTree()
	hd.File("usr/local/apache2/bin/httpd", 0o755, c.program("webserver"))
	hd.File("usr/local/bin/httpd-foreground", 0o755, c.asset("httpd/httpd-foreground"))
	hd.File("usr/local/apache2/conf/httpd.conf", 0o644, c.asset("httpd/httpd.conf"))
	hd.File("usr/local/apache2/htdocs/index.html", 0o644, c.asset("httpd/index.html"))
	hd.Dirs("usr/local/apache2/logs")
	add(Repo{
		Name: "e2e-test-images/httpd", Hosts: []string{hostK8s}, Tags: []string{"2.4.39-4"},
		Image: &Image{
			Layers: []LayerSpec{base, {Tree: hd, CreatedBy: "httpd look-alike: /usr/local/apache2 (static webserver), httpd-foreground"}},
			Config: ImageConfig{
				Env: []string{"PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
					"HTTPD_PREFIX=/usr/local/apache2", "HTTPD_VERSION=2.4.39"},
				Cmd:          []string{"httpd-foreground"},
				WorkingDir:   "/usr/local/apache2",
				ExposedPorts: map[string]struct{}{"80/tcp": {}},
				StopSignal:   "SIGWINCH",
				Labels:       map[string]string{labelStandsIn: hostK8s + "/e2e-test-images/httpd"},
			},
			List: true,
		},
		Note: "httpd look-alike on :80, logs \"AH00094: Command line: 'httpd -D FOREGROUND'\"",
	})
}

// nginxLayer is nginx:1.14-alpine's nginx, as e2e-test-images/nginx is
// built on, played by the static webserver program.
func (c *catalog) nginxLayer() LayerSpec {
	server := c.program("webserver")
	ngx := NewTree()
	ngx.File("usr/sbin/nginx", 0o755, server)
	ngx.File("etc/nginx/nginx.conf", 0o644, c.asset("nginx/nginx.conf"))
	ngx.File("etc/nginx/conf.d/default.conf", 0o644, c.asset("nginx/default.conf"))
	ngx.File("usr/share/nginx/html/index.html", 0o644, c.asset("nginx/index.html"))
	ngx.File("usr/share/nginx/html/50x.html", 0o644, c.asset("nginx/50x.html"))
	ngx.Dirs("var/run", "var/cache/nginx", "var/log/nginx")
	ngx.Symlink("var/log/nginx/access.log", "/dev/stdout")
	ngx.Symlink("var/log/nginx/error.log", "/dev/stderr")
	ngx.File("etc/passwd", 0o644, concat(c.asset("busybox/passwd"), "nginx:x:101:101:nginx:/var/cache/nginx:/sbin/nologin"))
	ngx.File("etc/group", 0o644, concat(c.asset("busybox/group"), "nginx:x:101:nginx"))
	return LayerSpec{Tree: ngx, CreatedBy: "nginx look-alike: /usr/sbin/nginx (static webserver), /etc/nginx, /usr/share/nginx/html"}
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
