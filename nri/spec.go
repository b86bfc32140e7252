package nri

import (
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/nri/pkg/api"
	nrigen "github.com/containerd/nri/pkg/runtime-tools/generate"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// AdjustSpec applies a plugin's adjustment of a container being created to
// its runtime spec: env, args, annotations, mounts, hooks, devices,
// resources, rlimits, OOM score, namespaces, sysctls, seccomp and the rest
// NRI defines. injectCDI, when not nil, resolves CDI device names into the
// spec; without it a CDI request is refused.
//
// NRI's own generate package does the adjusting; what it needs below it
// (runtime-tools' spec generator, which would pull in a whole module for a
// few setters) is specEditor.
func AdjustSpec(spec *specs.Spec, adjust *api.ContainerAdjustment, injectCDI func(*specs.Spec, []string) error) error {
	if adjust == nil {
		return nil
	}
	if injectCDI == nil {
		injectCDI = func(_ *specs.Spec, names []string) error {
			return fmt.Errorf("CDI devices %q requested, but crid resolves no CDI devices", names)
		}
	}
	if spec.Process == nil {
		spec.Process = &specs.Process{}
	}
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	g := nrigen.SpecGenerator(&specEditor{s: spec}, nrigen.WithCDIDeviceInjector(injectCDI))
	if err := g.Adjust(adjust); err != nil {
		return fmt.Errorf("apply NRI adjustment: %w", err)
	}
	return nil
}

// specEditor is the small set of spec setters NRI's generator works
// through (its UnderlyingGenerator interface), on one spec in place.
type specEditor struct{ s *specs.Spec }

var _ nrigen.UnderlyingGenerator = (*specEditor)(nil)

func (e *specEditor) Spec() *specs.Spec { return e.s }

func (e *specEditor) process() *specs.Process {
	if e.s.Process == nil {
		e.s.Process = &specs.Process{}
	}
	return e.s.Process
}

func (e *specEditor) linux() *specs.Linux {
	if e.s.Linux == nil {
		e.s.Linux = &specs.Linux{}
	}
	return e.s.Linux
}

func (e *specEditor) resources() *specs.LinuxResources {
	l := e.linux()
	if l.Resources == nil {
		l.Resources = &specs.LinuxResources{}
	}
	return l.Resources
}

func (e *specEditor) cpu() *specs.LinuxCPU {
	r := e.resources()
	if r.CPU == nil {
		r.CPU = &specs.LinuxCPU{}
	}
	return r.CPU
}

func (e *specEditor) memory() *specs.LinuxMemory {
	r := e.resources()
	if r.Memory == nil {
		r.Memory = &specs.LinuxMemory{}
	}
	return r.Memory
}

func (e *specEditor) hooks() *specs.Hooks {
	if e.s.Hooks == nil {
		e.s.Hooks = &specs.Hooks{}
	}
	return e.s.Hooks
}

func (e *specEditor) AddAnnotation(key, value string) {
	if e.s.Annotations == nil {
		e.s.Annotations = map[string]string{}
	}
	e.s.Annotations[key] = value
}

func (e *specEditor) RemoveAnnotation(key string) { delete(e.s.Annotations, key) }

// AddDevice adds a device node, replacing one at the same path.
func (e *specEditor) AddDevice(d specs.LinuxDevice) {
	e.RemoveDevice(d.Path)
	l := e.linux()
	l.Devices = append(l.Devices, d)
}

func (e *specEditor) RemoveDevice(path string) {
	l := e.linux()
	l.Devices = slices.DeleteFunc(l.Devices, func(d specs.LinuxDevice) bool { return d.Path == path })
}

func (e *specEditor) AddLinuxResourcesDevice(allow bool, devType string, major, minor *int64, access string) {
	r := e.resources()
	r.Devices = append(r.Devices, specs.LinuxDeviceCgroup{Allow: allow, Type: devType, Major: major, Minor: minor, Access: access})
}

// AddOrReplaceLinuxNamespace sets the path of a namespace kind, adding
// the kind when the spec has none.
func (e *specEditor) AddOrReplaceLinuxNamespace(ns, path string) error {
	kind, err := namespaceType(ns)
	if err != nil {
		return err
	}
	l := e.linux()
	for i := range l.Namespaces {
		if l.Namespaces[i].Type == kind {
			l.Namespaces[i].Path = path
			return nil
		}
	}
	l.Namespaces = append(l.Namespaces, specs.LinuxNamespace{Type: kind, Path: path})
	return nil
}

func (e *specEditor) RemoveLinuxNamespace(ns string) error {
	kind, err := namespaceType(ns)
	if err != nil {
		return err
	}
	l := e.linux()
	l.Namespaces = slices.DeleteFunc(l.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == kind })
	return nil
}

