package boardtest

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/board/qemu-arm64/vm"
	"github.com/boxswarm/boxswarm/internal/netns"
	"github.com/boxswarm/boxswarm/media/mediatest"
)

// Small clips: TCG decodes a few hundred frames of 320x240 in seconds.
var (
	clipH264 = mediatest.Clip{Name: "h264-aac", File: "h264-aac.ts", Seconds: 2,
		Video: "testsrc=size=320x240:rate=25", Audio: "sine=frequency=440:sample_rate=48000",
		Args: []string{"-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-bf", "2", "-pix_fmt", "yuv420p",
			"-c:a", "aac", "-b:a", "96k", "-f", "mpegts"}}
	clipH265 = mediatest.Clip{Name: "h265-aac", File: "h265-aac.ts", Seconds: 1,
		Video: "testsrc2=size=320x240:rate=25", Audio: "sine=frequency=300:sample_rate=44100",
		Args: []string{"-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error", "-pix_fmt", "yuv420p",
			"-c:a", "aac", "-f", "mpegts"}}
)

// pattern is boxprobe's test pattern (vertical bars, left to right).
var pattern = []color.RGBA{{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255}, {255, 255, 255, 255}}

// hostFrameMD5 decodes a clip the way boxprobe does in the guest (through
// a pipe, minus the display) and returns the frames.
func hostFrameMD5(t *testing.T, path string) []string {
	t.Helper()
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-c:a", "aac_fixed", "-i", "pipe:0",
		"-map", "0:v:0", "-map", "0:a:0?", "-f", "framemd5", "pipe:1")
	cmd.Stdin = in
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("host ffmpeg framemd5 of %s: %v", path, err)
	}
	var frames []string
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			frames = append(frames, frame(l))
		}
	}
	return frames
}

// frame keeps the stream, the size and the hash of a framemd5 line. The
// timestamps are left out, as in mediatest.ParseFrameMD5: the same samples
// can be stamped a tick apart (44.1 kHz AAC in MPEG-TS) on the two
// machines.
func frame(line string) string {
	f := strings.Split(line, ",")
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	if len(f) < 6 {
		return line
	}
	return f[0] + " " + f[4] + " " + f[5]
}

// lastFrame decodes a clip's last picture to RGBA on the host.
func lastFrame(t *testing.T, path string) image.Image {
	t.Helper()
	out := filepath.Join(t.TempDir(), "last.png")
	if b, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-i", path, "-map", "0:v:0",
		"-update", "1", "-f", "image2", out).CombinedOutput(); err != nil {
		t.Fatalf("host ffmpeg last frame: %v\n%s", err, b)
	}
	return readPNG(t, out)
}

func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

// meanDiff is the mean absolute difference per colour channel of want
// against the top-left corner of got.
func meanDiff(want, got image.Image) float64 {
	b := want.Bounds()
	var sum, n float64
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r1, g1, b1, _ := want.At(x, y).RGBA()
			r2, g2, b2, _ := got.At(x, y).RGBA()
			for _, d := range []int{int(r1>>8) - int(r2>>8), int(g1>>8) - int(g2>>8), int(b1>>8) - int(b2>>8)} {
				sum += float64(max(d, -d))
				n++
			}
		}
	}
	return sum / n
}

// guestFrameMD5 collects the frames boxprobe printed for a clip.
func guestFrameMD5(console, clip string) []string {
	var lines []string
	prefix := "FRAMEMD5 " + clip + " "
	for _, l := range strings.Split(console, "\n") {
		if _, rest, ok := strings.Cut(l, prefix); ok {
			lines = append(lines, frame(rest))
		}
	}
	return lines
}

func sameLines(t *testing.T, what string, want, got []string) {
	t.Helper()
	if len(want) == 0 {
		t.Fatalf("%s: the host decoded nothing", what)
	}
	if len(got) != len(want) {
		t.Errorf("%s: the box decoded %d frames, the host %d", what, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Errorf("%s: frame line %d differs:\n box:  %s\n host: %s", what, i, got[i], want[i])
			return
		}
	}
}

