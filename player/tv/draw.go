package tv

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"math"
	"strings"
	"unicode/utf8"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
	"golang.org/x/image/vector"
)

// Palette: light text on a dark ground, and one warm highlight with dark
// ink for whatever has the remote's focus. Contrast is kept well above 7:1
// for text, which a TV's viewing distance and overscan need.
var (
	colBackground = color.RGBA{0x0b, 0x10, 0x20, 0xff}
	colPanel      = color.RGBA{0x19, 0x22, 0x3b, 0xff}
	colText       = color.RGBA{0xf5, 0xf7, 0xfa, 0xff}
	colDim        = color.RGBA{0xa9, 0xb3, 0xc6, 0xff}
	colRule       = color.RGBA{0x3a, 0x45, 0x60, 0xff}
	colFocus      = color.RGBA{0xff, 0xc4, 0x2e, 0xff}
	colInk        = color.RGBA{0x10, 0x10, 0x14, 0xff}
	colMoving     = color.RGBA{0x5a, 0xc8, 0xfa, 0xff}
	colViewable   = color.RGBA{0x3d, 0xdc, 0x97, 0xff}
	colError      = color.RGBA{0xff, 0x7a, 0x7a, 0xff}
	colService    = color.RGBA{0x3a, 0x0c, 0x0c, 0xff}
	colShade      = color.RGBA{0, 0, 0, 0xc0} // premultiplied: 75 % black
)

// Renderer draws the TV screens. Screens scale with the image's height
// (720 lines is the design size) and keep to the title-safe area, 5 % in
// from each edge, which every TV shows whatever its overscan. A Renderer
// caches font faces and is not safe for concurrent use.
type Renderer struct {
	regular, bold *opentype.Font
	faces         map[faceKey]font.Face
}

type faceKey struct {
	bold bool
	px   int
}

// NewRenderer loads the Go fonts (embedded, so the box needs no font files).
func NewRenderer() (*Renderer, error) {
	reg, err := opentype.Parse(goregular.TTF)
	if err != nil {
		return nil, fmt.Errorf("parsing Go Regular: %w", err)
	}
	bold, err := opentype.Parse(gobold.TTF)
	if err != nil {
		return nil, fmt.Errorf("parsing Go Bold: %w", err)
	}
	return &Renderer{regular: reg, bold: bold, faces: map[faceKey]font.Face{}}, nil
}

// frame is one screen being drawn: the destination and its scale.
type frame struct {
	r    *Renderer
	dst  *image.RGBA
	b    image.Rectangle // the image's bounds
	safe image.Rectangle // the title-safe area
	u    float64         // pixels per design pixel (720-line design)
}

func (r *Renderer) frame(dst *image.RGBA) *frame {
	b := dst.Bounds()
	mx, my := b.Dx()*5/100, b.Dy()*5/100
	return &frame{r: r, dst: dst, b: b, safe: image.Rect(b.Min.X+mx, b.Min.Y+my, b.Max.X-mx, b.Max.Y-my), u: float64(b.Dy()) / 720}
}

// px scales a design size to pixels.
func (f *frame) px(v float64) int { return int(math.Round(v * f.u)) }

func (f *frame) face(bold bool, size float64) font.Face {
	k := faceKey{bold, max(6, f.px(size))}
	if fc, ok := f.r.faces[k]; ok {
		return fc
	}
	ft := f.r.regular
	if bold {
		ft = f.r.bold
	}
	fc, err := opentype.NewFace(ft, &opentype.FaceOptions{Size: float64(k.px), DPI: 72, Hinting: font.HintingFull})
	if err != nil {
		// Only invalid options fail, and these are fixed.
		panic(fmt.Sprintf("tv: font face of %d px: %v", k.px, err))
	}
	f.r.faces[k] = fc
	return fc
}

func (f *frame) fill(r image.Rectangle, c color.RGBA) {
	draw.Draw(f.dst, r.Intersect(f.b), image.NewUniform(c), image.Point{}, draw.Over)
}

// text draws s with its baseline at y, from x; it returns the x after it.
func (f *frame) text(fc font.Face, x, y int, c color.RGBA, s string) int {
	d := font.Drawer{Dst: f.dst, Src: image.NewUniform(c), Face: fc, Dot: fixed.P(x, y)}
	d.DrawString(s)
	return d.Dot.X.Round()
}

func width(fc font.Face, s string) int { return font.MeasureString(fc, s).Ceil() }

