package plot

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/example.svg from the current output")

func ptr(v float64) *float64 { return &v }

// example is the golden chart: shaped like `make sim`'s output, with text
// that needs escaping.
func example() Chart {
	sizes := []float64{1e3, 3e3, 1e4, 3e4, 1e5, 3e5, 1e6}
	var p2p, servers, bound []float64
	for _, n := range sizes {
		d := math.Log2(n)
		p2p = append(p2p, 1.6*d+3)
		servers = append(servers, 4+n/25000)
		bound = append(bound, d)
	}
	return Chart{
		Title:  "Time to deliver a premiere: peers & servers <sim>",
		XLabel: "boxes in the swarm",
		YLabel: "hours until every box has it",
		LogX:   true,
		Series: []Series{
			{Name: "boxswarm (peers first)", X: sizes, Y: p2p},
			{Name: "media servers only", X: sizes, Y: servers},
			{Name: "bound: log₂ n", X: sizes, Y: bound, Dashed: true},
		},
	}
}

// parse reads every token of the document, failing the test on the first
// error, and returns its elements' names and its text contents in order.
func parse(t *testing.T, svg []byte) (elems, texts []string) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(svg))
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return elems, texts
		}
		if err != nil {
			t.Fatalf("output is not XML: %v\n%s", err, svg)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			elems = append(elems, tok.Name.Local)
		case xml.CharData:
			if s := strings.TrimSpace(string(tok)); s != "" {
				texts = append(texts, s)
			}
		}
	}
}

func count(elems []string, name string) int {
	n := 0
	for _, e := range elems {
		if e == name {
			n++
		}
	}
	return n
}

func TestSVG(t *testing.T) {
	many := make([]Series, 10)
	for i := range many {
		many[i] = Series{Name: strings.Repeat("x", i), X: []float64{0, 1}, Y: []float64{float64(i), float64(i * i)}}
	}
	tests := []struct {
		name      string
		chart     Chart
		wantTexts []string // tick labels, legend names: as decoded text
		wantRaw   []string // as written, i.e. escaped
		title     string   // the title as decoded, if not Title itself
	}{
		{
			name:      "example",
			chart:     example(),
			wantTexts: []string{"1k", "10k", "100k", "1M", "media servers only", "bound: log₂ n"},
			wantRaw:   []string{"Time to deliver a premiere: peers &amp; servers &lt;sim&gt;", `stroke-dasharray="6 4"`},
		},
		{
			name: "linear with negatives",
			chart: Chart{
				Title:  `"quoted" & 'apos'`,
				Series: []Series{{Name: "a<b", X: []float64{0, 5, 10}, Y: []float64{-3, 2, 7}}},
			},
			wantTexts: []string{"-4", "0", "8", "10", "a<b", `"quoted" & 'apos'`},
			wantRaw:   []string{"a&lt;b", "&#34;quoted&#34; &amp; &#39;apos&#39;"},
		},
		{
			name: "fixed y range clips",
			chart: Chart{
				YMin:   ptr(0.5),
				YMax:   ptr(1),
				Series: []Series{{Name: "ratio", X: []float64{1, 2, 3}, Y: []float64{0.2, 0.9, 3}}},
			},
			wantTexts: []string{"0.6", "0.8", "1"},
			wantRaw:   []string{`clip-path="url(#plot-area)"`},
		},
		{
			name:      "large y values get a suffix",
			chart:     Chart{Series: []Series{{X: []float64{1, 2}, Y: []float64{0, 2.5e6}}}},
			wantTexts: []string{"0", "0.5M", "2.5M"},
		},
		{
			name:      "single point",
			chart:     Chart{Series: []Series{{Name: "one", X: []float64{3}, Y: []float64{0}}}},
			wantTexts: []string{"one", "0"},
		},
		{
			name:      "log axis within one decade",
			chart:     Chart{LogX: true, Series: []Series{{X: []float64{20, 50}, Y: []float64{1, 2}}}},
			wantTexts: []string{"10", "100"},
		},
		{
			name:      "palette repeats past eight series",
			chart:     Chart{Title: "many", Series: many},
			wantTexts: []string{"xxxxxxxxx"},
			wantRaw:   []string{"#F0E442"},
		},
		{
			name: "control characters and invalid UTF-8",
			chart: Chart{
				Title:  "bell\a nul\x00 bad\xff",
				Series: []Series{{Name: "s", X: []float64{0, 1}, Y: []float64{0, 1}}},
			},
			wantRaw: []string{"bell\uFFFD nul\uFFFD bad\uFFFD"},
			title:   "bell\uFFFD nul\uFFFD bad\uFFFD",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svg, err := tt.chart.SVG()
			if err != nil {
				t.Fatalf("SVG: %v", err)
			}
			elems, texts := parse(t, svg)
			if got, want := count(elems, "polyline")+count(elems, "path"), len(tt.chart.Series); got != want {
				t.Errorf("%d polylines and paths, want one per series: %d", got, want)
			}
			if elems[0] != "svg" {
				t.Errorf("root element is %q, want svg", elems[0])
			}
			if !bytes.Contains(svg, []byte(`viewBox="0 0 720 420"`)) {
				t.Error("no 720x420 viewBox")
			}
			if tt.chart.Title != "" {
				want := tt.chart.Title
				if tt.title != "" {
					want = tt.title
				}
				// The first text is the <title> element's.
				if texts[0] != want {
					t.Errorf("title reads back as %q, want %q", texts[0], want)
				}
			}
			for _, w := range tt.wantTexts {
				if !slices.Contains(texts, w) {
					t.Errorf("text %q missing; texts: %q", w, texts)
				}
			}
			for _, w := range tt.wantRaw {
				if !bytes.Contains(svg, []byte(w)) {
					t.Errorf("output lacks %q", w)
				}
			}
			again, err := tt.chart.SVG()
			if err != nil || !bytes.Equal(svg, again) {
				t.Errorf("second rendering differs (err %v)", err)
			}
		})
	}
}

