package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// A Registry pushes images over the Docker Registry HTTP API v2, skipping
// what the registry already holds so that a second run sends nothing:
// a tag whose manifest digest already matches is left alone without
// looking at its blobs, a blob already in the repository is not sent, and a
// blob already in another repository is mounted rather than uploaded.
type Registry struct {
	base   *url.URL
	client *http.Client
	// where maps a blob digest to a repository known to hold it, for
	// cross-repository mounts.
	where map[string]string
	Stats Stats
}

// Stats counts what a push did.
type Stats struct {
	BlobsUploaded   int
	BytesUploaded   int64
	BlobsMounted    int
	BlobsPresent    int
	ManifestsPushed int
	TagsUpToDate    int
}

// NewRegistry returns a client for the registry at base, e.g.
// "http://127.0.0.1:5000".
func NewRegistry(base string, client *http.Client) (*Registry, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("registry address %q: %w", base, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("registry address %q: want http://host:port or https://host:port", base)
	}
	return &Registry{base: u, client: client, where: map[string]string{}}, nil
}

// Ping checks that the registry speaks the v2 API.
func (r *Registry) Ping(ctx context.Context) error {
	resp, err := r.do(ctx, http.MethodGet, r.url("/v2/"), nil, nil)
	if err != nil {
		return err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("registry %s: GET /v2/: %s", r.base, resp.Status)
	}
	return nil
}

// Push makes every tag of repo point at img, uploading what is missing.
// It reports whether anything was written.
func (r *Registry) Push(ctx context.Context, repo string, tags []string, img *Built) (bool, error) {
	top := img.Top()
	var stale []string
	for _, tag := range tags {
		d, err := r.manifestDigest(ctx, repo, tag)
		if err != nil {
			return false, err
		}
		if d == top.Digest {
			r.Stats.TagsUpToDate++
			continue
		}
		stale = append(stale, tag)
	}
	if len(stale) == 0 {
		// A current tag implies its blobs are there: the registry refuses
		// a manifest whose blobs are missing.
		r.where[img.Config.Digest] = repo
		for _, l := range img.Layers {
			r.where[l.Digest] = repo
		}
		return false, nil
	}

	for _, b := range append([]Blob{img.Config}, img.Layers...) {
		if err := r.ensureBlob(ctx, repo, b); err != nil {
			return false, err
		}
	}
	if img.Index != nil {
		// The index refers to the manifest by digest: put it first.
		if err := r.putManifest(ctx, repo, img.Manifest.Digest, img.Manifest); err != nil {
			return false, err
		}
	}
	for _, tag := range stale {
		if err := r.putManifest(ctx, repo, tag, top); err != nil {
			return false, err
		}
	}
	return true, nil
}

// ensureBlob makes blob b present in repo.
func (r *Registry) ensureBlob(ctx context.Context, repo string, b Blob) error {
	ok, err := r.blobExists(ctx, repo, b.Digest)
	if err != nil {
		return err
	}
	if ok {
		r.Stats.BlobsPresent++
		r.where[b.Digest] = repo
		return nil
	}

	start := r.url("/v2/" + repo + "/blobs/uploads/")
	if from, known := r.where[b.Digest]; known && from != repo {
		q := url.Values{"mount": {b.Digest}, "from": {from}}
		start.RawQuery = q.Encode()
	}
	resp, err := r.do(ctx, http.MethodPost, start, nil, nil)
	if err != nil {
		return err
	}
	drain(resp)
	switch resp.StatusCode {
	case http.StatusCreated: // mounted from another repository
		r.Stats.BlobsMounted++
		r.where[b.Digest] = repo
		return nil
	case http.StatusAccepted: // an upload session to send the blob to
	default:
		return fmt.Errorf("start upload of %s to %s: %s", b.Digest, repo, resp.Status)
	}

	loc, err := r.location(resp)
	if err != nil {
		return fmt.Errorf("start upload of %s to %s: %w", b.Digest, repo, err)
	}
	// Monolithic upload: the whole blob in the closing PUT.
	q := loc.Query()
	q.Set("digest", b.Digest)
	loc.RawQuery = q.Encode()
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	resp, err = r.do(ctx, http.MethodPut, loc, hdr, b.Data)
	if err != nil {
		return err
	}
	drain(resp)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("upload %s to %s: %s", b.Digest, repo, resp.Status)
	}
	r.Stats.BlobsUploaded++
	r.Stats.BytesUploaded += b.Size()
	r.where[b.Digest] = repo
	return nil
}

func (r *Registry) blobExists(ctx context.Context, repo, digest string) (bool, error) {
	resp, err := r.do(ctx, http.MethodHead, r.url("/v2/"+repo+"/blobs/"+digest), nil, nil)
	if err != nil {
		return false, err
	}
	drain(resp)
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	default:
		return false, fmt.Errorf("check blob %s in %s: %s", digest, repo, resp.Status)
	}
}

// manifestDigest returns the digest of the manifest ref points at in repo,
// or "" when there is none.
func (r *Registry) manifestDigest(ctx context.Context, repo, ref string) (string, error) {
	hdr := http.Header{"Accept": {strings.Join(ManifestTypes, ", ")}}
	resp, err := r.do(ctx, http.MethodHead, r.url("/v2/"+repo+"/manifests/"+ref), hdr, nil)
	if err != nil {
		return "", err
	}
	drain(resp)
	switch resp.StatusCode {
	case http.StatusOK:
		return resp.Header.Get("Docker-Content-Digest"), nil
	case http.StatusNotFound:
		return "", nil
	default:
		return "", fmt.Errorf("check manifest %s:%s: %s", repo, ref, resp.Status)
	}
}

func (r *Registry) putManifest(ctx context.Context, repo, ref string, m Blob) error {
	hdr := http.Header{"Content-Type": {m.MediaType}}
	resp, err := r.do(ctx, http.MethodPut, r.url("/v2/"+repo+"/manifests/"+ref), hdr, m.Data)
	if err != nil {
		return err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusCreated {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("put manifest %s:%s: %s: %s", repo, ref, resp.Status, strings.TrimSpace(string(body)))
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != m.Digest {
		return fmt.Errorf("put manifest %s:%s: registry computed digest %s, want %s", repo, ref, got, m.Digest)
	}
	r.Stats.ManifestsPushed++
	return nil
}

func (r *Registry) url(p string) *url.URL {
	u := *r.base
	u.Path = strings.TrimSuffix(u.Path, "/") + p
	return &u
}

// location resolves the Location header of resp, which the API allows to
// be relative, against the registry address.
func (r *Registry) location(resp *http.Response) (*url.URL, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, fmt.Errorf("no Location header in %s response", resp.Status)
	}
	u, err := url.Parse(loc)
	if err != nil {
		return nil, fmt.Errorf("bad Location %q: %w", loc, err)
	}
	return r.base.ResolveReference(u), nil
}

func (r *Registry) do(ctx context.Context, method string, u *url.URL, hdr http.Header, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u.Redacted(), err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u.Redacted(), err)
	}
	return resp, nil
}

// drain reads and closes a response body so the connection is reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
}