// TestBoxOnUserNetwork boots the box once behind QEMU's user-mode NAT and
// checks the display, the remote, DHCP, the way to the host, and the
// decoder.
func TestBoxOnUserNetwork(t *testing.T) {
	a := baked(t)
	mediatest.RequireFFmpeg(t)
	media := t.TempDir()
	h264 := mediatest.Make(t, media, clipH264)
	h265 := mediatest.Make(t, media, clipH265)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	files := serveFiles(t, l, media)
	port := l.Addr().(*net.TCPAddr).Port
	keys := []string{"up", "down", "left", "right", "ret", "esc", "a", "1"}
	wantKeys := []string{"Up", "Down", "Left", "Right", "OK", "Back", "A", "1"}
	disk := probeDisk(t, a, probeArgs(fmt.Sprintf("%s:%d", vm.UserNetHost, port), len(keys), clipH264.File, clipH265.File)...)

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	v := boot(t, ctx, a, disk, vm.UserNet{})
	shots := t.ArtifactDir()

	// The display: the pattern the box drew is what QEMU shows.
	var w, h int
	drawn := waitLine(t, ctx, v, `boxprobe: DRAWN \d+x\d+`)
	fmt.Sscanf(drawn[strings.Index(drawn, "DRAWN"):], "DRAWN %dx%d", &w, &h)
	t.Logf("pattern drawn at %s after power-on", time.Since(start).Round(100*time.Millisecond))
	shot := filepath.Join(shots, "pattern.png")
	if err := v.Screendump(ctx, shot); err != nil {
		t.Fatal(err)
	}
	img := readPNG(t, shot)
	if img.Bounds().Dx() != w || img.Bounds().Dy() != h {
		t.Errorf("screendump is %v, the box drew %dx%d", img.Bounds().Size(), w, h)
	}
	for i, c := range pattern {
		x := (2*i + 1) * img.Bounds().Dx() / (2 * len(pattern))
		got := color.RGBAModel.Convert(img.At(x, img.Bounds().Dy()/2)).(color.RGBA)
		if got != c {
			t.Errorf("bar %d at x=%d shows %v, want %v", i, x, got, c)
		}
	}

	// The remote: keys typed on QEMU's keyboard reach the box's reader.
	waitLine(t, ctx, v, `boxprobe: KEYS /dev/input/event\d+`)
	if err := v.SendKey(ctx, keys...); err != nil {
		t.Fatal(err)
	}
	for _, k := range wantKeys {
		waitLine(t, ctx, v, `boxprobe: KEY `+k+`$`)
	}
	var got []string
	for _, l := range strings.Split(v.Console(), "\n") {
		if _, k, ok := strings.Cut(l, "boxprobe: KEY "); ok {
			got = append(got, k)
		}
	}
	if strings.Join(got, " ") != strings.Join(wantKeys, " ") {
		t.Errorf("the box read keys %q, want %q", got, wantKeys)
	}

	// The network: a DHCP lease from QEMU, and the host's loopback at
	// 10.0.2.2.
	lease := waitLine(t, ctx, v, `stage2: network eth0 `)
	if !strings.Contains(lease, "eth0 10.0.2.15/24 router 10.0.2.2 dns 10.0.2.3") {
		t.Errorf("lease %q, want QEMU's user network", lease)
	}

	// The decoder: the same frames as on the host, and the last picture on
	// the screen through fbdev.
	waitLine(t, ctx, v, `boxprobe: DECODED `+clipH264.File)
	select {
	case from := <-files.remotes:
		if ap, err := netip.ParseAddrPort(from); err != nil || !ap.Addr().IsLoopback() {
			t.Errorf("the box's request came from %s, want the host's loopback (QEMU's NAT)", from)
		}
	default:
		t.Error("the HTTP server saw no request")
	}
	want := lastFrame(t, h264)
	var diff float64
	for deadline := time.Now().Add(10 * time.Second); ; {
		shot = filepath.Join(shots, "fbdev.png")
		if err := v.Screendump(ctx, shot); err != nil {
			t.Fatal(err)
		}
		// fbdev's damage reaches the screen after a short delay.
		if diff = meanDiff(want, readPNG(t, shot)); diff < 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if diff >= 4 {
		t.Errorf("the screen's corner differs from the clip's last frame by %.1f per channel on average (%s)", diff, shot)
	} else {
		t.Logf("fbdev shows the clip's last frame (mean difference %.2f per channel)", diff)
	}
	done := waitLine(t, ctx, v, `boxprobe: (DONE|FAIL)`)
	if strings.Contains(done, "FAIL") {
		t.Fatalf("probe: %s", done)
	}
	t.Logf("probe done %s after power-on", time.Since(start).Round(100*time.Millisecond))
	console := v.Console()
	sameLines(t, "H.264 and AAC", hostFrameMD5(t, h264), guestFrameMD5(console, clipH264.File))
	sameLines(t, "H.265 and AAC", hostFrameMD5(t, h265), guestFrameMD5(console, clipH265.File))
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, "boxprobe: DECODED") {
			t.Log(l)
		}
	}
}

// TestBoxBehindKernelNAT puts the box on a tap in a home router's network
// namespace: it gets its address from the harness's DHCP server and
// reaches a server on the namespaces' internet through the router's NAT.
func TestBoxBehindKernelNAT(t *testing.T) {
	a := baked(t)
	mediatest.RequireFFmpeg(t)
	top := netns.Start(t, netns.Config{Homes: []netns.HomeConfig{{NAT: netns.Masquerade}}})
	home := top.Homes[0]
	media := t.TempDir()
	h265 := mediatest.Make(t, media, clipH265)

	var l net.Listener
	err := top.Internet.Do(func() error {
		var err error
		l, err = net.Listen("tcp", netip.AddrPortFrom(top.Internet.Addr, 0).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	files := serveFiles(t, l, media)
	disk := probeDisk(t, a, probeArgs(l.Addr().String(), 0, clipH265.File)...)

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	lan := netip.MustParsePrefix("192.168.101.1/24")
	v := boot(t, ctx, a, disk, vm.TapNet{Namespace: home.Router.Name, Addr: lan})
	lease := waitLine(t, ctx, v, `stage2: network eth0 `)
	if !strings.Contains(lease, "eth0 192.168.101.2/24 router 192.168.101.1") {
		t.Errorf("lease %q, want the harness's DHCP server on the router's tap", lease)
	}
	done := waitLine(t, ctx, v, `boxprobe: (DONE|FAIL)`)
	if strings.Contains(done, "FAIL") {
		t.Fatalf("probe: %s", done)
	}
	select {
	case from := <-files.remotes:
		if ap, err := netip.ParseAddrPort(from); err != nil || ap.Addr() != home.WANAddr {
			t.Errorf("the box's request came from %s, want the router's WAN address %s (its NAT)", from, home.WANAddr)
		}
	default:
		t.Error("the HTTP server saw no request")
	}
	sameLines(t, "H.265 and AAC", hostFrameMD5(t, h265), guestFrameMD5(v.Console(), clipH265.File))
}
