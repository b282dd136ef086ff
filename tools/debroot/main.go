// Command debroot builds (or finds in the cache) the Debian root filesystem
// tree a board's recipe asks for, and prints what is in it. make image does
// the same through images/bake; this is for looking at the tree and for
// resolving the packages again against the current archive (-refresh),
// which make image never does by itself once a resolution is cached.
//
//	go run ./tools/debroot -board qemu-arm64            # tree path, packages kept, size
//	go run ./tools/debroot -board qemu-arm64 -refresh   # apt-get update and resolve again
//	go run ./tools/debroot -board qemu-arm64 -files     # every file in the tree
package main

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/boxswarm/boxswarm/images"
	"github.com/boxswarm/boxswarm/images/debroot"
)

func main() {
	board := flag.String("board", "qemu-arm64", "board whose recipe (images/<board>.json) to read")
	refresh := flag.Bool("refresh", false, "resolve the packages again (apt-get update first)")
	files := flag.Bool("files", false, "list every file of the tree")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *board, *refresh, *files); err != nil {
		fmt.Fprintf(os.Stderr, "debroot: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, board string, refresh, files bool) error {
	root, err := images.RepoRoot()
	if err != nil {
		return err
	}
	r, err := images.ForBoard(root, board)
	if err != nil {
		return err
	}
	if r.RootFS == nil || r.RootFS.Debian == nil {
		return fmt.Errorf("recipe %s has no rootfs.debian section", board)
	}
	t, err := debroot.Build(ctx, debroot.Options{Spec: *r.RootFS.Debian, Arch: r.DebianArch(), Refresh: refresh, Log: os.Stderr})
	if err != nil {
		return err
	}
	var size int64
	err = filepath.WalkDir(t.Dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if st, err := d.Info(); err == nil {
				size += st.Size()
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	fmt.Printf("tree %s\n%d files, %.1f MiB\n", t.Dir, len(t.Files), float64(size)/(1<<20))
	for _, p := range t.Packages {
		if p.Kept {
			fmt.Printf("package %s %s\n", p.Name, p.Version)
		}
	}
	for _, s := range t.Stubbed {
		fmt.Printf("stub %s\n", s)
	}
	if files {
		for _, f := range t.Files {
			fmt.Printf("file %s\n", f)
		}
	}
	return nil
}
