package display

import (
	"errors"
	"fmt"
	"image"
)

// Channel is where one colour component sits in a pixel: Length bits from
// bit Offset (0 is the least significant).
type Channel struct {
	Offset, Length int
}

// Format is a packed true-colour pixel layout, stored little-endian (the
// byte order of DRM formats, and of fbdev on the box's little-endian CPU).
type Format struct {
	BitsPerPixel     int
	Red, Green, Blue Channel
	Alpha            Channel // Length 0 when the pixel has no alpha
}

// Pixel formats the box meets.
var (
	// XRGB8888 is DRM_FORMAT_XRGB8888, what dumb buffers are created as:
	// bytes B, G, R, unused.
	XRGB8888 = Format{BitsPerPixel: 32, Red: Channel{16, 8}, Green: Channel{8, 8}, Blue: Channel{0, 8}}
	// RGB565 is common on small panels behind fbdev.
	RGB565 = Format{BitsPerPixel: 16, Red: Channel{11, 5}, Green: Channel{5, 6}, Blue: Channel{0, 5}}
)

// Check says whether f is a layout Convert can write.
func (f Format) Check() error {
	switch f.BitsPerPixel {
	case 16, 24, 32:
	default:
		return fmt.Errorf("pixel format: %d bits per pixel, want 16, 24 or 32", f.BitsPerPixel)
	}
	for _, c := range []struct {
		name string
		ch   Channel
	}{{"red", f.Red}, {"green", f.Green}, {"blue", f.Blue}, {"alpha", f.Alpha}} {
		if c.name != "alpha" && c.ch.Length == 0 {
			return fmt.Errorf("pixel format: no %s channel", c.name)
		}
		if c.ch.Length < 0 || c.ch.Length > 8 || c.ch.Offset < 0 || c.ch.Offset+c.ch.Length > f.BitsPerPixel {
			return fmt.Errorf("pixel format: %s channel of %d bits at bit %d does not fit %d-bit pixels",
				c.name, c.ch.Length, c.ch.Offset, f.BitsPerPixel)
		}
	}
	return nil
}

// Convert writes src into a frame buffer of the given size and format,
// stride bytes per row. A src of another size is scaled to fit with its
// aspect kept and black bars around it, so a screen drawn at 1280x720
// still shows whole on a 1024x768 mode; draw at the display's size to avoid
// the scaling. Premultiplied colour is used as is, which composites
// translucent pixels over black.
func Convert(dst []byte, stride int, f Format, size image.Point, src *image.RGBA) error {
	if err := f.Check(); err != nil {
		return err
	}
	bpp := f.BitsPerPixel / 8
	if size.X <= 0 || size.Y <= 0 {
		return fmt.Errorf("frame buffer of %v pixels", size)
	}
	if stride < size.X*bpp {
		return fmt.Errorf("stride %d too small for %d pixels of %d bytes", stride, size.X, bpp)
	}
	if need := stride*(size.Y-1) + size.X*bpp; len(dst) < need {
		return fmt.Errorf("frame buffer of %d bytes, %v at stride %d needs %d", len(dst), size, stride, need)
	}
	sb := src.Bounds()
	if sb.Empty() {
		return errors.New("empty image")
	}
	sw, sh := sb.Dx(), sb.Dy()
	// Where the image lands: all of the buffer, or a centred box.
	dw, dh := size.X, size.Y
	if sw != dw || sh != dh {
		if sw*size.Y > sh*size.X {
			dh = max(1, sh*size.X/sw)
		} else {
			dw = max(1, sw*size.Y/sh)
		}
	}
	ox, oy := (size.X-dw)/2, (size.Y-dh)/2
	black := f.pack(0, 0, 0)
	fast := f == XRGB8888
	for y := range size.Y {
		row := dst[y*stride : y*stride+size.X*bpp]
		if y < oy || y >= oy+dh {
			fill(row, black, bpp)
			continue
		}
		fill(row[:ox*bpp], black, bpp)
		fill(row[(ox+dw)*bpp:], black, bpp)
		sy := (y - oy) * sh / dh
		srow := src.Pix[src.PixOffset(sb.Min.X, sb.Min.Y+sy):]
		out := row[ox*bpp : (ox+dw)*bpp]
		if fast && dw == sw {
			for x := range dw {
				s := srow[x*4 : x*4+3 : x*4+3]
				d := out[x*4 : x*4+4 : x*4+4]
				d[0], d[1], d[2], d[3] = s[2], s[1], s[0], 0xff
			}
			continue
		}
		for x := range dw {
			sx := x * sw / dw
			s := srow[sx*4 : sx*4+3 : sx*4+3]
			put(out[x*bpp:], f.pack(s[0], s[1], s[2]), bpp)
		}
	}
	return nil
}

// pack places 8-bit components in a pixel value; alpha, if any, is opaque.
func (f Format) pack(r, g, b uint8) uint32 {
	ch := func(v uint8, c Channel) uint32 { return uint32(v) >> (8 - c.Length) << c.Offset }
	v := ch(r, f.Red) | ch(g, f.Green) | ch(b, f.Blue)
	if f.Alpha.Length > 0 {
		v |= ch(0xff, f.Alpha)
	}
	return v
}

func put(d []byte, v uint32, bpp int) {
	for i := range bpp {
		d[i] = byte(v >> (8 * i))
	}
}

func fill(row []byte, v uint32, bpp int) {
	for i := 0; i+bpp <= len(row); i += bpp {
		put(row[i:], v, bpp)
	}
}
