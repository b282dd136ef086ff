package display

import (
	"context"
	"errors"
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mode(w, h, refresh int, preferred bool) drmModeInfo {
	m := drmModeInfo{HDisplay: uint16(w), VDisplay: uint16(h), VRefresh: uint32(refresh)}
	if preferred {
		m.Type = drmModeTypePreferred
	}
	return m
}

func TestPickMode(t *testing.T) {
	modes := []drmModeInfo{mode(1024, 768, 60, true), mode(1280, 720, 50, false), mode(1280, 720, 60, false), mode(1920, 1080, 60, false)}
	tests := []struct {
		want image.Point
		got  drmModeInfo
	}{
		{image.Pt(1280, 720), modes[2]},
		{image.Pt(1920, 1080), modes[3]},
		{image.Pt(800, 600), modes[0]},
	}
	for _, tt := range tests {
		if m := pickMode(modes, tt.want); m != tt.got {
			t.Errorf("pickMode(%v) = %s, want %s", tt.want, modeName(m), modeName(tt.got))
		}
	}
	noPreferred := []drmModeInfo{mode(640, 480, 60, false), mode(800, 600, 60, false)}
	if m := pickMode(noPreferred, image.Pt(1280, 720)); m != noPreferred[0] {
		t.Errorf("no preferred mode: got %s", modeName(m))
	}
}

func TestPickCRTC(t *testing.T) {
	crtcs := []uint32{31, 32, 33}
	encoders := map[uint32]drmModeGetEncoder{
		40: {EncoderID: 40, CRTCID: 32, PossibleCRTCs: 0b111},
		41: {EncoderID: 41, PossibleCRTCs: 0b100},
		42: {EncoderID: 42, PossibleCRTCs: 0},
	}
	tests := []struct {
		name    string
		current uint32
		encs    []uint32
		want    uint32
		wantErr bool
	}{
		{"keeps the active CRTC", 40, []uint32{40}, 32, false},
		{"idle encoder: first possible", 0, []uint32{41}, 33, false},
		{"skips encoders with no CRTC", 0, []uint32{42, 41}, 33, false},
		{"nothing possible", 0, []uint32{42}, 0, true},
	}
	for _, tt := range tests {
		got, err := pickCRTC(tt.current, tt.encs, encoders, crtcs)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("%s: got %d, %v; want %d (error %v)", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestFBLayout(t *testing.T) {
	xrgb := fbVarScreenInfo{XRes: 1280, YRes: 720, BitsPerPixel: 32,
		Red: fbBitfield{Offset: 16, Length: 8}, Green: fbBitfield{Offset: 8, Length: 8}, Blue: fbBitfield{Length: 8}}
	fix := fbFixScreenInfo{Visual: fbVisualTrueColor, LineLength: 1280 * 4, SMemLen: 1280 * 4 * 720 * 2}

	f, stride, off, err := fbLayout(xrgb, fix)
	if err != nil || f != XRGB8888 || stride != 5120 || off != 0 {
		t.Fatalf("XRGB: %+v %d %d %v", f, stride, off, err)
	}
	panned := xrgb
	panned.YOffset = 720
	if _, _, off, err := fbLayout(panned, fix); err != nil || off != 720*5120 {
		t.Fatalf("panned: offset %d, %v", off, err)
	}
	rgb565 := fbVarScreenInfo{XRes: 320, YRes: 240, BitsPerPixel: 16,
		Red: fbBitfield{Offset: 11, Length: 5}, Green: fbBitfield{Offset: 5, Length: 6}, Blue: fbBitfield{Length: 5}}
	if f, _, _, err := fbLayout(rgb565, fbFixScreenInfo{Visual: fbVisualTrueColor, LineLength: 640, SMemLen: 640 * 240}); err != nil || f != RGB565 {
		t.Fatalf("RGB565: %+v %v", f, err)
	}

	bad := []struct {
		name string
		v    func(*fbVarScreenInfo)
		fix  func(*fbFixScreenInfo)
		want string
	}{
		{"palette", nil, func(f *fbFixScreenInfo) { f.Visual = 3 }, "not packed true colour"},
		{"planes", nil, func(f *fbFixScreenInfo) { f.Type = 1 }, "not packed true colour"},
		{"8 bpp", func(v *fbVarScreenInfo) { v.BitsPerPixel = 8 }, nil, "8 bits per pixel"},
		{"pans past the end", func(v *fbVarScreenInfo) { v.YOffset = 721 }, nil, "past the"},
		{"short lines", nil, func(f *fbFixScreenInfo) { f.LineLength = 100 }, "bytes a line"},
		{"grayscale", func(v *fbVarScreenInfo) { v.Grayscale = 1 }, nil, "grayscale"},
		{"reversed bits", func(v *fbVarScreenInfo) { v.Red.MSBRight = 1 }, nil, "bit-reversed"},
	}
	for _, b := range bad {
		v, fx := xrgb, fix
		if b.v != nil {
			b.v(&v)
		}
		if b.fix != nil {
			b.fix(&fx)
		}
		if _, _, _, err := fbLayout(v, fx); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: err = %v, want %q", b.name, err, b.want)
		}
	}
}

func TestOpenWithoutDevices(t *testing.T) {
	dir := t.TempDir()
	card, fb := filepath.Join(dir, "card0"), filepath.Join(dir, "fb0")
	_, err := Open(Options{Card: card, FB: fb})
	if !errors.Is(err, ErrNoDisplay) {
		t.Fatalf("err = %v, want ErrNoDisplay", err)
	}
	for _, want := range []string{"DRM " + card, "fbdev " + fb, "no such file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}

	// Files that exist but are not devices fail for that reason, and the
	// error is not "no display".
	for _, p := range []string{card, fb} {
		if err := os.WriteFile(p, make([]byte, 4096), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err = Open(Options{Card: card, FB: fb})
	if err == nil || errors.Is(err, ErrNoDisplay) {
		t.Fatalf("err = %v, want a failure other than ErrNoDisplay", err)
	}
	for _, want := range []string{"DRM_IOCTL_GET_CAP", "FBIOGET_VSCREENINFO", "inappropriate ioctl"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestWaitGivesUp(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Wait(ctx, Options{Card: filepath.Join(dir, "card0"), FB: filepath.Join(dir, "fb0")})
	if !errors.Is(err, ErrNoDisplay) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("took %v", time.Since(start))
	}
}
