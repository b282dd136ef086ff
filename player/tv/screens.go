package tv

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"strings"
	"time"
)

// Layout says where a screen put the things a test, or a pointer, may want
// to find again.
type Layout struct {
	Rows     []image.Rectangle // visible list rows, top to bottom
	First    int               // the item shown in Rows[0]
	Glyphs   []image.Rectangle // the download glyph of each visible row
	Selected image.Rectangle   // the focused row, button or code box
	Buttons  []image.Rectangle // dialog buttons, in order
	Progress image.Rectangle   // the playback bar's track
}

// MyListView is the priority list screen.
type MyListView struct {
	Items    []ListItem
	Selected int
	Moving   bool   // the selected item is being moved with Up and Down
	Notice   string // shown instead of the status line
}

// CatalogRow is a catalog title with its place on the viewer's list.
type CatalogRow struct {
	Title    Title
	Rank     int // 0 if not on the list
	Download DownloadState
	Progress float64
}

// CatalogView is the catalog screen: rows already filtered and sorted.
type CatalogView struct {
	Rows      []CatalogRow
	Selected  int
	Genres    []string // the filter's choices, "All" first
	Genre     int      // the chosen one
	RankEntry string   // digits typed for "add at priority n"
	Notice    string
}

// Button is a dialog button.
type Button int

// Dialog buttons.
const (
	Confirm Button = iota
	Cancel
)

// PurchaseView is the rental confirmation.
type PurchaseView struct {
	Title Title
	Focus Button
	Busy  bool // waiting for the head-end
	Error string
}

// RemoveView asks before taking a title off the list.
type RemoveView struct {
	Title Title
	Rank  int
	Focus Button
}

// PlaybackView is the trick-play overlay.
type PlaybackView struct {
	Name     string
	Position time.Duration
	Duration time.Duration
	Speed    int  // 1 normal, 0 paused, ±2 to ±32
	Overlay  bool // show the bar (always while paused or in trick play)
	// Underlay keeps what dst holds (a decoded frame) under the overlay
	// instead of clearing it to black.
	Underlay bool
}

// ActivationView is the first-boot screen where the viewer types the code.
type ActivationView struct {
	Slots    []rune // one per code character, 0 when empty
	GroupLen int    // characters between dashes
	Cursor   int
	URL      string // where the viewer signs up
	Error    string
	Busy     bool
}

// ServiceView is the full-screen message of a box that cannot run.
type ServiceView struct {
	Reason  string // one line, for the viewer
	Detail  string // for the support line
	Contact string
}

type hint struct{ key, label string }

// ---- shared chrome ----------------------------------------------------------

// header draws the two tabs and returns where the content starts.
func (f *frame) header(active int, right string) int {
	f.fill(f.b, colBackground)
	tabs := []string{"My List", "Catalog"}
	x := f.safe.Min.X
	base := f.safe.Min.Y + f.px(40)
	for i, t := range tabs {
		fc := f.face(i == active, 40)
		col := colDim
		if i == active {
			col = colText
		}
		end := f.text(fc, x, base, col, t)
		if i == active {
			f.fill(image.Rect(x, base+f.px(12), end, base+f.px(17)), colFocus)
		}
		x = end + f.px(48)
	}
	if right != "" {
		f.textRight(f.face(false, 24), f.safe.Max.X, base, colDim, right)
	}
	rule := base + f.px(28)
	f.fill(image.Rect(f.safe.Min.X, rule, f.safe.Max.X, rule+max(1, f.px(2))), colRule)
	return rule + f.px(10)
}

// footer draws the status line and the key hints.
func (f *frame) footer(status string, statusCol color.RGBA, hints []hint) {
	hintBase := f.safe.Max.Y - f.px(6)
	statusBase := hintBase - f.px(46)
	rule := statusBase - f.px(44)
	f.fill(image.Rect(f.safe.Min.X, rule, f.safe.Max.X, rule+max(1, f.px(2))), colRule)
	f.text(f.face(true, 30), f.safe.Min.X, statusBase, statusCol, fit(f.face(true, 30), status, f.safe.Dx()))
	f.hints(f.safe.Min.X, hintBase, hints)
}

