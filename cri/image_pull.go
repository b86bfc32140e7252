package cri

import (
	"context"
	"encoding/base64"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/imageservice"
)

// PullImage pulls an image and returns its ID as the image ref.
func (s *imageService) PullImage(ctx context.Context, req *runtime.PullImageRequest) (*runtime.PullImageResponse, error) {
	auth, err := pullAuth(req.GetAuth())
	if err != nil {
		return nil, err
	}
	img, err := s.opts.Images.Pull(ctx, req.Image.Image, auth)
	if err != nil {
		return nil, toStatus(err)
	}
	return &runtime.PullImageResponse{ImageRef: img.ID.String()}, nil
}

// pullAuth turns CRI credentials into the image service's; `auth` is the
// base64 "user:password" of a Docker config file.
func pullAuth(a *runtime.AuthConfig) (*imageservice.Auth, error) {
	if a == nil {
		return nil, nil
	}
	out := &imageservice.Auth{
		Username:      a.Username,
		Password:      a.Password,
		IdentityToken: a.IdentityToken,
		RegistryToken: a.RegistryToken,
	}
	if a.Auth != "" && out.Username == "" && out.Password == "" {
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return nil, invalidArgument("auth.auth is not base64: %v", err)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return nil, invalidArgument("auth.auth does not decode to user:password")
		}
		out.Username, out.Password = user, pass
	}
	if *out == (imageservice.Auth{}) {
		return nil, nil
	}
	return out, nil
}
