// Package plot draws the simulator's results as SVG line charts.
//
// The output is meant to be committed and embedded in the README, so it is
// deterministic: the same Chart always gives the same bytes (no maps, fixed
// float formatting), which keeps diffs of regenerated charts meaningful.
package plot

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Series is one line of a chart: its points, in the order they are joined.
type Series struct {
	Name   string // in the legend; a series without a name has no entry
	X, Y   []float64
	Dashed bool // e.g. a bound or a baseline
}

// Chart is a line chart of one or more series.
type Chart struct {
	Title, XLabel, YLabel string
	LogX                  bool     // swarm sizes 1k..1M
	YMin, YMax            *float64 // nil: from the data (YMin defaults to 0 if all data ≥ 0)
	Series                []Series
}

// The canvas and the fixed parts of the layout, in SVG user units.
const (
	width  = 720
	height = 420

	titleFont  = 15
	labelFont  = 12 // axis labels and legend
	tickFont   = 11
	legendRow  = 18
	legendLine = 24 // length of a legend swatch
	maxLegend  = 32 // runes of a name shown in the legend

	// coordLimit bounds pixel coordinates of points far outside a fixed
	// YMin/YMax: they are clipped anyway, and unbounded values would print as
	// hundreds of digits.
	coordLimit = 1e6
)

// colour is the i-th colour of the Okabe-Ito palette, which stays distinct
// under the common forms of colour blindness. Yellow comes last because it
// is faint on white; past eight series the colours repeat.
func colour(i int) string {
	return [...]string{
		"#0072B2", // blue
		"#D55E00", // vermillion
		"#009E73", // bluish green
		"#E69F00", // orange
		"#CC79A7", // reddish purple
		"#56B4E9", // sky blue
		"#000000", // black
		"#F0E442", // yellow
	}[i%8]
}

// WriteFile writes the chart's SVG to path.
func (c Chart) WriteFile(path string) error {
	b, err := c.SVG()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("plot: writing chart %q: %w", c.Title, err)
	}
	return nil
}

// SVG renders the chart. It fails when there is no series, a series has no
// points or X and Y of different lengths, a value or bound is NaN or
// infinite, YMin is not below YMax, or LogX is set and an x is not positive.
func (c Chart) SVG() ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	xa, err := c.xAxis()
	if err != nil {
		return nil, err
	}
	ya, err := c.yAxis()
	if err != nil {
		return nil, err
	}
	var w svgWriter
	c.draw(&w, xa, ya)
	return w.Bytes(), nil
}

