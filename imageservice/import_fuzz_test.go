package imageservice

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/crid-dev/crid/records"
)

// FuzzImportArchive feeds arbitrary bytes to Import as an archive. The
// oracle: no panic; the store's tmp is empty afterwards whatever
// happened; a refused archive leaves no image, layer, config blob or
// record; an accepted one lists exactly the images the store then holds.
// Seeds: a docker-archive, an OCI layout (both valid), a symlinked
// manifest.json, a layer escaping its root; `make fuzz` runs it for 20 s.
func FuzzImportArchive(f *testing.F) {
	layer := newLayer(f, dir("bin/"), file("bin/sh", "shell"), symlink("bin/ash", "sh"))
	img := newImage(f, imageSpec{layers: []testLayer{layer}})
	ociImg := newImage(f, imageSpec{oci: true, layers: []testLayer{layer}})
	f.Add(writeTar(f, dockerArchiveFiles(f, []*testImage{img}, [][]string{{"fuzz:1"}})))
	f.Add(writeTar(f, ociArchiveFiles(f, []*testImage{ociImg}, []string{"example.com/fuzz:2"})))
	files := dockerArchiveFiles(f, []*testImage{img}, [][]string{{"fuzz:1"}})
	files[0].name = "m.json"
	f.Add(writeTar(f, append(files, archiveFile{name: "manifest.json", typ: tar.TypeSymlink, link: "m.json"})))
	evil := newImage(f, imageSpec{layers: []testLayer{newLayer(f, file("../x", "x"))}})
	f.Add(writeTar(f, dockerArchiveFiles(f, []*testImage{evil}, [][]string{nil})))

	f.Fuzz(func(t *testing.T, archive []byte) {
		base := fuzzTempDir(t)
		rs, err := records.Open(filepath.Join(base, "records"))
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		s, err := New(Options{
			Root: filepath.Join(base, "root"), RootfsDir: filepath.Join(base, "rootfs"), Records: rs,
			RegistriesConf: filepath.Join(base, "registries.conf"), SandboxImage: "pause:1",
			ProgressTimeout: testProgressTimeout, Limits: testLimits,
		})
		if err != nil {
			t.Fatal(err)
		}
		imported, err := s.Import(context.Background(), bytes.NewReader(archive))
		if tmp, _ := os.ReadDir(filepath.Join(base, "root", "tmp")); len(tmp) != 0 {
			t.Fatalf("tmp holds %d entries after an import (err %v)", len(tmp), err)
		}
		imgs, _ := s.List("")
		if err != nil {
			layers, _ := os.ReadDir(filepath.Join(base, "root", "layers"))
			blobs, _ := os.ReadDir(filepath.Join(base, "root", "blobs", "sha256"))
			recs, _ := os.ReadDir(filepath.Join(base, "records", recordKind))
			if len(imgs)+len(layers)+len(blobs)+len(recs) != 0 {
				t.Fatalf("refused archive (%v) left %d images, %d layers, %d blobs, %d records", err, len(imgs), len(layers), len(blobs), len(recs))
			}
			return
		}
		ids := map[Digest]bool{}
		for _, im := range imported {
			ids[im.Image.ID] = true
		}
		if len(ids) != len(imgs) {
			t.Fatalf("import returned %d images, the store lists %d", len(ids), len(imgs))
		}
		for _, im := range imgs {
			if !ids[im.ID] {
				t.Fatalf("store lists %s, which the import did not return", im.ID)
			}
		}
	})
}
