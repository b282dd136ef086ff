package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/boxswarm/boxswarm/api"
	qemuarm64 "github.com/boxswarm/boxswarm/board/qemu-arm64"
	"github.com/boxswarm/boxswarm/board/qemu-arm64/vm"
	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/firmware/keyfile"
	"github.com/boxswarm/boxswarm/images"
	"github.com/boxswarm/boxswarm/images/bake"
)

// BakeImage signs the boxes' image for this head-end: the baked recipe
// with the head-end's address on the stand-in internet and its CA and
// keys, and the player's decoder also reporting frame hashes on the
// "report" port. It returns a factory-fresh disk image to copy for each
// box.
func (s *System) BakeImage(ctx context.Context) (string, error) {
	r := s.art.Recipe
	r.Box = &images.Box{HeadEnd: s.Gateway.String(), HeadEndData: s.data}
	r.Stage2.Supervisor.Daemons = append(r.Stage2.Supervisor.Daemons[:0:0], r.Stage2.Supervisor.Daemons...)
	for i, d := range r.Stage2.Supervisor.Daemons {
		switch d.Name {
		case "playerd":
			d.Args = append(append([]string(nil), d.Args...), "-report-framemd5", "virtio:report")
		case "transferd":
			// Progress every second, so that the scheduler (and the test
			// polling it) sees a download move while it lasts.
			d.Args = append(append([]string(nil), d.Args...), "-progress", "1s")
			if s.cfg.DownKbps > 0 {
				d.Args = append(d.Args, "-down-kbps", fmt.Sprint(s.cfg.DownKbps))
			}
		}
		r.Stage2.Supervisor.Daemons[i] = d
	}
	r, err := bake.ResolveBox(r, s.cfg.Repo, s.art.KeyDir)
	if err != nil {
		return "", err
	}
	if err := r.Check(); err != nil {
		return "", err
	}
	dir := filepath.Join(s.cfg.Dir, "image")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	stage2 := filepath.Join(dir, "stage2.cpio")
	if err := bake.Stage2(ctx, s.cfg.Repo, r, stage2); err != nil {
		return "", fmt.Errorf("demo: the second stage: %w", err)
	}
	signer, err := keyfile.ReadSigner(filepath.Join(s.art.KeyDir, bake.SigningKeyFile), filepath.Join(s.art.KeyDir, bake.SigningCertFile))
	if err != nil {
		return "", err
	}
	bom, err := os.ReadFile(s.art.BOM)
	if err != nil {
		return "", err
	}
	spec, err := bake.Spec(r, r.ImageVersion, s.art.Kernel, stage2, bom)
	if err != nil {
		return "", err
	}
	if s.art.RootFS != "" {
		if err := bake.AddRootFS(&spec, s.art.RootFS); err != nil {
			return "", err
		}
	}
	img, _, err := firmware.BuildImage(spec, signer)
	if err != nil {
		return "", err
	}
	disk := filepath.Join(dir, "disk.img")
	if err := bake.WriteDisk(disk, r.Disk, img, nil, bake.FactoryState()); err != nil {
		return "", err
	}
	if err := bake.FormatData(ctx, disk, r.Disk); err != nil {
		return "", err
	}
	s.logf("baked the boxes' image for this head-end (%s), signed with the development key", s.Gateway)
	return disk, nil
}

// Box is a set-top box in QEMU, in one of the homes.
type Box struct {
	Name   string
	Home   int
	Disk   string // its own copy of the disk image
	Report string // what it wrote to its report port
	ID     api.BoxID
	// PoweredOn is when the box was last powered on.
	PoweredOn time.Time
	vm        *vm.VM
	clock     *consoleClock
	dir       string
	tpm       string
}

// Boot copies the factory disk for a new box and powers it on in home.
func (s *System) Boot(ctx context.Context, name string, home int, factoryDisk string) (*Box, error) {
	dir := filepath.Join(s.cfg.Dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	b := &Box{Name: name, Home: home, Disk: filepath.Join(dir, "disk.img"), Report: filepath.Join(dir, "report.txt"),
		dir: dir, tpm: filepath.Join(dir, "tpm")}
	if err := copyFile(factoryDisk, b.Disk); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(b.tpm, 0o700); err != nil {
		return nil, err
	}
	if err := s.PowerOn(ctx, b); err != nil {
		return nil, err
	}
	return b, nil
}

// PowerOn starts the box's machine (again, after a power cut).
func (s *System) PowerOn(ctx context.Context, b *Box) error {
	a := s.art
	lan := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(150 + b.Home), 1}), 24)
	m := qemuarm64.Machine{Disk: b.Disk, BIOS: a.ROM.UBoot, DTB: a.ROM.DTB, FIT: a.ROM.FIT, ReportPath: b.Report,
		MAC: fmt.Sprintf("52:54:00:12:34:%02x", 0x50+b.Home)}
	clock := &consoleClock{next: prefixed(s.cfg.Console, b.Name)}
	on := time.Now()
	v, err := vm.Start(ctx, vm.Config{Machine: m, TPMState: b.tpm, Dir: b.dir, Console: clock,
		Net: vm.TapNet{Namespace: s.top.Homes[b.Home].Router.Name, Name: "box" + fmt.Sprint(b.Home), Addr: lan}})
	if err != nil {
		return fmt.Errorf("demo: power on %s: %w", b.Name, err)
	}
	b.vm, b.clock, b.PoweredOn = v, clock, on
	s.mu.Lock()
	if !slices.Contains(s.boxes, b) {
		s.boxes = append(s.boxes, b)
	}
	s.mu.Unlock()
	s.logf("%s powered on in home %d, behind NAT %s", b.Name, b.Home, s.top.Homes[b.Home].WANAddr)
	return nil
}