func (f *frame) footerTop() int { return f.safe.Max.Y - f.px(6) - f.px(46) - f.px(44) - f.px(8) }

// hints draws key caps with what they do.
func (f *frame) hints(x, base int, hs []hint) {
	kf, lf := f.face(true, 20), f.face(false, 22)
	capH := f.px(30)
	for _, h := range hs {
		w := width(kf, h.key) + f.px(16)
		box := image.Rect(x, base-capH+f.px(7), x+w, base+f.px(7))
		f.roundOutline(box, float64(f.px(6)), math.Max(1, float64(f.px(2))), colDim)
		f.textCentre(kf, box.Min.X+w/2, baseline(kf, box), colText, h.key)
		x = f.text(lf, box.Max.X+f.px(10), base, colDim, h.label) + f.px(30)
	}
}

// rowWindow picks which rows show: the selection stays in view, centred
// once the list is longer than the screen, without scrolling past either
// end. It needs no state, so a redraw from the same view looks the same.
func rowWindow(n, selected, visible int) int {
	if n <= visible || visible <= 0 {
		return 0
	}
	first := selected - visible/2
	return max(0, min(first, n-visible))
}

// rows lays out list rows between top and bottom and draws the scroll bar.
func (f *frame) rows(top, bottom, n, selected int) (first int, rects []image.Rectangle, right int) {
	rowH := f.px(52)
	visible := max(1, (bottom-top)/rowH)
	first = rowWindow(n, selected, visible)
	right = f.safe.Max.X
	if n > visible {
		bar := f.px(8)
		track := image.Rect(right-bar, top, right, top+visible*rowH-f.px(6))
		f.roundRect(track, float64(bar)/2, colRule)
		h := max(f.px(24), track.Dy()*visible/n)
		y := track.Min.Y + (track.Dy()-h)*first/max(1, n-visible)
		f.roundRect(image.Rect(track.Min.X, y, track.Max.X, y+h), float64(bar)/2, colDim)
		right -= bar + f.px(14)
	}
	for i := first; i < n && i < first+visible; i++ {
		y := top + (i-first)*rowH
		rects = append(rects, image.Rect(f.safe.Min.X, y, right, y+rowH-f.px(6)))
	}
	return first, rects, right
}

// downloadGlyph draws a download state in a circle of radius rad: an
// empty ring before the download starts, a ring filling clockwise like a
// clock hand sweeping while it runs, a full disc once the box holds it.
func (f *frame) downloadGlyph(c image.Point, rad float64, s DownloadState, progress float64, col color.RGBA) {
	stroke := math.Max(1.5, rad/6)
	switch s {
	case Downloaded:
		f.disc(c, rad, col)
	case Downloading:
		f.ring(c, rad, stroke, col)
		f.pie(c, rad-stroke*1.8, progress, col)
	default:
		f.ring(c, rad, stroke, col)
	}
}

// viewGlyph draws the viewing time left on a rental as a pie on a dimmed
// disc: full when just rented, shrinking as the window runs out.
func (f *frame) viewGlyph(c image.Point, rad float64, left, window time.Duration, col, track color.RGBA) {
	f.disc(c, rad, track)
	frac := 1.0
	if window > 0 {
		frac = float64(left) / float64(window)
	}
	f.pie(c, rad, frac, col)
}

// ---- My List ------------------------------------------------------------------

