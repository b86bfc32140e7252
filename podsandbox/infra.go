package podsandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/cgroupmgr"
	"github.com/crid-dev/crid/imageservice"
	"github.com/crid-dev/crid/oci"
	"github.com/crid-dev/crid/oci/specgen"
)

// infraOOMScoreAdj keeps the pause process among the last to be killed;
// the monitor raises it to its own score where the node forbids lowering.
const infraOOMScoreAdj = -998

// PauseRunner runs a pod's infra process, as a container holding the
// pod's PID namespace, in the pinned network, IPC and UTS namespaces: crid's
// built-in crid-pause, or the sandbox image's pause binary. Its container
// ID is the sandbox ID.
type PauseRunner struct {
	Runtime *oci.Runtime
	Images  *imageservice.Service
	Cgroups *cgroupmgr.Manager
	// Image is the sandbox image, pulled when missing and pinned. Empty
	// runs the built-in infra from BuiltinRootfs.
	Image string
	// BuiltinRootfs is PrepareBuiltinRootfs's directory.
	BuiltinRootfs string
}

// Start runs the infra process: the built-in one from its read-only
// rootfs, or the sandbox image's, pulled if needed and mounted.
func (p *PauseRunner) Start(ctx context.Context, sb *Sandbox) (int, error) {
	rootfs, image, err := p.rootfs(ctx, sb)
	if err != nil {
		return 0, err
	}
	ns := map[specs.LinuxNamespaceType]string{specs.PIDNamespace: ""}
	for kind, typ := range map[nsKind]specs.LinuxNamespaceType{nsNet: specs.NetworkNamespace, nsIPC: specs.IPCNamespace, nsUTS: specs.UTSNamespace} {
		ns[typ] = "host"
		if pin := sb.Namespaces[string(kind)]; pin != "" {
			ns[typ] = pin
		}
	}
	if p := sb.UserNS(); p != "" {
		ns[specs.UserNamespace] = p
	}
	spec, err := specgen.Build(specgen.Input{
		Config: &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: "POD"},
			Linux: &runtime.LinuxContainerConfig{
				Resources: &runtime.LinuxContainerResources{OomScoreAdj: infraOOMScoreAdj},
				SecurityContext: &runtime.LinuxContainerSecurityContext{
					ReadonlyRootfs: true,
					NoNewPrivs:     true,
					Capabilities:   &runtime.Capability{DropCapabilities: []string{"ALL"}},
				},
			},
		},
		Image:       image,
		Pod:         specgen.Pod{Namespaces: ns},
		Rootfs:      rootfs,
		CgroupsPath: p.Cgroups.ContainerPath(sb.CgroupParent, sb.ID),
	})
	if err != nil {
		return 0, fmt.Errorf("infra spec: %w", err)
	}
	pid, err := p.Runtime.Create(ctx, oci.CreateRequest{ID: sb.ID, Spec: spec})
	if err != nil {
		return 0, fmt.Errorf("create infra container: %w", err)
	}
	if err := p.Runtime.Start(ctx, sb.ID); err != nil {
		return 0, fmt.Errorf("start infra container: %w", err)
	}
	return pid, nil
}

// rootfs returns the infra's root filesystem and what it takes from an
// image config.
func (p *PauseRunner) rootfs(ctx context.Context, sb *Sandbox) (string, specgen.Image, error) {
	if p.Image == "" {
		if p.BuiltinRootfs == "" {
			return "", specgen.Image{}, errors.New("built-in infra: no rootfs prepared")
		}
		rootfs := p.BuiltinRootfs
		if uid, gid, ok := sb.UsernsRoot(); ok {
			var err error
			if rootfs, err = p.usernsBuiltinRootfs(sb.ID, uid, gid); err != nil {
				return "", specgen.Image{}, err
			}
		}
		return rootfs, specgen.Image{Entrypoint: []string{builtinPause}, User: builtinUser, WorkingDir: "/"}, nil
	}
	img, err := p.Images.Get(p.Image)
	if err != nil {
		return "", specgen.Image{}, err
	}
	if img == nil {
		if img, err = p.Images.Pull(ctx, p.Image, nil); err != nil {
			return "", specgen.Image{}, fmt.Errorf("pull sandbox image: %w", err)
		}
	}
	u := imageservice.Userns{Path: sb.UserNS()}
	u.RootUID, u.RootGID, _ = sb.UsernsRoot()
	rootfs, err := p.Images.MountRootfsUserns(sb.ID, img.ID.String(), u)
	if err != nil {
		return "", specgen.Image{}, err
	}
	cfg := img.Config.Config
	return rootfs, specgen.Image{Entrypoint: cfg.Entrypoint, Cmd: cfg.Cmd, Env: cfg.Env, WorkingDir: cfg.WorkingDir, User: cfg.User}, nil
}

