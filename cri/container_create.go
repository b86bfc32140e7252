package cri

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/oci"
	"github.com/crid-dev/crid/oci/specgen"
	"github.com/crid-dev/crid/podsandbox"
)

// CreateContainer prepares a container in a pod: its image's rootfs under a
// writable layer, a runtime spec from the config, and the container itself,
// stopped before its process runs.
func (s *runtimeService) CreateContainer(ctx context.Context, req *runtime.CreateContainerRequest) (*runtime.CreateContainerResponse, error) {
	sb, err := s.opts.Sandboxes.Get(req.PodSandboxId)
	if err != nil {
		return nil, toStatus(err)
	}
	if sb.State != podsandbox.StateReady {
		return nil, status.Errorf(codes.FailedPrecondition, "pod sandbox %s is not ready", sb.ID)
	}
	cfg := req.Config
	img, err := s.opts.Images.Get(cfg.Image.Image)
	if err != nil {
		return nil, toStatus(err)
	}
	if img == nil {
		return nil, status.Errorf(codes.NotFound, "image %q is not present: pull it first", cfg.Image.Image)
	}
	pod, err := s.podInput(sb, cfg)
	if err != nil {
		return nil, err
	}
	id := oci.NewID()
	rootfs, err := s.opts.Images.MountRootfs(id, img.ID.String())
	if err != nil {
		return nil, toStatus(err)
	}
	created := false
	defer func() {
		if !created {
			if err := s.opts.Images.UnmountRootfs(id); err != nil {
				klog.ErrorS(err, "Undoing rootfs of failed container", "containerID", id)
			}
		}
	}()
	ic := img.Config.Config
	spec, err := specgen.Build(specgen.Input{
		Config:           cfg,
		Image:            specgen.Image{Entrypoint: ic.Entrypoint, Cmd: ic.Cmd, Env: ic.Env, WorkingDir: ic.WorkingDir, User: ic.User, StopSignal: ic.StopSignal},
		Pod:              pod,
		Rootfs:           rootfs,
		CgroupsPath:      s.opts.Cgroups.ContainerPath(sb.CgroupParent, id),
		HostCapabilities: s.hostCaps,
		SeccompDefault:   seccomp.GetDefaultProfile,
		SeccompLocalhost: func(path string, sp *specs.Spec) (*specs.LinuxSeccomp, error) {
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, err
			}
			return seccomp.LoadProfile(string(b), sp)
		},
	})
	if err != nil {
		return nil, toStatus(err)
	}
	logPath := ""
	if dir := sb.Config.LogDirectory; dir != "" && cfg.LogPath != "" {
		logPath = filepath.Join(dir, cfg.LogPath)
		if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
			return nil, status.Errorf(codes.Internal, "log directory: %v", err)
		}
	}
	stopSignal := ic.StopSignal
	if cfg.StopSignal != runtime.Signal_SIGNAL_RUNTIME_DEFAULT {
		stopSignal = strings.TrimPrefix(cfg.StopSignal.String(), "SIGNAL_")
	}
	imageRef := img.ID.String()
	if len(img.RepoDigests) > 0 {
		imageRef = img.RepoDigests[0]
	}
	// NRI plugins adjust the spec; synchronization of a plugin that
	// connects meanwhile waits until the container is listed.
	unblock := s.opts.NRI.BlockSync()
	defer unblock()
	recorded, nriUpdates, err := s.nri.createContainer(ctx, sb, id, cfg, spec)
	if err != nil {
		return nil, toStatus(err)
	}
	err = s.opts.Containers.Create(ctx, oci.CreateParams{
		ID: id, SandboxID: sb.ID, Config: recorded, ImageID: img.ID.String(), ImageName: cfg.Image.Image, ImageRef: imageRef,
		LogPath: logPath, Spec: spec, StopSignal: stopSignal,
	})
	if err != nil {
		s.nri.undoCreate(ctx, sb, id, recorded, spec)
		return nil, toStatus(err)
	}
	created = true
	unblock()
	s.nri.postCreate(ctx, id, nriUpdates)
	return &runtime.CreateContainerResponse{ContainerId: id}, nil
}

// podInput is what a container takes from its pod: namespaces, pod files,
// /dev/shm.
func (s *runtimeService) podInput(sb *podsandbox.Sandbox, cfg *runtime.ContainerConfig) (specgen.Pod, error) {
	pinOrHost := func(kind string) string {
		if p := sb.Namespaces[kind]; p != "" {
			return p
		}
		return "host"
	}
	ns := map[specs.LinuxNamespaceType]string{
		specs.NetworkNamespace: pinOrHost("net"),
		specs.IPCNamespace:     pinOrHost("ipc"),
		specs.UTSNamespace:     pinOrHost("uts"),
	}
	opts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	switch opts.GetPid() {
	case runtime.NamespaceMode_POD:
		// A pod that does not share one PID namespace (kubelet's default)
		// has none to join: the container gets its own, as the pod asked.
		ns[specs.PIDNamespace] = sb.PidNamespace()
	case runtime.NamespaceMode_CONTAINER:
		ns[specs.PIDNamespace] = ""
	case runtime.NamespaceMode_NODE:
		ns[specs.PIDNamespace] = "host"
	case runtime.NamespaceMode_TARGET:
		target, err := s.opts.Containers.Get(context.Background(), opts.GetTargetId())
		if err != nil {
			return specgen.Pod{}, status.Errorf(codes.InvalidArgument, "linux.security_context.namespace_options.target_id: %v", err)
		}
		st, err := s.opts.Containers.Pid(context.Background(), target.ID)
		if err != nil || st == 0 {
			return specgen.Pod{}, status.Errorf(codes.FailedPrecondition, "target container %s is not running", target.ID)
		}
		ns[specs.PIDNamespace] = fmt.Sprintf("/proc/%d/ns/pid", st)
	}
	shm := sb.ShmPath
	if sb.HostIPC() {
		shm = "/dev/shm"
	}
	return specgen.Pod{
		Namespaces:   ns,
		Hosts:        s.opts.Sandboxes.PodFile(sb, "hosts"),
		ResolvConf:   s.opts.Sandboxes.PodFile(sb, "resolv.conf"),
		Hostname:     s.opts.Sandboxes.PodFile(sb, "hostname"),
		Shm:          shm,
		CgroupParent: sb.CgroupParent,
		Config:       sb.Config,
	}, nil
}

// StartContainer runs a created container's process.
func (s *runtimeService) StartContainer(ctx context.Context, req *runtime.StartContainerRequest) (*runtime.StartContainerResponse, error) {
	if err := s.nri.startContainer(ctx, req.ContainerId); err != nil {
		return nil, toStatus(err)
	}
	return &runtime.StartContainerResponse{}, nil
}
