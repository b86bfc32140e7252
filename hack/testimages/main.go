// Command testimages builds the images critest v1.37.0 pulls, from Debian's
// busybox and a few static programs, and pushes them to a local registry,
// so that the conformance suite runs offline against real images pulled
// over the real registry protocol. hack/test-images.sh prepares its inputs
// and starts the registry; see docs/test-images.md for what the
// images must contain.
//
// Every layer is built deterministically, so a second run finds every tag
// current and pushes nothing.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "testimages:", err)
		os.Exit(1)
	}
}

type options struct {
	registry      string
	stage         string
	dryRun        bool
	list          bool
	latestAliases bool
	kubernetes    bool
	verbose       bool
	timeout       time.Duration
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("testimages", flag.ContinueOnError)
	fs.StringVar(&o.registry, "registry", "http://127.0.0.1:5000", "registry to push to (http:// is assumed without a scheme)")
	fs.StringVar(&o.stage, "stage", "", "directory prepared by hack/test-images.sh (busybox-root/, bin/)")
	fs.BoolVar(&o.dryRun, "dry-run", false, "build every image and print the digests, push nothing")
	fs.BoolVar(&o.list, "list", false, "print which critest reference each image serves, with its ID (implies -dry-run)")
	fs.BoolVar(&o.latestAliases, "latest-aliases", false, "also tag each repository :latest, for critest --registry-prefix, which drops tags")
	fs.BoolVar(&o.kubernetes, "kubernetes", false, "also build Kubernetes' e2e images (agnhost, busybox, nginx... at the tags the cluster test and node e2e suite pull; needs bin/agnhost, agnhost/ and curl-root/ in the stage)")
	fs.BoolVar(&o.verbose, "v", false, "report every tag, not only the ones pushed")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.stage == "" {
		return nil, errors.New("-stage is required")
	}
	if !strings.Contains(o.registry, "://") {
		o.registry = "http://" + o.registry
	}
	return o, nil
}

func run(args []string, out io.Writer) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	start := time.Now()
	repos, err := Catalog(Stage{Dir: o.stage})
	if err != nil {
		return err
	}
	if o.kubernetes {
		k8s, err := KubernetesCatalog(Stage{Dir: o.stage})
		if err != nil {
			return err
		}
		repos = append(repos, k8s...)
	}
	if o.latestAliases {
		addLatestAliases(repos)
	}
	b := NewBuilder()
	built := make([]*Built, len(repos))
	for i, r := range repos {
		if built[i], err = b.Build(r.Image); err != nil {
			return fmt.Errorf("build %s: %w", r.Name, err)
		}
	}
	if o.list {
		return printList(out, o.registry, repos, built)
	}
	if o.dryRun {
		for i, r := range repos {
			fmt.Fprintf(out, "%s:%s %s\n", r.Name, strings.Join(r.Tags, ","), built[i].Top().Digest)
		}
		return nil
	}

	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	reg, err := NewRegistry(o.registry, &http.Client{Timeout: time.Minute})
	if err != nil {
		return err
	}
	if err := reg.Ping(ctx); err != nil {
		return fmt.Errorf("registry not answering (hack/registry.sh start): %w", err)
	}
	tags := 0
	for i, r := range repos {
		tags += len(r.Tags)
		pushed, err := reg.Push(ctx, r.Name, r.Tags, built[i])
		if err != nil {
			return fmt.Errorf("push %s: %w", r.Name, err)
		}
		if pushed || o.verbose {
			state := "up to date"
			if pushed {
				state = "pushed"
			}
			fmt.Fprintf(out, "%-10s %s:%s %s\n", state, r.Name, strings.Join(r.Tags, ","), built[i].Top().Digest)
		}
	}
	s := reg.Stats
	fmt.Fprintf(out, "testimages: %d tags in %d images: %d manifests pushed, %d blobs uploaded (%.1f MB), %d mounted, %d present; %d tags were up to date (%s)\n",
		tags, len(repos), s.ManifestsPushed, s.BlobsUploaded, float64(s.BytesUploaded)/1e6, s.BlobsMounted, s.BlobsPresent,
		s.TagsUpToDate, time.Since(start).Round(10*time.Millisecond))
	return nil
}

// addLatestAliases tags the first image of every repository without a
// "latest" tag as latest too: critest's --registry-prefix rewrites a pull to
// the repository path alone.
func addLatestAliases(repos []Repo) {
	hasLatest := map[string]bool{}
	for _, r := range repos {
		for _, t := range r.Tags {
			if t == "latest" {
				hasLatest[r.Name] = true
			}
		}
	}
	for i := range repos {
		if !hasLatest[repos[i].Name] {
			repos[i].Tags = append(repos[i].Tags, "latest")
			hasLatest[repos[i].Name] = true
		}
	}
}

func printList(out io.Writer, registry string, repos []Repo, built []*Built) error {
	host := registry[strings.Index(registry, "://")+3:]
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CRITEST REFERENCE\tLOCAL\tIMAGE ID\tCONFIG\tCONTENT")
	for i, r := range repos {
		for _, ref := range r.Refs() {
			local := host + "/" + ref[strings.Index(ref, "/")+1:]
			id := strings.TrimPrefix(built[i].ID(), "sha256:")[:12]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ref, local, id, describe(r.Image.Config), r.Note)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print list: %w", err)
	}
	return nil
}
