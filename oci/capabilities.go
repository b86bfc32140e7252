package oci

import (
	"fmt"
	"strings"

	"github.com/moby/sys/capability"
)

// HostCapabilities lists the capabilities in this process's effective set,
// which is what "ALL" and privileged containers can be granted.
func HostCapabilities() ([]string, error) {
	c, err := capability.NewPid2(0)
	if err == nil {
		err = c.Load()
	}
	if err != nil {
		return nil, fmt.Errorf("read own capabilities: %w", err)
	}
	var out []string
	for _, cp := range capability.ListKnown() {
		if c.Get(capability.EFFECTIVE, cp) {
			out = append(out, "CAP_"+strings.ToUpper(cp.String()))
		}
	}
	return out, nil
}
