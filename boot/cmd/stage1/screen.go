package main

import (
	"context"
	"fmt"
	"image"
	"io"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/boxswarm/boxswarm/board/display"
	"github.com/boxswarm/boxswarm/player/tv"
)

const (
	// screenWait bounds the whole service screen: finding the display,
	// drawing and showing. A refusal is told on the console and the panel
	// first and never waits longer than this for the TV.
	screenWait = 3 * time.Second
	// screenHold keeps a service screen that was shown up a moment before
	// the box halts: the QEMU board's halt powers it off, which blanks the
	// TV at once. Long enough for the picture to reach the screen (and a
	// test's screendump), short enough not to slow the many refusals the
	// boot-chain tests boot; a board whose halt leaves the display lit
	// would need none.
	screenHold = 1500 * time.Millisecond
	// maxDetail cuts the refusal's text for the support line at the
	// bottom of the screen; the console has all of it.
	maxDetail = 400
)

// serviceReason is the service screen's sentence for the viewer; the
// refusal itself goes on the support line under it.
const serviceReason = "This box cannot start its software."

// serviceScreen shows the TV interface's "Service needed" screen with the
// refusal's reason, waiting at most wait. It reports whether the screen
// shows, and says on the console what came of it. The drawing runs in a
// goroutine it does not wait for past the deadline, and a panic there is
// only reported: nothing in it can stop the refusal.
func serviceScreen(ctx context.Context, console io.Writer, refusal error, wait time.Duration, open opener) bool {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	var size image.Point
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("internal error: %v", r)
			}
		}()
		s, err := drawService(ctx, refusal, open)
		size = s
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			fmt.Fprintf(console, "stage1: service screen skipped: %v\n", err)
			return false
		}
		fmt.Fprintf(console, "stage1: service screen shown %dx%d after %s\n", size.X, size.Y, time.Since(start).Round(time.Millisecond))
		return true
	case <-ctx.Done():
		fmt.Fprintf(console, "stage1: service screen skipped: no display within %s\n", wait)
		return false
	}
}

// opener opens the display, waiting for it until ctx ends.
type opener func(ctx context.Context) (display.Display, error)

// openDisplay waits for the board's display (DRM, else fbdev).
func openDisplay(ctx context.Context) (display.Display, error) {
	return display.Wait(ctx, display.Options{Log: slog.New(slog.DiscardHandler)})
}

// drawService opens the display, draws the screen and shows it. The
// display stays open: the box halts with it on.
func drawService(ctx context.Context, refusal error, open opener) (image.Point, error) {
	r, err := tv.NewRenderer()
	if err != nil {
		return image.Point{}, err
	}
	d, err := open(ctx)
	if err != nil {
		return image.Point{}, err
	}
	size := d.Size()
	img := image.NewRGBA(image.Rectangle{Max: size})
	r.ServiceNeeded(img, tv.ServiceView{Reason: serviceReason, Detail: cut(refusal.Error(), maxDetail)})
	if ctx.Err() != nil {
		d.Close()
		return size, fmt.Errorf("drawn too late: %w", ctx.Err())
	}
	if err := d.Show(img); err != nil {
		d.Close()
		return size, err
	}
	return size, nil
}

// cut shortens s to at most n bytes at a character boundary, marking the
// cut with an ellipsis.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
