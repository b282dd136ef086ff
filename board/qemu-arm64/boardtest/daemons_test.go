package boardtest

import (
	"context"
	"image"
	"image/color"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/board/qemu-arm64/vm"
	"github.com/boxswarm/boxswarm/firmware/gpt"
	"github.com/boxswarm/boxswarm/firmware/slotdisk"
)

// tvBackground is the TV interface's background (player/tv's palette).
var tvBackground = color.RGBA{0x0b, 0x10, 0x20, 0xff}

// TestBakedBoxFirstBoot boots the baked image as it leaves the factory,
// with no head-end to reach: both daemons must start and report ready
// (transferd before activation), the slot must be healthy, the data
// partition must be the disk's, the box's identity must be sealed by the
// TPM in /data/identity with no PEM private key anywhere on /data, and the
// TV must show the activation screen and take typed characters.
func TestBakedBoxFirstBoot(t *testing.T) {
	a := baked(t)
	var names []string
	for _, d := range a.Recipe.Stage2.Supervisor.Daemons {
		names = append(names, d.Name)
	}
	for _, want := range []string{"transferd", "playerd"} {
		if !slices.Contains(names, want) {
			t.Fatalf("the baked image runs %v, not %s: bake it again with make image", names, want)
		}
	}
	// The box writes its disk (boot control, /data): boot a copy.
	disk := filepath.Join(t.TempDir(), "disk.img")
	b, err := os.ReadFile(a.Disk)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(disk, b, 0o644); err != nil {
		t.Fatal(err)
	}
	b = nil

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	start := time.Now()
	v := boot(t, ctx, a, disk, vm.UserNet{})
	waitLine(t, ctx, v, `msg="data partition mounted"`)
	// Both daemons use the TPM through the kernel's resource manager,
	// which lets them share it.
	waitLine(t, ctx, v, `transferd: .*msg="box identity" .*tpm=/dev/tpmrm0`)
	waitLine(t, ctx, v, `playerd: .*msg="box identity" .*tpm=/dev/tpmrm0`)
	// Made at the first start, sealed by the board's TPM (swtpm).
	waitLine(t, ctx, v, `transferd: .*msg="identity created" .*identity_file=/data/identity .*protection=TPM`)
	waitLine(t, ctx, v, `transferd: .*waiting for the activation code from the TV`)
	waitLine(t, ctx, v, `msg="daemon ready" daemon=transferd`)
	waitLine(t, ctx, v, `msg="daemon ready" daemon=playerd`)
	ok := waitLine(t, ctx, v, `^BOOT OK `)
	t.Logf("%s after power-on: %s", time.Since(start).Round(100*time.Millisecond), ok)
	// The front panel's lights: blinking through the boot, on once running
	// and once the network has an address (user networking's DHCP).
	waitLine(t, ctx, v, `stage2: network eth0 `)
	for _, want := range []string{"LED POWER BLINK", "LED POWER ON", "LED NETWORK ON"} {
		if err := v.WaitPanel(ctx, want); err != nil {
			t.Errorf("front panel never showed %q: %v\n%s", want, err, v.Panel())
		}
	}
	if c := v.Console(); strings.Contains(c, "DATA IS NOT PERSISTENT") || strings.Contains(c, "BOOT UNHEALTHY") {
		t.Errorf("the box booted degraded:\n%s", grepLines(c, "DATA IS NOT PERSISTENT", "BOOT UNHEALTHY"))
	}

	// The activation screen: mostly the TV's background, with text.
	shots := t.ArtifactDir()
	before := filepath.Join(shots, "activation.png")
	waitLine(t, ctx, v, `playerd: .*showing the activation screen`)
	var img image.Image
	var bg float64
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := v.Screendump(ctx, before); err != nil {
			t.Fatal(err)
		}
		img = readPNG(t, before)
		if bg = share(img, tvBackground); bg > 0.5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if bg <= 0.5 {
		t.Fatalf("the screen is not the TV's activation screen: %.0f%% background colour (%s)", 100*bg, before)
	}
	if colours(img) < 3 {
		t.Errorf("the activation screen is blank: %d colours (%s)", colours(img), before)
	}

	// Typing a code changes the screen.
	waitLine(t, ctx, v, `playerd: .*msg="remote control open"`)
	if err := v.SendKey(ctx, "a", "b", "2"); err != nil {
		t.Fatal(err)
	}
	after := filepath.Join(shots, "activation-typed.png")
	// Until the screen settles: the keys arrive one by one.
	changed, prev := 0, -1
	for deadline := time.Now().Add(10 * time.Second); ; prev = changed {
		time.Sleep(500 * time.Millisecond)
		if err := v.Screendump(ctx, after); err != nil {
			t.Fatal(err)
		}
		if changed = differing(img, readPNG(t, after)); (changed > 50 && changed == prev) || time.Now().After(deadline) {
			break
		}
	}
	if changed <= 50 {
		t.Errorf("typing AB2 changed %d pixels of the activation screen (%s, %s)", changed, before, after)
	}
	t.Logf("typing changed %d pixels; %s after power-on", changed, time.Since(start).Round(100*time.Millisecond))
	if c := v.Console(); strings.Contains(c, "NOT SEALED") || strings.Contains(c, "IDENTITY KEY STORED UNPROTECTED") {
		t.Errorf("the box's identity is not sealed by the TPM:\n%s", grepLines(c, "NOT SEALED", "UNPROTECTED"))
	}

	// What the box left on /data, read from the disk once it is off.
	v.Kill()
	data := extractData(t, disk)
	files := dataFiles(t, data)
	for _, want := range []string{"/identity", "/transferd/box.db"} {
		if !slices.Contains(files, want) {
			t.Errorf("no %s on the data partition; it holds %v", want, files)
		}
	}
	for _, f := range files {
		b := debugfs(t, data, "cat "+f)
		if strings.Contains(b, "PRIVATE KEY-----") {
			t.Errorf("%s on the data partition holds a PEM private key", f)
		}
	}
	t.Logf("/data holds %v", files)
}

