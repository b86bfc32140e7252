package apparmor

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeHost builds a /sys with AppArmor's files under a temp root and a
// fake apparmor_parser that records the profile text it was given and
// adds the profile to the loaded list, as the kernel would.
func fakeHost(t *testing.T, enabled string, securityfs bool) (*Host, string) {
	t.Helper()
	root := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if enabled != "" {
		write(enabledParam, enabled+"\n")
	}
	if securityfs {
		write(profilesFile, "cri-validate-apparmor-test-deny-write (enforce)\nwith space (complain)\n")
	}
	parser := filepath.Join(root, "apparmor_parser")
	script := "#!/bin/sh\n" +
		"[ \"$1\" = -Kr ] || { echo bad args \"$@\" >&2; exit 2; }\n" +
		"cat > " + root + "/loaded-text\n" +
		"echo \"$(cat " + root + "/runs 2>/dev/null)x\" > " + root + "/runs\n" +
		"echo 'crid-default (enforce)' >> " + filepath.Join(root, profilesFile) + "\n"
	if err := os.WriteFile(parser, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return New(root, parser), root
}

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		name       string
		enabled    string
		securityfs bool
		want       bool
		reason     string
	}{
		{"absent", "", false, false, "not in this kernel"},
		{"disabled", "N", true, false, "disabled in the kernel"},
		{"no securityfs", "Y", false, false, "securityfs is not mounted"},
		{"enabled", "Y", true, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := fakeHost(t, tc.enabled, tc.securityfs)
			if got := h.Enabled(); got != tc.want {
				t.Errorf("Enabled() = %v, want %v", got, tc.want)
			}
			st := h.Status()
			if st.Enabled != tc.want || !strings.Contains(st.Reason, tc.reason) {
				t.Errorf("Status() = %+v, want enabled %v and a reason with %q", st, tc.want, tc.reason)
			}
			if !tc.want && !strings.Contains(st.String(), "Localhost profiles are refused") {
				t.Errorf("summary %q does not say Localhost profiles are refused", st.String())
			}
		})
	}
}

func TestLoaded(t *testing.T) {
	h, _ := fakeHost(t, "Y", true)
	for name, want := range map[string]bool{
		"cri-validate-apparmor-test-deny-write": true,
		"with space":                            true,
		"cri-validate":                          false,
		"enforce":                               false,
		DefaultProfile:                          false,
	} {
		got, err := h.Loaded(name)
		if err != nil || got != want {
			t.Errorf("Loaded(%q) = %v, %v; want %v", name, got, err, want)
		}
	}
	absent, _ := fakeHost(t, "", false)
	if _, err := absent.Loaded("x"); err == nil {
		t.Error("Loaded without securityfs gave no error")
	}
}

// TestEnsureDefaultOnce: the first need loads crid-default through the
// parser with the generated text; later needs run no parser.
func TestEnsureDefaultOnce(t *testing.T) {
	h, root := fakeHost(t, "Y", true)
	if st := h.Status(); st.DefaultLoaded || !strings.Contains(st.String(), "not loaded yet") {
		t.Fatalf("before loading: %+v %q", st, st.String())
	}
	for range 3 {
		if err := h.EnsureDefault(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	runs, _ := os.ReadFile(filepath.Join(root, "runs"))
	if strings.TrimSpace(string(runs)) != "x" {
		t.Errorf("parser ran %q times, want once", strings.TrimSpace(string(runs)))
	}
	text, _ := os.ReadFile(filepath.Join(root, "loaded-text"))
	if string(text) != Profile(DefaultProfile) {
		t.Errorf("parser got %q, want the default profile", text)
	}
	if ok, err := h.Loaded(DefaultProfile); !ok || err != nil {
		t.Errorf("after loading: Loaded = %v, %v", ok, err)
	}
	if st := h.Status(); !st.DefaultLoaded || !strings.Contains(st.String(), DefaultProfile+" loaded") {
		t.Errorf("after loading: %+v %q", st, st.String())
	}
}

// TestEnsureDefaultFailureRetried: a failing parser is reported with its
// output, and the next need tries again.
func TestEnsureDefaultFailureRetried(t *testing.T) {
	h, root := fakeHost(t, "Y", true)
	real := h.parser
	h.parser = filepath.Join(root, "broken")
	if err := os.WriteFile(h.parser, []byte("#!/bin/sh\necho 'syntax error at line 3' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := h.EnsureDefault(context.Background())
	if err == nil || !strings.Contains(err.Error(), "syntax error at line 3") || !strings.Contains(err.Error(), DefaultProfile) {
		t.Fatalf("EnsureDefault with a failing parser: %v", err)
	}
	h.parser = real
	if err := h.EnsureDefault(context.Background()); err != nil {
		t.Fatalf("retry: %v", err)
	}
}

func TestMissingParser(t *testing.T) {
	h, _ := fakeHost(t, "Y", true)
	h.parser = "/nonexistent/apparmor_parser"
	err := h.EnsureDefault(context.Background())
	if err == nil || !strings.Contains(err.Error(), "Debian package apparmor") {
		t.Fatalf("EnsureDefault without a parser: %v", err)
	}
	if st := h.Status(); st.Parser != "" || !strings.Contains(st.String(), "apparmor_parser missing") {
		t.Errorf("Status without a parser: %+v %q", st, st.String())
	}
}

// TestProfileCompiles runs the real apparmor_parser over crid-default
// without loading it (-Q), so a syntax error fails here, not on a node.
func TestProfileCompiles(t *testing.T) {
	parser, err := exec.LookPath("apparmor_parser")
	if err != nil {
		t.Skip("apparmor_parser not installed (hack/install-deps.sh installs Debian's apparmor)")
	}
	cmd := exec.Command(parser, "-QK")
	cmd.Stdin = strings.NewReader(Profile(DefaultProfile))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apparmor_parser -QK: %v: %s", err, out)
	}
	// A broken profile does fail, so the check above means something.
	cmd = exec.Command(parser, "-QK")
	cmd.Stdin = strings.NewReader(strings.Replace(Profile(DefaultProfile), "deny mount,", "deny mount", 1))
	if err := cmd.Run(); err == nil {
		t.Fatal("apparmor_parser accepted a profile with a missing comma")
	}
}

func TestProfileRules(t *testing.T) {
	p := Profile("x-prof")
	for _, want := range []string{
		"profile x-prof flags=(attach_disconnected,mediate_deleted) {",
		"signal (send,receive) peer=x-prof,",
		"signal (receive) peer=unconfined,",
		"deny mount,",
		"deny @{PROC}/sysrq-trigger rwklx,",
		"deny /sys/kernel/security/** rwklx,",
	} {
		if !strings.Contains(p, want) {
			t.Errorf("profile lacks %q", want)
		}
	}
	if strings.Contains(p, "PROFILE_NAME") {
		t.Error("profile still holds the placeholder")
	}
}
