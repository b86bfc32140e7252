package cri

import (
	"context"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/imageservice"
)

// ImageFsInfo reports the space the image store and the containers'
// writable layers use. On two filesystems (image.root elsewhere than
// root_dir, KEP-4191) each list names its own; on one, both lists hold the
// same entry, the whole usage on that filesystem, as CRI-O does: kubelet
// takes the same mount point for an image filesystem that is not split.
func (s *imageService) ImageFsInfo(context.Context, *runtime.ImageFsInfoRequest) (*runtime.ImageFsInfoResponse, error) {
	images, err := s.opts.Images.Usage()
	if err != nil {
		return nil, toStatus(err)
	}
	containers, err := s.opts.Images.ContainerFsUsage()
	if err != nil {
		return nil, toStatus(err)
	}
	if images.Device == containers.Device {
		images.Bytes += containers.Bytes
		images.Inodes += containers.Inodes
		one := fsUsage(images)
		return &runtime.ImageFsInfoResponse{
			ImageFilesystems:     []*runtime.FilesystemUsage{one},
			ContainerFilesystems: []*runtime.FilesystemUsage{one},
		}, nil
	}
	return &runtime.ImageFsInfoResponse{
		ImageFilesystems:     []*runtime.FilesystemUsage{fsUsage(images)},
		ContainerFilesystems: []*runtime.FilesystemUsage{fsUsage(containers)},
	}, nil
}

func fsUsage(u imageservice.FsUsage) *runtime.FilesystemUsage {
	return &runtime.FilesystemUsage{
		Timestamp:  time.Now().UnixNano(),
		FsId:       &runtime.FilesystemIdentifier{Mountpoint: u.Mountpoint},
		UsedBytes:  &runtime.UInt64Value{Value: u.Bytes},
		InodesUsed: &runtime.UInt64Value{Value: u.Inodes},
	}
}
