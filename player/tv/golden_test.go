package tv

import (
	"flag"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden screenshots in testdata/golden")

func newRenderer(t testing.TB) *Renderer {
	t.Helper()
	r, err := NewRenderer()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type screenCase struct {
	name string
	size image.Point
	draw func(r *Renderer, dst *image.RGBA) Layout
}

func screenCases() []screenCase {
	hd := image.Pt(1280, 720)
	return []screenCase{
		{"mylist", hd, func(r *Renderer, d *image.RGBA) Layout {
			return r.MyList(d, MyListView{Items: myList(), Selected: 0})
		}},
		{"mylist-downloading-selected", hd, func(r *Renderer, d *image.RGBA) Layout {
			return r.MyList(d, MyListView{Items: myList(), Selected: 3})
		}},
		{"mylist-scrolled", hd, func(r *Renderer, d *image.RGBA) Layout {
			return r.MyList(d, MyListView{Items: longList(), Selected: 9})
		}},
		{"mylist-moving", hd, func(r *Renderer, d *image.RGBA) Layout {
			return r.MyList(d, MyListView{Items: myList(), Selected: 2, Moving: true})
		}},
		{"mylist-empty", hd, func(r *Renderer, d *image.RGBA) Layout {
			return r.MyList(d, MyListView{})
		}},
		{"mylist-1080p", image.Pt(1920, 1080), func(r *Renderer, d *image.RGBA) Layout {
			return r.MyList(d, MyListView{Items: myList(), Selected: 1})
		}},
		{"catalog", hd, func(r *Renderer, d *image.RGBA) Layout {
			a := NewApp(Config{})
			a.SetData(testData())
			a.HandleKey(menu)
			return a.Render(r, d)
		}},
		{"catalog-genre-rank-entry", hd, func(r *Renderer, d *image.RGBA) Layout {
			a := NewApp(Config{})
			a.SetData(testData())
			for _, k := range keys(menu, right, right, right, right, right, down, down, char('2')) {
				a.HandleKey(k)
			}
			return a.Render(r, d)
		}},
		{"purchase", hd, func(r *Renderer, d *image.RGBA) Layout {
			return r.Purchase(d, PurchaseView{Title: tMetro})
		}},
		{"purchase-error", hd, func(r *Renderer, d *image.RGBA) Layout {
			return r.Purchase(d, PurchaseView{Title: tMetro, Focus: Cancel, Error: "Your account has no payment method. Add one on the web."})
		}},
		{"purchase-price-unknown", hd, func(r *Renderer, d *image.RGBA) Layout {
			return r.Purchase(d, PurchaseView{Title: Title{ID: "t20", Name: "Night Train"}})
		}},
		{"remove", hd, func(r *Renderer, d *image.RGBA) Layout {
			return r.Remove(d, RemoveView{Title: tCharade, Rank: 6, Focus: Cancel})
		}},
		{"playback-ff8", hd, func(r *Renderer, d *image.RGBA) Layout {
			return r.Playback(d, PlaybackView{Name: tGeneral.Name, Position: 27*time.Minute + 13*time.Second, Duration: tGeneral.Length, Speed: 8, Overlay: true})
		}},
		{"playback-over-video", hd, func(r *Renderer, d *image.RGBA) Layout {
			fakeFrame(d)
			return r.Playback(d, PlaybackView{Name: tBunny.Name, Position: 4*time.Minute + 2*time.Second, Duration: tBunny.Length, Speed: 1, Overlay: true, Underlay: true})
		}},
		{"playback-paused", hd, func(r *Renderer, d *image.RGBA) Layout {
			return r.Playback(d, PlaybackView{Name: tMetro.Name, Position: 2*time.Hour + 3*time.Minute, Duration: tMetro.Length, Speed: 0, Overlay: true})
		}},
		{"playback-rew4", hd, func(r *Renderer, d *image.RGBA) Layout {
			return r.Playback(d, PlaybackView{Name: tSintel.Name, Position: 3 * time.Minute, Duration: tSintel.Length, Speed: -4, Overlay: true})
		}},
		{"activation", hd, func(r *Renderer, d *image.RGBA) Layout {
			a := NewApp(Config{SignupURL: "tv.example.net"})
			a.ShowActivation()
			for _, k := range keys(char('K'), char('Q'), char('3'), char('Z'), char('7'), char('M'), up, up) {
				a.HandleKey(k)
			}
			return a.Render(r, d)
		}},
		{"activation-error", hd, func(r *Renderer, d *image.RGBA) Layout {
			return r.Activation(d, ActivationView{Slots: []rune("KQ3Z7MBAXD4E2PLV"), GroupLen: 4, Cursor: 15, URL: "tv.example.net",
				Error: "This code is not valid. Check it on the web page and type it again."})
		}},
		{"service-needed", hd, func(r *Renderer, d *image.RGBA) Layout {
			return r.ServiceNeeded(d, ServiceView{
				Reason:  "The box could not verify its software and stopped to stay safe.",
				Contact: "Call your provider's support line and quote the code below.",
				Detail:  "BOOT REFUSED: slot A: signature does not verify (key version 3); slot B: image version 7 below rollback floor 9",
			})
		}},
	}
}

// TestGolden renders every screen and compares it with the committed
// screenshot; go test -run TestGolden -update rewrites them.
func TestGolden(t *testing.T) {
	r := newRenderer(t)
	for _, c := range screenCases() {
		t.Run(c.name, func(t *testing.T) {
			img := image.NewRGBA(image.Rectangle{Max: c.size})
			c.draw(r, img)
			path := filepath.Join("testdata", "golden", c.name+".png")
			if *update {
				writePNG(t, path, img)
				return
			}
			want := readPNG(t, path)
			if want.Bounds() != img.Bounds() {
				t.Fatalf("%s is %v, rendered %v", path, want.Bounds(), img.Bounds())
			}
			if n, worst := diff(img, want); n > img.Bounds().Dx()*img.Bounds().Dy()/500 {
				got := filepath.Join(t.TempDir(), c.name+".png")
				writePNG(t, got, img)
				t.Fatalf("%d pixels differ from %s (worst by %d); rendered %s (rerun with -update if the change is wanted)", n, path, worst, got)
			}
		})
	}
}

// diff counts pixels differing by more than anti-aliasing noise: glyph
// and vector edges may round differently on another CPU (the rasterizer
// has assembly for amd64 only).
func diff(a, b *image.RGBA) (n, worst int) {
	for i := 0; i < len(a.Pix); i++ {
		d := int(a.Pix[i]) - int(b.Pix[i])
		d = max(d, -d)
		worst = max(worst, d)
		if d > 24 {
			n++
			i += 3 - i%4 // count each pixel once
		}
	}
	return n, worst
}

func writePNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(f, img); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readPNG(t *testing.T, path string) *image.RGBA {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("decoding %s: %v", path, err)
	}
	if rgba, ok := img.(*image.RGBA); ok {
		return rgba
	}
	rgba := image.NewRGBA(img.Bounds())
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
			rgba.Set(x, y, img.At(x, y))
		}
	}
	return rgba
}

// fakeFrame stands in for a decoded video frame: a sky-to-grass gradient.
func fakeFrame(d *image.RGBA) {
	b := d.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		t := float64(y-b.Min.Y) / float64(b.Dy())
		c := [3]float64{90 + 60*t, 160 - 20*t, 230 - 180*t}
		if t > 0.6 {
			c = [3]float64{60, 140 - 40*(t-0.6), 50}
		}
		for x := b.Min.X; x < b.Max.X; x++ {
			o := d.PixOffset(x, y)
			d.Pix[o], d.Pix[o+1], d.Pix[o+2], d.Pix[o+3] = uint8(c[0]), uint8(c[1]), uint8(c[2]), 0xff
		}
	}
}
