package imageservice

import (
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is a pulled image as the store records it.
type Image struct {
	// ID is the digest of the image config, as CRI and Docker name images.
	ID Digest `json:"id"`
	// RepoTags are normalized "repo:tag" names; RepoDigests "repo@digest".
	RepoTags    []string `json:"repo_tags"`
	RepoDigests []string `json:"repo_digests"`
	// Layers are the chain IDs of the image's layers, bottom first: the
	// overlay lower dirs of its containers.
	Layers []Digest `json:"layers"`
	// Size is the unpacked size of its layers plus its config, in bytes.
	Size   uint64        `json:"size"`
	Config ocispec.Image `json:"config"`
	// Manifest is the digest of the platform manifest the layers came from.
	Manifest Digest `json:"manifest"`
	// Pinned is set for the sandbox image: RemoveImage refuses it.
	Pinned bool `json:"-"`
}

// clone copies the image's slices so callers cannot change the store.
func (img *Image) clone() *Image {
	c := *img
	c.RepoTags = append([]string(nil), img.RepoTags...)
	c.RepoDigests = append([]string(nil), img.RepoDigests...)
	c.Layers = append([]Digest(nil), img.Layers...)
	return &c
}

// names returns every tag and digest reference of the image.
func (img *Image) names() []string {
	return append(append([]string(nil), img.RepoTags...), img.RepoDigests...)
}

func withoutName(names []string, name string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		if n != name {
			out = append(out, n)
		}
	}
	return out
}

func addName(names []string, name string) []string {
	for _, n := range names {
		if n == name {
			return names
		}
	}
	return append(names, name)
}
