// Command boxprobe is a daemon for a test-only second stage: run by the
// supervisor on the real baked board, it shows from inside the guest that
// the box's display, remote, network and decoder work, and prints what it
// saw on the console for the test on the host to check
// (board/qemu-arm64/boardtest):
//
//  1. it draws a test pattern through board/display and says DRAWN;
//  2. it opens the remote through board/evdev, says KEYS, and prints each
//     key it reads until the test has sent -keys of them;
//  3. it closes the display, which gives the screen back to the kernel's
//     fbdev emulation, fetches each -clip from the test's HTTP server on
//     the host and pipes it into Debian's ffmpeg from the verified root
//     filesystem, printing ffmpeg's framemd5 lines (the first clip is also
//     drawn on /dev/fb0), and says DONE.
//
// Every line starts with a word the test matches; the supervisor prefixes
// the daemon's name.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"image"
	"image/color"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/boxswarm/boxswarm/board/display"
	"github.com/boxswarm/boxswarm/board/evdev"
	"github.com/boxswarm/boxswarm/boot/supervisor"
)

// pattern is the test pattern: vertical bars in these colours, left to
// right. The test finds them in the screendump.
var pattern = []color.RGBA{{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255}, {255, 255, 255, 255}}

func main() {
	server := flag.String("server", "10.0.2.2:8080", "the test's HTTP server")
	keys := flag.Int("keys", 0, "how many remote keys to read")
	clips := flag.String("clips", "", "comma-separated clip names to fetch from the server and decode")
	ffmpeg := flag.String("ffmpeg", "/usr/bin/ffmpeg", "the decoder")
	flag.Parse()
	if err := supervisor.NotifyReady(); err != nil {
		fmt.Println("FAIL ready:", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run(ctx, *server, *keys, strings.Split(*clips, ","), *ffmpeg); err != nil {
		fmt.Println("FAIL", err)
	} else {
		fmt.Println("DONE")
	}
	// The supervisor restarts daemons that exit; this one has done its
	// work and waits to be stopped.
	<-make(chan struct{})
}

func run(ctx context.Context, server string, keys int, clips []string, ffmpeg string) error {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	d, err := display.Wait(dctx, display.Options{})
	cancel()
	if err != nil {
		return fmt.Errorf("display: %w", err)
	}
	size := d.Size()
	img := image.NewRGBA(image.Rectangle{Max: size})
	for x := range size.X {
		c := pattern[x*len(pattern)/size.X]
		for y := range size.Y {
			img.SetRGBA(x, y, c)
		}
	}
	if err := d.Show(img); err != nil {
		return fmt.Errorf("display: %w", err)
	}
	fmt.Printf("DRAWN %dx%d\n", size.X, size.Y)

	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	remote, err := evdev.OpenRemote(rctx, evdev.Finder{})
	cancel()
	if err != nil {
		return fmt.Errorf("remote: %w", err)
	}
	fmt.Printf("KEYS %s %q\n", remote.Path(), remote.Name())
	for range keys {
		kctx, cancel := context.WithTimeout(ctx, time.Minute)
		k, err := remote.ReadKey(kctx)
		cancel()
		if err != nil {
			return fmt.Errorf("remote: %w", err)
		}
		fmt.Printf("KEY %s\n", k)
	}
	remote.Close()
	// The decoder draws through fbdev, which shows again once the DRM
	// client is gone.
	if err := d.Close(); err != nil {
		return fmt.Errorf("display close: %w", err)
	}

	for i, c := range clips {
		if c == "" {
			continue
		}
		if err := decode(ctx, server, c, ffmpeg, i == 0); err != nil {
			return err
		}
	}
	return nil
}

// decode fetches a clip and pipes it into ffmpeg, printing its framemd5
// lines. AAC goes through the fixed-point decoder: the floating-point one
// rounds differently on arm64 and amd64, so only the fixed-point output
// can be compared with the host's.
func decode(ctx context.Context, server, clip, ffmpeg string, show bool) error {
	var resp *http.Response
	for {
		// The lease may still be on its way.
		req, err := http.NewRequestWithContext(ctx, "GET", "http://"+server+"/"+clip, nil)
		if err != nil {
			return err
		}
		resp, err = http.DefaultClient.Do(req)
		if err == nil {
			break
		}
		fmt.Printf("WAIT network: %v\n", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("fetch %s: %w", clip, err)
		case <-time.After(time.Second):
		}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch %s: %s", clip, resp.Status)
	}
	fmt.Printf("FETCHED %s from %s\n", clip, server)
	args := []string{"-hide_banner", "-loglevel", "error", "-c:a", "aac_fixed", "-i", "pipe:0",
		"-map", "0:v:0", "-map", "0:a:0?", "-f", "framemd5", "pipe:1"}
	if show {
		args = append(args, "-map", "0:v:0", "-pix_fmt", "bgra", "-f", "fbdev", "/dev/fb0")
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, ffmpeg, args...)
	cmd.Stdin = resp.Body
	cmd.Stderr = os.Stdout
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", ffmpeg, err)
	}
	sc := bufio.NewScanner(out)
	n := 0
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
			fmt.Printf("FRAMEMD5 %s %s\n", clip, line)
			n++
		}
	}
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("%s on %s: %w", ffmpeg, clip, err)
	}
	fmt.Printf("DECODED %s %d frames in %s\n", clip, n, time.Since(start).Round(time.Millisecond))
	return nil
}
