package demo

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/boxswarm/boxswarm/firmware/keyfile"
	"github.com/boxswarm/boxswarm/headend/admin"
	"github.com/boxswarm/boxswarm/internal/viewerclient"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/importer"
	"github.com/boxswarm/boxswarm/media/mediatest"
)

// startHeadEnd runs `headend serve` in the internet namespace, on its
// embedded default, and waits until every service serves.
func (s *System) startHeadEnd(ctx context.Context) error {
	// The operator's media signing key, made once as the import tool does.
	if _, err := os.Stat(filepath.Join(s.data, "media.key")); err != nil {
		pub, key, err := ed25519.GenerateKey(nil)
		if err != nil {
			return err
		}
		if err := keyfile.WritePair(filepath.Join(s.data, "media"), key, pub); err != nil {
			return err
		}
	}
	inet := s.top.Internet
	at := func(port int) string { return netip.AddrPortFrom(inet.Addr, uint16(port)).String() }
	s.Gateway = netip.AddrPortFrom(inet.Addr, gatewayPort)
	// Run by a context of its own: the demo stops it with an interrupt, so
	// that it closes its stores cleanly.
	s.headend = inet.Command(context.WithoutCancel(ctx), filepath.Join(s.bin, "headend"), "serve", "-data", s.data,
		"-gateway", at(gatewayPort), "-admin", at(adminPort), "-web", at(webPort), "-turn", at(turnPort),
		"-media-listen", at(mediaPort), "-name", inet.Addr.String(), "-tick", "100ms",
		// The scheduler's own placements (at least three copies of every
		// title) would, in a swarm of two boxes, copy every title to box 2
		// before Bob asks for one; the story is about the copy he asks
		// for, so they wait beyond any run of it. Shadow lists have their
		// own tests in headend/scheduler.
		"-shadow-every", "1h")
	logFile, err := os.Create(filepath.Join(s.cfg.Dir, "headend.log"))
	if err != nil {
		return err
	}
	s.headend.Stderr = logFile
	out, err := s.headend.StdoutPipe()
	if err != nil {
		return err
	}
	if err := s.headend.Start(); err != nil {
		return fmt.Errorf("demo: start the head-end: %w", err)
	}
	s.hedone = make(chan error, 1)
	ready := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case ready <- sc.Text():
			default:
			}
		}
		s.hedone <- s.headend.Wait()
		logFile.Close()
		close(ready)
	}()
	want := map[string]*regexp.Regexp{
		"scheduler": regexp.MustCompile(`^headend: scheduler gateway`),
		"web":       regexp.MustCompile(`^headend: web `),
		"turn":      regexp.MustCompile(`^headend: turn `),
		"media":     regexp.MustCompile(`^headend: media box `),
	}
	deadline := time.After(time.Minute)
	for len(want) > 0 {
		select {
		case l, ok := <-ready:
			if !ok {
				log, _ := os.ReadFile(logFile.Name())
				return fmt.Errorf("demo: the head-end exited:\n%s", tail(string(log), 30))
			}
			for k, re := range want {
				if re.MatchString(l) {
					delete(want, k)
				}
			}
		case <-deadline:
			log, _ := os.ReadFile(logFile.Name())
			return fmt.Errorf("demo: the head-end did not start within a minute:\n%s", tail(string(log), 30))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	web, stop, err := forward(inet.NS, at(webPort))
	if err != nil {
		return err
	}
	s.stopFwd = append(s.stopFwd, stop)
	adm, stop, err := forward(inet.NS, at(adminPort))
	if err != nil {
		return err
	}
	s.stopFwd = append(s.stopFwd, stop)
	token, err := os.ReadFile(filepath.Join(s.data, "admin.token"))
	if err != nil {
		return err
	}
	s.Web = "http://" + web
	s.Admin = &admin.Client{URL: "http://" + adm, Token: strings.TrimSpace(string(token))}
	s.logf("head-end: gateway %s, TURN %s, media server %s; the catalog is at %s", at(gatewayPort), at(turnPort), at(mediaPort), s.Web)
	return nil
}

// Title is a title the demo imported.
type Title struct {
	ID     media.ID
	Name   string
	Source string // the file it was imported from
	Pieces int    // in its manifest
	// Key is the content key, which the demo keeps only to check that it
	// is on no box's disk.
	Key []byte
}

// DemoClip is the sample movie: test pictures and a tone, made with
// ffmpeg on first use.
var DemoClip = mediatest.Clip{Name: "demo", File: "sample-movie.ts", Seconds: 8,
	Video: "testsrc2=size=640x360:rate=25", Audio: "sine=frequency=440:sample_rate=48000",
	Args: []string{"-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-bf", "2", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-b:a", "96k", "-f", "mpegts"}}

// Import makes the sample movie (once) and imports it as name: its key to
// the vault, its package to the media server, its metadata to the
// catalog, published now.
func (s *System) Import(ctx context.Context, name string) (Title, error) {
	clips := filepath.Join(filepath.Dir(s.cfg.Dir), "clips")
	if err := os.MkdirAll(clips, 0o755); err != nil {
		return Title{}, err
	}
	src := filepath.Join(clips, DemoClip.File)
	if _, err := os.Stat(src); err != nil {
		if src, err = DemoClip.Generate(clips); err != nil {
			return Title{}, fmt.Errorf("demo: make the sample movie: %w", err)
		}
	}
	mediaKey, err := keyfile.ReadPrivateKey(filepath.Join(s.data, "media.key"))
	if err != nil {
		return Title{}, err
	}
	vk, err := s.Admin.VaultKey(ctx)
	if err != nil {
		return Title{}, fmt.Errorf("demo: the key vault: %w", err)
	}
	sink := &keepingSink{next: &admin.KeySink{Client: s.Admin, Vault: vk}}
	pkgs := filepath.Join(s.cfg.Dir, "packages")
	// The smallest pieces: the sample is under a megabyte, and with 1 MiB
	// pieces it would be one piece, never seen part-downloaded.
	m, err := importer.ImportFile(ctx, src, importer.Options{Out: pkgs, MediaKey: mediaKey, Keys: sink, PieceSize: media.MinPieceSize}, nil)
	if err != nil {
		return Title{}, fmt.Errorf("demo: import %s: %w", name, err)
	}
	dir := filepath.Join(pkgs, m.ID.String())
	if _, err := s.Admin.PutPackage(ctx, m.ID, dir); err != nil {
		return Title{}, fmt.Errorf("demo: place %s on the media server: %w", name, err)
	}
	signed, err := os.ReadFile(filepath.Join(dir, media.ManifestFile))
	if err != nil {
		return Title{}, err
	}
	var rent admin.Price
	if err := rent.UnmarshalText([]byte("2.99 EUR")); err != nil {
		return Title{}, err
	}
	meta := admin.TitleMeta{Catalog: "films", Name: name, Year: 2026, Genre: "Animation", Rent: rent, Regions: []string{"*"}}
	if _, err := s.Admin.PublishTitle(ctx, signed, time.Now().Add(-time.Minute), meta); err != nil {
		return Title{}, fmt.Errorf("demo: publish %s: %w", name, err)
	}
	s.logf("imported %q (%s): key in the vault, package on the media server, published at 2.99 EUR", name, m.ID)
	return Title{ID: m.ID, Name: name, Source: src, Pieces: m.NumPieces(), Key: sink.key}, nil
}

// keepingSink passes the key on and keeps a copy for the disk scan.
type keepingSink struct {
	next interface {
		Put(ctx context.Context, id media.ID, key []byte) error
	}
	mu  sync.Mutex
	key []byte
}

func (k *keepingSink) Put(ctx context.Context, id media.ID, key []byte) error {
	k.mu.Lock()
	k.key = append([]byte(nil), key...)
	k.mu.Unlock()
	return k.next.Put(ctx, id, key)
}

// Viewer is a viewer signed up on the web.
type Viewer struct {
	Name, Email, Password string
	Code                  string // the activation code the web showed
	Web                   *viewerclient.Client
}

// SignUp signs a viewer up on the web pages and returns the activation
// code they showed.
func (s *System) SignUp(ctx context.Context, name string) (*Viewer, error) {
	v := &Viewer{Name: name, Email: strings.ToLower(name) + "@example.com", Password: "correct horse " + name,
		Web: viewerclient.New(s.Web)}
	code, err := v.Web.SignUp(ctx, viewerclient.SignUp{Name: name, Email: v.Email, Password: v.Password,
		Street: "1 Main Street", City: "Springfield", Postcode: "12345", Region: "DE", PaymentToken: "tok_ok_" + name})
	if err != nil {
		return nil, fmt.Errorf("demo: sign up %s: %w", name, err)
	}
	v.Code = code
	s.logf("%s signed up on the web; the activation code is %s", name, code)
	return v, nil
}
