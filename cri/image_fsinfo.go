package cri

import (
	"context"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/imageservice"
)

// ImageFsInfo reports the space the image store and the containers'
// writable layers use.
func (s *imageService) ImageFsInfo(context.Context, *runtime.ImageFsInfoRequest) (*runtime.ImageFsInfoResponse, error) {
	images, err := s.opts.Images.Usage()
	if err != nil {
		return nil, toStatus(err)
	}
	containers, err := s.opts.Images.ContainerFsUsage()
	if err != nil {
		return nil, toStatus(err)
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