// baseline centres capital letters vertically in r.
func baseline(fc font.Face, r image.Rectangle) int {
	m := fc.Metrics()
	return r.Min.Y + (r.Dy()+m.CapHeight.Round())/2
}

func (f *frame) textRight(fc font.Face, right, y int, c color.RGBA, s string) {
	f.text(fc, right-width(fc, s), y, c, s)
}

func (f *frame) textCentre(fc font.Face, cx, y int, c color.RGBA, s string) {
	f.text(fc, cx-width(fc, s)/2, y, c, s)
}

// fit shortens s with an ellipsis until it is at most w pixels wide.
func fit(fc font.Face, s string, w int) string {
	if width(fc, s) <= w {
		return s
	}
	for len(s) > 0 {
		_, n := utf8.DecodeLastRuneInString(s)
		s = strings.TrimRight(s[:len(s)-n], " ")
		if width(fc, s+"…") <= w {
			return s + "…"
		}
	}
	return ""
}

// wrap breaks s into lines at most w pixels wide, at spaces where it can.
func wrap(fc font.Face, s string, w int) []string {
	var lines []string
	for _, para := range strings.Split(s, "\n") {
		line := ""
		for _, word := range strings.Fields(para) {
			try := word
			if line != "" {
				try = line + " " + word
			}
			if width(fc, try) <= w || line == "" {
				line = try
				continue
			}
			lines = append(lines, line)
			line = word
		}
		lines = append(lines, line)
	}
	for i, l := range lines {
		lines[i] = fit(fc, l, w)
	}
	return lines
}

// shape fills a path built in coordinates relative to r, anti-aliased.
func (f *frame) shape(r image.Rectangle, c color.RGBA, build func(z *vector.Rasterizer)) {
	if r.Empty() {
		return
	}
	z := vector.NewRasterizer(r.Dx(), r.Dy())
	build(z)
	z.Draw(f.dst, r, image.NewUniform(c), image.Point{})
}

// arcPoint is the point at angle a on a circle, a measured clockwise from
// twelve o'clock, which is how a clock face and a progress pie read.
func arcPoint(cx, cy, rad, a float64) (float32, float32) {
	return float32(cx + rad*math.Sin(a)), float32(cy - rad*math.Cos(a))
}

// arc continues the path along a circle from angle a0 to a1 (either
// direction) in cubic Bézier pieces of at most a quarter turn.
func arc(z *vector.Rasterizer, cx, cy, rad, a0, a1 float64) {
	n := int(math.Ceil(math.Abs(a1-a0) / (math.Pi / 2)))
	if n == 0 {
		return
	}
	step := (a1 - a0) / float64(n)
	k := 4.0 / 3 * math.Tan(step/4) * rad
	for i := range n {
		s, e := a0+float64(i)*step, a0+float64(i+1)*step
		x0, y0 := arcPoint(cx, cy, rad, s)
		x3, y3 := arcPoint(cx, cy, rad, e)
		// The tangent of a clockwise angle a is (cos a, sin a).
		z.CubeTo(x0+float32(k*math.Cos(s)), y0+float32(k*math.Sin(s)),
			x3-float32(k*math.Cos(e)), y3-float32(k*math.Sin(e)), x3, y3)
	}
}

func circlePath(z *vector.Rasterizer, cx, cy, rad float64, clockwise bool) {
	a0, a1 := 0.0, 2*math.Pi
	if !clockwise {
		a0, a1 = a1, a0
	}
	z.MoveTo(arcPoint(cx, cy, rad, a0))
	arc(z, cx, cy, rad, a0, a1)
	z.ClosePath()
}

// disc fills a circle centred on c.
func (f *frame) disc(c image.Point, rad float64, col color.RGBA) {
	r := square(c, rad)
	f.shape(r, col, func(z *vector.Rasterizer) {
		circlePath(z, float64(c.X-r.Min.X), float64(c.Y-r.Min.Y), rad, true)
	})
}

// ring draws a circle's outline of the given stroke width. The inner
// circle runs the other way, so it cuts a hole.
func (f *frame) ring(c image.Point, rad, stroke float64, col color.RGBA) {
	r := square(c, rad)
	f.shape(r, col, func(z *vector.Rasterizer) {
		cx, cy := float64(c.X-r.Min.X), float64(c.Y-r.Min.Y)
		circlePath(z, cx, cy, rad, true)
		circlePath(z, cx, cy, rad-stroke, false)
	})
}

