package admin

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/crid-dev/crid/admin/adminpb"
	"github.com/crid-dev/crid/imageservice"
	"github.com/crid-dev/crid/records"
)

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func tarBytes(t *testing.T, files ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f[0], Mode: 0o644, Size: int64(len(f[1])), ModTime: time.Unix(1700000000, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// dockerArchive is a one-layer docker-archive tagged tag, and its image ID.
func dockerArchive(t *testing.T, tag string) ([]byte, string) {
	t.Helper()
	layer := tarBytes(t, [2]string{"hello", "world"})
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Cmd": []string{"/hello"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digestOf(layer)}},
	})
	manifest, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{tag}, "Layers": []string{"l/layer.tar"}}})
	return tarBytes(t, [2]string{"manifest.json", string(manifest)}, [2]string{"config.json", string(config)}, [2]string{"l/layer.tar", string(layer)}), digestOf(config)
}

// serve runs the admin service over a real image store on a unix socket.
func serve(t *testing.T) adminpb.AdminClient {
	t.Helper()
	base := t.TempDir()
	rs, err := records.Open(filepath.Join(base, "records"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	images, err := imageservice.New(imageservice.Options{
		Root: filepath.Join(base, "images"), RootfsDir: filepath.Join(base, "rootfs"), Records: rs,
		RegistriesConf: filepath.Join(base, "registries.conf"), SandboxImage: "pause:1", ProgressTimeout: time.Minute,
		Limits: imageservice.Limits{FetchesPerPull: 2, FetchesTotal: 4, MaxLayers: 10, MaxLayerBytes: 1 << 30, MaxLayerFiles: 1000},
	})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(base, "admin.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	New(images).Register(srv)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }() // ends at Stop
	t.Cleanup(func() { srv.Stop(); <-done })
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return adminpb.NewAdminClient(conn)
}

// importChunks sends archive in chunks of n bytes.
func importChunks(t *testing.T, c adminpb.AdminClient, archive []byte, n int) (*adminpb.ImportImagesResponse, error) {
	t.Helper()
	stream, err := c.ImportImages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for first := true; len(archive) > 0; first = false {
		k := min(n, len(archive))
		req := &adminpb.ImportImagesRequest{Data: archive[:k]}
		if first {
			req.Source = "test.tar"
		}
		if err := stream.Send(req); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
		archive = archive[k:]
	}
	return stream.CloseAndRecv()
}

func export(t *testing.T, c adminpb.AdminClient, name string) ([]byte, error) {
	t.Helper()
	stream, err := c.ExportImage(context.Background(), &adminpb.ExportImageRequest{Image: name})
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m.GetData()...)
	}
}

func TestImportExportOverGRPC(t *testing.T) {
	c := serve(t)
	archive, id := dockerArchive(t, "example.com/hello:1")
	// Tiny chunks: the archive crosses many messages, and chunk borders
	// fall inside tar headers.
	resp, err := importChunks(t, c, archive, 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Images) != 1 || resp.Images[0].Id != id || !slices.Equal(resp.Images[0].RepoTags, []string{"example.com/hello:1"}) ||
		resp.Images[0].Format != "docker-archive" {
		t.Fatalf("import response %v, want %s tagged example.com/hello:1", resp, id)
	}
	out, err := export(t, c, "example.com/hello:1")
	if err != nil {
		t.Fatal(err)
	}
	// The export imports again: same tag (a new ID: re-created layers).
	again, err := importChunks(t, c, out, ChunkSize)
	if err != nil {
		t.Fatalf("re-import of the export: %v", err)
	}
	if len(again.Images) != 1 || !slices.Equal(again.Images[0].RepoTags, []string{"example.com/hello:1"}) {
		t.Fatalf("re-import response %v", again)
	}

	for _, c2 := range []struct {
		name string
		err  func() error
		code codes.Code
	}{
		{"import garbage", func() error { _, err := importChunks(t, c, bytes.Repeat([]byte("junk"), 1000), 512); return err }, codes.InvalidArgument},
		{"import nothing", func() error { _, err := importChunks(t, c, nil, 1); return err }, codes.InvalidArgument},
		{"export unknown", func() error { _, err := export(t, c, "nosuch:1"); return err }, codes.NotFound},
		{"export no name", func() error { _, err := export(t, c, ""); return err }, codes.InvalidArgument},
	} {
		if err := c2.err(); status.Code(err) != c2.code {
			t.Errorf("%s: %v, want code %s", c2.name, err, c2.code)
		}
	}
}

func TestChunkWriterSplitsAndFlushes(t *testing.T) {
	var got [][]byte
	w := &chunkWriter{send: func(b []byte) error { got = append(got, b); return nil }}
	data := bytes.Repeat([]byte("x"), 2*ChunkSize+10)
	if _, err := w.Write(data[:5]); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[5:]); err != nil {
		t.Fatal(err)
	}
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || len(got[0]) != ChunkSize || len(got[2]) != 10 || !bytes.Equal(bytes.Join(got, nil), data) {
		t.Fatalf("chunks of %d bytes", len(got))
	}
}