// extractData copies the disk's data partition to a file, with its
// journal replayed: the box was switched off, not shut down, and debugfs
// reads only what is checkpointed.
func extractData(t *testing.T, disk string) string {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	table, err := gpt.Read(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	p, err := table.Find(slotdisk.LabelData)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "data.ext4")
	w, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	off, n := int64(p.FirstLBA)*gpt.SectorSize, int64(p.LastLBA-p.FirstLBA+1)*gpt.SectorSize
	if _, err := io.Copy(w, io.NewSectionReader(f, off, n)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// -p replays the journal and fixes what is safe; exit codes 1 and 2
	// mean it changed something, which is expected here.
	if b, err := exec.Command("e2fsck", "-p", out).CombinedOutput(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 2 {
			t.Fatalf("e2fsck on the data partition: %v\n%s", err, b)
		}
	}
	return out
}

// dataFiles lists the regular files on an ext4 image, as absolute paths
// within it.
func dataFiles(t *testing.T, img string) []string {
	t.Helper()
	var files []string
	var walk func(dir string)
	walk = func(dir string) {
		// ls -p: /inode/mode/uid/gid/name/size/ per entry.
		for _, l := range strings.Split(debugfs(t, img, "ls -p "+dir), "\n") {
			fields := strings.Split(l, "/")
			if len(fields) < 7 || fields[5] == "." || fields[5] == ".." || fields[5] == "lost+found" {
				continue
			}
			path := strings.TrimSuffix(dir, "/") + "/" + fields[5]
			mode, err := strconv.ParseUint(fields[2], 8, 32)
			if err != nil {
				t.Fatalf("debugfs ls -p %s: mode %q: %v", dir, fields[2], err)
			}
			switch mode & 0o170000 {
			case 0o040000:
				walk(path)
			case 0o100000:
				files = append(files, path)
			}
		}
	}
	walk("/")
	return files
}

// debugfs runs one debugfs request on an ext4 image.
func debugfs(t *testing.T, img, request string) string {
	t.Helper()
	b, err := exec.Command("debugfs", "-R", request, img).Output()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v", request, err)
	}
	return string(b)
}

// share is the fraction of an image's pixels of colour c.
func share(img image.Image, c color.RGBA) float64 {
	b := img.Bounds()
	n := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if color.RGBAModel.Convert(img.At(x, y)).(color.RGBA) == c {
				n++
			}
		}
	}
	return float64(n) / float64(b.Dx()*b.Dy())
}

// colours counts an image's distinct colours, up to 1000.
func colours(img image.Image) int {
	seen := map[color.RGBA]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y && len(seen) < 1000; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			seen[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)] = true
		}
	}
	return len(seen)
}

// differing counts the pixels two images of one size differ in; a size
// change counts as every pixel.
func differing(a, b image.Image) int {
	if a.Bounds() != b.Bounds() {
		return a.Bounds().Dx() * a.Bounds().Dy()
	}
	n := 0
	r := a.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if color.RGBAModel.Convert(a.At(x, y)) != color.RGBAModel.Convert(b.At(x, y)) {
				n++
			}
		}
	}
	return n
}

// grepLines returns the lines of s holding any of subs.
func grepLines(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