func (c Chart) validate() error {
	if len(c.Series) == 0 {
		return fmt.Errorf("plot: chart %q has no series", c.Title)
	}
	for i, s := range c.Series {
		if len(s.X) != len(s.Y) {
			return fmt.Errorf("plot: chart %q series %d (%q): len(X)=%d != len(Y)=%d", c.Title, i, s.Name, len(s.X), len(s.Y))
		}
		if len(s.X) == 0 {
			return fmt.Errorf("plot: chart %q series %d (%q) has no points", c.Title, i, s.Name)
		}
		for j := range s.X {
			x, y := s.X[j], s.Y[j]
			if !finite(x) || !finite(y) {
				return fmt.Errorf("plot: chart %q series %d (%q) point %d: (%v, %v) is not finite", c.Title, i, s.Name, j, x, y)
			}
			if c.LogX && x <= 0 {
				return fmt.Errorf("plot: chart %q series %d (%q) point %d: x=%v on a log axis must be positive", c.Title, i, s.Name, j, x)
			}
		}
	}
	if c.YMin != nil && !finite(*c.YMin) {
		return fmt.Errorf("plot: chart %q: YMin=%v is not finite", c.Title, *c.YMin)
	}
	if c.YMax != nil && !finite(*c.YMax) {
		return fmt.Errorf("plot: chart %q: YMax=%v is not finite", c.Title, *c.YMax)
	}
	if c.YMin != nil && c.YMax != nil && *c.YMin >= *c.YMax {
		return fmt.Errorf("plot: chart %q: YMin=%v is not below YMax=%v", c.Title, *c.YMin, *c.YMax)
	}
	return nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// dataRange is the smallest and largest value of the series' X (or Y).
func dataRange(series []Series, y bool) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, s := range series {
		vs := s.X
		if y {
			vs = s.Y
		}
		for _, v := range vs {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	return lo, hi
}

func (c Chart) xAxis() (axis, error) {
	lo, hi := dataRange(c.Series, false)
	if c.LogX {
		return logAxis(lo, hi), nil
	}
	a, err := linearAxis(lo, hi, false, false)
	if err != nil {
		return axis{}, fmt.Errorf("plot: chart %q x axis: %w", c.Title, err)
	}
	return a, nil
}

func (c Chart) yAxis() (axis, error) {
	lo, hi := dataRange(c.Series, true)
	if c.YMin != nil {
		lo = *c.YMin
	} else if lo >= 0 {
		lo = 0
	}
	if c.YMax != nil {
		hi = *c.YMax
	}
	a, err := linearAxis(lo, hi, c.YMin != nil, c.YMax != nil)
	if err != nil {
		return axis{}, fmt.Errorf("plot: chart %q y axis: %w", c.Title, err)
	}
	return a, nil
}

// axis maps values to [0, 1] along one side of the plot.
type axis struct {
	lo, hi       float64 // linear: the ends in data units
	log          bool
	loExp, hiExp int       // log: the ends are 10^loExp and 10^hiExp
	ticks        []tick    // log: past ten decades, some have no label
	minor        []float64 // log: unlabelled grid lines between decades
}

type tick struct {
	v     float64
	label string
}

func (a axis) frac(v float64) float64 {
	if a.log {
		return (math.Log10(v) - float64(a.loExp)) / float64(a.hiExp-a.loExp)
	}
	return (v - a.lo) / (a.hi - a.lo)
}

// eps absorbs float error when a value should sit exactly on a tick, as in
// math.Log10(1000) = 2.9999999999999996.
const eps = 1e-9

// logAxis spans whole decades around [lo, hi], both positive.
func logAxis(lo, hi float64) axis {
	a := axis{log: true}
	a.loExp = int(math.Floor(math.Log10(lo) + eps))
	a.hiExp = int(math.Ceil(math.Log10(hi) - eps))
	if a.hiExp == a.loExp {
		a.hiExp++
	}
	decades := a.hiExp - a.loExp
	// About ten labels fit across the plot; beyond that, label every n-th.
	stride := (decades + 9) / 10
	for e := a.loExp; e <= a.hiExp; e++ {
		t := tick{v: math.Pow10(e)}
		if (e-a.loExp)%stride == 0 {
			t.label = decadeLabel(e)
		}
		a.ticks = append(a.ticks, t)
		if e < a.hiExp && decades <= 6 {
			for m := 2; m <= 9; m++ {
				a.minor = append(a.minor, float64(m)*math.Pow10(e))
			}
		}
	}
	return a
}

// decadeLabel writes 10^e the way swarm sizes are spoken of: 1k, 10k, 1M.
func decadeLabel(e int) string {
	switch {
	case e < -3 || e >= 15:
		return "1e" + strconv.Itoa(e)
	case e < 0:
		return strconv.FormatFloat(math.Pow10(e), 'f', -e, 64)
	}
	return strconv.Itoa(int(math.Pow10(e%3))) + []string{"", "k", "M", "G", "T"}[e/3]
}

// linearAxis covers [lo, hi] with ticks at a 1-2-5 step; ends that are not
// fixed are widened to the next tick.
func linearAxis(lo, hi float64, fixLo, fixHi bool) (axis, error) {
	if hi <= lo {
		// A single value, or a fixed end beyond all the data: open a range
		// of the value's own size so it still shows.
		pad := math.Max(math.Abs(lo), math.Abs(hi))
		if pad == 0 {
			pad = 1
		}
		if !fixHi {
			hi = lo + pad
		} else {
			lo = hi - pad
		}
	}
	span := hi - lo
	if !finite(span) {
		return axis{}, fmt.Errorf("range [%v, %v] is too wide", lo, hi)
	}
	step := niceStep(span)
	if step == 0 || !finite(step) || span/step > 100 {
		return axis{}, fmt.Errorf("range [%v, %v] is too narrow for its magnitude", lo, hi)
	}
	if !fixLo {
		lo = math.Floor(lo/step+eps) * step
	}
	if !fixHi {
		hi = math.Ceil(hi/step-eps) * step
	}
	a := axis{lo: lo, hi: hi}
	var vs []float64
	for k := math.Ceil(lo/step - eps); k <= math.Floor(hi/step+eps); k++ {
		v := k * step
		if math.Abs(v) < step*eps {
			v = 0
		}
		vs = append(vs, v)
	}
	for i, l := range tickLabels(vs, step) {
		a.ticks = append(a.ticks, tick{v: vs[i], label: l})
	}
	return a, nil
}

// niceStep is the 1, 2 or 5 times a power of ten that cuts span into about
// five parts.
func niceStep(span float64) float64 {
	raw := span / 5
	p := math.Pow10(int(math.Floor(math.Log10(raw))))
	switch f := raw / p; {
	case f < 1.5:
		return p
	case f < 3:
		return 2 * p
	case f < 7:
		return 5 * p
	}
	return 10 * p
}

// tickLabels writes the values with as many decimals as the step needs,
// large ones with a k/M/G/T suffix so that the labels stay short.
func tickLabels(vs []float64, step float64) []string {
	maxAbs := 0.0
	for _, v := range vs {
		maxAbs = math.Max(maxAbs, math.Abs(v))
	}
	unit, suffix := 1.0, ""
	if maxAbs >= 1e4 {
		for i, s := range []string{"k", "M", "G", "T"} {
			if u := math.Pow10(3 * (i + 1)); maxAbs >= u {
				unit, suffix = u, s
			}
		}
	}
	decimals := max(0, -int(math.Floor(math.Log10(step/unit)+eps)))
	labels := make([]string, len(vs))
	for i, v := range vs {
		s := strconv.FormatFloat(v/unit, 'f', decimals, 64)
		if decimals > 0 {
			s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
		}
		if s == "-0" || s == "0" {
			labels[i] = "0"
			continue
		}
		labels[i] = s + suffix
	}
	return labels
}

// textWidth estimates the width of s in a sans-serif font: there is no font
// metrics in an SVG writer, and the layout only needs to leave enough room.
func textWidth(s string, size float64) float64 {
	return float64(utf8.RuneCountInString(s)) * size * 0.6
}

// legendName shortens long names so that the legend leaves room for the plot.
func legendName(s string) string {
	if utf8.RuneCountInString(s) <= maxLegend {
		return s
	}
	return string([]rune(s)[:maxLegend-1]) + "…"
}

// frame is the plot area inside the canvas.
type frame struct{ left, top, right, bottom float64 }

func (f frame) x(a axis, v float64) float64 {
	return clampCoord(f.left + a.frac(v)*(f.right-f.left))
}

func (f frame) y(a axis, v float64) float64 {
	return clampCoord(f.bottom - a.frac(v)*(f.bottom-f.top))
}

func clampCoord(v float64) float64 { return math.Max(-coordLimit, math.Min(coordLimit, v)) }

func (c Chart) layout(ya axis) frame {
	f := frame{top: 20, bottom: height - 50}
	if c.Title != "" {
		f.top = 44
	}
	ylw := 0.0
	for _, t := range ya.ticks {
		ylw = math.Max(ylw, textWidth(t.label, tickFont))
	}
	// Room for the rotated y label, the tick labels and the tick marks.
	f.left = math.Max(48, 34+ylw)
	lw := 0.0
	for _, s := range c.Series {
		if s.Name != "" {
			lw = math.Max(lw, textWidth(legendName(s.Name), labelFont))
		}
	}
	f.right = width - 24
	if lw > 0 {
		f.right = width - (16 + legendLine + 6 + lw + 8)
	}
	return f
}

func (c Chart) draw(w *svgWriter, xa, ya axis) {
	f := c.layout(ya)
	pw, ph := f.right-f.left, f.bottom-f.top

	w.raw(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 720 420" width="720" height="420" font-family="sans-serif" font-size="`, num(tickFont), `" role="img" aria-label="`)
	w.text(c.Title)
	w.raw("\">\n<title>")
	w.text(c.Title)
	w.raw("</title>\n")
	// An opaque background keeps the dark text readable in dark themes.
	w.raw(`<rect width="720" height="420" fill="#ffffff"/>`, "\n")
	// The clip leaves a margin so that points on the plot's edges, as the
	// ends of a log axis often are, show whole.
	const m = 4
	w.raw(`<defs><clipPath id="plot-area"><rect x="`, num(f.left-m), `" y="`, num(f.top-m), `" width="`, num(pw+2*m), `" height="`, num(ph+2*m), `"/></clipPath></defs>`, "\n")

	// Grid.
	if len(xa.minor) > 0 {
		w.raw(`<g stroke="#f0f0f0" stroke-width="1">`, "\n")
		for _, v := range xa.minor {
			x := f.x(xa, v)
			w.line(x, f.top, x, f.bottom)
		}
		w.raw("</g>\n")
	}
	w.raw(`<g stroke="#dddddd" stroke-width="1">`, "\n")
	for _, t := range xa.ticks {
		x := f.x(xa, t.v)
		w.line(x, f.top, x, f.bottom)
	}
	for _, t := range ya.ticks {
		y := f.y(ya, t.v)
		w.line(f.left, y, f.right, y)
	}
	w.raw("</g>\n")

	// Axes and tick marks.
	w.raw(`<g stroke="#444444" stroke-width="1">`, "\n")
	w.line(f.left, f.bottom, f.right, f.bottom)
	w.line(f.left, f.top, f.left, f.bottom)
	for _, t := range xa.ticks {
		if t.label != "" {
			x := f.x(xa, t.v)
			w.line(x, f.bottom, x, f.bottom+4)
		}
	}
	for _, t := range ya.ticks {
		y := f.y(ya, t.v)
		w.line(f.left-4, y, f.left, y)
	}
	w.raw("</g>\n")

	// Tick labels.
	w.raw(`<g fill="#333333" text-anchor="middle">`, "\n")
	for _, t := range xa.ticks {
		if t.label != "" {
			w.textAt(f.x(xa, t.v), f.bottom+16, "", t.label)
		}
	}
	w.raw("</g>\n")
	w.raw(`<g fill="#333333" text-anchor="end">`, "\n")
	for _, t := range ya.ticks {
		w.textAt(f.left-7, f.y(ya, t.v)+4, "", t.label)
	}
	w.raw("</g>\n")

	// Title and axis labels.
	if c.Title != "" {
		w.textAt(width/2, 26, ` text-anchor="middle" font-size="15" font-weight="bold"`, c.Title)
	}
	if c.XLabel != "" {
		w.textAt(f.left+pw/2, height-12, ` text-anchor="middle" font-size="12"`, c.XLabel)
	}
	if c.YLabel != "" {
		cy := f.top + ph/2
		w.textAt(18, cy, ` text-anchor="middle" font-size="12" transform="rotate(-90 18 `+num(cy)+`)"`, c.YLabel)
	}

	// Series, clipped to the plot so that a fixed YMin/YMax cuts them.
	w.raw(`<g clip-path="url(#plot-area)" fill="none" stroke-width="2" stroke-linejoin="round" stroke-linecap="round">`, "\n")
	for i, s := range c.Series {
		col := colour(i)
		w.raw(`<polyline stroke="`, col, `"`)
		if s.Dashed {
			w.raw(` stroke-dasharray="6 4"`)
		}
		w.raw(` points="`)
		for j := range s.X {
			if j > 0 {
				w.raw(" ")
			}
			w.raw(num(f.x(xa, s.X[j])), ",", num(f.y(ya, s.Y[j])))
		}
		w.raw("\"/>\n", `<g fill="`, col, `" stroke="none">`)
		for j := range s.X {
			w.circle(f.x(xa, s.X[j]), f.y(ya, s.Y[j]))
		}
		w.raw("</g>\n")
	}
	w.raw("</g>\n")

	// Legend, to the right of the plot.
	lx, row := f.right+16, 0
	w.raw(`<g font-size="12" fill="#222222">`, "\n")
	for i, s := range c.Series {
		if s.Name == "" {
			continue
		}
		y := f.top + 8 + float64(row*legendRow)
		row++
		col := colour(i)
		w.raw(`<line x1="`, num(lx), `" y1="`, num(y), `" x2="`, num(lx+legendLine), `" y2="`, num(y), `" stroke="`, col, `" stroke-width="2"`)
		if s.Dashed {
			w.raw(` stroke-dasharray="6 4"`)
		}
		w.raw("/>")
		w.raw(`<circle cx="`, num(lx+legendLine/2), `" cy="`, num(y), `" r="2.5" fill="`, col, `"/>`)
		w.textAt(lx+legendLine+6, y+4, "", legendName(s.Name))
	}
	w.raw("</g>\n</svg>\n")
}

// svgWriter accumulates the document; text goes through XML escaping, raw
// strings are markup the package itself wrote.
type svgWriter struct{ bytes.Buffer }

func (w *svgWriter) raw(parts ...string) {
	for _, p := range parts {
		w.WriteString(p)
	}
}

// text escapes s for element content and attribute values alike: it
// escapes quotes too, and replaces invalid UTF-8 and characters XML forbids.
func (w *svgWriter) text(s string) {
	// Writing to a bytes.Buffer cannot fail.
	_ = xml.EscapeText(w, []byte(s))
}

func (w *svgWriter) textAt(x, y float64, attrs, s string) {
	w.raw(`<text x="`, num(x), `" y="`, num(y), `"`, attrs, ">")
	w.text(s)
	w.raw("</text>\n")
}

func (w *svgWriter) line(x1, y1, x2, y2 float64) {
	w.raw(`<line x1="`, num(x1), `" y1="`, num(y1), `" x2="`, num(x2), `" y2="`, num(y2), "\"/>\n")
}

func (w *svgWriter) circle(x, y float64) {
	w.raw(`<circle cx="`, num(x), `" cy="`, num(y), `" r="2.5"/>`)
}

// num formats a coordinate with two decimals at most, the same way every
// time, and never as "-0".
func num(v float64) string {
	v = math.Round(v*100) / 100
	if v == 0 {
		v = 0 // turns -0 into 0
	}
	s := strconv.FormatFloat(v, 'f', 2, 64)
	return strings.TrimRight(strings.TrimRight(s, "0"), ".")
}
