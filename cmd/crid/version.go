package main

import (
	"debug/buildinfo"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
)

// buildVersion is the build's version: the linker-set one, else the VCS
// revision Go recorded.
func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "0.0.0-" + s.Value[:12]
			}
		}
	}
	return "0.0.0-dev"
}

// versionCommand prints crid's version, commit, Go version and the versions
// of the libraries that decide its behaviour. libcontainer is linked into
// crid-monitor, not crid, so its version is read from the monitor binary
// beside crid, which is the one that runs the containers.
func versionCommand() int {
	self, _ := debug.ReadBuildInfo()
	monitor := monitorBeside()
	mbi, err := buildinfo.ReadFile(monitor)
	printVersion(os.Stdout, buildVersion(), self, monitor, mbi, err)
	return 0
}

// monitorBeside is the crid-monitor in crid's own directory.
func monitorBeside() string {
	self, err := os.Executable()
	if err != nil {
		return "crid-monitor"
	}
	return filepath.Join(filepath.Dir(self), "crid-monitor")
}

// Modules whose versions `crid --version` reports, by what an operator
// calls them.
var reportedModules = []struct{ label, path string }{
	{"cri-api", "k8s.io/cri-api"},
	{"cni (libcni)", "github.com/containernetworking/cni"},
	{"containers/image", "go.podman.io/image/v5"},
	{"grpc", "google.golang.org/grpc"},
}

// printVersion writes the version report from crid's build info and the
// monitor's (nil with monitorErr when it could not be read).
func printVersion(w io.Writer, ver string, self *debug.BuildInfo, monitor string, mbi *debug.BuildInfo, monitorErr error) {
	fmt.Fprintf(w, "crid %s\n", ver)
	line := func(k, v string) { fmt.Fprintf(w, "  %-19s %s\n", k+":", v) }
	line("commit", commitLine(gitCommit, self))
	goVersion := "unknown"
	if self != nil {
		goVersion = self.GoVersion
	}
	line("go", goVersion)
	if mbi != nil {
		line("runc/libcontainer", fmt.Sprintf("%s (linked into %s)", depVersion(mbi, "github.com/opencontainers/runc"), monitor))
	} else {
		line("runc/libcontainer", fmt.Sprintf("unknown (%s: %v)", monitor, monitorErr))
	}
	for _, m := range reportedModules {
		line(m.label, depVersion(self, m.path))
	}
}

// commitLine is the commit crid was built from: the linker-set one (the
// Makefile's, which works where Go's VCS stamping is turned off), else the
// revision Go stamped, with its time and whether the tree had uncommitted
// changes.
func commitLine(linked string, bi *debug.BuildInfo) string {
	if linked != "" {
		return linked
	}
	if bi == nil {
		return "unknown"
	}
	var rev, when, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if rev == "" {
		return "unknown (built outside a git checkout, or with -buildvcs=false)"
	}
	if when != "" {
		when = " " + when
	}
	return strings.TrimSpace(rev + when + modified)
}

// depVersion is the version of module path in bi, following a replace.
func depVersion(bi *debug.BuildInfo, path string) string {
	if bi == nil {
		return "unknown"
	}
	for _, d := range bi.Deps {
		if d.Path != path {
			continue
		}
		if d.Replace != nil {
			if d.Replace.Version == "" {
				return "replaced by " + d.Replace.Path
			}
			return d.Replace.Version + " (replaced by " + d.Replace.Path + ")"
		}
		return d.Version
	}
	return "not linked"
}
