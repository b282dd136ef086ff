package main

import (
	"context"
	"errors"
	"image"
	"image/color"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/boxswarm/boxswarm/board/display"
)

// fakeDisplay records what is shown.
type fakeDisplay struct {
	mu     sync.Mutex
	size   image.Point
	shown  *image.RGBA
	closed bool
}

func (f *fakeDisplay) Size() image.Point { return f.size }

func (f *fakeDisplay) Show(img *image.RGBA) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shown = img
	return nil
}

func (f *fakeDisplay) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// TestServiceScreen: the screen is drawn when a display opens in time,
// and a display that is missing, hangs or panics costs the refusal at
// most the wait and is only reported.
func TestServiceScreen(t *testing.T) {
	refusal := errors.New("slot A: bad manifest signature; slot B: slot is empty")
	fake := &fakeDisplay{size: image.Pt(1280, 800)}
	const wait = 300 * time.Millisecond
	for _, tc := range []struct {
		name  string
		open  opener
		shown bool
		line  string
	}{
		{"display", func(context.Context) (display.Display, error) { return fake, nil }, true, "stage1: service screen shown 1280x800 after "},
		{"no display", func(ctx context.Context) (display.Display, error) {
			return display.Wait(ctx, display.Options{Card: "/nonexistent/card0", FB: "/nonexistent/fb0"})
		}, false, "stage1: service screen skipped: "},
		{"display that hangs", func(context.Context) (display.Display, error) { select {} }, false,
			"stage1: service screen skipped: no display within 300ms"},
		{"display that panics", func(context.Context) (display.Display, error) { panic("driver bug") }, false,
			"stage1: service screen skipped: internal error: driver bug"},
		{"display that fails", func(context.Context) (display.Display, error) { return nil, errors.New("DRM: EBUSY") }, false,
			"stage1: service screen skipped: DRM: EBUSY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			start := time.Now()
			shown := serviceScreen(context.Background(), &out, refusal, wait, tc.open)
			took := time.Since(start)
			if shown != tc.shown || !strings.HasPrefix(out.String(), tc.line) {
				t.Errorf("shown %v, console %q; want %v, %q", shown, out.String(), tc.shown, tc.line)
			}
			// Rendering on a loaded machine may take a while; the
			// failures must come at once or at the deadline.
			if !tc.shown && took > wait+200*time.Millisecond {
				t.Errorf("took %v, want at most the wait (%v)", took, wait)
			}
		})
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if fake.shown == nil || fake.closed {
		t.Fatalf("screen shown %v, display closed %v: want shown and left open", fake.shown != nil, fake.closed)
	}
	// Mostly the service screen's dark red, with light text on it.
	var red, light int
	for i := 0; i < len(fake.shown.Pix); i += 4 {
		c := color.RGBA{fake.shown.Pix[i], fake.shown.Pix[i+1], fake.shown.Pix[i+2], 255}
		switch {
		case c.R > 2*c.G && c.R > 2*c.B && c.R < 0x80:
			red++
		case min(c.R, c.G, c.B) >= 0xc0:
			light++
		}
	}
	n := fake.size.X * fake.size.Y
	if red < n*6/10 || light < n/500 {
		t.Errorf("%d dark red and %d light pixels of %d: not the service screen", red, light, n)
	}
}

func TestCut(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"slot A: bad", 20, "slot A: bad"},
		{"slot A: bad", 6, "slot A…"},
		{"ééé", 3, "é…"}, // not in the middle of the second é
		{"ééé", 6, "ééé"},
	} {
		if got := cut(tc.s, tc.n); got != tc.want || !utf8.ValidString(got) {
			t.Errorf("cut(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}
