package chaintest

import (
	goimage "image" // the fixture has its own image type
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/boxswarm/boxswarm/player/tv"
)

// serviceShotPath is where the refused box's TV picture is kept: the
// artifacts folder's tv/service-needed.png when BOXSWARM_ARTIFACTS is
// set, the test's artifact folder otherwise.
func serviceShotPath(t *testing.T) string {
	t.Helper()
	dir := t.ArtifactDir()
	if d := os.Getenv("BOXSWARM_ARTIFACTS"); d != "" {
		dir = filepath.Join(d, "tv")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "service-needed.png")
}

// expectServiceScreen checks that stage one drew the TV interface's
// service screen after the console and panel lines: the screendump is
// mostly the screen's background with some light text on it.
func expectServiceScreen(t *testing.T, r result, shot string) {
	t.Helper()
	if !strings.Contains(r.serviceScreen, "service screen shown") {
		t.Fatalf("stage one did not show its service screen (%q):\n%s", r.serviceScreen, r.console)
	}
	if i, j := strings.Index(r.console, "BOOT REFUSED: "), strings.Index(r.console, "stage1: service screen"); i < 0 || j < i {
		t.Errorf("the service screen came before the console's refusal:\n%s", r.console)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", shot, err)
	}
	bg := serviceBackground(t, img.Bounds().Size())
	b := img.Bounds()
	var background, light int
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			switch {
			case near(c, bg):
				background++
			case min(c.R, c.G, c.B) >= 0xc0:
				light++
			}
		}
	}
	n := b.Dx() * b.Dy()
	t.Logf("%s; %v (%s): %.1f %% background %v, %.2f %% light text", r.serviceScreen, b.Size(), shot,
		100*float64(background)/float64(n), bg, 100*float64(light)/float64(n))
	if background < n*6/10 {
		t.Errorf("only %d of %d pixels show the service screen's background %v (%s)", background, n, bg, shot)
	}
	if light < n/500 || light > n/5 {
		t.Errorf("%d of %d pixels are light: not a screen with some text (%s)", light, n, shot)
	}
}

// serviceBackground is the colour most of player/tv's service screen is
// drawn in, as the renderer draws it on the host.
func serviceBackground(t *testing.T, size goimage.Point) color.RGBA {
	t.Helper()
	r, err := tv.NewRenderer()
	if err != nil {
		t.Fatal(err)
	}
	img := goimage.NewRGBA(goimage.Rectangle{Max: size})
	r.ServiceNeeded(img, tv.ServiceView{Reason: "x"})
	counts := map[color.RGBA]int{}
	var best color.RGBA
	for i := 0; i+3 < len(img.Pix); i += 4 {
		c := color.RGBA{img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3]}
		counts[c]++
		if counts[c] > counts[best] {
			best = c
		}
	}
	return best
}

// near allows for the display's conversion to 24-bit colour.
func near(a, b color.RGBA) bool {
	d := func(x, y uint8) bool { return max(x, y)-min(x, y) <= 2 }
	return d(a.R, b.R) && d(a.G, b.G) && d(a.B, b.B)
}