// MyList draws the priority list: rank, download glyph, title and the
// viewing time left, the selected row highlighted, its status underneath.
func (r *Renderer) MyList(dst *image.RGBA, v MyListView) Layout {
	f := r.frame(dst)
	count := ""
	if len(v.Items) > 0 {
		count = fmt.Sprintf("%d of %d", v.Selected+1, len(v.Items))
	}
	top := f.header(0, count)
	capF := f.face(false, 20)
	capBase := top + f.px(22)
	f.textRight(capF, f.safe.Min.X+f.px(64), capBase, colDim, "#")
	f.text(capF, f.safe.Min.X+f.px(136), capBase, colDim, "Title")
	top = capBase + f.px(14)

	var lay Layout
	if len(v.Items) == 0 {
		f.textCentre(f.face(true, 36), f.b.Min.X+f.b.Dx()/2, top+f.px(140), colText, "Your list is empty")
		f.textCentre(f.face(false, 28), f.b.Min.X+f.b.Dx()/2, top+f.px(190), colDim, "Press MENU to choose movies from the catalog.")
		f.footer(orDefault(v.Notice, "Nothing on your list yet"), colDim, []hint{{"MENU", "Catalog"}})
		return lay
	}
	sel := clampIndex(v.Selected, len(v.Items))
	first, rects, right := f.rows(top, f.footerTop(), len(v.Items), sel)
	f.textRight(capF, right-f.px(16), capBase, colDim, "Time left")
	lay.First, lay.Rows = first, rects
	textF, rankF, smallF := f.face(false, 30), f.face(true, 30), f.face(false, 24)
	for j, row := range rects {
		i := first + j
		it := v.Items[i]
		fg, sub, track := colText, colDim, colRule
		if i == sel {
			bg := colFocus
			if v.Moving {
				bg = colMoving
			}
			f.roundRect(row, float64(f.px(10)), bg)
			fg, sub, track = colInk, colInk, color.RGBA{0x00, 0x00, 0x00, 0x40}
			lay.Selected = row
		}
		base := baseline(textF, row)
		f.textRight(rankF, row.Min.X+f.px(64), base, fg, fmt.Sprint(i+1))
		gc := image.Pt(row.Min.X+f.px(100), row.Min.Y+row.Dy()/2)
		grad := float64(f.px(15))
		f.downloadGlyph(gc, grad, it.Download, it.Progress, fg)
		lay.Glyphs = append(lay.Glyphs, square(gc, grad))
		titleEnd := row.Max.X - f.px(200)
		f.text(textF, row.Min.X+f.px(136), base, fg, fit(textF, it.Name, titleEnd-row.Min.X-f.px(136)))
		if it.Viewable() {
			vc := image.Pt(row.Max.X-f.px(150), gc.Y)
			viewCol := colViewable
			if i == sel {
				viewCol = colInk
			}
			f.viewGlyph(vc, grad, it.ViewLeft, it.Window, viewCol, track)
			f.textRight(smallF, row.Max.X-f.px(16), base, sub, Hours(it.ViewLeft))
		}
		if i == sel && v.Moving {
			a := f.px(14)
			x := row.Min.X + f.px(8)
			f.triangleUp(image.Rect(x, row.Min.Y+f.px(6), x+a, row.Min.Y+f.px(6)+a*3/4), -1, colInk)
			f.triangleUp(image.Rect(x, row.Max.Y-f.px(6)-a*3/4, x+a, row.Max.Y-f.px(6)), 1, colInk)
		}
	}
	status, col := StatusLine(sel+1, v.Items[sel]), colText
	hints := []hint{{"OK", okLabel(v.Items[sel])}, {"►", "Move"}, {"DEL", "Remove"}, {"MENU", "Catalog"}}
	if v.Moving {
		status = fmt.Sprintf("Moving “%s” to priority %d", v.Items[sel].Name, sel+1)
		hints = []hint{{"▲▼", "Move"}, {"OK", "Place here"}, {"BACK", "Cancel"}}
	}
	if v.Notice != "" {
		status, col = v.Notice, colFocus
	}
	f.footer(status, col, hints)
	return lay
}

func okLabel(it ListItem) string {
	switch {
	case it.Download == Downloaded && it.Viewable():
		return "Play"
	case it.Download == Downloaded:
		return "Rent"
	}
	return "Details"
}

