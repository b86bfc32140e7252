package imageservice

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// FuzzLayerStack drives what an image config decides on the way to a
// container's overlay mount: rootfs type, diff IDs (and whatever else the
// config holds, history included) → chain IDs → layer directories →
// overlay mount options, with a container ID from outside. The oracle is
// store containment: whatever the input, every directory the mount would
// use is one of crid's own (a layer's diff dir directly under the layer
// store, the container's dirs directly under the rootfs dir), and the
// option string holds exactly the three options with those directories.
// The seed corpus is in testdata/fuzz/FuzzLayerStack; `make fuzz` runs it
// for 20 s.
func FuzzLayerStack(f *testing.F) {
	f.Add([]byte(`{"rootfs":{"type":"layers","diff_ids":["sha256:`+goodHex+`"]}}`), uint16(1), goodHex)
	s := &Service{root: "/var/lib/crid/images", opts: Options{RootfsDir: "/var/lib/crid/rootfs"}}
	layersDir := filepath.Join(s.root, "layers")
	f.Fuzz(func(t *testing.T, config []byte, manifestLayers uint16, id string) {
		var cfg ocispec.Image
		if json.Unmarshal(config, &cfg) != nil {
			return
		}
		n := int(manifestLayers % 600)
		diffIDs, chains, err := layerStack(&cfg, n)
		if err != nil {
			if !errors.Is(err, ErrInvalidImage) {
				t.Fatalf("layerStack error %v is not ErrInvalidImage", err)
			}
			return
		}
		if len(diffIDs) != n || len(chains) != n {
			t.Fatalf("%d diff IDs, %d chains for %d layers", len(diffIDs), len(chains), n)
		}
		// Chain IDs as the OCI spec defines them, computed with go-digest.
		var prev digest.Digest
		for i, d := range cfg.RootFS.DiffIDs {
			want := d
			if i > 0 {
				want = digest.FromString(prev.String() + " " + d.String())
			}
			if chains[i].String() != want.String() {
				t.Fatalf("chain %d = %s, want %s", i, chains[i], want)
			}
			prev = want
		}

		cid, err := parseContainerID(id)
		if err != nil {
			cid = containerDirName{id: goodHex}
		}
		dir := s.rootfsDir(cid)
		if filepath.Dir(dir) != s.opts.RootfsDir || !isLowerHex(filepath.Base(dir), 64) {
			t.Fatalf("container dir %q is not a hex name directly in %s", dir, s.opts.RootfsDir)
		}
		var lowers []string
		for i := len(chains) - 1; i >= 0; i-- {
			l := s.LayerDiffDir(chains[i])
			rel, err := filepath.Rel(layersDir, l)
			parts := strings.Split(rel, "/")
			if err != nil || len(parts) != 2 || !isLowerHex(parts[0], 64) || parts[1] != layerDiffDir || filepath.Clean(l) != l {
				t.Fatalf("layer dir %q escapes %s", l, layersDir)
			}
			lowers = append(lowers, l)
		}
		if len(lowers) == 0 {
			lowers = []string{filepath.Join(dir, "empty")}
		}
		upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
		data, err := s.overlayOptions(lowers, upper, work)
		if err != nil {
			t.Fatalf("store dirs refused: %v", err)
		}
		opts := strings.Split(data, ",")
		if len(opts) != 3 {
			t.Fatalf("options %q are not three", data)
		}
		got := map[string]string{}
		for _, o := range opts {
			k, v, _ := strings.Cut(o, "=")
			got[k] = v
		}
		if got["upperdir"] != upper || got["workdir"] != work || !slices.Equal(strings.Split(got["lowerdir"], ":"), lowers) {
			t.Fatalf("options %q do not hold exactly the store's dirs", data)
		}
	})
}
