package tv

import (
	"image"
	"image/color"
	"math"
	"testing"
	"time"

	"golang.org/x/image/font/sfnt"
)

func at(img *image.RGBA, x, y int) color.RGBA { return img.RGBAAt(x, y) }

// The selected row, and only it, carries the highlight, where the scrolled
// window puts it: the tenth of fourteen items with eight rows on screen
// shows items 6 to 13, the selection fifth.
func TestMyListHighlightPlace(t *testing.T) {
	r := newRenderer(t)
	img := image.NewRGBA(image.Rect(0, 0, 1280, 720))
	lay := r.MyList(img, MyListView{Items: longList(), Selected: 9})
	if lay.First != 5 || len(lay.Rows) != 8 {
		t.Fatalf("first row %d, %d rows; want 5 and 8", lay.First, len(lay.Rows))
	}
	x := lay.Rows[0].Min.X + 20 // inside the row, left of the rank
	var runs [][2]int
	in := false
	for y := lay.Rows[0].Min.Y - 10; y < lay.Rows[7].Max.Y+10; y++ {
		focus := at(img, x, y) == colFocus
		switch {
		case focus && !in:
			runs = append(runs, [2]int{y, y})
			in = true
		case focus:
			runs[len(runs)-1][1] = y
		default:
			in = false
		}
	}
	if len(runs) != 1 {
		t.Fatalf("%d highlighted bands at x=%d, want 1: %v", len(runs), x, runs)
	}
	pitch := lay.Rows[1].Min.Y - lay.Rows[0].Min.Y
	wantTop := lay.Rows[0].Min.Y + 4*pitch
	if runs[0][0] != wantTop || runs[0][1] != lay.Rows[4].Max.Y-1 || lay.Selected != lay.Rows[4] {
		t.Fatalf("highlight spans rows %v, want from %d to %d (%v)", runs[0], wantTop, lay.Rows[4].Max.Y-1, lay.Selected)
	}
	for i, row := range lay.Rows {
		c := at(img, x, row.Min.Y+row.Dy()/2)
		if i != 4 && c != colBackground {
			t.Errorf("row %d background %v", i, c)
		}
	}
	// The selected row's text is drawn in dark ink on the highlight.
	ink := 0
	for y := lay.Selected.Min.Y; y < lay.Selected.Max.Y; y++ {
		for x := lay.Selected.Min.X; x < lay.Selected.Max.X; x++ {
			if at(img, x, y) == colInk {
				ink++
			}
		}
	}
	if ink < 200 {
		t.Errorf("only %d ink pixels in the selected row", ink)
	}
	// The scroll bar's thumb sits in the lower part of the track.
	thumb := 0
	for y := lay.Rows[0].Min.Y; y < lay.Rows[7].Max.Y; y++ {
		if at(img, 1216-4, y) == colDim {
			thumb += y - lay.Rows[0].Min.Y
			break
		}
	}
	if thumb < pitch*2 {
		t.Errorf("scroll thumb starts %d px down the track, want well below the top", thumb)
	}
}

// coverage sums how much of col covers the pixels within radius rad of c,
// on a black image.
func coverage(img *image.RGBA, c image.Point, rad float64, channel int) float64 {
	sum := 0.0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			dx, dy := float64(x)+0.5-float64(c.X), float64(y)+0.5-float64(c.Y)
			if dx*dx+dy*dy < rad*rad {
				sum += float64(img.Pix[img.PixOffset(x, y)+channel]) / 255
			}
		}
	}
	return sum
}