// WaitFor waits for a console line of the box.
func (b *Box) WaitFor(ctx context.Context, pattern string) (string, error) {
	l, err := b.vm.WaitFor(ctx, regexp.MustCompile(pattern))
	if err != nil {
		return "", fmt.Errorf("%s: %w\n%s", b.Name, err, tail(b.vm.Console(), 40))
	}
	return l, nil
}

// LineAt returns when the first console line matching pattern arrived
// since the box was last powered on, and the line.
func (b *Box) LineAt(pattern string) (time.Time, string, bool) {
	return b.clock.first(regexp.MustCompile(pattern))
}

// Console returns the box's serial console so far.
func (b *Box) Console() string { return b.vm.Console() }

// Keys presses remote-control keys (QEMU key names), a moment apart as a
// viewer would.
func (b *Box) Keys(ctx context.Context, keys ...string) error {
	for _, k := range keys {
		if err := b.vm.SendKey(ctx, k); err != nil {
			return fmt.Errorf("%s: key %s: %w", b.Name, k, err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	return nil
}

// Type types text on the remote: letters and digits.
func (b *Box) Type(ctx context.Context, text string) error {
	var keys []string
	for _, r := range strings.ToLower(text) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			keys = append(keys, string(r))
		}
	}
	return b.Keys(ctx, keys...)
}

// Activate types the activation code on the TV and waits until the box
// has its identity certificate.
func (b *Box) Activate(ctx context.Context, code string) error {
	if _, err := b.WaitFor(ctx, `transferd.*(needs|waiting for).*code|activation`); err != nil {
		return err
	}
	time.Sleep(time.Second) // the activation screen takes the first keys
	if err := b.Type(ctx, code); err != nil {
		return err
	}
	if err := b.Keys(ctx, "ret"); err != nil {
		return err
	}
	l, err := b.WaitFor(ctx, `transferd: box ([0-9a-f]{32}) pieces`)
	if err != nil {
		return err
	}
	id := regexp.MustCompile(`box ([0-9a-f]{32})`).FindStringSubmatch(l)[1]
	return b.ID.UnmarshalText([]byte(id))
}

// Screenshot saves the TV's picture as a PNG.
func (b *Box) Screenshot(ctx context.Context, path string) error {
	return b.vm.Screendump(ctx, path)
}

// PowerCut kills the machine without warning.
func (b *Box) PowerCut() { b.vm.Kill() }

// Shutdown powers the box off and waits until its disk is at rest.
func (b *Box) Shutdown() { b.vm.Close() }

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// prefixed writes each line to w with the box's name in front; nil if w
// is.
func prefixed(w io.Writer, name string) io.Writer {
	if w == nil {
		return nil
	}
	return &linePrefixer{w: w, prefix: fmt.Sprintf("%6s │ ", name)}
}

type linePrefixer struct {
	w      io.Writer
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (p *linePrefixer) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.buf = p.buf[i+1:]
	}
}

// consoleClock notes when each console line arrived, and passes the lines
// on to next (if set).
type consoleClock struct {
	next  io.Writer
	mu    sync.Mutex
	buf   []byte
	lines []timedLine
}

type timedLine struct {
	at   time.Time
	text string
}

func (c *consoleClock) Write(b []byte) (int, error) {
	now := time.Now()
	c.mu.Lock()
	c.buf = append(c.buf, b...)
	for {
		i := bytes.IndexByte(c.buf, '\n')
		if i < 0 {
			break
		}
		c.lines = append(c.lines, timedLine{now, string(bytes.TrimRight(c.buf[:i], "\r"))})
		c.buf = c.buf[i+1:]
	}
	c.mu.Unlock()
	if c.next != nil {
		return c.next.Write(b)
	}
	return len(b), nil
}

func (c *consoleClock) first(re *regexp.Regexp) (time.Time, string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lines {
		if re.MatchString(l.text) {
			return l.at, l.text, true
		}
	}
	return time.Time{}, "", false
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