func orDefault(s, d string) string {
	if s != "" {
		return s
	}
	return d
}

func clampIndex(i, n int) int { return max(0, min(i, n-1)) }

// ---- Catalog ------------------------------------------------------------------

// Catalog draws the catalog: the genre filter, then every title
// alphabetically with its priority on the viewer's list and download state.
func (r *Renderer) Catalog(dst *image.RGBA, v CatalogView) Layout {
	f := r.frame(dst)
	count := fmt.Sprintf("%d titles", len(v.Rows))
	top := f.header(1, count)

	// Genre chips.
	chipF := f.face(true, 24)
	x, y := f.safe.Min.X, top+f.px(6)
	chipH := f.px(42)
	f.triangle(image.Rect(x, y+chipH/2-f.px(8), x+f.px(12), y+chipH/2+f.px(8)), -1, colDim)
	x += f.px(24)
	// Start late enough that the chosen genre fits.
	gap := f.px(12)
	room := f.safe.Max.X - f.px(24) - x
	widths := make([]int, len(v.Genres))
	for i, g := range v.Genres {
		widths[i] = width(chipF, g) + f.px(32)
	}
	start := 0
	for start < v.Genre {
		used := 0
		for _, w := range widths[start : v.Genre+1] {
			used += w + gap
		}
		if used <= room {
			break
		}
		start++
	}
	for i := start; i < len(v.Genres); i++ {
		w := widths[i]
		if x+w > f.safe.Max.X-f.px(24) {
			break
		}
		box := image.Rect(x, y, x+w, y+chipH)
		col := colText
		if i == v.Genre {
			f.roundRect(box, float64(chipH)/2, colText)
			col = colInk
		} else {
			f.roundOutline(box, float64(chipH)/2, math.Max(1, float64(f.px(2))), colRule)
		}
		f.textCentre(chipF, box.Min.X+w/2, baseline(chipF, box), col, v.Genres[i])
		x = box.Max.X + gap
	}
	f.triangle(image.Rect(x, y+chipH/2-f.px(8), x+f.px(12), y+chipH/2+f.px(8)), 1, colDim)

	capF := f.face(false, 20)
	capBase := y + chipH + f.px(30)
	f.textRight(capF, f.safe.Min.X+f.px(64), capBase, colDim, "My List")
	f.text(capF, f.safe.Min.X+f.px(136), capBase, colDim, "Title")
	top = capBase + f.px(14)

	var lay Layout
	if len(v.Rows) == 0 {
		f.textCentre(f.face(true, 32), f.b.Min.X+f.b.Dx()/2, top+f.px(120), colText, "No titles in this genre")
		f.footer(orDefault(v.Notice, "Choose another genre with ◄ ►"), colDim, []hint{{"◄ ►", "Genre"}, {"MENU", "My List"}})
		return lay
	}
	sel := clampIndex(v.Selected, len(v.Rows))
	first, rects, right := f.rows(top, f.footerTop(), len(v.Rows), sel)
	f.textRight(capF, right-f.px(16), capBase, colDim, "Price")
	lay.First, lay.Rows = first, rects
	textF, rankF, smallF := f.face(false, 30), f.face(true, 28), f.face(false, 24)
	for j, row := range rects {
		i := first + j
		c := v.Rows[i]
		fg, sub := colText, colDim
		if i == sel {
			f.roundRect(row, float64(f.px(10)), colFocus)
			fg, sub = colInk, colInk
			lay.Selected = row
		}
		base := baseline(textF, row)
		if c.Rank > 0 {
			f.textRight(rankF, row.Min.X+f.px(64), base, fg, fmt.Sprintf("#%d", c.Rank))
		}
		gc := image.Pt(row.Min.X+f.px(100), row.Min.Y+row.Dy()/2)
		grad := float64(f.px(15))
		if c.Rank > 0 || c.Download != NotStarted {
			f.downloadGlyph(gc, grad, c.Download, c.Progress, fg)
		}
		lay.Glyphs = append(lay.Glyphs, square(gc, grad))
		genreX := row.Max.X - f.px(400)
		f.text(textF, row.Min.X+f.px(136), base, fg, fit(textF, c.Title.Name, genreX-row.Min.X-f.px(152)))
		if len(c.Title.Genres) > 0 {
			f.text(smallF, genreX, base, sub, fit(smallF, strings.Join(c.Title.Genres, ", "), f.px(220)))
		}
		f.textRight(smallF, row.Max.X-f.px(16), base, fg, c.Title.Price.String())
	}
	c := v.Rows[sel]
	status, col := catalogStatus(c), colText
	hints := []hint{{"OK", "Add to My List"}, {"0-9", "Add at priority"}, {"◄ ►", "Genre"}, {"MENU", "My List"}}
	if c.Rank > 0 {
		hints[0].label = "Go to My List"
	}
	if v.RankEntry != "" {
		verb := "Add"
		if c.Rank > 0 {
			verb = "Move"
		}
		status, col = fmt.Sprintf("%s to priority %s with OK: %s", verb, v.RankEntry, c.Title.Name), colFocus
		hints = []hint{{"OK", "Confirm"}, {"DEL", "Delete digit"}, {"BACK", "Cancel"}}
	}
	if v.Notice != "" {
		status, col = v.Notice, colFocus
	}
	f.footer(status, col, hints)
	return lay
}