// The downloading glyph's pie covers the share of its disc that has
// downloaded, clockwise from twelve o'clock.
func TestDownloadGlyphFillsProportionally(t *testing.T) {
	r := newRenderer(t)
	const rad = 80.0
	stroke := rad / 6
	inner := rad - stroke*1.8
	gapMid := (inner + rad - stroke) / 2 // between the pie and the ring
	white := color.RGBA{255, 255, 255, 255}
	c := image.Pt(100, 100)
	for _, p := range []float64{0, 0.1, 0.25, 0.5, 0.75, 0.9, 1} {
		img := image.NewRGBA(image.Rect(0, 0, 200, 200))
		f := r.frame(img)
		f.downloadGlyph(c, rad, Downloading, p, white)
		got := coverage(img, c, gapMid, 0) / (math.Pi * inner * inner)
		if math.Abs(got-p) > 0.01 {
			t.Errorf("progress %.2f: pie covers %.3f of its disc", p, got)
		}
		ring := coverage(img, c, rad+1, 0) - coverage(img, c, gapMid, 0)
		wantRing := math.Pi * (rad*rad - (rad-stroke)*(rad-stroke))
		if math.Abs(ring/wantRing-1) > 0.03 {
			t.Errorf("progress %.2f: ring area %.0f, want %.0f", p, ring, wantRing)
		}
	}
	// A quarter is the upper right quadrant.
	img := image.NewRGBA(image.Rect(0, 0, 200, 200))
	r.frame(img).downloadGlyph(c, rad, Downloading, 0.25, white)
	if at(img, 130, 70).R != 255 || at(img, 70, 70).R != 0 || at(img, 130, 130).R != 0 {
		t.Errorf("quarter pie: upper right %v, upper left %v, lower right %v", at(img, 130, 70), at(img, 70, 70), at(img, 130, 130))
	}
	// Downloaded is a full disc; not started an empty ring.
	full := image.NewRGBA(image.Rect(0, 0, 200, 200))
	r.frame(full).downloadGlyph(c, rad, Downloaded, 0, white)
	if got := coverage(full, c, rad+2, 0) / (math.Pi * rad * rad); math.Abs(got-1) > 0.01 {
		t.Errorf("downloaded disc covers %.3f", got)
	}
	empty := image.NewRGBA(image.Rect(0, 0, 200, 200))
	r.frame(empty).downloadGlyph(c, rad, NotStarted, 0.7, white)
	if got := coverage(empty, c, gapMid, 0); got != 0 {
		t.Errorf("not started glyph has %.1f px inside its ring", got)
	}
}

// The viewing-time pie shows the share of the rental window left.
func TestViewGlyphShowsTimeLeft(t *testing.T) {
	r := newRenderer(t)
	c := image.Pt(100, 100)
	for _, left := range []time.Duration{48 * time.Hour, 36 * time.Hour, 12 * time.Hour, time.Hour} {
		img := image.NewRGBA(image.Rect(0, 0, 200, 200))
		// Green on a black track: the green channel measures the pie.
		r.frame(img).viewGlyph(c, 80, left, 48*time.Hour, color.RGBA{0, 255, 0, 255}, color.RGBA{0, 0, 0, 255})
		got := coverage(img, c, 82, 1) / (math.Pi * 80 * 80)
		want := float64(left) / float64(48*time.Hour)
		if math.Abs(got-want) > 0.01 {
			t.Errorf("%v of 48h left: pie covers %.3f, want %.3f", left, got, want)
		}
	}
}

// The progress bar's highlight reaches the playback position (plus the
// knob's radius) and no further.
func TestPlaybackBarFollowsPosition(t *testing.T) {
	r := newRenderer(t)
	for _, frac := range []float64{0.1, 0.5, 0.9} {
		img := image.NewRGBA(image.Rect(0, 0, 1280, 720))
		d := 100 * time.Minute
		lay := r.Playback(img, PlaybackView{Name: "x", Position: time.Duration(frac * float64(d)), Duration: d, Speed: 1, Overlay: true})
		tr := lay.Progress
		y := tr.Min.Y + tr.Dy()/2
		end := tr.Min.X
		for x := tr.Min.X; x < tr.Max.X+20; x++ {
			if at(img, x, y) == colFocus {
				end = x
			}
		}
		want := tr.Min.X + int(math.Round(frac*float64(tr.Dx()))) + 13
		if abs(end-want) > 2 {
			t.Errorf("at %.0f%%: highlight ends at x=%d, want %d", frac*100, end, want)
		}
		if c := at(img, tr.Max.X-20, y); frac < 0.9 && c != colRule {
			t.Errorf("at %.0f%%: the rest of the track is %v", frac*100, c)
		}
	}
	// No overlay: nothing but black.
	img := image.NewRGBA(image.Rect(0, 0, 320, 180))
	r.Playback(img, PlaybackView{Name: "x", Speed: 1})
	for i := 0; i < len(img.Pix); i += 4 {
		if img.Pix[i] != 0 || img.Pix[i+1] != 0 || img.Pix[i+2] != 0 || img.Pix[i+3] != 255 {
			t.Fatalf("pixel %d is %v without an overlay", i/4, img.Pix[i:i+4])
		}
	}
	// Underlay: the frame under the bar shows through, darkened.
	img = image.NewRGBA(image.Rect(0, 0, 1280, 720))
	fakeFrame(img)
	before := at(img, 5, 700)
	r.Playback(img, PlaybackView{Name: "x", Speed: 1, Overlay: true, Underlay: true})
	after := at(img, 5, 700)
	if at(img, 5, 5) == (color.RGBA{0, 0, 0, 255}) || after.G == 0 || after.G >= before.G {
		t.Errorf("underlay: top %v, under the bar %v (was %v)", at(img, 5, 5), after, before)
	}
}

