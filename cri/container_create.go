package cri

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/cgroupmgr"
	"github.com/crid-dev/crid/failpoint"
	"github.com/crid-dev/crid/imageservice"
	"github.com/crid-dev/crid/oci"
	"github.com/crid-dev/crid/oci/specgen"
	"github.com/crid-dev/crid/podsandbox"
)

// CreateContainer prepares a container in a pod: its image's rootfs under a
// writable layer, its image volumes, a runtime spec from the config, and
// the container itself, stopped before its process runs.
func (s *runtimeService) CreateContainer(ctx context.Context, req *runtime.CreateContainerRequest) (*runtime.CreateContainerResponse, error) {
	sb, err := s.opts.Sandboxes.Get(req.PodSandboxId)
	if err != nil {
		return nil, toStatus(err)
	}
	if sb.State != podsandbox.StateReady {
		return nil, status.Errorf(codes.FailedPrecondition, "pod sandbox %s is not ready", sb.ID)
	}
	cfg := req.Config
	if err := validateUnified("config.linux.resources", cfg.GetLinux().GetResources().GetUnified(), cgroupmgr.Mode()); err != nil {
		return nil, err
	}
	if err := checkPrivileged(sb.Config, cfg); err != nil {
		return nil, err
	}
	if err := checkContainerUserns(sb.Config, cfg); err != nil {
		return nil, err
	}
	aaProfile, err := specgen.AppArmorProfile(ctx, cfg.GetLinux().GetSecurityContext(), s.appArmor)
	if err != nil {
		if errors.Is(err, specgen.ErrInvalid) {
			return nil, toStatus(err)
		}
		// The request was fine; the node cannot confine it.
		return nil, status.Errorf(codes.FailedPrecondition, "AppArmor: %v", err)
	}
	img, err := s.opts.Images.Get(cfg.Image.Image)
	if err != nil {
		return nil, toStatus(err)
	}
	if img == nil {
		return nil, status.Errorf(codes.NotFound, "image %q is not present: pull it first", cfg.Image.Image)
	}
	if err := checkImageVolumes(cfg); err != nil {
		return nil, err
	}
	id := oci.NewID()
	// The name is held from here on: a retry while a step below hangs
	// (a bind-mount source on a filesystem that stopped answering) is
	// told which attempt holds the name and in which step.
	res, err := s.opts.Containers.Reserve(sb.ID, cfg.Metadata, id)
	if err != nil {
		return nil, toStatus(err)
	}
	defer res.Release()
	res.Step("join the pod's namespaces")
	pod, releasePod, err := s.podInput(ctx, sb, id, cfg)
	if err != nil {
		return nil, err
	}
	defer releasePod()
	res.Step("mount the rootfs")
	userns := imageservice.Userns{Path: sb.UserNS()}
	userns.RootUID, userns.RootGID, _ = sb.UsernsRoot()
	rootfs, err := s.opts.Images.MountRootfsUserns(id, img.ID.String(), userns)
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
	// Rootfs mounted, nothing recorded yet.
	if err := failpoint.Inject("container.create.after-rootfs"); err != nil {
		return nil, toStatus(err)
	}
	volumes, cfg, err := s.mountImageVolumes(id, cfg)
	if err != nil {
		return nil, err
	}
	// Rootfs and image volumes mounted, nothing recorded yet.
	if err := failpoint.Inject("create.mounted"); err != nil {
		return nil, toStatus(err)
	}
	ic := img.Config.Config
	res.Step("build the spec (bind-mount sources looked up on the host)")
	spec, err := specgen.Build(specgen.Input{
		Config:                 cfg,
		Image:                  specgen.Image{Entrypoint: ic.Entrypoint, Cmd: ic.Cmd, Env: ic.Env, WorkingDir: ic.WorkingDir, User: ic.User, StopSignal: ic.StopSignal},
		Pod:                    pod,
		Rootfs:                 rootfs,
		ImageVolumes:           volumes,
		CgroupsPath:            s.opts.Cgroups.ContainerPath(sb.CgroupParent, id),
		PrivateCgroupNamespace: cgroupmgr.Mode() == "v2",
		HostCapabilities:       s.hostCaps,
		AppArmorProfile:        aaProfile,
		SeccompDefault:         seccomp.GetDefaultProfile,
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
	imageName := statusImageName(cfg.GetImage(), img.ID.String(), img.RepoTags)
	// NRI plugins adjust the spec; synchronization of a plugin that
	// connects meanwhile waits until the container is listed.
	unblock := s.opts.NRI.BlockSync()
	defer unblock()
	res.Step("NRI plugins")
	recorded, nriUpdates, err := s.nri.createContainer(ctx, sb, id, cfg, spec)
	if err != nil {
		return nil, toStatus(err)
	}
	if p := sb.UserNS(); p != "" {
		res.Step("check the idmapped bind mounts")
		if err := checkIdmapSources(cfg, spec, p); err != nil {
			s.nri.undoCreate(ctx, sb, id, recorded, spec)
			return nil, err
		}
	}
	err = s.opts.Containers.Create(ctx, oci.CreateParams{
		ID: id, SandboxID: sb.ID, Config: recorded, ImageID: img.ID.String(), ImageName: imageName, ImageRef: imageRef,
		LogPath: logPath, Spec: spec, StopSignal: stopSignal, Reservation: res,
	})
	if err != nil {
		s.nri.undoCreate(ctx, sb, id, recorded, spec)
		// A pod stopped or removed meanwhile took the namespaces the
		// container was joining: the same answer as a create after it.
		if now, gerr := s.opts.Sandboxes.Get(sb.ID); gerr != nil || now.State != podsandbox.StateReady {
			return nil, status.Errorf(codes.FailedPrecondition, "pod sandbox %s stopped while container %s was created: %v", sb.ID, id, err)
		}
		return nil, toStatus(err)
	}
	created = true
	unblock()
	s.nri.postCreate(ctx, id, nriUpdates)
	if msg := selinuxNotApplied(cfg.GetLinux().GetSecurityContext().GetSelinuxOptions()); msg != "" {
		klog.InfoS("SELinux options not applied", "containerID", id, "container", cfg.GetMetadata().GetName(), "detail", msg)
	}
	return &runtime.CreateContainerResponse{ContainerId: id}, nil
}

// podInput is what a container takes from its pod: namespaces, pod files,
// /dev/shm. release undoes what it pinned for the create (a TARGET
// container's PID namespace); call it once the container is created or
// has failed.
func (s *runtimeService) podInput(ctx context.Context, sb *podsandbox.Sandbox, id string, cfg *runtime.ContainerConfig) (pod specgen.Pod, release func(), err error) {
	release = func() {}
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
	if p := sb.UserNS(); p != "" {
		ns[specs.UserNamespace] = p
	}
	opts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	switch opts.GetPid() {
	case runtime.NamespaceMode_POD:
		// A pod that does not share one PID namespace (kubelet's default)
		// has none to join: the container gets its own, as the pod asked.
		ns[specs.PIDNamespace] = ""
		if sb.PidMode() == runtime.NamespaceMode_POD {
			p, err := s.opts.Sandboxes.PidNamespace(sb)
			if err != nil {
				return specgen.Pod{}, release, toStatus(err)
			}
			ns[specs.PIDNamespace] = p
		}
	case runtime.NamespaceMode_CONTAINER:
		ns[specs.PIDNamespace] = ""
	case runtime.NamespaceMode_NODE:
		ns[specs.PIDNamespace] = "host"
	case runtime.NamespaceMode_TARGET:
		target, err := s.opts.Containers.Get(ctx, opts.GetTargetId())
		if err := checkTarget(sb.ID, opts.GetTargetId(), target, err); err != nil {
			return specgen.Pod{}, release, err
		}
		pid, err := s.opts.Containers.Pid(ctx, target.ID)
		if err != nil || pid == 0 {
			return specgen.Pod{}, release, status.Errorf(codes.FailedPrecondition, "%s: target container %s is not running", targetField, target.ID)
		}
		// Joined by a pin, not /proc/<pid>/ns/pid: the pid could name
		// another process by the time the monitor opens it.
		pin, unpin, err := s.opts.Sandboxes.PinTargetPidNamespace(sb, id, pid, func() (int, error) { return s.opts.Containers.Pid(ctx, target.ID) })
		if err != nil {
			return specgen.Pod{}, release, status.Errorf(codes.FailedPrecondition, "%s: target container %s is not running: %v", targetField, target.ID, err)
		}
		ns[specs.PIDNamespace], release = pin, unpin
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
		FilesOwned:   sb.PodFilesOwned,
		CgroupParent: sb.CgroupParent,
		Config:       sb.Config,
	}, release, nil
}

// targetField names the TARGET PID mode's container in errors.
const targetField = "config.linux.security_context.namespace_options.target_id"

// checkTarget checks the container whose PID namespace a TARGET mode
// names, as containerd does: it must exist (NotFound) and belong to the
// same pod (InvalidArgument) — joining another pod's processes is what
// only a careless or hostile client asks for.
func checkTarget(sandboxID, targetID string, target *oci.Container, err error) error {
	switch {
	case targetID == "":
		return status.Errorf(codes.InvalidArgument, "%s is required with the TARGET PID namespace mode", targetField)
	case errors.Is(err, oci.ErrNotFound):
		return status.Errorf(codes.NotFound, "%s: container %q not found", targetField, targetID)
	case err != nil:
		return status.Errorf(codes.InvalidArgument, "%s: %v", targetField, err)
	case target.SandboxID != sandboxID:
		return status.Errorf(codes.InvalidArgument, "%s: container %s belongs to pod %s, not to pod %s", targetField, target.ID, target.SandboxID, sandboxID)
	}
	return nil
}

// checkPrivileged refuses a privileged container in a pod that is not
// privileged, as containerd does: kubelet never asks for it, and the pod's
// security context is what a cluster's policy admitted.
func checkPrivileged(pod *runtime.PodSandboxConfig, cfg *runtime.ContainerConfig) error {
	if cfg.GetLinux().GetSecurityContext().GetPrivileged() && !pod.GetLinux().GetSecurityContext().GetPrivileged() {
		return status.Error(codes.InvalidArgument, "config.linux.security_context.privileged: a privileged container needs a privileged pod sandbox (its config.linux.security_context.privileged is false)")
	}
	return nil
}

// StartContainer runs a created container's process.
func (s *runtimeService) StartContainer(ctx context.Context, req *runtime.StartContainerRequest) (*runtime.StartContainerResponse, error) {
	if err := s.nri.startContainer(ctx, req.ContainerId); err != nil {
		return nil, toStatus(err)
	}
	return &runtime.StartContainerResponse{}, nil
}

// statusImageName is the image a container's status names: the name the
// pod spec gave (kubelet sends it as user_specified_image, and the image's
// ID as image), else the name in image, else, when image is the ID, the
// image's first tag, as containerd reports. kubelet shows it as the
// container's image, and the node suite checks it follows an image update.
func statusImageName(spec *runtime.ImageSpec, id string, repoTags []string) string {
	if u := spec.GetUserSpecifiedImage(); u != "" {
		return u
	}
	name := spec.GetImage()
	if (name == id || strings.TrimPrefix(id, "sha256:") == name) && len(repoTags) > 0 {
		return repoTags[0]
	}
	return name
}
