// Command demo runs the whole system on this machine, printing each step:
// the head-end on its embedded default, on a stand-in internet of network
// namespaces; a sample movie, made with ffmpeg, imported into it; two
// viewers signed up on the web; two set-top boxes booted in QEMU from the
// signed image, each behind its own home router's kernel NAT, activated
// by typing the codes on their remotes; the movie added on the web; box 1
// filled from the media server, box 2 from box 1 across both NATs; and box
// 2 buying it and playing it. It then keeps everything up, with the
// catalog's web address on the screen, until Ctrl-C (or exits at once
// with -exit).
//
//	demo [-board qemu-arm64] [-exit] [-v]
//	demo -boot-chain [-v]     the verified boot chain alone: update, rollback, tampering
//
// It needs what `make image` baked (out/<board>) and root, for the
// namespaces. Its files are in out/<board>/system.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/boxswarm/boxswarm/images"
	system "github.com/boxswarm/boxswarm/internal/demo"
)

func main() {
	board := flag.String("board", "qemu-arm64", "board to demonstrate")
	verbose := flag.Bool("v", false, "show the boxes' whole serial consoles")
	exit := flag.Bool("exit", false, "exit once the story has played, instead of keeping the system up")
	chain := flag.Bool("boot-chain", false, "show the verified boot chain alone (update, rollback, tampering)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := filepath.Join("out", *board)
	var err error
	if *chain {
		err = bootChain(ctx, out, *verbose)
	} else {
		err = runSystem(ctx, out, *verbose, *exit)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func runSystem(ctx context.Context, out string, verbose, exit bool) error {
	repo, err := images.RepoRoot()
	if err != nil {
		return err
	}
	cfg := system.Config{Repo: repo, Images: out, Dir: filepath.Join(out, "system"), Log: stepWriter{}}
	if verbose {
		cfg.Console = os.Stdout
	}
	s, err := system.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	shots := filepath.Join(out, "system-screenshots")
	res, err := system.Scenario(ctx, s, shots)
	if err != nil {
		return err
	}
	same := "the same, frame for frame"
	if len(res.DecodedFrames) != len(res.SourceFrames) {
		same = fmt.Sprintf("%d of %d frames", len(res.DecodedFrames), len(res.SourceFrames))
	} else {
		for i := range res.SourceFrames {
			if res.SourceFrames[i] != res.DecodedFrames[i] {
				same = fmt.Sprintf("different from frame %d", i)
				break
			}
		}
	}
	step("box2's decoder output against the source: " + same)
	step(fmt.Sprintf("from adding the movie on the web to playable on box2: %v; power-on to the first TV screen: %v",
		res.AddedToPlayable.Round(100e6), res.FirstScreen.Round(100e6)))
	step("TV screenshots: " + shots)
	step("the catalog: " + s.Web + " (log in as ann@example.com, password \"correct horse Ann\")")
	if exit {
		return nil
	}
	step("the system stays up; Ctrl-C stops it")
	<-ctx.Done()
	return nil
}

type stepWriter struct{}

func (stepWriter) Write(b []byte) (int, error) {
	fmt.Print("── " + string(b))
	return len(b), nil
}
