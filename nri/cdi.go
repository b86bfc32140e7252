package nri

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"tags.cncf.io/container-device-interface/pkg/cdi"
)

// InjectCDI resolves CDI device names (vendor.com/class=name) a plugin
// asked for against the CDI specs in nri.cdi_spec_dirs and applies their
// edits (device nodes, mounts, env, hooks) to spec. The specs are read
// afresh for each request, which only plugins that name CDI devices make:
// no directory watcher runs for the daemon's lifetime.
func (n *NRI) InjectCDI(spec *specs.Spec, names []string) error {
	if len(names) == 0 {
		return nil
	}
	cache, err := cdi.NewCache(cdi.WithSpecDirs(n.cfg.CDISpecDirs...), cdi.WithAutoRefresh(false))
	if err != nil {
		return fmt.Errorf("CDI devices %q: %w", names, err)
	}
	unresolved, err := cache.InjectDevices(spec, names...)
	if err != nil {
		if len(unresolved) > 0 {
			// Broken spec files are the likely reason: name them too.
			if specErrs := cache.Refresh(); specErrs != nil {
				err = fmt.Errorf("%w (CDI spec errors: %v)", err, specErrs)
			}
			return fmt.Errorf("CDI devices %q not found in nri.cdi_spec_dirs %q: %w", unresolved, n.cfg.CDISpecDirs, err)
		}
		return fmt.Errorf("inject CDI devices %q: %w", names, err)
	}
	return nil
}
