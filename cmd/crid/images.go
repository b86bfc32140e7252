package main

import (
	"archive/tar"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/crid-dev/crid/admin"
	"github.com/crid-dev/crid/admin/adminpb"
	"github.com/crid-dev/crid/config"
)

const imagesUsage = `usage:
  crid images import [--socket PATH] FILE...   load docker-archive, oci-archive (plain, gzip, zstd) or OCI layout directories; "-" reads stdin
  crid images export [--socket PATH] NAME FILE write a docker-archive of the image NAME; "-" writes stdout`

// imagesCommand is the client side of crid's admin API: it talks to the
// running daemon over its socket.
func imagesCommand(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, imagesUsage)
		return 2
	}
	fs := flag.NewFlagSet("crid images "+args[0], flag.ContinueOnError)
	cfgPath := fs.String("config", config.DefaultPath, "configuration file: the socket is read from it")
	socket := fs.String("socket", "", "crid's socket (default: the configuration's)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *socket == "" {
		set := false
		fs.Visit(func(f *flag.Flag) { set = set || f.Name == "config" })
		cfg, err := config.Load(*cfgPath, !set)
		if err != nil {
			fmt.Fprintf(os.Stderr, "crid: %v\n", err)
			return 2
		}
		*socket = cfg.Socket
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	conn, err := grpc.NewClient("unix://"+*socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "crid: connect to %s: %v\n", *socket, err)
		return 1
	}
	defer conn.Close()
	client := adminpb.NewAdminClient(conn)
	switch args[0] {
	case "import":
		if fs.NArg() == 0 {
			fmt.Fprintln(os.Stderr, imagesUsage)
			return 2
		}
		failed := false
		for _, file := range fs.Args() {
			if err := importFile(ctx, client, file, os.Stdout); err != nil {
				fmt.Fprintf(os.Stderr, "crid: import %s: %v\n", file, err)
				failed = true
			}
		}
		if failed {
			return 1
		}
		return 0
	case "export":
		if fs.NArg() != 2 {
			fmt.Fprintln(os.Stderr, imagesUsage)
			return 2
		}
		if err := exportImage(ctx, client, fs.Arg(0), fs.Arg(1)); err != nil {
			fmt.Fprintf(os.Stderr, "crid: export %s: %v\n", fs.Arg(0), err)
			return 1
		}
		return 0
	}
	fmt.Fprintln(os.Stderr, imagesUsage)
	return 2
}

// importFile streams one archive (or an OCI layout directory, as a tar)
// to the daemon and prints a line per name imported: "imported NAME ID",
// NAME "<none>" for an image without one.
func importFile(ctx context.Context, client adminpb.AdminClient, file string, out io.Writer) error {
	var r io.Reader
	if file == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		r = f
		if fi.IsDir() {
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(tarDir(file, pw)) }() // ends when the tar is written or the reader closed
			defer pr.Close()
			r = pr
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.ImportImages(ctx)
	if err != nil {
		return err
	}
	buf := make([]byte, admin.ChunkSize)
	first := true
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			req := &adminpb.ImportImagesRequest{Data: buf[:n]}
			if first {
				req.Source, first = file, false
			}
			if err := stream.Send(req); err != nil {
				if errors.Is(err, io.EOF) {
					break // the daemon ended the call: its status says why
				}
				return err
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return err
	}
	for _, img := range resp.GetImages() {
		names := img.GetRepoTags()
		if len(names) == 0 {
			names = []string{"<none>"}
		}
		for _, n := range names {
			fmt.Fprintf(out, "imported %s %s\n", n, img.GetId())
		}
	}
	return nil
}

// tarDir writes an OCI layout directory as a tar: files and directories
// only, never following a symlink.
func tarDir(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		switch {
		case d.IsDir():
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: rel + "/", Mode: 0o755})
		case d.Type().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: 0o644, Size: fi.Size()}); err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			return err
		}
		return fmt.Errorf("%s: an OCI layout holds only files and directories", p)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// exportImage writes the daemon's docker-archive of name to file, through
// a temporary file renamed into place: a failed export leaves no file.
func exportImage(ctx context.Context, client adminpb.AdminClient, name, file string) (err error) {
	stream, err := client.ExportImage(ctx, &adminpb.ExportImageRequest{Image: name})
	if err != nil {
		return err
	}
	var w io.Writer = os.Stdout
	if file != "-" {
		// err below is the function's result: the deferred calls see how
		// the export ended.
		var tmp *os.File
		if tmp, err = os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-"); err != nil {
			return err
		}
		defer func() {
			if err != nil {
				tmp.Close()
				os.Remove(tmp.Name())
			}
		}()
		w = tmp
		defer func() {
			if err == nil {
				if err = tmp.Sync(); err == nil {
					if err = tmp.Close(); err == nil {
						err = os.Rename(tmp.Name(), file)
					}
				}
			}
		}()
	}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := w.Write(m.GetData()); err != nil {
			return err
		}
	}
}
