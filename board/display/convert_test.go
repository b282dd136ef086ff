package display

import (
	"bytes"
	"image"
	"image/color"
	"strings"
	"testing"
)

func solid(w, h int, c color.RGBA) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	return img
}

func TestConvertPixelFormats(t *testing.T) {
	c := color.RGBA{R: 0xf0, G: 0x80, B: 0x18, A: 0xff}
	tests := []struct {
		name string
		f    Format
		want []byte
	}{
		{"XRGB8888", XRGB8888, []byte{0x18, 0x80, 0xf0, 0xff}},
		{"ARGB8888", Format{32, Channel{16, 8}, Channel{8, 8}, Channel{0, 8}, Channel{24, 8}}, []byte{0x18, 0x80, 0xf0, 0xff}},
		{"XBGR8888", Format{32, Channel{0, 8}, Channel{8, 8}, Channel{16, 8}, Channel{}}, []byte{0xf0, 0x80, 0x18, 0x00}},
		// 0xf0>>3=30, 0x80>>2=32, 0x18>>3=3: 30<<11|32<<5|3 = 0xf403
		{"RGB565", RGB565, []byte{0x03, 0xf4}},
		{"BGR888", Format{24, Channel{16, 8}, Channel{8, 8}, Channel{0, 8}, Channel{}}, []byte{0x18, 0x80, 0xf0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bpp := tt.f.BitsPerPixel / 8
			stride := 3*bpp + 5 // padding at the end of each row
			dst := bytes.Repeat([]byte{0xaa}, stride*2)
			if err := Convert(dst, stride, tt.f, image.Pt(3, 2), solid(3, 2, c)); err != nil {
				t.Fatal(err)
			}
			for y := range 2 {
				for x := range 3 {
					got := dst[y*stride+x*bpp : y*stride+(x+1)*bpp]
					if !bytes.Equal(got, tt.want) {
						t.Fatalf("pixel (%d,%d) = % x, want % x", x, y, got, tt.want)
					}
				}
				if pad := dst[y*stride+3*bpp : (y+1)*stride]; !bytes.Equal(pad, bytes.Repeat([]byte{0xaa}, 5)) {
					t.Fatalf("row %d padding overwritten: % x", y, pad)
				}
			}
		})
	}
}

// A frame of another shape is letterboxed: 1280x720 on a 1024x768 mode is
// scaled to 1024x576 with 96-line black bars above and below.
func TestConvertLetterbox(t *testing.T) {
	src := image.NewRGBA(image.Rect(0, 0, 1280, 720))
	quad := []color.RGBA{{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255}, {255, 255, 255, 255}}
	for y := range 720 {
		for x := range 1280 {
			src.SetRGBA(x, y, quad[(y/360)*2+x/640])
		}
	}
	size := image.Pt(1024, 768)
	stride := 1024 * 4
	dst := bytes.Repeat([]byte{0x55}, stride*768)
	if err := Convert(dst, stride, XRGB8888, size, src); err != nil {
		t.Fatal(err)
	}
	px := func(x, y int) [3]byte {
		o := y*stride + x*4
		return [3]byte{dst[o+2], dst[o+1], dst[o]}
	}
	checks := []struct {
		x, y int
		want [3]byte
	}{
		{0, 0, [3]byte{}}, {1023, 95, [3]byte{}}, {500, 767, [3]byte{}}, {10, 672, [3]byte{}},
		{0, 96, [3]byte{255, 0, 0}}, {511, 383, [3]byte{255, 0, 0}},
		{512, 96, [3]byte{0, 255, 0}}, {1023, 383, [3]byte{0, 255, 0}},
		{0, 384, [3]byte{0, 0, 255}}, {1023, 671, [3]byte{255, 255, 255}},
	}
	for _, c := range checks {
		if got := px(c.x, c.y); got != c.want {
			t.Errorf("pixel (%d,%d) = %v, want %v", c.x, c.y, got, c.want)
		}
	}
	// A tall frame gets bars left and right instead.
	dst2 := make([]byte, 100*4*50)
	if err := Convert(dst2, 400, XRGB8888, image.Pt(100, 50), solid(10, 10, color.RGBA{9, 9, 9, 255})); err != nil {
		t.Fatal(err)
	}
	if dst2[24*4] != 0 || dst2[25*4] != 9 || dst2[74*4] != 9 || dst2[75*4] != 0 {
		t.Errorf("pillarbox edges: %v %v %v %v", dst2[24*4], dst2[25*4], dst2[74*4], dst2[75*4])
	}
}

func TestConvertErrors(t *testing.T) {
	img := solid(4, 4, color.RGBA{A: 255})
	tests := []struct {
		name   string
		dst    int
		stride int
		f      Format
		size   image.Point
		want   string
	}{
		{"buffer too small", 4*4*4 - 1, 16, XRGB8888, image.Pt(4, 4), "needs 64"},
		{"stride too small", 1000, 15, XRGB8888, image.Pt(4, 4), "stride 15"},
		{"no size", 1000, 16, XRGB8888, image.Pt(0, 4), "frame buffer of"},
		{"8 bits per pixel", 1000, 16, Format{BitsPerPixel: 8, Red: Channel{5, 3}, Green: Channel{2, 3}, Blue: Channel{0, 2}}, image.Pt(4, 4), "8 bits per pixel"},
		{"channel outside pixel", 1000, 16, Format{BitsPerPixel: 16, Red: Channel{12, 5}, Green: Channel{5, 6}, Blue: Channel{0, 5}}, image.Pt(4, 4), "red channel"},
		{"missing channel", 1000, 16, Format{BitsPerPixel: 32, Red: Channel{16, 8}, Blue: Channel{0, 8}}, image.Pt(4, 4), "no green"},
	}
	for _, tt := range tests {
		err := Convert(make([]byte, tt.dst), tt.stride, tt.f, tt.size, img)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
	if err := Convert(make([]byte, 64), 16, XRGB8888, image.Pt(4, 4), image.NewRGBA(image.Rectangle{})); err == nil {
		t.Error("empty image accepted")
	}
}

func BenchmarkConvert720p(b *testing.B) {
	src := solid(1280, 720, color.RGBA{1, 2, 3, 255})
	dst := make([]byte, 1280*4*720)
	b.SetBytes(int64(len(dst)))
	for b.Loop() {
		if err := Convert(dst, 1280*4, XRGB8888, image.Pt(1280, 720), src); err != nil {
			b.Fatal(err)
		}
	}
}
