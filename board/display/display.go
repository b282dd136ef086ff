// Package display puts the TV interface's frames on the box's screen. It
// drives a Linux DRM device through a dumb buffer (the kernel interface
// every KMS driver, virtio-gpu included, offers for software-drawn frames)
// and falls back to the legacy fbdev interface where a board has no DRM.
// Only golang.org/x/sys is used: no libdrm, no cgo.
package display

import (
	"context"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"time"
)

// Display is a screen frames can be shown on.
type Display interface {
	// Size is the screen's resolution; drawing at it avoids scaling.
	Size() image.Point
	// Show puts a frame on the screen (scaled to fit if its size differs).
	Show(img *image.RGBA) error
	// Close releases the screen and, for DRM, gives the previous picture
	// back (the console's, say).
	Close() error
}

// ErrNoDisplay says neither a DRM card nor a frame buffer device exists.
var ErrNoDisplay = errors.New("no display device")

// Options choose the device and the mode.
type Options struct {
	// Card is the DRM device; the first of /dev/dri/card0..7 that opens if
	// empty.
	Card string
	// FB is the fbdev device tried when DRM fails; /dev/fb0 if empty.
	FB string
	// Size is the mode wanted when the screen offers it (the connector's
	// preferred mode otherwise); 1280x720 if zero.
	Size image.Point
	Log  *slog.Logger
}

func (o *Options) defaults() {
	if o.FB == "" {
		o.FB = "/dev/fb0"
	}
	if o.Size == (image.Point{}) {
		o.Size = image.Pt(1280, 720)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Open opens the screen: DRM first, then fbdev. When both fail the error
// says why each did, and wraps ErrNoDisplay if neither device exists.
func Open(o Options) (Display, error) {
	o.defaults()
	cards := []string{o.Card}
	if o.Card == "" {
		cards = nil
		for i := range 8 {
			cards = append(cards, fmt.Sprintf("/dev/dri/card%d", i))
		}
	}
	var errs []error
	missing := 0
	for _, c := range cards {
		d, err := openDRM(c, o)
		if err == nil {
			o.Log.Info("display", "device", c, "interface", "DRM", "size", d.Size())
			return d, nil
		}
		if isNotExist(err) {
			missing++
			if o.Card == "" && len(errs) > 0 {
				continue // only the first missing card is worth reporting
			}
		}
		errs = append(errs, err)
	}
	d, err := openFB(o.FB)
	if err == nil {
		o.Log.Info("display", "device", o.FB, "interface", "fbdev", "size", d.Size(), "drm", errors.Join(errs...))
		return d, nil
	}
	errs = append(errs, err)
	if missing == len(cards) && isNotExist(err) {
		errs = append([]error{ErrNoDisplay}, errs...)
	}
	return nil, fmt.Errorf("opening the display: %w", errors.Join(errs...))
}

// Wait calls Open until it succeeds or ctx ends: at boot the display driver
// may bind after the daemons start.
func Wait(ctx context.Context, o Options) (Display, error) {
	for {
		d, err := Open(o)
		if err == nil || !errors.Is(err, ErrNoDisplay) {
			return d, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a display: %w (last: %w)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
