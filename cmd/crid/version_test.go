package main

import (
	"bytes"
	"errors"
	"os"
	"runtime/debug"
	"strings"
	"testing"
)

// goModVersion is the version go.mod requires of module path.
func goModVersion(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == path {
			return f[1]
		}
	}
	t.Fatalf("go.mod does not require %s", path)
	return ""
}

func TestPrintVersion(t *testing.T) {
	self := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Deps: []*debug.Module{
			{Path: "k8s.io/cri-api", Version: "v0.37.2"},
			{Path: "github.com/containernetworking/cni", Version: "v1.3.1"},
			{Path: "go.podman.io/image/v5", Version: "v5.42.1", Replace: &debug.Module{Path: "../image", Version: ""}},
		},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef"}, {Key: "vcs.time", Value: "2026-12-06T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}},
	}
	monitor := &debug.BuildInfo{Deps: []*debug.Module{{Path: "github.com/opencontainers/runc", Version: "v1.5.2"}}}
	var buf bytes.Buffer
	printVersion(&buf, "v1.0.0", self, "/usr/local/bin/crid-monitor", monitor, nil)
	want := `crid v1.0.0
  commit:             0123456789abcdef 2026-12-06T10:00:00Z, modified
  go:                 go1.26.8
  runc/libcontainer:  v1.5.2 (linked into /usr/local/bin/crid-monitor)
  cri-api:            v0.37.2
  cni (libcni):       v1.3.1
  containers/image:   replaced by ../image
  grpc:               not linked
`
	if buf.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", buf.String(), want)
	}

	// The Makefile's commit wins; a missing monitor is said, not hidden.
	buf.Reset()
	printVersion(&buf, "v1.0.0", self, "/x/crid-monitor", nil, errors.New("open /x/crid-monitor: no such file or directory"))
	for _, w := range []string{"runc/libcontainer:  unknown (/x/crid-monitor: open /x/crid-monitor: no such file or directory)"} {
		if !strings.Contains(buf.String(), w) {
			t.Fatalf("missing %q in:\n%s", w, buf.String())
		}
	}
	if got := commitLine("feedbeef", self); got != "feedbeef" {
		t.Fatalf("commitLine with a linked commit = %q", got)
	}
	if got := commitLine("", &debug.BuildInfo{}); !strings.HasPrefix(got, "unknown") {
		t.Fatalf("commitLine with no VCS info = %q", got)
	}
}

// This binary's own build info carries the libraries crid reports, at the
// versions go.mod pins.
func TestVersionOfThisBuild(t *testing.T) {
	self, ok := debug.ReadBuildInfo()
	if !ok {
		t.Fatal("no build info")
	}
	var buf bytes.Buffer
	printVersion(&buf, buildVersion(), self, "crid-monitor", nil, errors.New("not built"))
	for _, m := range reportedModules {
		want := m.label + ":"
		line := ""
		for _, l := range strings.Split(buf.String(), "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), want) {
				line = l
			}
		}
		if v := goModVersion(t, m.path); !strings.HasSuffix(line, " "+v) {
			t.Errorf("%s: line %q, want go.mod's %s", m.label, line, v)
		}
	}
}
