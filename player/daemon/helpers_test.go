package daemon

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/board/display"
	"github.com/boxswarm/boxswarm/board/remote"
	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/headend/pass"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/importer"
	"github.com/boxswarm/boxswarm/media/keys"
	"github.com/boxswarm/boxswarm/media/keywrap"
	"github.com/boxswarm/boxswarm/media/mediatest"
	"github.com/boxswarm/boxswarm/media/store"
	"github.com/boxswarm/boxswarm/p2p/local"
	"github.com/boxswarm/boxswarm/player/tv"
)

// clip is small so that making, importing and decoding it is quick:
// H.264 with B-frames and AAC in MPEG-TS, 4 s.
var clip = mediatest.Clip{Name: "small", File: "small.ts", Seconds: 4,
	Video: "testsrc=size=320x240:rate=25", Audio: "sine=frequency=440:sample_rate=48000",
	Args: []string{"-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-bf", "2", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-b:a", "64k", "-f", "mpegts"}}

// source is the clip and its decoded frames, made once for all tests.
var source struct {
	once sync.Once
	dir  string
	path string
	v    []string // framemd5 of the video
	err  error
}

func sourceClip(t *testing.T) (string, []string) {
	t.Helper()
	mediatest.RequireFFmpeg(t)
	source.once.Do(func() {
		source.dir, source.err = os.MkdirTemp("", "playerd-clip")
		if source.err == nil {
			source.path, source.err = clip.Generate(source.dir)
		}
		if source.err == nil {
			source.v = mediatest.FrameMD5(t, source.path, "v")
		}
	})
	if source.err != nil {
		t.Fatal(source.err)
	}
	return source.path, source.v
}

func TestMain(m *testing.M) {
	code := m.Run()
	if source.dir != "" {
		os.RemoveAll(source.dir)
	}
	os.Exit(code)
}

// ---- the transfer daemon, faked -------------------------------------------------------

// backend is a local.Backend standing in for the transfer daemon, over a
// real store.
type backend struct {
	mu       sync.Mutex
	calls    []string
	status   local.Status
	box      api.BoxID
	code     string // the activation code the head-end takes
	catalog  []api.CatalogItem
	list     api.PriorityList
	progress map[media.ID]local.Progress
	pass     func(api.PassRequest) api.PassResponse
	key      func(raw []byte) api.KeyResponse
	change   uint64
	changed  chan struct{}
}

func (b *backend) record(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, fmt.Sprintf(format, args...))
}

func (b *backend) Calls() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

func (b *backend) bump() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.change++
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *backend) Status(context.Context) (local.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.status, nil
}

func (b *backend) Activate(_ context.Context, code string) error {
	b.record("Activate %s", code)
	b.mu.Lock()
	if code != b.code {
		b.status.Error = "unknown activation code"
		b.mu.Unlock()
		b.bump()
		return fmt.Errorf("unknown activation code: %w", local.ErrRefused)
	}
	b.status = local.Status{Box: b.box, Activated: true, Connected: true, StoreSocket: b.status.StoreSocket}
	b.mu.Unlock()
	b.bump()
	return nil
}

func (b *backend) Catalog(context.Context) ([]api.CatalogItem, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.catalog), nil
}

func (b *backend) List(context.Context) (api.PriorityList, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return api.PriorityList{Titles: slices.Clone(b.list.Titles), Version: b.list.Version}, nil
}

func (b *backend) SetList(_ context.Context, titles []media.ID) (api.PriorityList, error) {
	b.record("SetList %d", len(titles))
	b.mu.Lock()
	b.list = api.PriorityList{Titles: slices.Clone(titles), Version: b.list.Version + 1}
	pl := b.list
	b.mu.Unlock()
	b.bump()
	return pl, nil
}

func (b *backend) Progress(_ context.Context, titles []media.ID) (map[media.ID]local.Progress, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[media.ID]local.Progress{}
	for _, id := range titles {
		out[id] = b.progress[id]
	}
	return out, nil
}

func (b *backend) Pass(_ context.Context, req api.PassRequest) (api.PassResponse, error) {
	b.record("Pass %s confirm=%v price=%q", req.Title, req.Confirm, req.Price)
	b.mu.Lock()
	f := b.pass
	b.mu.Unlock()
	if f == nil {
		return api.PassResponse{}, fmt.Errorf("no pass answer set: %w", local.ErrNotConnected)
	}
	return f(req), nil
}