func catalogStatus(c CatalogRow) string {
	if c.Rank == 0 {
		s := "Not on your list"
		if o := offer(c.Title); o != "" {
			s += " · " + o
		}
		return s
	}
	s := fmt.Sprintf("Priority %d · %s", c.Rank, c.Download)
	if c.Download == Downloading {
		s += fmt.Sprintf(" %d %%", percent(c.Progress))
	}
	return s
}

// ---- dialogs ------------------------------------------------------------------

type dialog struct {
	heading string
	title   string
	lines   []string
	accent  string // a line in the highlight colour (the price)
	buttons [2]string
	focus   Button
	busy    string
	err     string
}

func (f *frame) dialog(d dialog) Layout {
	f.fill(f.b, colBackground)
	w, h := min(f.px(860), f.safe.Dx()), min(f.px(540), f.safe.Dy())
	cx, cy := f.b.Min.X+f.b.Dx()/2, f.b.Min.Y+f.b.Dy()/2
	panel := image.Rect(cx-w/2, cy-h/2, cx+w/2, cy+h/2)
	f.roundRect(panel, float64(f.px(18)), colPanel)
	inner := panel.Inset(f.px(44))
	y := inner.Min.Y + f.px(26)
	f.text(f.face(false, 26), inner.Min.X, y, colDim, d.heading)
	y += f.px(60)
	tf := f.face(true, 44)
	f.text(tf, inner.Min.X, y, colText, fit(tf, d.title, inner.Dx()))
	y += f.px(60)
	if d.accent != "" {
		f.text(f.face(true, 36), inner.Min.X, y, colFocus, d.accent)
		y += f.px(50)
	}
	lf := f.face(false, 28)
	for _, l := range d.lines {
		for _, w := range wrap(lf, l, inner.Dx()) {
			f.text(lf, inner.Min.X, y, colText, w)
			y += f.px(38)
		}
	}

	// From the bottom up: buttons, then the error above them.
	var lay Layout
	bh, bw := f.px(66), f.px(240)
	by := inner.Max.Y - bh
	if d.err != "" {
		ef := f.face(true, 26)
		lines := wrap(ef, d.err, inner.Dx())
		if len(lines) > 2 {
			lines = lines[:2]
		}
		base := by - f.px(22) - (len(lines)-1)*f.px(34)
		for _, l := range lines {
			f.text(ef, inner.Min.X, base, colError, l)
			base += f.px(34)
		}
	}
	if d.busy != "" {
		bf := f.face(true, 30)
		f.text(bf, inner.Min.X, baseline(bf, image.Rect(0, by, 0, by+bh)), colFocus, d.busy)
		return lay
	}
	bf := f.face(true, 30)
	for i, label := range d.buttons {
		x := inner.Min.X + i*(bw+f.px(28))
		b := image.Rect(x, by, x+bw, by+bh)
		lay.Buttons = append(lay.Buttons, b)
		col := colText
		if Button(i) == d.focus {
			f.roundRect(b, float64(f.px(12)), colFocus)
			col = colInk
			lay.Selected = b
		} else {
			f.roundOutline(b, float64(f.px(12)), math.Max(1, float64(f.px(3))), colDim)
		}
		f.textCentre(bf, b.Min.X+bw/2, baseline(bf, b), col, label)
	}
	return lay
}

