// Package apparmor is crid's view of the node's AppArmor: whether the
// kernel enforces it, which profiles are loaded, and crid's own default
// profile, crid-default, loaded with apparmor_parser the first time a
// container needs it.
package apparmor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// DefaultProfile is the profile RuntimeDefault containers run under.
const DefaultProfile = "crid-default"

// loadTimeout bounds one apparmor_parser run: compiling the default
// profile takes well under a second; a hung parser must not hold a
// CreateContainer forever.
const loadTimeout = 30 * time.Second

// Host is the node's AppArmor. The zero value is not usable: use New.
type Host struct {
	// root prefixes every host path read (tests point it at a fake /sys).
	root string
	// parser is the apparmor_parser command ("" looks it up in PATH).
	parser string

	mu            sync.Mutex
	defaultLoaded bool
}

// New returns the host's AppArmor as seen under root ("" or "/" for the
// real one), loading profiles with parser ("" for apparmor_parser from
// PATH).
func New(root, parser string) *Host {
	return &Host{root: root, parser: parser}
}

func (h *Host) path(p string) string { return filepath.Join(h.root, p) }

const (
	enabledParam = "/sys/module/apparmor/parameters/enabled"
	profilesFile = "/sys/kernel/security/apparmor/profiles"
)

// Enabled is true when the kernel enforces AppArmor and securityfs shows
// its profiles: only then can a profile be checked and applied.
func (h *Host) Enabled() bool {
	ok, _ := h.state()
	return ok
}

// state says whether AppArmor can be used and, if not, why.
func (h *Host) state() (bool, string) {
	b, err := os.ReadFile(h.path(enabledParam))
	if errors.Is(err, os.ErrNotExist) {
		return false, "not in this kernel (no " + enabledParam + ")"
	}
	if err != nil {
		return false, fmt.Sprintf("cannot read %s: %v", enabledParam, err)
	}
	if !strings.HasPrefix(string(b), "Y") {
		return false, "disabled in the kernel (" + enabledParam + " is not Y)"
	}
	if _, err := os.Stat(h.path(profilesFile)); err != nil {
		return false, "enabled in the kernel, but securityfs is not mounted on /sys/kernel/security (mount -t securityfs securityfs /sys/kernel/security)"
	}
	return true, ""
}

// Loaded reports whether a profile of that name is loaded in the kernel.
func (h *Host) Loaded(name string) (bool, error) {
	f, err := os.Open(h.path(profilesFile))
	if err != nil {
		return false, fmt.Errorf("reading the loaded AppArmor profiles: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// "name (enforce)"; a name may itself contain spaces.
		line := sc.Text()
		if i := strings.LastIndex(line, " ("); i >= 0 {
			line = line[:i]
		}
		if line == name {
			return true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("reading the loaded AppArmor profiles: %w", err)
	}
	return false, nil
}

// ParserPath is the apparmor_parser crid runs, or an error saying it is
// missing and which package has it.
func (h *Host) ParserPath() (string, error) {
	p := h.parser
	if p == "" {
		p = "apparmor_parser"
	}
	path, err := exec.LookPath(p)
	if err != nil {
		return "", fmt.Errorf("apparmor_parser not found (Debian package apparmor): %w", err)
	}
	return path, nil
}

// EnsureDefault loads crid-default once per daemon: the first container
// that needs it pays for the parser run; a failure is retried by the next.
// Loading replaces a profile of the same name (from an older crid), so the
// kernel always holds this crid's rules.
func (h *Host) EnsureDefault(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.defaultLoaded {
		return nil
	}
	if err := h.load(ctx, Profile(DefaultProfile)); err != nil {
		return fmt.Errorf("loading AppArmor profile %s: %w", DefaultProfile, err)
	}
	h.defaultLoaded = true
	return nil
}

// load compiles a profile text into the kernel: -r replaces a loaded
// profile of the same name, -K keeps apparmor_parser's cache out of it.
func (h *Host) load(ctx context.Context, text string) error {
	parser, err := h.ParserPath()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, parser, "-Kr")
	cmd.Stdin = strings.NewReader(text)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s -Kr: %w: %s", parser, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Status is what `crid check` and Status verbose say about AppArmor.
type Status struct {
	Enabled bool
	// Reason says why AppArmor cannot be used when Enabled is false.
	Reason string
	// Parser is apparmor_parser's path, "" if it is missing.
	Parser string
	// DefaultLoaded says whether crid-default is in the kernel now.
	DefaultLoaded bool
}

// Status reads the node's AppArmor state; it loads nothing.
func (h *Host) Status() Status {
	var st Status
	st.Enabled, st.Reason = h.state()
	if p, err := h.ParserPath(); err == nil {
		st.Parser = p
	}
	if st.Enabled {
		st.DefaultLoaded, _ = h.Loaded(DefaultProfile)
	}
	return st
}

// String is the one-line summary of the state.
func (st Status) String() string {
	if !st.Enabled {
		return "AppArmor " + st.Reason + ": RuntimeDefault and Unconfined containers run unconfined; Localhost profiles are refused"
	}
	parser := "apparmor_parser " + st.Parser
	if st.Parser == "" {
		parser = "apparmor_parser missing (install Debian's apparmor): RuntimeDefault containers cannot be created"
	}
	loaded := DefaultProfile + " not loaded yet (loaded by the first RuntimeDefault container)"
	if st.DefaultLoaded {
		loaded = DefaultProfile + " loaded"
	}
	return "AppArmor enabled; " + parser + "; " + loaded
}
