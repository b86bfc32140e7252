// Package admin serves crid's own administration API (adminpb.Admin) on
// the CRI socket: image import and export for air-gapped nodes. It is
// root-only because the socket is (root:root, 0660).
//
// Archives travel in the RPC stream, not as paths: the CLI reads the file
// with its own permissions and mount namespace (a CLI in a container or a
// chroot with the socket mounted works), and the daemon never opens a
// path a client names, so no symlink or swap of the path can make it read
// or write a file the client could not.
package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/admin/adminpb"
	"github.com/crid-dev/crid/imageservice"
	"github.com/crid-dev/crid/panicguard"
)

// ChunkSize is the size of the data chunks of import and export streams:
// well under gRPC's default 4 MiB message limit.
const ChunkSize = 1 << 20

// Server implements adminpb.AdminServer.
type Server struct {
	adminpb.UnimplementedAdminServer
	images *imageservice.Service
}

// New returns the admin service over the image store.
func New(images *imageservice.Service) *Server { return &Server{images: images} }

// Register adds the service to a gRPC server.
func (s *Server) Register(r grpc.ServiceRegistrar) { adminpb.RegisterAdminServer(r, s) }

// ImportImages reads the archive from the stream and imports it.
func (s *Server) ImportImages(stream adminpb.Admin_ImportImagesServer) (err error) {
	defer panicguard.Recover("import images", &err)
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return status.Error(codes.InvalidArgument, "data: empty archive stream")
	}
	if err != nil {
		return err
	}
	source := first.GetSource()
	r := &streamReader{recv: stream.Recv, buf: first.GetData()}
	imported, err := s.images.Import(stream.Context(), r)
	if err != nil {
		return toStatus(fmt.Errorf("archive %q: %w", source, err))
	}
	resp := &adminpb.ImportImagesResponse{}
	for _, im := range imported {
		klog.InfoS("Imported image", "source", source, "format", im.Format, "image", im.Image.ID, "tags", im.Names)
		resp.Images = append(resp.Images, &adminpb.ImportedImage{
			Id:          im.Image.ID.String(),
			RepoTags:    im.Names,
			RepoDigests: im.Image.RepoDigests,
			Format:      im.Format,
		})
	}
	return stream.SendAndClose(resp)
}

// ExportImage streams a docker-archive of the image.
func (s *Server) ExportImage(req *adminpb.ExportImageRequest, stream adminpb.Admin_ExportImageServer) (err error) {
	defer panicguard.Recover("export image", &err)
	if req.GetImage() == "" {
		return status.Error(codes.InvalidArgument, "image: empty")
	}
	w := &chunkWriter{send: func(b []byte) error { return stream.Send(&adminpb.ExportImageResponse{Data: b}) }}
	if _, err := s.images.Export(stream.Context(), req.GetImage(), w); err != nil {
		return toStatus(err)
	}
	return w.flush()
}

// streamReader reads the data chunks of a client stream as one byte stream.
type streamReader struct {
	recv func() (*adminpb.ImportImagesRequest, error)
	buf  []byte
	err  error
}

func (r *streamReader) Read(b []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		m, err := r.recv()
		if err != nil {
			r.err = err // io.EOF at the end of the stream
			continue
		}
		r.buf = m.GetData()
	}
	n := copy(b, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// chunkWriter sends what is written in chunks of ChunkSize.
type chunkWriter struct {
	send func([]byte) error
	buf  []byte
}

func (w *chunkWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		if w.buf == nil {
			w.buf = make([]byte, 0, ChunkSize)
		}
		k := min(len(b), ChunkSize-len(w.buf))
		w.buf = append(w.buf, b[:k]...)
		b = b[k:]
		if len(w.buf) == ChunkSize {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	// Send may keep the slice until the message is written: a new buffer
	// for the next chunk.
	err := w.send(w.buf)
	w.buf = nil
	return err
}

// toStatus maps an import or export failure to a gRPC code.
func toStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	var badRef *imageservice.ErrInvalidReference
	code := codes.Unknown
	switch {
	case errors.Is(err, panicguard.ErrPanic):
		code = codes.Internal
	case errors.Is(err, imageservice.ErrTooLarge), errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		code = codes.ResourceExhausted
	case errors.Is(err, imageservice.ErrInvalidArchive), errors.Is(err, imageservice.ErrInvalidImage),
		errors.Is(err, imageservice.ErrDigestMismatch), errors.Is(err, imageservice.ErrInvalidDigest), errors.Is(err, imageservice.ErrInvalidLayer),
		errors.Is(err, imageservice.ErrAmbiguous), errors.As(err, &badRef):
		code = codes.InvalidArgument
	case errors.Is(err, imageservice.ErrImageNotFound):
		code = codes.NotFound
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}