// Purchase draws the rental confirmation: the title, the price, how long
// it stays viewable, and Confirm and Cancel.
func (r *Renderer) Purchase(dst *image.RGBA, v PurchaseView) Layout {
	heading := "Rent this movie?"
	if v.Title.Buy {
		heading = "Buy this movie?"
	}
	d := dialog{
		heading: heading,
		title:   v.Title.Name,
		accent:  v.Title.Price.String(),
		buttons: [2]string{"Confirm", "Cancel"},
		focus:   v.Focus,
		err:     v.Error,
	}
	if !v.Title.Price.Known() {
		// Confirming sends the price shown; the head-end answers an
		// unknown one with the real price, which the screen then shows.
		d.accent = "Price not known yet"
	}
	if v.Title.Window > 0 {
		d.lines = append(d.lines, fmt.Sprintf("Watch it as often as you like for %s.", Hours(v.Title.Window)))
	}
	if v.Title.Length > 0 {
		d.lines = append(d.lines, "Running time "+runningTime(v.Title.Length))
	}
	if v.Busy {
		d.busy = "Confirming your rental…"
	}
	return r.frame(dst).dialog(d)
}

// Remove draws the question before a title leaves the list.
func (r *Renderer) Remove(dst *image.RGBA, v RemoveView) Layout {
	return r.frame(dst).dialog(dialog{
		heading: "Remove from My List?",
		title:   v.Title.Name,
		lines:   []string{fmt.Sprintf("It is priority %d. The box deletes its copy to make room.", v.Rank)},
		buttons: [2]string{"Remove", "Cancel"},
		focus:   v.Focus,
	})
}

func runningTime(d time.Duration) string {
	m := int(d.Round(time.Minute) / time.Minute)
	if m >= 60 {
		return fmt.Sprintf("%d h %02d min", m/60, m%60)
	}
	return fmt.Sprintf("%d min", m)
}

// ---- playback -----------------------------------------------------------------

// Playback draws the trick-play overlay: the title, a progress bar with
// position and duration, and the speed (paused, playing, or 2× to 32×
// forward or back).
func (r *Renderer) Playback(dst *image.RGBA, v PlaybackView) Layout {
	f := r.frame(dst)
	if !v.Underlay {
		f.fill(f.b, color.RGBA{0, 0, 0, 0xff})
	}
	var lay Layout
	if !v.Overlay {
		return lay
	}
	panel := image.Rect(f.b.Min.X, f.safe.Max.Y-f.px(170), f.b.Max.X, f.b.Max.Y)
	f.fill(panel, colShade)
	titleF := f.face(true, 34)
	tb := panel.Min.Y + f.px(56)
	f.text(titleF, f.safe.Min.X, tb, colText, fit(titleF, v.Name, f.safe.Dx()-f.px(300)))
	f.speedBadge(image.Pt(f.safe.Max.X, tb), v.Speed)

	track := image.Rect(f.safe.Min.X, tb+f.px(34), f.safe.Max.X, tb+f.px(44))
	lay.Progress = track
	f.roundRect(track, float64(track.Dy())/2, colRule)
	frac := 0.0
	if v.Duration > 0 {
		frac = clamp01(float64(v.Position) / float64(v.Duration))
	}
	fill := track
	fill.Max.X = track.Min.X + int(math.Round(frac*float64(track.Dx())))
	if fill.Dx() > 0 {
		f.roundRect(fill, float64(track.Dy())/2, colFocus)
	}
	f.disc(image.Pt(fill.Max.X, track.Min.Y+track.Dy()/2), float64(f.px(13)), colFocus)
	timeF := f.face(false, 26)
	tBase := track.Max.Y + f.px(40)
	f.text(timeF, f.safe.Min.X, tBase, colText, Clock(v.Position))
	f.textRight(timeF, f.safe.Max.X, tBase, colDim, Clock(v.Duration))
	return lay
}

