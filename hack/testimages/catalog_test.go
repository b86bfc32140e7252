package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// critestRefs are the references sigs.k8s.io/cri-tools v1.37.0 pulls
// (pkg/framework/util.go, pkg/validate/consts.go, consts_linux.go,
// security_context_linux.go, multi_container_linux.go,
// pkg/benchmark/image.go), except test-image-digest@sha256:9700f9a2…,
// pinned to the public image's digest.
var critestRefs = []string{
	"registry.k8s.io/e2e-test-images/busybox:1.29-2",
	"registry.k8s.io/e2e-test-images/nginx:1.14-2",
	"registry.k8s.io/e2e-test-images/httpd:2.4.39-4",
	"registry.k8s.io/e2e-test-images/nonewprivs:1.3",
	"gcr.io/k8s-staging-cri-tools/test-image-user-uid:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-user-username:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-user-uid-group:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-user-username-group:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest",
	"gcr.io/k8s-staging-cri-tools/hostnet-nginx-" + runtime.GOARCH + ":latest",
	"gcr.io/k8s-staging-cri-tools/test-image-latest:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-tag:test",
	"gcr.io/k8s-staging-cri-tools/test-image-tag:all",
	"gcr.io/k8s-staging-cri-tools/test-image-1:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-2:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-3:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:1",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:2",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:3",
	"registry.k8s.io/pause:3.9",
	"k8s.gcr.io/pause:3.9",
	"public.ecr.aws/docker/library/busybox:1.35.0-glibc",
	"public.ecr.aws/docker/library/busybox:1-uclibc",
	"public.ecr.aws/docker/library/busybox:1",
	"public.ecr.aws/docker/library/busybox:1-glibc",
	"public.ecr.aws/docker/library/busybox:1-musl",
	"registry.k8s.io/pause:3.10", // crid's sandbox image
}

// fakeStage lays out what hack/test-images.sh stages, with a shell script
// standing in for busybox.
func fakeStage(t *testing.T) Stage {
	t.Helper()
	dir := t.TempDir()
	bb := filepath.Join(dir, "busybox-root", "bin", "busybox")
	must(t, os.MkdirAll(filepath.Dir(bb), 0o755))
	must(t, os.WriteFile(bb, []byte(`#!/bin/sh
if [ "$1" = --list ]; then printf 'busybox\nsh\nls\n[\nid\n'; else echo "BusyBox v1.35.0 (test) multi-call binary."; fi
`), 0o755))
	must(t, os.MkdirAll(filepath.Join(dir, "busybox-root", "lib", "x86_64-linux-gnu"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "busybox-root", "lib", "x86_64-linux-gnu", "libc.so.6"), []byte("libc"), 0o755))
	must(t, os.MkdirAll(filepath.Join(dir, "bin"), 0o755))
	for _, p := range []string{"pause-3.9", "pause-3.10", "nnp", "webserver"} {
		must(t, os.WriteFile(filepath.Join(dir, "bin", p), []byte("static "+p), 0o755))
	}
	return Stage{Dir: dir}
}

type builtRepo struct {
	Repo
	built *Built
}

func buildCatalog(t *testing.T) map[string]builtRepo {
	t.Helper()
	repos, err := Catalog(fakeStage(t))
	if err != nil {
		t.Fatal(err)
	}
	b := NewBuilder()
	byRef := map[string]builtRepo{}
	for _, r := range repos {
		built, err := b.Build(r.Image)
		if err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
		for _, ref := range r.Refs() {
			if _, dup := byRef[ref]; dup {
				t.Errorf("%s defined twice", ref)
			}
			byRef[ref] = builtRepo{r, built}
		}
	}
	return byRef
}

func TestCatalogServesCritestRefs(t *testing.T) {
	byRef := buildCatalog(t)
	for _, ref := range critestRefs {
		if _, ok := byRef[ref]; !ok {
			t.Errorf("%s is not built", ref)
		}
	}
	if len(byRef) != len(critestRefs)+1 { // + test-image-digest:latest
		var extra []string
		for ref := range byRef {
			extra = append(extra, ref)
		}
		t.Errorf("catalog has %d references, want %d: %q", len(byRef), len(critestRefs)+1, extra)
	}
}

