package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// hack/install.sh (the second half of `make install`, after the Debian
// packages and CNI plugins) staged into a DESTDIR: binaries side by side,
// the default config and network only where there are none, the systemd
// unit pointing at the installed crid. A second run keeps the operator's
// files.
func TestInstallScriptIntoDestdir(t *testing.T) {
	dest := newDirs(t)
	install := func() string {
		t.Helper()
		cmd := exec.Command("bash", filepath.Join(repoRoot, "hack", "install.sh"))
		cmd.Env = append(os.Environ(), "DESTDIR="+dest, "SRC_BIN="+filepath.Dir(cridBin), "BINDIR=/opt/crid/bin")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("install.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	read := func(p string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dest, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	install()

	for _, b := range []string{"crid", "crid-monitor", "crid-pause"} {
		fi, err := os.Stat(filepath.Join(dest, "opt/crid/bin", b))
		if err != nil || fi.Mode().Perm() != 0o755 {
			t.Fatalf("%s: %v, mode %v", b, err, fi)
		}
	}
	code, defaults := runCrid(t, "config", "--default")
	if code != 0 {
		t.Fatalf("crid config --default: exit %d", code)
	}
	if got := read("etc/crid/crid.toml"); got != defaults {
		t.Fatalf("installed crid.toml is not `crid config --default`:\n%s", got)
	}
	mustContain(t, "default network", read("etc/cni/net.d/10-crid-bridge.conflist"), `"bridge": "crid0"`, "10.88.0.0/16")
	unit := read("etc/systemd/system/crid.service")
	mustContain(t, "crid.service", unit, "\nExecStart=/opt/crid/bin/crid\n", "\nKillMode=process\n", "\nDelegate=yes\n", "\nRestart=on-failure\n")

	// The operator's config and network survive a reinstall.
	mine := "# mine\n[runtime]\ninfra = \"always\"\n"
	writeFile(t, filepath.Join(dest, "etc/crid/crid.toml"), mine)
	writeFile(t, filepath.Join(dest, "etc/cni/net.d/10-crid-bridge.conflist"), "{}")
	out := install()
	mustContain(t, "second install", out, "crid.toml exists, left as it is")
	if read("etc/crid/crid.toml") != mine || read("etc/cni/net.d/10-crid-bridge.conflist") != "{}" {
		t.Fatal("a reinstall overwrote the operator's config or network")
	}
	if left, _ := filepath.Glob(filepath.Join(dest, "*/*/.*.new")); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	if !strings.Contains(out, "/opt/crid/bin/crid check") {
		t.Fatalf("install does not point at crid check:\n%s", out)
	}
}