func (b *backend) Key(_ context.Context, raw []byte) (api.KeyResponse, error) {
	b.record("Key")
	b.mu.Lock()
	f := b.key
	b.mu.Unlock()
	if f == nil {
		return api.KeyResponse{}, fmt.Errorf("no key answer set: %w", local.ErrNotConnected)
	}
	return f(raw), nil
}

func (b *backend) Changes(ctx context.Context, since uint64) (uint64, error) {
	for {
		b.mu.Lock()
		n, ch := b.change, b.changed
		b.mu.Unlock()
		if n != since {
			return n, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// ---- the TV's devices, faked ----------------------------------------------------------

// screen is an in-memory display keeping the last frame.
type screen struct {
	mu     sync.Mutex
	last   *image.RGBA
	shows  int
	opens  int
	closes int
	open   bool
	fail   int // opens to fail first, as with a driver not bound yet
}

func (s *screen) opener(context.Context) (display.Display, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open {
		return nil, errors.New("fake display opened twice")
	}
	if s.fail > 0 {
		s.fail--
		return nil, fmt.Errorf("fake display: %w", display.ErrNoDisplay)
	}
	s.opens++
	s.open = true
	return s, nil
}

func (s *screen) Size() image.Point { return image.Pt(640, 360) }

func (s *screen) Show(img *image.RGBA) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.open {
		return errors.New("show on a closed display")
	}
	s.last = image.NewRGBA(img.Bounds())
	copy(s.last.Pix, img.Pix)
	s.shows++
	return nil
}

func (s *screen) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closes++
	s.open = false
	return nil
}

func (s *screen) counts() (opens, closes, shows int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opens, s.closes, s.shows
}

// keypad is a remote whose keys the test sends.
type keypad chan remote.Key

func (k keypad) ReadKey(ctx context.Context) (remote.Key, error) {
	select {
	case key := <-k:
		return key, nil
	case <-ctx.Done():
		return remote.None, ctx.Err()
	}
}

// ---- the whole box ---------------------------------------------------------------------

// env is a box for the player daemon: a fake transfer daemon serving the
// local API over a real store, a display, a remote, and the head-end's
// pass issuer and key wrapping.
type env struct {
	t        *testing.T
	dir      string
	be       *backend
	st       *store.Store
	mediaKey ed25519.PrivateKey
	keyDir   keys.Dir
	boxPub   ed25519.PublicKey
	identity string // the box's PEM key file
	issuer   *pass.Issuer
	screen   *screen
	keys     keypad
	report   string // framemd5 report of the decoder
	d        *Daemon
	hooked   chan *keys.Secret
	runErr   chan error
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), screen: &screen{}, keys: make(keypad, 64), hooked: make(chan *keys.Secret, 8)}
	_, e.mediaKey, _ = ed25519.GenerateKey(nil)
	e.keyDir = keys.Dir(filepath.Join(e.dir, "content-keys"))
	pub, priv, _ := ed25519.GenerateKey(nil)
	e.boxPub = pub
	pemKey, err := firmware.MarshalPrivateKeyPEM(priv)
	must(t, err)
	e.identity = filepath.Join(e.dir, "box.key")
	must(t, os.WriteFile(e.identity, pemKey, 0o600))
	_, issuerKey, _ := ed25519.GenerateKey(nil)
	e.issuer, err = pass.NewIssuer(issuerKey, nil, 0)
	must(t, err)

	e.st, err = store.Open(filepath.Join(e.dir, "store"), store.Options{MediaKeys: []ed25519.PublicKey{e.mediaPub()}, Capacity: 1 << 30})
	must(t, err)
	t.Cleanup(func() { e.st.Close() })
	storeSock := filepath.Join(e.dir, "run", "store.sock")
	sl, err := local.Listen(storeSock)
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() { store.Serve(ctx, sl, e.st) })

	e.be = &backend{changed: make(chan struct{}), change: 1, box: api.BoxID{0xb0, 0x0c}, code: "AAAA-BBBB-CCCC-DDDD",
		status: local.Status{NeedsCode: true, StoreSocket: storeSock}, progress: map[media.ID]local.Progress{}}
	ll, err := local.Listen(filepath.Join(e.dir, "run", "transferd.sock"))
	must(t, err)
	wg.Go(func() {
		if err := local.NewServer(e.be, local.ServerOptions{PollWait: time.Second}).Serve(ctx, ll); err != nil {
			t.Errorf("local API: %v", err)
		}
	})
	e.report = filepath.Join(e.dir, "frames.md5")
	return e
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) mediaPub() ed25519.PublicKey { return e.mediaKey.Public().(ed25519.PublicKey) }

func (e *env) socket() string { return filepath.Join(e.dir, "run", "transferd.sock") }