func TestDialogFocus(t *testing.T) {
	r := newRenderer(t)
	for _, focus := range []Button{Confirm, Cancel} {
		img := image.NewRGBA(image.Rect(0, 0, 1280, 720))
		lay := r.Purchase(img, PurchaseView{Title: tMetro, Focus: focus})
		if len(lay.Buttons) != 2 || lay.Selected != lay.Buttons[focus] {
			t.Fatalf("focus %d: layout %+v", focus, lay)
		}
		for i, b := range lay.Buttons {
			c := at(img, b.Min.X+12, b.Min.Y+b.Dy()/2)
			if want := map[bool]color.RGBA{true: colFocus, false: colPanel}[Button(i) == focus]; c != want {
				t.Errorf("focus %d: button %d is %v, want %v", focus, i, c, want)
			}
		}
	}
	img := image.NewRGBA(image.Rect(0, 0, 1280, 720))
	if lay := r.Purchase(img, PurchaseView{Title: tMetro, Busy: true}); len(lay.Buttons) != 0 {
		t.Error("buttons shown while confirming")
	}
}

func TestActivationCursor(t *testing.T) {
	r := newRenderer(t)
	img := image.NewRGBA(image.Rect(0, 0, 1280, 720))
	slots := make([]rune, 16)
	copy(slots, []rune("ABCDE"))
	lay := r.Activation(img, ActivationView{Slots: slots, GroupLen: 4, Cursor: 5})
	if len(lay.Buttons) != 16 || lay.Selected != lay.Buttons[5] {
		t.Fatalf("layout %+v", lay)
	}
	for i, b := range lay.Buttons {
		c := at(img, b.Min.X+6, b.Min.Y+b.Dy()/2)
		if (i == 5) != (c == colFocus) {
			t.Errorf("box %d is %v", i, c)
		}
	}
	// Groups of four: a wider gap after every fourth box.
	g1 := lay.Buttons[1].Min.X - lay.Buttons[0].Max.X
	g4 := lay.Buttons[4].Min.X - lay.Buttons[3].Max.X
	if g4 < 3*g1 {
		t.Errorf("gap between groups %d, within %d", g4, g1)
	}
}

func TestServiceNeededFillsScreen(t *testing.T) {
	r := newRenderer(t)
	img := image.NewRGBA(image.Rect(0, 0, 1280, 720))
	r.ServiceNeeded(img, ServiceView{Reason: "x"})
	for _, p := range []image.Point{{0, 0}, {1279, 0}, {0, 719}, {1279, 719}} {
		if c := at(img, p.X, p.Y); c != colService {
			t.Errorf("corner %v is %v", p, c)
		}
	}
}

// Every character the screens use must be in both fonts, or it would show
// as an empty box.
func TestFontsHaveEveryGlyph(t *testing.T) {
	r := newRenderer(t)
	const used = "·×…“”▲▼◄►–#%0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz:,.'?!-"
	var buf sfnt.Buffer
	for _, ft := range []*sfnt.Font{r.regular, r.bold} {
		for _, c := range used {
			if i, err := ft.GlyphIndex(&buf, c); err != nil || i == 0 {
				t.Errorf("no glyph for %q (%U)", c, c)
			}
		}
	}
}

// Screens draw at any size without panicking, and keep the highlight
// where the layout says.
func TestAnySize(t *testing.T) {
	r := newRenderer(t)
	for _, size := range []image.Point{{320, 180}, {720, 576}, {1024, 768}} {
		for _, c := range screenCases() {
			img := image.NewRGBA(image.Rectangle{Max: size})
			lay := c.draw(r, img)
			if s := lay.Selected; !s.Empty() {
				p := image.Pt(s.Min.X+max(2, s.Dx()/40), s.Min.Y+s.Dy()/2)
				if col := at(img, p.X, p.Y); col != colFocus && col != colMoving {
					t.Errorf("%s at %v: selection at %v is %v", c.name, size, p, col)
				}
			}
		}
	}
}

func TestTextHelpers(t *testing.T) {
	r := newRenderer(t)
	f := r.frame(image.NewRGBA(image.Rect(0, 0, 1280, 720)))
	fc := f.face(false, 30)
	long := "The Extraordinarily Long-Winded Adventures of a Title That Does Not Fit"
	s := fit(fc, long, 300)
	if width(fc, s) > 300 || s[len(s)-len("…"):] != "…" {
		t.Errorf("fit: %q is %d px", s, width(fc, s))
	}
	if fit(fc, "Short", 300) != "Short" {
		t.Error("fit shortened a short title")
	}
	lines := wrap(fc, long, 400)
	if len(lines) < 2 {
		t.Fatalf("wrap: %q", lines)
	}
	for _, l := range lines {
		if width(fc, l) > 400 {
			t.Errorf("wrapped line %q is %d px", l, width(fc, l))
		}
	}
}
