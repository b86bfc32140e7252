package imageservice

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// ErrInvalidDigest marks a digest that is not "sha256:" and 64 lowercase
// hex digits.
var ErrInvalidDigest = errors.New("invalid digest")

// Digest is a content digest crid has checked: "sha256:" followed by 64
// lowercase hex digits, the only algorithm crid accepts. Image IDs, layer
// chain and diff IDs and blob digests are held as Digests, and only a
// Digest's hex names a directory of the store or goes into an overlay
// mount option, so a value from an image, a request or a record reaches
// the filesystem only after ParseDigest (or through sha256Of, which
// cannot produce anything else). The zero Digest is invalid and names
// nothing.
type Digest struct{ hex string }

const (
	digestAlgorithm = "sha256"
	digestHexLen    = 64
)

// ParseDigest checks s and returns it as a Digest.
func ParseDigest(s string) (Digest, error) {
	alg, enc, ok := strings.Cut(s, ":")
	switch {
	case !ok:
		return Digest{}, fmt.Errorf("%w %q: no algorithm (want sha256:<64 hex digits>)", ErrInvalidDigest, s)
	case alg != digestAlgorithm:
		return Digest{}, fmt.Errorf("%w %q: algorithm %q is not supported (only sha256)", ErrInvalidDigest, s, alg)
	case !isLowerHex(enc, digestHexLen):
		return Digest{}, fmt.Errorf("%w %q: want sha256 and 64 lowercase hex digits", ErrInvalidDigest, s)
	}
	return Digest{hex: enc}, nil
}

// sha256Of returns the digest of b.
func sha256Of(b []byte) Digest {
	sum := sha256.Sum256(b)
	return Digest{hex: hex.EncodeToString(sum[:])}
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// String returns "sha256:<hex>", or "" for the zero Digest.
func (d Digest) String() string {
	if d.hex == "" {
		return ""
	}
	return digestAlgorithm + ":" + d.hex
}

// Hex returns the 64 hex digits: the name of the digest's directory or
// file in the store.
func (d Digest) Hex() string { return d.hex }

// IsZero reports whether d is the zero Digest.
func (d Digest) IsZero() bool { return d.hex == "" }

// OCI returns d in go-digest's type, for hashing and for containers/image.
func (d Digest) OCI() digest.Digest { return digest.Digest(d.String()) }

// MarshalText writes the digest as "sha256:<hex>".
func (d Digest) MarshalText() ([]byte, error) {
	if d.hex == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidDigest)
	}
	return []byte(d.String()), nil
}

// UnmarshalText parses and checks a digest, so a record or metadata file
// read back from disk cannot carry an unchecked one.
func (d *Digest) UnmarshalText(b []byte) error {
	v, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// parseDigestField checks a digest from an image, naming the field it came
// from when it is invalid.
func parseDigestField(field string, d digest.Digest) (Digest, error) {
	v, err := ParseDigest(string(d))
	if err != nil {
		return Digest{}, invalidImage(field, err)
	}
	return v, nil
}

// ErrInvalidImage marks an image that crid refuses to store: a malformed
// or inconsistent manifest or config, or one over a configured bound. The
// pull's error names the image; this one the field.
var ErrInvalidImage = errors.New("invalid image")

func invalidImage(field string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrInvalidImage, field, err)
}

// ErrDigestMismatch marks content whose digest is not the one its image
// names for it.
var ErrDigestMismatch = errors.New("digest mismatch")

// ErrInvalidLayer marks a layer tar crid refuses to unpack: malformed, or
// an entry that would name something outside the layer.
var ErrInvalidLayer = errors.New("invalid layer")

// ErrTooLarge marks a layer over a configured size or file count.
var ErrTooLarge = errors.New("over a configured limit")

// containerDirName is a container (or pod sandbox) ID checked to be 64
// lowercase hex digits, as crid makes them: the only form in which an ID
// names a rootfs directory.
type containerDirName struct{ id string }

func parseContainerID(id string) (containerDirName, error) {
	if !isLowerHex(id, 64) {
		return containerDirName{}, fmt.Errorf("invalid container id %q: want 64 lowercase hex digits", id)
	}
	return containerDirName{id: id}, nil
}
