package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// Kubernetes' own e2e images (k8s.io/kubernetes v1.37.2
// test/utils/image/manifest.go), pulled by make cluster-test and make
// node-e2e under their registry.k8s.io names, which
// hack/registries-mirror.conf.in already mirrors to the local registry.
// The tags are the exact ones the specs name: KUBE_TEST_REPO_LIST moves
// whole registries but keeps tags.
const (
	agnhostNote = "agnhost (built from k8s.io/kubernetes/test/images/agnhost) on busybox: /agnhost, /agnhost-2, porter's localhost.crt/.key, /uploads, user-defined-in-image 1000 in group-defined-in-image 50000, curl, bash, netcat-openbsd"
)

// The inputs hack/test-images.sh stages for these images, beside Stage's:
//
//	bin/agnhost           static agnhost binary (test/cluster/build.sh)
//	agnhost/localhost.crt, agnhost/localhost.key   porter's TLS pair
//	curl-root/            /usr/bin/curl from the host, /usr/bin/nc from Debian's
//	                      netcat-openbsd, and the libraries they load
//	bash-root/            /bin/bash from the host and the libraries it loads
func (s Stage) agnhostFile(name string) string { return filepath.Join(s.Dir, "agnhost", name) }
func (s Stage) curlRoot() string               { return filepath.Join(s.Dir, "curl-root") }
func (s Stage) bashRoot() string               { return filepath.Join(s.Dir, "bash-root") }