// importTitle puts the clip into the store as a new title and returns it.
func (e *env) importTitle(src string) *media.Manifest {
	e.t.Helper()
	out := filepath.Join(e.dir, "packages")
	m, err := importer.ImportFile(context.Background(), src, importer.Options{Out: out, MediaKey: e.mediaKey, Keys: e.keyDir}, nil)
	must(e.t, err)
	must(e.t, e.st.ImportPackage(context.Background(), filepath.Join(out, m.ID.String())))
	return m
}

// options are the daemon's options for the env, unpaced.
func (e *env) options() Options {
	lvl := slog.LevelWarn
	if testing.Verbose() {
		lvl = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(testWriter{e.t}, &slog.HandlerOptions{Level: lvl}))
	return Options{
		Local:        e.socket(),
		MediaKeys:    []ed25519.PublicKey{e.mediaPub()},
		Identity:     PEMIdentity(e.identity),
		Decoder:      FFmpeg{Video: []string{"-f", "null", "-"}, Report: e.report}.Decoder(log),
		OpenDisplay:  e.screen.opener,
		OpenRemote:   func(context.Context) (remote.Reader, error) { return e.keys, nil },
		TV:           tv.Config{SignupURL: "tv.example.net"},
		Unpaced:      true,
		RenderEvery:  5 * time.Millisecond,
		RefreshEvery: 10 * time.Millisecond,
		DeviceWait:   time.Second,
		Log:          log,
	}
}

// start runs the daemon with o.
func (e *env) start(o Options) {
	e.t.Helper()
	d, err := New(o)
	must(e.t, err)
	d.keyHook = func(_ media.ID, s *keys.Secret) { e.hooked <- s }
	e.d = d
	ctx, cancel := context.WithCancel(context.Background())
	e.runErr = make(chan error, 1)
	go func() { e.runErr <- d.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		select {
		case err := <-e.runErr:
			if err != nil {
				e.t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			e.t.Error("Run did not return 10 s after its context ended")
		}
	})
}

// press sends keys from the remote.
func (e *env) press(keys ...remote.Key) {
	for _, k := range keys {
		e.keys <- k
	}
}

// typeText presses the key of each character.
func (e *env) typeText(s string) {
	for _, r := range s {
		if r != '-' {
			e.press(remote.Char(r))
		}
	}
}

// waitFor waits until the snapshot satisfies cond.
func (e *env) waitFor(what string, cond func(Snapshot) bool) Snapshot {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := e.d.Snapshot()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("waiting for %s: the TV shows %s: %+v", what, s.Screen, s.View)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitScreen waits for a screen whose view satisfies cond.
func waitScreen[V any](e *env, what string, screen tv.Screen, cond func(V) bool) V {
	e.t.Helper()
	s := e.waitFor(what, func(s Snapshot) bool {
		v, ok := s.View.(V)
		return s.Screen == screen && ok && (cond == nil || cond(v))
	})
	return s.View.(V)
}

// grant is a pass answer with a real pass for the box.
func (e *env) grant(title media.ID, window time.Duration) api.PassResponse {
	raw, _, err := e.issuer.Issue(pass.Grant{Box: e.be.box, BoxKey: e.boxPub, Title: title,
		NotAfter: time.Now().Add(window), Account: "alice"})
	must(e.t, err)
	return api.PassResponse{Title: title, Pass: raw}
}

// release is a key answer with the title's content key wrapped to the
// box.
func (e *env) release(raw []byte) api.KeyResponse {
	p, err := pass.Parse(raw)
	if err != nil {
		return api.KeyResponse{Reason: "malformed-pass: The media pass is damaged."}
	}
	s, err := e.keyDir.ContentKey(context.Background(), p.Title)
	must(e.t, err)
	defer s.Destroy()
	w, err := keywrap.Wrap(e.boxPub, keywrap.Header{Title: p.Title, Box: p.Box, Expires: time.Now().Add(time.Hour)}, s.Bytes())
	must(e.t, err)
	return api.KeyResponse{Title: p.Title, WrappedKey: w}
}

// nextKey returns the next content key a playback got.
func (e *env) nextKey() *keys.Secret {
	e.t.Helper()
	select {
	case s := <-e.hooked:
		return s
	case <-time.After(15 * time.Second):
		e.t.Fatal("no content key reached the player")
		return nil
	}
}

// readReport returns the decoder's framemd5 report.
func (e *env) readReport() []string {
	e.t.Helper()
	b, err := os.ReadFile(e.report)
	must(e.t, err)
	return mediatest.ParseFrameMD5(string(b))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

var _ io.Writer = testWriter{}
