package cri

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/imageservice"
	"github.com/crid-dev/crid/oci/specgen"
)

// Image volumes (KEP-4639): a mount that names an image gets the image's
// layers, read-only. kubelet pulls the image first and names it by the
// image_ref PullImage returned, in image.image (and image.image_ref, which
// wins when set); the runtime advertises nothing for it.

// checkImageVolumes checks the image volumes of cfg before anything is
// mounted for the container, so bad input leaves nothing behind.
func checkImageVolumes(cfg *runtime.ContainerConfig) error {
	for i, m := range cfg.GetMounts() {
		if !specgen.IsImageVolume(m) {
			continue
		}
		if err := specgen.CheckImageVolume(i, m); err != nil {
			return toStatus(err) // InvalidArgument naming the field
		}
		if err := imageservice.CheckSubPath(m.GetImageSubPath()); err != nil {
			return status.Errorf(codes.InvalidArgument, "config.mounts[%d].image_sub_path: %v", i, err)
		}
	}
	return nil
}

// mountImageVolumes mounts the image volumes of cfg for container id,
// whose rootfs is mounted (UnmountRootfs undoes both). It returns the host
// paths for specgen.Input.ImageVolumes and a copy of cfg whose image
// volumes carry the mounted image's ID in image.image_ref — what
// PullImage returned for it, as ContainerStatus reports it.
func (s *runtimeService) mountImageVolumes(id string, cfg *runtime.ContainerConfig) (map[int]string, *runtime.ContainerConfig, error) {
	var paths map[int]string
	out := cfg
	for i, m := range cfg.GetMounts() {
		if !specgen.IsImageVolume(m) {
			continue
		}
		ref, field := specgen.ImageVolumeRef(m), "image.image"
		if m.GetImage().GetImageRef() != "" {
			field = "image.image_ref"
		}
		v, err := s.opts.Images.MountImageVolume(id, i, ref, m.GetImageSubPath())
		switch {
		case errors.Is(err, imageservice.ErrImageNotFound):
			return nil, nil, status.Errorf(codes.NotFound, "config.mounts[%d].%s: image %q is not present: pull it first", i, field, ref)
		case errors.Is(err, imageservice.ErrInvalidSubPath):
			return nil, nil, status.Errorf(codes.InvalidArgument, "config.mounts[%d].image_sub_path: %v", i, err)
		case err != nil:
			return nil, nil, toStatus(fmt.Errorf("config.mounts[%d].image: %w", i, err))
		}
		if paths == nil {
			paths = map[int]string{}
			out = proto.Clone(cfg).(*runtime.ContainerConfig)
		}
		paths[i] = v.Path
		out.Mounts[i].Image.ImageRef = v.Image.ID.String()
	}
	return paths, out, nil
}
