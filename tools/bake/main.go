// Command bake bakes a board's images from its recipe in images/: the ROM
// stand-in, the signed firmware and a disk image, all into one folder.
//
//	go run ./tools/bake -board qemu-arm64              # development keys in out/keys
//	go run ./tools/bake -board qemu-arm64 -keys /secure/keys
//	go run ./tools/bake -headend 203.0.113.1:7443 -headend-data /var/lib/boxswarm-headend
//
// -headend and -headend-data bake in the operator's head-end: the address
// boxes dial, and the data folder `headend serve` made, whose CA
// certificate and public keys the boxes trust (the recipe's "box").
// Without -keys it generates development keys once and reuses them; a
// manufacturer passes its own key directory (root.pub, signing.key,
// signing.cert, rom.key, rom.crt; see tools/fwtool).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/boxswarm/boxswarm/images"
	"github.com/boxswarm/boxswarm/images/bake"
)

func main() {
	board := flag.String("board", "qemu-arm64", "board whose recipe (images/<board>.json) to bake")
	out := flag.String("out", "", "output folder (default out/<board>)")
	keys := flag.String("keys", "", "manufacturer key folder (default: development keys in out/keys)")
	version := flag.Uint64("version", 0, "override the recipe's image version")
	headend := flag.String("headend", "", "the head-end's gateway address as boxes dial it (overrides the recipe's box.headend)")
	headendData := flag.String("headend-data", "", "the head-end's data folder, for its CA and public keys (overrides box.headend_data)")
	noVerify := flag.Bool("insecure-noverify", false, "build a stage one that skips signature and hash checks, to measure what they cost; NEVER flash it")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: bake [-board B] [-out DIR] [-keys DIR] [-version N] [-headend ADDR] [-headend-data DIR] [-insecure-noverify]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var tags []string
	if *noVerify {
		fmt.Fprintln(os.Stderr, "bake: WARNING: stage one will NOT verify firmware (-insecure-noverify); for measurements only")
		tags = append(tags, "insecure_noverify")
	}
	box := images.Box{HeadEnd: *headend, HeadEndData: *headendData}
	if err := run(ctx, *board, *out, *keys, *version, box, tags); err != nil {
		fmt.Fprintf(os.Stderr, "bake: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, board, out, keyDir string, version uint64, box images.Box, tags []string) error {
	root, err := images.RepoRoot()
	if err != nil {
		return err
	}
	r, err := images.ForBoard(root, board)
	if err != nil {
		return err
	}
	if version != 0 {
		r.ImageVersion = version
	}
	if box.HeadEnd != "" || box.HeadEndData != "" {
		b := images.Box{}
		if r.Box != nil {
			b = *r.Box
		}
		if box.HeadEnd != "" {
			b.HeadEnd = box.HeadEnd
		}
		if box.HeadEndData != "" {
			if b.HeadEndData, err = filepath.Abs(box.HeadEndData); err != nil {
				return err
			}
		}
		r.Box = &b
	}
	if out == "" {
		out = filepath.Join(root, "out", board)
	}
	if out, err = filepath.Abs(out); err != nil {
		return err
	}
	var k bake.Keys
	if keyDir == "" {
		keyDir = filepath.Join(root, "out", "keys")
		fmt.Fprintf(os.Stderr, "bake: using DEVELOPMENT keys in %s (pass -keys for production)\n", keyDir)
		k, err = bake.DevKeys(keyDir)
	} else if keyDir, err = filepath.Abs(keyDir); err == nil {
		k, err = bake.LoadKeys(keyDir)
	}
	if err != nil {
		return err
	}
	a, err := bake.Bake(ctx, bake.Options{Root: root, Recipe: r, Out: out, Keys: k, Stage1Tags: tags})
	if err != nil {
		return err
	}
	fmt.Printf("baked %s image version %d into %s\n  ROM:  %s %s %s\n  disk: %s\n",
		board, r.ImageVersion, out, a.ROM.UBoot, a.ROM.DTB, a.ROM.FIT, a.Disk)
	return nil
}
