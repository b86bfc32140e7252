package monitor

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/moby/sys/capability"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// limits are what this monitor may hand to a container. Without
// CAP_SYS_RESOURCE (the case on these machines) a child cannot lower its
// oom_score_adj below ours nor raise a hard rlimit above ours, and it cannot
// be given a capability we lack: the init would fail half-way with
// "permission denied". The monitor clamps instead, as containerd's
// restrict_oom_score_adj does, and says so in its log.
type limits struct {
	sysResource bool
	oomScoreAdj int
	caps        map[string]bool // effective capabilities, "CAP_…"
}

func detectLimits() (limits, error) {
	l := limits{caps: map[string]bool{}}
	c, err := capability.NewPid2(0)
	if err == nil {
		err = c.Load()
	}
	if err != nil {
		return l, fmt.Errorf("read own capabilities: %w", err)
	}
	for _, cp := range capability.ListKnown() {
		if c.Get(capability.EFFECTIVE, cp) {
			l.caps["CAP_"+strings.ToUpper(cp.String())] = true
		}
	}
	l.sysResource = l.caps["CAP_SYS_RESOURCE"]
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return l, fmt.Errorf("read own oom_score_adj: %w", err)
	}
	if l.oomScoreAdj, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
		return l, fmt.Errorf("parse own oom_score_adj %q: %w", b, err)
	}
	return l, nil
}

// clampOOMScoreAdj raises a requested value below ours to ours.
func (l limits) clampOOMScoreAdj(adj *int) (*int, bool) {
	if adj == nil || l.sysResource || *adj >= l.oomScoreAdj {
		return adj, false
	}
	v := l.oomScoreAdj
	return &v, true
}

// filterCaps keeps the capabilities we hold; it returns the dropped ones.
func (l limits) filterCaps(c *configs.Capabilities) []string {
	if c == nil {
		return nil
	}
	var dropped []string
	keep := func(list []string) []string {
		out := list[:0:0]
		for _, name := range list {
			if l.caps[strings.ToUpper(name)] {
				out = append(out, name)
			} else if !contains(dropped, name) {
				dropped = append(dropped, name)
			}
		}
		return out
	}
	c.Bounding = keep(c.Bounding)
	c.Effective = keep(c.Effective)
	c.Permitted = keep(c.Permitted)
	c.Inheritable = keep(c.Inheritable)
	c.Ambient = keep(c.Ambient)
	return dropped
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

var rlimits = map[string]int{
	"RLIMIT_AS":         unix.RLIMIT_AS,
	"RLIMIT_CORE":       unix.RLIMIT_CORE,
	"RLIMIT_CPU":        unix.RLIMIT_CPU,
	"RLIMIT_DATA":       unix.RLIMIT_DATA,
	"RLIMIT_FSIZE":      unix.RLIMIT_FSIZE,
	"RLIMIT_LOCKS":      unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK":    unix.RLIMIT_MEMLOCK,
	"RLIMIT_MSGQUEUE":   unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE":       unix.RLIMIT_NICE,
	"RLIMIT_NOFILE":     unix.RLIMIT_NOFILE,
	"RLIMIT_NPROC":      unix.RLIMIT_NPROC,
	"RLIMIT_RSS":        unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO":     unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME":     unix.RLIMIT_RTTIME,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK":      unix.RLIMIT_STACK,
}

// newProcess maps an OCI process to libcontainer's, which
// specconv.CreateLibcontainerConfig leaves to its caller. Stdio, Init and
// the console are set by the caller. clamped lists what the limits changed.
func (l limits) newProcess(p *specs.Process) (lp *libcontainer.Process, clamped []string, err error) {
	if p == nil {
		return nil, nil, invalid("spec has no process")
	}
	if len(p.Args) == 0 || p.Args[0] == "" {
		return nil, nil, invalid("process args are empty")
	}
	if p.Cwd == "" || p.Cwd[0] != '/' {
		return nil, nil, invalid("process cwd %q is not absolute", p.Cwd)
	}
	nnp := p.NoNewPrivileges
	lp = &libcontainer.Process{
		Args:            p.Args,
		Env:             p.Env,
		UID:             int(p.User.UID),
		GID:             int(p.User.GID),
		Cwd:             p.Cwd,
		Label:           p.SelinuxLabel,
		NoNewPrivileges: &nnp,
		AppArmorProfile: p.ApparmorProfile,
		Scheduler:       p.Scheduler,
		IOPriority:      p.IOPriority,
	}
	if p.ConsoleSize != nil {
		lp.ConsoleWidth = uint16(min(p.ConsoleSize.Width, 0xffff))
		lp.ConsoleHeight = uint16(min(p.ConsoleSize.Height, 0xffff))
	}
	for _, g := range p.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	if c := p.Capabilities; c != nil {
		lp.Capabilities = &configs.Capabilities{
			Bounding:    c.Bounding,
			Effective:   c.Effective,
			Permitted:   c.Permitted,
			Inheritable: c.Inheritable,
			Ambient:     c.Ambient,
		}
		if dropped := l.filterCaps(lp.Capabilities); len(dropped) > 0 {
			clamped = append(clamped, "capabilities not held by the monitor: "+strings.Join(dropped, ","))
		}
	}
	for _, r := range p.Rlimits {
		t, ok := rlimits[r.Type]
		if !ok {
			return nil, nil, invalid("unknown rlimit type %q", r.Type)
		}
		rl := configs.Rlimit{Type: t, Hard: r.Hard, Soft: r.Soft}
		if rl.Soft > rl.Hard {
			return nil, nil, invalid("rlimit %s: soft %d above hard %d", r.Type, r.Soft, r.Hard)
		}
		if !l.sysResource {
			var own unix.Rlimit
			if err := unix.Getrlimit(t, &own); err == nil && rl.Hard > own.Max {
				clamped = append(clamped, fmt.Sprintf("%s hard %d to %d", r.Type, rl.Hard, own.Max))
				rl.Hard = own.Max
				rl.Soft = min(rl.Soft, rl.Hard)
			}
		}
		lp.Rlimits = append(lp.Rlimits, rl)
	}
	aff, err := configs.ConvertCPUAffinity(p.ExecCPUAffinity)
	if err != nil {
		return nil, nil, invalid("exec cpu affinity: %v", err)
	}
	lp.CPUAffinity = aff
	return lp, clamped, nil
}