// KubernetesCatalog defines the images of Kubernetes' e2e tests that the
// cluster test and the node conformance suite run, from the inputs in st.
func KubernetesCatalog(st Stage) ([]Repo, error) {
	c := &catalog{stage: st}
	base := c.baseLayer()
	if c.err != nil {
		return nil, c.err
	}
	var repos []Repo
	add := func(r Repo) { repos = append(repos, r) }
	standsIn := func(name string) string { return hostK8s + "/e2e-test-images/" + name }

	bash := NewTree()
	if _, err := os.Stat(st.bashRoot()); err != nil {
		c.fail(fmt.Errorf("%w: %w", errNoStage, err))
	} else {
		bash.AddHostDir(st.bashRoot())
	}
	// Debian's busybox 1.35 differs from the image's upstream busybox 1.37
	// where the node suite looks: it has no nmeter applet, which the
	// container lifecycle specs stamp log lines with (csrc/nmeter.c does
	// that part), and its ash drops environment variables whose names are
	// not shell identifiers, which the [Conformance] ConfigMap and Secret
	// "consumable via the environment" specs pass (data-1=value-1) to
	// `sh -c env`: bash passes them on, so it is this image's sh.
	nm := NewTree()
	nm.File("bin/nmeter", 0o755, c.program("nmeter"))
	nm.Symlink("bin/sh", "bash")
	add(Repo{
		Name: "e2e-test-images/busybox", Hosts: []string{hostK8s}, Tags: []string{"1.37.0-2"},
		Image: &Image{Layers: []LayerSpec{base,
			{Tree: bash, CreatedBy: "COPY /bin/bash and its libraries from the host"},
			{Tree: nm, CreatedBy: "COPY nmeter (hack/testimages/csrc/nmeter.c: its %Nt time format); ln -sf bash /bin/sh"}},
			Config: config(standsIn("busybox")), List: true},
		Note: "busybox root; nmeter's %Nt time format; bash as sh",
	})

	// agnhost: alpine upstream with bind-tools, curl, netcat, iproute2;
	// here busybox (ip, nslookup) plus the host's curl and bash and
	// Debian's netcat-openbsd.
	curl := NewTree()
	if _, err := os.Stat(st.curlRoot()); err != nil {
		c.fail(fmt.Errorf("%w: %w", errNoStage, err))
	} else {
		curl.AddHostDir(st.curlRoot())
	}
	ag := NewTree()
	ag.File("agnhost", 0o755, c.program("agnhost"))
	// Upstream's busybox has nmeter; the container lifecycle specs that
	// switch a container's image to agnhost stamp its log lines with it.
	ag.File("usr/local/bin/nmeter", 0o755, c.program("nmeter"))
	ag.Symlink("agnhost-2", "agnhost")
	ag.File("localhost.crt", 0o644, c.agnhostAsset("localhost.crt"))
	ag.File("localhost.key", 0o644, c.agnhostAsset("localhost.key"))
	ag.Dirs("uploads")
	ag.Dir("home/user-defined-in-image", 0o755, 1000, 1000)
	ag.File("etc/passwd", 0o644, concat(c.asset("busybox/passwd"),
		"user-defined-in-image:x:1000:1000:Linux User,,,:/home/user-defined-in-image:/bin/sh"))
	ag.File("etc/group", 0o644, concat(c.asset("busybox/group"),
		"user-defined-in-image:x:1000:", "group-defined-in-image:x:50000:user-defined-in-image"))
	ag.File("etc/shadow", 0o640, concat(c.asset("busybox/shadow"), "user-defined-in-image:!:10933:0:99999:7:::"))
	add(Repo{
		Name: "e2e-test-images/agnhost", Hosts: []string{hostK8s}, Tags: []string{"2.66.1", "2.55"},
		Image: &Image{
			Layers: []LayerSpec{base,
				{Tree: curl, CreatedBy: "COPY /usr/bin/curl and its libraries from the host; netcat-openbsd as /usr/bin/nc"},
				{Tree: bash, CreatedBy: "COPY /bin/bash and its libraries from the host"},
				{Tree: ag, CreatedBy: "ADD agnhost, porter/localhost.{crt,key}; ln -s agnhost agnhost-2; adduser -u 1000 user-defined-in-image; addgroup -g 50000 group-defined-in-image"}},
			Config: ImageConfig{
				Env:        []string{pathEnv},
				Entrypoint: []string{"/agnhost"},
				Cmd:        []string{"pause"},
				ExposedPorts: map[string]struct{}{"80/tcp": {}, "8080/tcp": {}, "8081/tcp": {}, "9376/tcp": {},
					"5000/tcp": {}},
				Labels: map[string]string{labelStandsIn: standsIn("agnhost")},
			},
			List: true,
		},
		Note: agnhostNote,
	})

	// kitten and nautilus: agnhost's test-webserver serving a picture (the
	// specs that update a container's image swap one for the other).
	agnhostImage := repos[len(repos)-1].Image
	for _, pic := range []struct{ name, file string }{{"kitten", "kitten.jpg"}, {"nautilus", "nautilus.jpg"}} {
		html := NewTree()
		html.File(pic.file, 0o644, c.agnhostAsset(pic.name+"/"+pic.file))
		html.File("data.json", 0o644, c.agnhostAsset(pic.name+"/data.json"))
		cfg := agnhostImage.Config
		cfg.Cmd = []string{"test-webserver"}
		cfg.Labels = map[string]string{labelStandsIn: standsIn(pic.name)}
		layers := append(append([]LayerSpec(nil), agnhostImage.Layers...),
			LayerSpec{Tree: html, CreatedBy: "COPY html/" + pic.file + " html/data.json /"})
		add(Repo{
			Name: "e2e-test-images/" + pic.name, Hosts: []string{hostK8s}, Tags: []string{"1.8"},
			Image: &Image{Layers: layers, Config: cfg, List: true},
			Note:  "agnhost test-webserver with /" + pic.file,
		})
	}

	maintainer := "NGINX Docker Maintainers <docker-maint@nginx.com>"
	for _, v := range []struct{ tag, version string }{{"1.27.0-2", "1.27.0"}, {"1.28.0-2", "1.28.0"}} {
		add(Repo{
			Name: "e2e-test-images/nginx", Hosts: []string{hostK8s}, Tags: []string{v.tag},
			Image: &Image{
				Layers: []LayerSpec{base, c.nginxLayer()},
				Config: ImageConfig{
					Env:          []string{pathEnv, "NGINX_VERSION=" + v.version},
					Cmd:          []string{"nginx", "-g", "daemon off;"},
					ExposedPorts: map[string]struct{}{"80/tcp": {}},
					StopSignal:   "SIGQUIT",
					Labels:       map[string]string{"maintainer": maintainer, labelStandsIn: standsIn("nginx")},
				},
				List: true,
			},
			Note: "nginx look-alike on :80 (nginx and nginx-new)",
		})
	}

	// glibc-dns-testing (debian with dnsutils upstream): the specs run
	// `hostname -f`, which the glibc-linked busybox resolves through glibc.
	// ipc-utils (alpine with util-linux upstream): the specs run `ipcs -m`,
	// which the busybox root's stand-in answers.
	for _, r := range []struct{ name, tag, note string }{
		{"glibc-dns-testing", "2.1.1", "busybox root on glibc (hostname -f through glibc's resolver)"},
		{"ipc-utils", "1.4", "busybox root with the ipcs stand-in"},
	} {
		add(Repo{
			Name: "e2e-test-images/" + r.name, Hosts: []string{hostK8s}, Tags: []string{r.tag},
			Image: &Image{Layers: []LayerSpec{base}, Config: config(standsIn(r.name)), List: true},
			Note:  r.note,
		})
	}

	// nonewprivs: as 1.3 in the critest catalog.
	nnp := NewTree()
	nnp.File("usr/local/bin/nnp", 0o4755, c.program("nnp"))
	add(Repo{
		Name: "e2e-test-images/nonewprivs", Hosts: []string{hostK8s}, Tags: []string{"1.4"},
		Image: &Image{
			Layers: []LayerSpec{base, {Tree: nnp, CreatedBy: "COPY nnp /usr/local/bin/nnp (setuid root)"}},
			Config: ImageConfig{Env: []string{pathEnv}, Entrypoint: []string{"/usr/local/bin/nnp"},
				Labels: map[string]string{labelStandsIn: standsIn("nonewprivs")}},
			List: true,
		},
		Note: "setuid-root /usr/local/bin/nnp printing \"Effective uid: N\"",
	})

	// nonroot: busybox running as uid 1234 (test/images/nonroot).
	nonroot := config(standsIn("nonroot"))
	nonroot.User = "1234"
	add(Repo{
		Name: "e2e-test-images/nonroot", Hosts: []string{hostK8s}, Tags: []string{"1.5"},
		Image: &Image{Layers: []LayerSpec{base}, Config: nonroot, List: true},
		Note:  "busybox root, USER 1234",
	})

	// pause:3.10.2, pulled as a container image by some specs.
	pause := NewTree()
	pause.File("pause", 0o755, c.program("pause-3.10.2"))
	add(Repo{
		Name: "pause", Hosts: []string{hostK8s}, Tags: []string{"3.10.2"},
		Image: &Image{
			Layers: []LayerSpec{{Tree: pause, CreatedBy: "ADD bin/pause-linux-amd64 /pause"}},
			Config: ImageConfig{Env: []string{pathEnv}, Entrypoint: []string{"/pause"}, User: "65535:65535", WorkingDir: "/",
				Labels: map[string]string{labelStandsIn: hostK8s + "/pause"}},
			List: true,
		},
		Note: "static /pause 3.10.2",
	})

	if c.err != nil {
		return nil, c.err
	}
	return repos, nil
}

// agnhostAsset returns a staged file of agnhost's source tree.
func (c *catalog) agnhostAsset(name string) []byte {
	data, err := os.ReadFile(c.stage.agnhostFile(name))
	if err != nil {
		c.fail(fmt.Errorf("%w: %w", errNoStage, err))
	}
	return data
}
