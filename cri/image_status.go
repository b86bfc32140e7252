package cri

import (
	"context"
	"encoding/json"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/imageservice"
)

// ListImages lists the stored images, or the one the filter names.
func (s *imageService) ListImages(_ context.Context, req *runtime.ListImagesRequest) (*runtime.ListImagesResponse, error) {
	imgs, err := s.opts.Images.List(req.GetFilter().GetImage().GetImage())
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &runtime.ListImagesResponse{Images: make([]*runtime.Image, 0, len(imgs))}
	for _, img := range imgs {
		resp.Images = append(resp.Images, toCRIImage(img))
	}
	return resp, nil
}

// ImageStatus describes one image; an unknown image is an empty response,
// not an error, as the CRI specifies.
func (s *imageService) ImageStatus(_ context.Context, req *runtime.ImageStatusRequest) (*runtime.ImageStatusResponse, error) {
	img, err := s.opts.Images.Get(req.Image.Image)
	if err != nil {
		return nil, toStatus(err)
	}
	if img == nil {
		return &runtime.ImageStatusResponse{}, nil
	}
	resp := &runtime.ImageStatusResponse{Image: toCRIImage(img)}
	if req.Verbose {
		info, err := json.Marshal(map[string]any{
			"id":       img.ID,
			"manifest": img.Manifest,
			"layers":   img.Layers,
			"config":   img.Config,
		})
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encode image info: %v", err)
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

func toCRIImage(img *imageservice.Image) *runtime.Image {
	out := &runtime.Image{
		Id:          img.ID.String(),
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        img.Size,
		Pinned:      img.Pinned,
		Spec:        &runtime.ImageSpec{Image: img.ID.String()},
	}
	if uid, name := img.User(); uid != nil {
		out.Uid = &runtime.Int64Value{Value: *uid}
	} else {
		out.Username = name
	}
	return out
}