// pie fills the sector from twelve o'clock clockwise over fraction of the
// circle.
func (f *frame) pie(c image.Point, rad, fraction float64, col color.RGBA) {
	fraction = clamp01(fraction)
	if fraction <= 0 {
		return
	}
	if fraction >= 1 {
		f.disc(c, rad, col)
		return
	}
	r := square(c, rad)
	f.shape(r, col, func(z *vector.Rasterizer) {
		cx, cy := float64(c.X-r.Min.X), float64(c.Y-r.Min.Y)
		z.MoveTo(float32(cx), float32(cy))
		z.LineTo(arcPoint(cx, cy, rad, 0))
		arc(z, cx, cy, rad, 0, 2*math.Pi*fraction)
		z.ClosePath()
	})
}

func square(c image.Point, rad float64) image.Rectangle {
	n := int(math.Ceil(rad)) + 1
	return image.Rect(c.X-n, c.Y-n, c.X+n, c.Y+n)
}

// roundRect fills r with corners of radius rad.
func (f *frame) roundRect(r image.Rectangle, rad float64, col color.RGBA) {
	rad = math.Min(rad, float64(min(r.Dx(), r.Dy()))/2)
	f.shape(r, col, func(z *vector.Rasterizer) { roundPath(z, 0, 0, float64(r.Dx()), float64(r.Dy()), rad, true) })
}

// roundOutline draws the outline of a rounded rectangle inside r.
func (f *frame) roundOutline(r image.Rectangle, rad, stroke float64, col color.RGBA) {
	rad = math.Min(rad, float64(min(r.Dx(), r.Dy()))/2)
	f.shape(r, col, func(z *vector.Rasterizer) {
		w, h := float64(r.Dx()), float64(r.Dy())
		roundPath(z, 0, 0, w, h, rad, true)
		roundPath(z, stroke, stroke, w-stroke, h-stroke, math.Max(0, rad-stroke), false)
	})
}

func roundPath(z *vector.Rasterizer, x0, y0, x1, y1, rad float64, clockwise bool) {
	// Corner centres, clockwise from the top left, with the angle each
	// corner's arc starts at.
	type corner struct{ cx, cy, a float64 }
	cs := []corner{
		{x0 + rad, y0 + rad, 1.5 * math.Pi},
		{x1 - rad, y0 + rad, 0},
		{x1 - rad, y1 - rad, 0.5 * math.Pi},
		{x0 + rad, y1 - rad, math.Pi},
	}
	if clockwise {
		z.MoveTo(arcPoint(cs[0].cx, cs[0].cy, rad, cs[0].a))
		for _, c := range cs {
			x, y := arcPoint(c.cx, c.cy, rad, c.a)
			z.LineTo(x, y)
			arc(z, c.cx, c.cy, rad, c.a, c.a+math.Pi/2)
		}
	} else {
		// The same outline backwards, starting where the forward one ends.
		z.MoveTo(arcPoint(cs[3].cx, cs[3].cy, rad, cs[3].a+math.Pi/2))
		for i := 3; i >= 0; i-- {
			c := cs[i]
			z.LineTo(arcPoint(c.cx, c.cy, rad, c.a+math.Pi/2))
			arc(z, c.cx, c.cy, rad, c.a+math.Pi/2, c.a)
		}
	}
	z.ClosePath()
}

// triangle fills a triangle pointing right (dir 1) or left (dir -1) in r.
func (f *frame) triangle(r image.Rectangle, dir int, col color.RGBA) {
	f.shape(r, col, func(z *vector.Rasterizer) {
		w, h := float32(r.Dx()), float32(r.Dy())
		if dir > 0 {
			z.MoveTo(0, 0)
			z.LineTo(w, h/2)
			z.LineTo(0, h)
		} else {
			z.MoveTo(w, 0)
			z.LineTo(0, h/2)
			z.LineTo(w, h)
		}
		z.ClosePath()
	})
}

// triangleUp fills a triangle pointing up (dir -1) or down (dir 1) in r.
func (f *frame) triangleUp(r image.Rectangle, dir int, col color.RGBA) {
	f.shape(r, col, func(z *vector.Rasterizer) {
		w, h := float32(r.Dx()), float32(r.Dy())
		if dir < 0 {
			z.MoveTo(w/2, 0)
			z.LineTo(w, h)
			z.LineTo(0, h)
		} else {
			z.MoveTo(0, 0)
			z.LineTo(w, 0)
			z.LineTo(w/2, h)
		}
		z.ClosePath()
	})
}