// speedBadge draws the speed with its right edge at x: two bars for
// pause, one triangle for play, two for fast forward or rewind, with the
// multiplier.
func (f *frame) speedBadge(at image.Point, speed int) {
	fc := f.face(true, 32)
	label := ""
	switch {
	case speed == 0:
		label = "Paused"
	case speed == 1:
		label = "Playing"
	default:
		label = fmt.Sprintf("%d×", abs(speed))
	}
	x := at.X - width(fc, label)
	f.text(fc, x, at.Y, colText, label)
	s := f.px(26)
	x -= f.px(14)
	top := at.Y - s + f.px(2)
	switch {
	case speed == 0:
		bw := s / 3
		f.fill(image.Rect(x-s, top, x-s+bw, top+s), colFocus)
		f.fill(image.Rect(x-bw, top, x, top+s), colFocus)
	case speed == 1:
		f.triangle(image.Rect(x-s, top, x, top+s), 1, colFocus)
	default:
		dir := 1
		if speed < 0 {
			dir = -1
		}
		f.triangle(image.Rect(x-s, top, x, top+s), dir, colFocus)
		f.triangle(image.Rect(x-2*s+f.px(4), top, x-s+f.px(4), top+s), dir, colFocus)
	}
}

func abs(i int) int {
	if i < 0 {
		return -i
	}
	return i
}

// ---- activation ---------------------------------------------------------------