func TestSVGErrors(t *testing.T) {
	ok := []float64{1, 2}
	one := func(s Series) []Series { return []Series{s} }
	tests := []struct {
		name  string
		chart Chart
		want  string // in the error message
	}{
		{"no series", Chart{Title: "t"}, "no series"},
		{"length mismatch", Chart{Series: one(Series{Name: "s", X: ok, Y: []float64{1}})}, "len(X)=2 != len(Y)=1"},
		{"no points", Chart{Series: one(Series{Name: "s"})}, "no points"},
		{"NaN x", Chart{Series: one(Series{X: []float64{1, math.NaN()}, Y: ok})}, "not finite"},
		{"NaN y", Chart{Series: one(Series{X: ok, Y: []float64{math.NaN(), 1}})}, "not finite"},
		{"+Inf y", Chart{Series: one(Series{X: ok, Y: []float64{1, math.Inf(1)}})}, "not finite"},
		{"-Inf x", Chart{Series: one(Series{X: []float64{math.Inf(-1), 1}, Y: ok})}, "not finite"},
		{"log x zero", Chart{LogX: true, Series: one(Series{X: []float64{0, 10}, Y: ok})}, "must be positive"},
		{"log x negative", Chart{LogX: true, Series: one(Series{X: []float64{-1, 10}, Y: ok})}, "must be positive"},
		{"YMin NaN", Chart{YMin: ptr(math.NaN()), Series: one(Series{X: ok, Y: ok})}, "YMin=NaN"},
		{"YMax Inf", Chart{YMax: ptr(math.Inf(1)), Series: one(Series{X: ok, Y: ok})}, "YMax=+Inf"},
		{"YMin not below YMax", Chart{YMin: ptr(2), YMax: ptr(2), Series: one(Series{X: ok, Y: ok})}, "not below"},
		{"range too wide", Chart{Series: one(Series{X: ok, Y: []float64{-math.MaxFloat64, math.MaxFloat64}})}, "too wide"},
		{"error in second series", Chart{Series: []Series{{X: ok, Y: ok}, {Name: "late", X: ok, Y: ok[:1]}}}, `series 1 ("late")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svg, err := tt.chart.SVG()
			if err == nil {
				t.Fatalf("SVG succeeded, want an error containing %q; output:\n%s", tt.want, svg)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if werr := tt.chart.WriteFile(filepath.Join(t.TempDir(), "x.svg")); werr == nil {
				t.Error("WriteFile succeeded")
			}
		})
	}
}

func TestDecadeLabel(t *testing.T) {
	tests := []struct {
		exp  int
		want string
	}{
		{-5, "1e-5"}, {-2, "0.01"}, {-1, "0.1"}, {0, "1"}, {1, "10"}, {2, "100"},
		{3, "1k"}, {4, "10k"}, {5, "100k"}, {6, "1M"}, {7, "10M"}, {9, "1G"}, {12, "1T"}, {15, "1e15"},
	}
	for _, tt := range tests {
		if got := decadeLabel(tt.exp); got != tt.want {
			t.Errorf("decadeLabel(%d) = %q, want %q", tt.exp, got, tt.want)
		}
	}
}

func TestLogAxisTicks(t *testing.T) {
	tests := []struct {
		lo, hi float64
		want   []string // labels in order; "" for an unlabelled decade
	}{
		{1000, 1e6, []string{"1k", "10k", "100k", "1M"}},
		{1500, 9e5, []string{"1k", "10k", "100k", "1M"}},
		{1, 1, []string{"1", "10"}},
		{1e-3, 1e18, []string{"0.001", "", "", "1", "", "", "1k", "", "", "1M", "", "", "1G", "", "", "1T", "", "", "1e15", "", "", "1e18"}},
	}
	for _, tt := range tests {
		a := logAxis(tt.lo, tt.hi)
		var got []string
		for _, tk := range a.ticks {
			got = append(got, tk.label)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("logAxis(%v, %v) labels %q, want %q", tt.lo, tt.hi, got, tt.want)
		}
		if f := a.frac(tt.lo); f < 0 || f > 1 {
			t.Errorf("logAxis(%v, %v): lo maps to %v, outside the plot", tt.lo, tt.hi, f)
		}
	}
}

func TestLinearAxisTicks(t *testing.T) {
	tests := []struct {
		lo, hi       float64
		fixLo, fixHi bool
		want         []string
	}{
		{0, 97, false, false, []string{"0", "20", "40", "60", "80", "100"}},
		{0, 1, false, false, []string{"0", "0.2", "0.4", "0.6", "0.8", "1"}},
		{0.3, 0.7, false, false, []string{"0.3", "0.4", "0.5", "0.6", "0.7"}},
		{-3, 7, false, false, []string{"-4", "-2", "0", "2", "4", "6", "8"}},
		{0, 12345, false, false, []string{"0", "2k", "4k", "6k", "8k", "10k", "12k", "14k"}},
		{0, 3e6, false, false, []string{"0", "0.5M", "1M", "1.5M", "2M", "2.5M", "3M"}},
		{0.5, 1, true, true, []string{"0.5", "0.6", "0.7", "0.8", "0.9", "1"}},
		{0, 0, false, false, []string{"0", "0.2", "0.4", "0.6", "0.8", "1"}},
		{5, 5, false, false, []string{"5", "6", "7", "8", "9", "10"}},
		{10, 3, true, false, []string{"10", "12", "14", "16", "18", "20"}},
	}
	for _, tt := range tests {
		a, err := linearAxis(tt.lo, tt.hi, tt.fixLo, tt.fixHi)
		if err != nil {
			t.Errorf("linearAxis(%v, %v): %v", tt.lo, tt.hi, err)
			continue
		}
		var got []string
		for _, tk := range a.ticks {
			got = append(got, tk.label)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("linearAxis(%v, %v, %v, %v) labels %q, want %q", tt.lo, tt.hi, tt.fixLo, tt.fixHi, got, tt.want)
		}
		if a.frac(a.ticks[0].v) < -eps || a.frac(a.ticks[len(a.ticks)-1].v) > 1+eps {
			t.Errorf("linearAxis(%v, %v): ticks outside [%v, %v]", tt.lo, tt.hi, a.lo, a.hi)
		}
	}
}

func TestNum(t *testing.T) {
	tests := []struct {
		v    float64
		want string
	}{
		{0, "0"}, {math.Copysign(0, -1), "0"}, {-0.001, "0"}, {70, "70"}, {70.5, "70.5"}, {1.005, "1"}, {1.236, "1.24"}, {-12.3456, "-12.35"},
	}
	for _, tt := range tests {
		if got := num(tt.v); got != tt.want {
			t.Errorf("num(%v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestGolden(t *testing.T) {
	golden := filepath.Join("testdata", "example.svg")
	got, err := example().SVG()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := example().WriteFile(golden); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s; if the change is intended, run go test -run TestGolden -update and look at the file\ngot:\n%s", golden, got)
	}
}

func TestWriteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chart.svg")
	c := example()
	if err := c.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := c.SVG()
	if !bytes.Equal(got, want) {
		t.Error("file differs from SVG()")
	}
	if err := c.WriteFile(filepath.Join(t.TempDir(), "missing", "chart.svg")); err == nil {
		t.Error("WriteFile into a missing directory succeeded")
	}
}