// namespaceType accepts the spec's names and the short ones ("net").
func namespaceType(ns string) (specs.LinuxNamespaceType, error) {
	switch ns {
	case "network", "net":
		return specs.NetworkNamespace, nil
	case "pid", "ipc", "uts", "mount", "user", "cgroup", "time":
		return specs.LinuxNamespaceType(ns), nil
	case "mnt":
		return specs.MountNamespace, nil
	}
	return "", fmt.Errorf("unknown namespace type %q", ns)
}

func (e *specEditor) AddPreStartHook(h specs.Hook) {
	hs := e.hooks()
	//lint:ignore SA1019 plugins may still send prestart hooks, and libcontainer still runs them
	hs.Prestart = append(hs.Prestart, h)
}

func (e *specEditor) AddPostStartHook(h specs.Hook) {
	hs := e.hooks()
	hs.Poststart = append(hs.Poststart, h)
}

func (e *specEditor) AddPostStopHook(h specs.Hook) {
	hs := e.hooks()
	hs.Poststop = append(hs.Poststop, h)
}

// AddProcessEnv sets NAME=value, replacing an earlier NAME.
func (e *specEditor) AddProcessEnv(name, value string) {
	p := e.process()
	p.Env = slices.DeleteFunc(p.Env, func(kv string) bool { return strings.SplitN(kv, "=", 2)[0] == name })
	p.Env = append(p.Env, name+"="+value)
}

func (e *specEditor) ClearProcessEnv() { e.process().Env = nil }

func (e *specEditor) SetProcessArgs(args []string) { e.process().Args = args }

func (e *specEditor) SetProcessOOMScoreAdj(adj int) { e.process().OOMScoreAdj = &adj }

func (e *specEditor) AddLinuxResourcesHugepageLimit(pageSize string, limit uint64) {
	r := e.resources()
	for i := range r.HugepageLimits {
		if r.HugepageLimits[i].Pagesize == pageSize {
			r.HugepageLimits[i].Limit = limit
			return
		}
	}
	r.HugepageLimits = append(r.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: pageSize, Limit: limit})
}

func (e *specEditor) AddLinuxResourcesUnified(key, val string) {
	r := e.resources()
	if r.Unified == nil {
		r.Unified = map[string]string{}
	}
	r.Unified[key] = val
}

func (e *specEditor) AddLinuxSysctl(key, value string) {
	l := e.linux()
	if l.Sysctl == nil {
		l.Sysctl = map[string]string{}
	}
	l.Sysctl[key] = value
}

func (e *specEditor) RemoveLinuxSysctl(key string) { delete(e.linux().Sysctl, key) }

func (e *specEditor) AddMount(m specs.Mount) { e.s.Mounts = append(e.s.Mounts, m) }

func (e *specEditor) RemoveMount(dest string) {
	e.s.Mounts = slices.DeleteFunc(e.s.Mounts, func(m specs.Mount) bool { return m.Destination == dest })
}

func (e *specEditor) ClearMounts() { e.s.Mounts = nil }

func (e *specEditor) Mounts() []specs.Mount { return slices.Clone(e.s.Mounts) }

func (e *specEditor) SetLinuxCgroupsPath(path string) { e.linux().CgroupsPath = path }

func (e *specEditor) SetLinuxRootPropagation(rp string) error {
	switch rp {
	case "", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable":
		e.linux().RootfsPropagation = rp
		return nil
	}
	return fmt.Errorf("rootfs propagation %q is not valid", rp)
}

func (e *specEditor) SetLinuxResourcesCPUCpus(cpus string) { e.cpu().Cpus = cpus }

func (e *specEditor) SetLinuxResourcesCPUMems(mems string) { e.cpu().Mems = mems }

func (e *specEditor) SetLinuxResourcesCPUPeriod(period uint64) { e.cpu().Period = &period }

func (e *specEditor) SetLinuxResourcesCPUQuota(quota int64) { e.cpu().Quota = &quota }

func (e *specEditor) SetLinuxResourcesCPURealtimePeriod(period uint64) {
	e.cpu().RealtimePeriod = &period
}

func (e *specEditor) SetLinuxResourcesCPURealtimeRuntime(t int64) { e.cpu().RealtimeRuntime = &t }

func (e *specEditor) SetLinuxResourcesCPUShares(shares uint64) { e.cpu().Shares = &shares }

func (e *specEditor) SetLinuxResourcesMemoryLimit(limit int64) { e.memory().Limit = &limit }

func (e *specEditor) SetLinuxResourcesMemorySwap(swap int64) { e.memory().Swap = &swap }