// Activation draws the first-boot screen: how to get a code, and the code
// typed so far in boxes grouped as the head-end prints it.
func (r *Renderer) Activation(dst *image.RGBA, v ActivationView) Layout {
	f := r.frame(dst)
	f.fill(f.b, colBackground)
	x := f.safe.Min.X
	y := f.safe.Min.Y + f.px(54)
	f.text(f.face(true, 52), x, y, colText, "Activate your box")
	y += f.px(70)
	lf := f.face(false, 30)
	url := orDefault(v.URL, "your provider's web site")
	steps := []string{
		"Sign up at " + url + " on a phone or computer.",
		"Type the activation code it shows you with the remote.",
	}
	nf := f.face(true, 30)
	for i, s := range steps {
		f.text(nf, x, y, colFocus, fmt.Sprint(i+1))
		for _, l := range wrap(lf, s, f.safe.Dx()-f.px(44)) {
			f.text(lf, x+f.px(44), y, colText, l)
			y += f.px(44)
		}
	}
	f.text(f.face(false, 24), x+f.px(44), y, colDim, "Number and letter keys type; ▲ ▼ pick a letter; ◄ ► move between boxes.")

	// The code boxes, centred.
	var lay Layout
	n, g := len(v.Slots), max(1, v.GroupLen)
	bw, bh, gap, dash := f.px(54), f.px(72), f.px(8), f.px(44)
	groups := (n + g - 1) / g
	total := n*bw + (n-groups)*gap + (groups-1)*dash
	if total > f.safe.Dx() { // long codes: shrink to fit
		scale := float64(f.safe.Dx()) / float64(total)
		bw, gap, dash = int(float64(bw)*scale), int(float64(gap)*scale), int(float64(dash)*scale)
		total = n*bw + (n-groups)*gap + (groups-1)*dash
	}
	bx := f.b.Min.X + (f.b.Dx()-total)/2
	by := f.safe.Min.Y + f.px(330)
	cf := f.face(true, 40)
	for i, ch := range v.Slots {
		if i > 0 && i%g == 0 {
			f.fill(image.Rect(bx+dash/4, by+bh/2-f.px(2), bx+dash*3/4, by+bh/2+f.px(2)), colDim)
			bx += dash
		} else if i > 0 {
			bx += gap
		}
		box := image.Rect(bx, by, bx+bw, by+bh)
		lay.Buttons = append(lay.Buttons, box)
		col := colText
		if i == v.Cursor && !v.Busy {
			f.roundRect(box, float64(f.px(8)), colFocus)
			col = colInk
			lay.Selected = box
		} else {
			f.roundRect(box, float64(f.px(8)), colPanel)
			f.roundOutline(box, float64(f.px(8)), math.Max(1, float64(f.px(2))), colRule)
		}
		if ch != 0 {
			f.textCentre(cf, box.Min.X+bw/2, baseline(cf, box), col, string(ch))
		}
		bx += bw
	}
	msgBase := by + bh + f.px(64)
	switch {
	case v.Busy:
		f.textCentre(f.face(true, 30), f.b.Min.X+f.b.Dx()/2, msgBase, colFocus, "Activating…")
	case v.Error != "":
		ef := f.face(true, 28)
		f.textCentre(ef, f.b.Min.X+f.b.Dx()/2, msgBase, colError, fit(ef, v.Error, f.safe.Dx()))
	}
	f.hints(f.safe.Min.X, f.safe.Max.Y-f.px(6), []hint{{"OK", "Activate"}, {"▲▼", "Letter"}, {"◄ ►", "Move"}, {"DEL", "Delete"}})
	return lay
}

// ---- service needed -----------------------------------------------------------

// ServiceNeeded draws the message a box shows when it cannot boot or run:
// no keys help, so it says what happened and whom to call.
func (r *Renderer) ServiceNeeded(dst *image.RGBA, v ServiceView) Layout {
	f := r.frame(dst)
	f.fill(f.b, colService)
	cx := f.b.Min.X + f.b.Dx()/2
	// A warning sign: a rounded triangle would be nicer; a plain one reads
	// the same from across a room.
	s := f.px(150)
	top := f.safe.Min.Y + f.px(40)
	tri := image.Rect(cx-s*58/100, top, cx+s*58/100, top+s)
	f.triangleUp(tri, -1, colFocus)
	bar := f.px(14)
	f.fill(image.Rect(cx-bar/2, top+s*36/100, cx+bar/2, top+s*72/100), colInk)
	f.fill(image.Rect(cx-bar/2, top+s*80/100, cx+bar/2, top+s*80/100+bar), colInk)

	y := tri.Max.Y + f.px(84)
	f.textCentre(f.face(true, 60), cx, y, colText, "Service needed")
	y += f.px(64)
	rf := f.face(false, 32)
	for _, l := range wrap(rf, orDefault(v.Reason, "This box cannot start."), f.safe.Dx()) {
		f.textCentre(rf, cx, y, colText, l)
		y += f.px(44)
	}
	if v.Contact != "" {
		y += f.px(12)
		cf := f.face(true, 30)
		for _, l := range wrap(cf, v.Contact, f.safe.Dx()) {
			f.textCentre(cf, cx, y, colFocus, l)
			y += f.px(42)
		}
	}
	if v.Detail != "" {
		df := f.face(false, 22)
		lines := wrap(df, v.Detail, f.safe.Dx())
		base := f.safe.Max.Y - f.px(8) - (len(lines)-1)*f.px(30)
		for _, l := range lines {
			f.textCentre(df, cx, base, color.RGBA{0xe8, 0xc8, 0xc8, 0xff}, l)
			base += f.px(30)
		}
	}
	return Layout{}
}