func TestCatalogImageIdentities(t *testing.T) {
	byRef := buildCatalog(t)
	id := func(ref string) string { return byRef[ref].built.ID() }
	const s = "gcr.io/k8s-staging-cri-tools/"

	// One image under three tags; distinct images under the other names.
	if id(s+"test-image-tags:1") != id(s+"test-image-tags:2") || id(s+"test-image-tags:2") != id(s+"test-image-tags:3") {
		t.Error("test-image-tags:1,2,3 must be one image")
	}
	if id("registry.k8s.io/pause:3.9") != id("k8s.gcr.io/pause:3.9") {
		t.Error("pause:3.9 must be the same image in both registries")
	}
	distinct := []string{
		s + "test-image-1:latest", s + "test-image-2:latest", s + "test-image-3:latest",
		s + "test-image-latest:latest", s + "test-image-tag:test", s + "test-image-tag:all",
		s + "test-image-tags:1", "registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.10",
		"registry.k8s.io/e2e-test-images/busybox:1.29-2", "public.ecr.aws/docker/library/busybox:1",
		s + "test-image-user-uid:latest", s + "test-image-user-username:latest",
		s + "test-image-user-uid-group:latest", s + "test-image-user-username-group:latest",
		s + "test-image-predefined-group:latest",
	}
	seen := map[string]string{}
	for _, ref := range distinct {
		if other, dup := seen[id(ref)]; dup {
			t.Errorf("%s and %s share image ID %s", ref, other, id(ref))
		}
		seen[id(ref)] = ref
	}
}

func TestCatalogConfigs(t *testing.T) {
	byRef := buildCatalog(t)
	const s = "gcr.io/k8s-staging-cri-tools/"
	for ref, user := range map[string]string{
		s + "test-image-user-uid:latest":            "1002",
		s + "test-image-user-username:latest":       "www-data",
		s + "test-image-user-uid-group:latest":      "1003:1004",
		s + "test-image-user-username-group:latest": "www-data:1004",
		s + "test-image-predefined-group:latest":    "1000",
		"registry.k8s.io/pause:3.9":                 "65535:65535",
		"registry.k8s.io/pause:3.10":                "65535:65535",
	} {
		if got := byRef[ref].Image.Config.User; got != user {
			t.Errorf("%s: User %q, want %q", ref, got, user)
		}
	}
	for ref, argv := range map[string]string{
		"registry.k8s.io/e2e-test-images/busybox:1.29-2":  "sh",
		"registry.k8s.io/e2e-test-images/nginx:1.14-2":    "nginx -g daemon off;",
		"registry.k8s.io/e2e-test-images/httpd:2.4.39-4":  "httpd-foreground",
		"registry.k8s.io/e2e-test-images/nonewprivs:1.3":  "/usr/local/bin/nnp",
		"registry.k8s.io/pause:3.10":                      "/pause",
		s + "hostnet-nginx-" + runtime.GOARCH + ":latest": "/docker-entrypoint.sh nginx -g daemon off;",
	} {
		c := byRef[ref].Image.Config
		if got := strings.Join(append(append([]string{}, c.Entrypoint...), c.Cmd...), " "); got != argv {
			t.Errorf("%s: runs %q, want %q", ref, got, argv)
		}
	}
	if byRef["public.ecr.aws/docker/library/busybox:1"].Image.Format != OCI {
		t.Error("the ECR busybox is served as OCI")
	}
	if byRef[s+"hostnet-nginx-"+runtime.GOARCH+":latest"].Image.List {
		t.Error("hostnet-nginx-<arch> is a single-platform manifest upstream")
	}
}