// Stop kills the infra process and waits until it is gone.
func (p *PauseRunner) Stop(ctx context.Context, sb *Sandbox) error {
	st, err := p.Runtime.State(ctx, sb.ID)
	if errors.Is(err, oci.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Status == oci.Stopped {
		return nil
	}
	if err := p.Runtime.Kill(ctx, sb.ID, syscall.SIGKILL); err != nil && !errors.Is(err, oci.ErrNotFound) {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := p.Runtime.Wait(wctx, sb.ID); err != nil && !errors.Is(err, oci.ErrNotFound) {
		return fmt.Errorf("wait for infra process: %w", err)
	}
	return nil
}

// Remove deletes the infra container and its image rootfs, if it had one
// (a pod started before the sandbox image setting changed may have).
func (p *PauseRunner) Remove(ctx context.Context, sb *Sandbox) error {
	if err := p.Runtime.Delete(ctx, sb.ID); err != nil && !errors.Is(err, oci.ErrNotFound) {
		return err
	}
	if p.BuiltinRootfs != "" {
		if err := os.RemoveAll(p.usernsBuiltinDir(sb.ID)); err != nil {
			return fmt.Errorf("remove infra rootfs: %w", err)
		}
	}
	return p.Images.UnmountRootfs(sb.ID)
}

// usernsBuiltinDir is where a user-namespaced pod's built-in infra gets
// a rootfs of its own.
func (p *PauseRunner) usernsBuiltinDir(id string) string {
	return filepath.Join(filepath.Dir(p.BuiltinRootfs), "userns", id)
}

// usernsBuiltinRootfs makes the rootfs of the built-in infra of a pod whose
// root is uid:gid on the node: its own directory and mount points, owned by
// that user (the runtime's init, root only in the pod's user namespace,
// must read its mount points, which in the shared rootfs only the node's
// root may), passable and never listable by others, and /pause linked from
// the shared rootfs.
func (p *PauseRunner) usernsBuiltinRootfs(id string, uid, gid uint32) (string, error) {
	parent := filepath.Dir(p.usernsBuiltinDir(id))
	if err := os.MkdirAll(parent, 0o711); err != nil {
		return "", fmt.Errorf("built-in infra: %w", err)
	}
	dir := p.usernsBuiltinDir(id)
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("built-in infra: %w", err)
	}
	for _, d := range append([]string{""}, builtinDirs...) {
		path := filepath.Join(dir, d)
		if err := os.Mkdir(path, 0o711); err != nil {
			return "", fmt.Errorf("built-in infra: %w", err)
		}
		if err := os.Chown(path, int(uid), int(gid)); err != nil {
			return "", fmt.Errorf("built-in infra: %w", err)
		}
	}
	if err := os.Link(filepath.Join(p.BuiltinRootfs, builtinPause), filepath.Join(dir, builtinPause)); err != nil {
		return "", fmt.Errorf("built-in infra: %w", err)
	}
	return dir, nil
}

// Pid is the infra process's pid while the monitor reports it running.
func (p *PauseRunner) Pid(ctx context.Context, sb *Sandbox) (int, error) {
	st, err := p.Runtime.State(ctx, sb.ID)
	if errors.Is(err, oci.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if st.Status != oci.Running {
		return 0, nil
	}
	return st.Pid, nil
}
