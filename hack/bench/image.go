package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	kgzip "github.com/klauspost/compress/gzip"
)

// The pull benchmark's images: a 5-layer image of about 106 MB compressed
// (the size design.md's pull target was measured with) and a second image
// sharing its first four layers, whose pull must fetch only its own layer.
// The content is generated from fixed seeds; bump benchImageTag when the
// recipe changes so that the registry is refilled.
const (
	benchRepoFirst  = "crid-bench/pull-a"
	benchRepoSecond = "crid-bench/pull-b"
	benchImageTag   = "v2"

	mediaManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaConfig   = "application/vnd.docker.container.image.v1+json"
	mediaLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// layerRecipe is the uncompressed size of each layer in MB; the data is half
// random, half zeros, in 4 KiB blocks, so it compresses about 2:1.
var (
	firstLayersMB = []int{89, 56, 32, 18, 10}
	secondOwnMB   = 10
)

type builtBlob struct {
	digest string
	diffID string // layers only: digest of the uncompressed tar
	data   []byte
}

type builtImage struct {
	repo     string
	layers   []builtBlob
	config   builtBlob
	manifest []byte
}

type descriptor struct {
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
	Digest    string `json:"digest"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

func digestOf(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

// buildLayer writes a deterministic gzipped tar of about mb MB.
func buildLayer(name string, seed uint64, mb int) (builtBlob, error) {
	var gz bytes.Buffer
	blobSum, diffSum := sha256.New(), sha256.New()
	zw, err := gzip.NewWriterLevel(io.MultiWriter(&gz, blobSum), gzip.BestSpeed)
	if err != nil {
		return builtBlob{}, fmt.Errorf("gzip: %w", err)
	}
	tw := tar.NewWriter(io.MultiWriter(zw, diffSum))
	mtime := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewChaCha8(seedBytes(seed)))
	dir := "opt/" + name + "/"
	for _, d := range []string{"opt/", dir, dir + "small/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return builtBlob{}, fmt.Errorf("tar: %w", err)
		}
	}
	block := make([]byte, 4096)
	writeFile := func(path string, size int) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: path, Mode: 0o644, Size: int64(size), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return fmt.Errorf("tar: %w", err)
		}
		for left := size; left > 0; left -= len(block) {
			clear(block)
			for i := 0; i < len(block)/2; i += 8 {
				v := rng.Uint64()
				for j := range 8 {
					block[i+j] = byte(v >> (8 * j))
				}
			}
			if _, err := tw.Write(block[:min(left, len(block))]); err != nil {
				return fmt.Errorf("tar: %w", err)
			}
		}
		return nil
	}
	// Many small files (metadata work when unpacking), then 1 MB files.
	const small, smallSize = 256, 4096
	for i := range small {
		if err := writeFile(fmt.Sprintf("%ssmall/s%04d.dat", dir, i), smallSize); err != nil {
			return builtBlob{}, err
		}
	}
	for i, left := 0, mb*1000*1000-small*smallSize; left > 0; i++ {
		n := min(left, 1<<20)
		if err := writeFile(fmt.Sprintf("%sf%04d.bin", dir, i), n); err != nil {
			return builtBlob{}, err
		}
		left -= n
	}
	if err := tw.Close(); err != nil {
		return builtBlob{}, fmt.Errorf("tar: %w", err)
	}
	if err := zw.Close(); err != nil {
		return builtBlob{}, fmt.Errorf("gzip: %w", err)
	}
	return builtBlob{digest: digestOf(blobSum), diffID: digestOf(diffSum), data: gz.Bytes()}, nil
}

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	copy(s[:], fmt.Sprintf("crid-bench-layer-%016x", seed))
	return s
}

func assemble(repo string, layers []builtBlob) (*builtImage, error) {
	img := &builtImage{repo: repo, layers: layers}
	diffIDs := make([]string, len(layers))
	history := make([]map[string]string, len(layers))
	for i, l := range layers {
		diffIDs[i] = l.diffID
		history[i] = map[string]string{"created": "2025-01-01T00:00:00Z", "created_by": fmt.Sprintf("crid-bench layer %d", i)}
	}
	cfg, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      "2025-01-01T00:00:00Z",
		"config":       map[string]any{"Env": []string{pathEnv}, "Cmd": []string{"/bin/sh"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
		"history":      history,
	})
	if err != nil {
		return nil, fmt.Errorf("encode image config: %w", err)
	}
	sum := sha256.Sum256(cfg)
	img.config = builtBlob{digest: "sha256:" + hex.EncodeToString(sum[:]), data: cfg}
	m := manifest{SchemaVersion: 2, MediaType: mediaManifest,
		Config: descriptor{MediaType: mediaConfig, Size: int64(len(cfg)), Digest: img.config.digest}}
	for _, l := range layers {
		m.Layers = append(m.Layers, descriptor{MediaType: mediaLayer, Size: int64(len(l.data)), Digest: l.digest})
	}
	if img.manifest, err = json.Marshal(m); err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return img, nil
}

const pathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// registry is a minimal Docker registry v2 client for plain-HTTP local
// registries.
type registry struct {
	base *url.URL
	hc   *http.Client
}

func newRegistry(addr string) (*registry, error) {
	u, err := url.Parse("http://" + addr)
	if err != nil {
		return nil, fmt.Errorf("registry address %q: %w", addr, err)
	}
	return &registry{base: u, hc: &http.Client{Timeout: 2 * time.Minute}}, nil
}

func (r *registry) do(ctx context.Context, method, ref string, body []byte, hdr map[string]string) (*http.Response, error) {
	u, err := r.base.Parse(ref)
	if err != nil {
		return nil, fmt.Errorf("registry URL %q: %w", ref, err)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("registry request: %w", err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if body != nil {
		req.ContentLength = int64(len(body))
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u.Redacted(), err)
	}
	return resp, nil
}

// status runs a request, drains the body and returns the status code and
// Location header.
func (r *registry) status(ctx context.Context, method, ref string, body []byte, hdr map[string]string) (int, string, error) {
	resp, err := r.do(ctx, method, ref, body, hdr)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header.Get("Location"), nil
}

func (r *registry) hasManifest(ctx context.Context, repo, tag string) (bool, error) {
	code, _, err := r.status(ctx, http.MethodHead, "/v2/"+repo+"/manifests/"+tag, nil, map[string]string{"Accept": mediaManifest})
	if err != nil {
		return false, err
	}
	return code == http.StatusOK, nil
}

// getManifest fetches a schema 2 manifest.
func (r *registry) getManifest(ctx context.Context, repo, tag string) (*manifest, error) {
	resp, err := r.do(ctx, http.MethodGet, "/v2/"+repo+"/manifests/"+tag, nil, map[string]string{"Accept": mediaManifest})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s:%s: %w", repo, tag, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("manifest %s:%s: %s", repo, tag, resp.Status)
	}
	m := &manifest{}
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("decode manifest %s:%s: %w", repo, tag, err)
	}
	return m, nil
}

// pushBlob uploads b to repo unless it is there, mounting it from
// mountFrom when the registry has it in that repository.
func (r *registry) pushBlob(ctx context.Context, repo string, b builtBlob, mountFrom string) error {
	code, _, err := r.status(ctx, http.MethodHead, "/v2/"+repo+"/blobs/"+b.digest, nil, nil)
	if err != nil {
		return err
	}
	if code == http.StatusOK {
		return nil
	}
	start := "/v2/" + repo + "/blobs/uploads/"
	if mountFrom != "" {
		start += "?mount=" + url.QueryEscape(b.digest) + "&from=" + url.QueryEscape(mountFrom)
	}
	code, loc, err := r.status(ctx, http.MethodPost, start, nil, nil)
	if err != nil {
		return err
	}
	if code == http.StatusCreated {
		return nil // mounted
	}
	if code != http.StatusAccepted || loc == "" {
		return fmt.Errorf("start upload of %s to %s: HTTP %d", b.digest, repo, code)
	}
	u, err := r.base.Parse(loc)
	if err != nil {
		return fmt.Errorf("upload location %q: %w", loc, err)
	}
	q := u.Query()
	q.Set("digest", b.digest)
	u.RawQuery = q.Encode()
	code, _, err = r.status(ctx, http.MethodPut, u.String(), b.data, map[string]string{"Content-Type": "application/octet-stream"})
	if err != nil {
		return err
	}
	if code != http.StatusCreated {
		return fmt.Errorf("upload %s to %s: HTTP %d", b.digest, repo, code)
	}
	return nil
}

func (r *registry) push(ctx context.Context, img *builtImage, tag, mountFrom string) error {
	for _, l := range img.layers {
		if err := r.pushBlob(ctx, img.repo, l, mountFrom); err != nil {
			return err
		}
	}
	if err := r.pushBlob(ctx, img.repo, img.config, ""); err != nil {
		return err
	}
	code, _, err := r.status(ctx, http.MethodPut, "/v2/"+img.repo+"/manifests/"+tag, img.manifest, map[string]string{"Content-Type": mediaManifest})
	if err != nil {
		return err
	}
	if code != http.StatusCreated {
		return fmt.Errorf("push manifest %s:%s: HTTP %d", img.repo, tag, code)
	}
	return nil
}

// ensureBenchImages builds and pushes the pull benchmark's images unless
// the registry has both.
func ensureBenchImages(ctx context.Context, addr string, logf func(string, ...any)) error {
	reg, err := newRegistry(addr)
	if err != nil {
		return err
	}
	haveFirst, err := reg.hasManifest(ctx, benchRepoFirst, benchImageTag)
	if err != nil {
		return fmt.Errorf("registry %s (hack/test-images.sh starts it): %w", addr, err)
	}
	haveSecond, err := reg.hasManifest(ctx, benchRepoSecond, benchImageTag)
	if err != nil {
		return err
	}
	if haveFirst && haveSecond {
		logf("bench images %s:%s and %s:%s are in the registry", benchRepoFirst, benchImageTag, benchRepoSecond, benchImageTag)
		return ensureFilesImage(ctx, reg, logf)
	}
	start := time.Now()
	var layers []builtBlob
	for i, mb := range firstLayersMB {
		l, err := buildLayer(fmt.Sprintf("bench-layer-%d", i), uint64(i), mb)
		if err != nil {
			return err
		}
		layers = append(layers, l)
	}
	own, err := buildLayer("bench-second", 1000, secondOwnMB)
	if err != nil {
		return err
	}
	first, err := assemble(benchRepoFirst, layers)
	if err != nil {
		return err
	}
	second, err := assemble(benchRepoSecond, append(append([]builtBlob{}, layers[:len(layers)-1]...), own))
	if err != nil {
		return err
	}
	if err := reg.push(ctx, first, benchImageTag, ""); err != nil {
		return err
	}
	if err := reg.push(ctx, second, benchImageTag, benchRepoFirst); err != nil {
		return err
	}
	var size int64
	for _, l := range layers {
		size += int64(len(l.data))
	}
	logf("built and pushed %s:%s (%d layers, %.1f MB compressed) and %s:%s in %s",
		benchRepoFirst, benchImageTag, len(layers), float64(size)/1e6, benchRepoSecond, benchImageTag,
		time.Since(start).Round(100*time.Millisecond))
	return ensureFilesImage(ctx, reg, logf)
}

// The many-files image: what a language runtime's base image looks like
// (about 300 MB unpacked in 22,500 files of compressible text, in four
// layers), built from fixed seeds. Bump benchFilesTag when the recipe
// changes.
const (
	benchRepoFiles = "crid-bench/pull-files"
	benchFilesTag  = "v1"
)

// filesLayers is the recipe: files and MB (unpacked) per layer.
var filesLayers = []struct {
	name      string
	files, mb int
}{
	{"base", 4000, 40},
	{"runtime", 10000, 150},
	{"packages", 7000, 90},
	{"app", 1500, 25},
}

// imageTag is the tag of one of the bench repositories.
func imageTag(repo string) string {
	if repo == benchRepoFiles {
		return benchFilesTag
	}
	return benchImageTag
}

// imageConfig is the part of an image config the floor reads.
type imageConfig struct {
	RootFS struct {
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// getConfig fetches an image config blob.
func (r *registry) getConfig(ctx context.Context, repo, digest string) (*imageConfig, error) {
	resp, err := r.do(ctx, http.MethodGet, "/v2/"+repo+"/blobs/"+digest, nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", digest, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("config %s of %s: %s", digest, repo, resp.Status)
	}
	c := &imageConfig{}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("decode config %s: %w", digest, err)
	}
	return c, nil
}

// vocabulary is the words the many-files image's text is made of: about
// as compressible as source code (gzip: ~3:1).
func vocabulary(rng *rand.Rand) []string {
	words := make([]string, 4096)
	const letters = "abcdefghijklmnopqrstuvwxyz_"
	for i := range words {
		b := make([]byte, 2+rng.IntN(9))
		for j := range b {
			b[j] = letters[rng.IntN(len(letters))]
		}
		words[i] = string(b)
	}
	return words
}

// buildFilesLayer writes a deterministic gzipped tar of files text files
// totalling about mb MB, 25 to a directory, with a symlink every 50 files.
func buildFilesLayer(name string, seed uint64, files, mb int) (builtBlob, error) {
	var gz bytes.Buffer
	blobSum, diffSum := sha256.New(), sha256.New()
	zw, err := kgzip.NewWriterLevel(io.MultiWriter(&gz, blobSum), kgzip.DefaultCompression)
	if err != nil {
		return builtBlob{}, fmt.Errorf("gzip: %w", err)
	}
	tw := tar.NewWriter(io.MultiWriter(zw, diffSum))
	mtime := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewChaCha8(seedBytes(seed)))
	words := vocabulary(rng)
	hdr := func(h *tar.Header) error {
		h.ModTime, h.Format = mtime, tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("tar: %w", err)
		}
		return nil
	}
	root := "usr/lib/" + name + "/"
	for _, d := range []string{"usr/", "usr/lib/", root} {
		if err := hdr(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}); err != nil {
			return builtBlob{}, err
		}
	}
	avg := mb * 1000 * 1000 / files
	var buf []byte
	dir := ""
	for i := range files {
		if i%25 == 0 {
			dir = fmt.Sprintf("%spkg%03d/mod%02d/", root, i/500, i/25%20)
			if i%500 == 0 {
				if err := hdr(&tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("%spkg%03d/", root, i/500), Mode: 0o755}); err != nil {
					return builtBlob{}, err
				}
			}
			if err := hdr(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755}); err != nil {
				return builtBlob{}, err
			}
		}
		// Sizes from a tenth of the average to 1.9 times it.
		size := avg/10 + rng.IntN(avg*18/10)
		buf = buf[:0]
		for len(buf) < size {
			if rng.IntN(12) == 0 {
				buf = append(buf, '\n')
			}
			buf = append(buf, words[rng.IntN(len(words))]...)
			buf = append(buf, ' ')
		}
		buf = buf[:size]
		path := fmt.Sprintf("%sf%05d.py", dir, i)
		if err := hdr(&tar.Header{Typeflag: tar.TypeReg, Name: path, Mode: 0o644, Size: int64(size)}); err != nil {
			return builtBlob{}, err
		}
		if _, err := tw.Write(buf); err != nil {
			return builtBlob{}, fmt.Errorf("tar: %w", err)
		}
		if i%50 == 49 {
			if err := hdr(&tar.Header{Typeflag: tar.TypeSymlink, Name: fmt.Sprintf("%sl%05d.py", dir, i), Linkname: fmt.Sprintf("f%05d.py", i), Mode: 0o777}); err != nil {
				return builtBlob{}, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return builtBlob{}, fmt.Errorf("tar: %w", err)
	}
	if err := zw.Close(); err != nil {
		return builtBlob{}, fmt.Errorf("gzip: %w", err)
	}
	return builtBlob{digest: digestOf(blobSum), diffID: digestOf(diffSum), data: gz.Bytes()}, nil
}

// ensureFilesImage builds and pushes the many-files image unless the
// registry has it. The layers are built in parallel.
func ensureFilesImage(ctx context.Context, reg *registry, logf func(string, ...any)) error {
	have, err := reg.hasManifest(ctx, benchRepoFiles, benchFilesTag)
	if err != nil {
		return err
	}
	if have {
		logf("bench image %s:%s is in the registry", benchRepoFiles, benchFilesTag)
		return nil
	}
	start := time.Now()
	layers := make([]builtBlob, len(filesLayers))
	errs := make([]error, len(filesLayers))
	var wg sync.WaitGroup
	for i, l := range filesLayers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			layers[i], errs[i] = buildFilesLayer(l.name, uint64(2000+i), l.files, l.mb)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	img, err := assemble(benchRepoFiles, layers)
	if err != nil {
		return err
	}
	if err := reg.push(ctx, img, benchFilesTag, ""); err != nil {
		return err
	}
	var size int64
	files := 0
	for i, l := range layers {
		size += int64(len(l.data))
		files += filesLayers[i].files
	}
	logf("built and pushed %s:%s (%d layers, %d files, %.1f MB compressed) in %s",
		benchRepoFiles, benchFilesTag, len(layers), files, float64(size)/1e6, time.Since(start).Round(100*time.Millisecond))
	return nil
}