func TestCatalogFiles(t *testing.T) {
	byRef := buildCatalog(t)
	// files gathers the merged content of an image's layers.
	files := func(ref string) *Tree {
		merged := NewTree()
		for _, l := range byRef[ref].Image.Layers {
			for _, p := range l.Tree.Paths() {
				n, _ := l.Tree.Lookup(p)
				merged.entries[p] = n
			}
		}
		return merged
	}
	bb := files("registry.k8s.io/e2e-test-images/busybox:1.29-2")
	busybox, _ := bb.Lookup("bin/busybox")
	for _, applet := range []string{"sh", "ls", "[", "id"} {
		if n, _ := bb.Lookup("bin/" + applet); n != busybox {
			t.Errorf("/bin/%s is not a hard link to /bin/busybox", applet)
		}
	}
	for _, p := range []string{"bin/pgrep", "bin/ipcs", "lib/x86_64-linux-gnu/libc.so.6", "etc/passwd", "etc/group"} {
		if _, ok := bb.Lookup(p); !ok {
			t.Errorf("busybox image lacks /%s", p)
		}
	}
	if n, _ := bb.Lookup("tmp"); n.mode != 0o1777 {
		t.Errorf("/tmp mode %o", n.mode)
	}
	passwd, _ := bb.Lookup("etc/passwd")
	for _, u := range []string{"root:x:0:0:", "www-data:x:33:33:", "nobody:x:65534:65534:"} {
		if !bytes.Contains(passwd.data, []byte("\n"+u)) && !bytes.HasPrefix(passwd.data, []byte(u)) {
			t.Errorf("/etc/passwd lacks %s", u)
		}
	}

	pg := files("gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest")
	group, _ := pg.Lookup("etc/group")
	if !bytes.Contains(group.data, []byte("\ngroup-defined-in-image:x:50000:default-user\n")) ||
		!bytes.Contains(group.data, []byte("\ndefault-user:x:1000:\n")) {
		t.Errorf("predefined-group /etc/group:\n%s", group.data)
	}
	pw, _ := pg.Lookup("etc/passwd")
	if !bytes.Contains(pw.data, []byte("\ndefault-user:x:1000:1000:")) {
		t.Errorf("predefined-group /etc/passwd:\n%s", pw.data)
	}
	if home, _ := pg.Lookup("home/default-user"); home == nil || home.uid != 1000 || home.gid != 1000 {
		t.Errorf("home of default-user = %+v", home)
	}

	if n, _ := files("registry.k8s.io/e2e-test-images/nonewprivs:1.3").Lookup("usr/local/bin/nnp"); n == nil || n.mode != 0o4755 || n.uid != 0 {
		t.Errorf("nnp = %+v, want setuid root", n)
	}
	for ref, port := range map[string]string{
		"registry.k8s.io/e2e-test-images/nginx:1.14-2":                             "listen       80;",
		"gcr.io/k8s-staging-cri-tools/hostnet-nginx-" + runtime.GOARCH + ":latest": "listen       12003;",
	} {
		tr := files(ref)
		conf, _ := tr.Lookup("etc/nginx/conf.d/default.conf")
		if conf == nil || !bytes.Contains(conf.data, []byte(port)) {
			t.Errorf("%s: default.conf lacks %q", ref, port)
		}
		if n, _ := tr.Lookup("usr/sbin/nginx"); n == nil || string(n.data) != "static webserver" {
			t.Errorf("%s: /usr/sbin/nginx is not the web server", ref)
		}
	}
	for _, m := range []struct{ ref, file string }{
		{"gcr.io/k8s-staging-cri-tools/test-image-1:latest", "test-image-1"},
		{"gcr.io/k8s-staging-cri-tools/test-image-tags:2", "same-image"},
		{"gcr.io/k8s-staging-cri-tools/test-image-tag:all", "all"},
	} {
		if _, ok := files(m.ref).Lookup(m.file); !ok {
			t.Errorf("%s lacks the marker /%s", m.ref, m.file)
		}
	}
}

// TestMirrorConfCoversHosts keeps hack/registries-mirror.conf.in in step
// with the registries the catalog serves.
func TestMirrorConfCoversHosts(t *testing.T) {
	conf, err := os.ReadFile("../registries-mirror.conf.in")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range UpstreamHosts {
		if !bytes.Contains(conf, []byte("prefix = \""+h+"\"")) {
			t.Errorf("registries-mirror.conf.in does not mirror %s", h)
		}
	}
}

func TestCatalogMissingStage(t *testing.T) {
	if _, err := Catalog(Stage{Dir: t.TempDir()}); err == nil {
		t.Fatal("Catalog with an empty stage succeeded")
	}
}

func TestLatestAliases(t *testing.T) {
	repos := []Repo{
		{Name: "pause", Tags: []string{"3.9"}},
		{Name: "pause", Tags: []string{"3.10"}},
		{Name: "t", Tags: []string{"latest"}},
	}
	addLatestAliases(repos)
	if strings.Join(repos[0].Tags, ",") != "3.9,latest" || len(repos[1].Tags) != 1 || len(repos[2].Tags) != 1 {
		t.Errorf("tags = %v %v %v", repos[0].Tags, repos[1].Tags, repos[2].Tags)
	}
}
