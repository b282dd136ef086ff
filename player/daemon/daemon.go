// Package daemon is the box's player daemon: it owns the content keys,
// playback and the TV interface, and asks the transfer daemon, through
// its local API (p2p/local), for everything that needs the network or the
// store: activation, the catalog, the priority list, download progress,
// media passes and wrapped content keys. It reads the encrypted media
// from the store socket the transfer daemon names (media/store.Dial),
// opens each content key with the box's identity key (media/keywrap),
// and plays through player.Player into a decoder (by default ffmpeg on a
// pipe, see FFmpeg).
//
// One goroutine, the loop, owns the TV interface (player/tv.App) and all
// the daemon's state; remote keys, answers from the transfer daemon and
// the player's progress reach it as events. Slow work (activation, a
// pass and its key, list edits, playback) runs in goroutines of its own
// that post their outcome back, so the remote never waits for the
// head-end.
//
// What the viewer sees:
//
//   - A box that needs its activation code shows the activation screen;
//     the code goes to the transfer daemon, the head-end's refusal back to
//     the screen.
//   - My List and the Catalog follow the transfer daemon: the daemon
//     long-polls for changes and rereads the status, catalog, list and
//     progress, at most every Options.RefreshEvery. List edits on the TV
//     are sent in order, the newest winning, and shown at once.
//   - Playing a title takes a media pass, then its key. A title the box
//     holds but the viewer has no rental for (as far as the daemon knows)
//     is priced first: a pass request without confirmation, whose answer
//     (the head-end's price) the purchase screen shows. Confirming sends
//     that price back, as shown. A rental's time left is known only from
//     a pass the daemon received (its play window); the catalog has no
//     prices or rentals.
//   - Refusals (rental over, region, account suspended, payment declined,
//     the vault's) show the head-end's reason on the purchase screen or
//     in the status line.
//   - The service screen shows when the transfer daemon stays unreachable
//     for Options.ServiceAfter, and when the box's identity is gone; it
//     leaves when the transfer daemon is back.
//
// Keys: a content key lives in a keys.Secret from keywrap.Unwrap until
// playback ends, the viewer stops it, or the key's expiry passes, and is
// destroyed then, at once. (The player derives its frame cipher from the
// key before the decoder starts; a Stop that comes earlier destroys the
// key as soon as the player has let go of it.) The identity key is loaded
// for each unwrap and closed right after.
//
// The screen: the decoder draws the video itself (ffmpeg's fbdev output),
// so while a title plays at normal speed the daemon closes its display
// and shows nothing: two writers to one screen would fight, and with DRM
// the daemon's own buffer would hide the decoder's. When the viewer
// pauses or uses trick play, the daemon takes the screen back and draws
// the playback bar over black (it cannot read the decoder's picture);
// back at normal speed it lets go again. Everything else is drawn by the
// daemon, at most every Options.RenderEvery and only when the screen
// changed.
package daemon

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/board/display"
	"github.com/boxswarm/boxswarm/board/remote"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/keys"
	"github.com/boxswarm/boxswarm/p2p/local"
	"github.com/boxswarm/boxswarm/player/sink"
	"github.com/boxswarm/boxswarm/player/tv"
)

// Options configure the daemon. Local, MediaKeys and Identity are
// required.
type Options struct {
	// Local is the transfer daemon's local API socket.
	Local string
	// MediaKeys are the operator's media signing keys: the player plays
	// only manifests signed by one of them.
	MediaKeys []ed25519.PublicKey
	// Identity loads the box's identity key for unwrapping content keys.
	Identity IdentitySource
	// Decoder makes the sink for one playback; ctx bounds the decoder's
	// life. Default: FFmpeg{}.Decoder, ffmpeg to /dev/fb0.
	Decoder func(ctx context.Context) (sink.Sink, error)
	// OpenDisplay opens the screen; nil runs headless (tests, servers).
	// At start the daemon gives it until DeviceWait; an error then means
	// headless, with a retry every DisplayRetry. It is called again each
	// time the daemon takes the screen back from the decoder.
	OpenDisplay func(ctx context.Context) (display.Display, error)
	// OpenRemote opens the remote control, waiting for one until ctx
	// ends; nil means no input. A reader that fails is opened again.
	OpenRemote func(ctx context.Context) (remote.Reader, error)
	// TV configures the interface (the sign-up address on the activation
	// screen...).
	TV tv.Config
	// Contact is what the service screen tells the viewer to call.
	Contact string
	// Unpaced plays as fast as the decoder takes frames rather than in
	// real time (tests).
	Unpaced bool
	// RenderEvery is the least time between two frames drawn (default
	// 100 ms): drawing a screen is slow on a small box.
	RenderEvery time.Duration
	// RefreshEvery is the least time between two rereads of the transfer
	// daemon's state (default 500 ms); changes in between are coalesced.
	RefreshEvery time.Duration
	// ServiceAfter is how long the transfer daemon may stay unreachable
	// before the service screen shows (default 60 s).
	ServiceAfter time.Duration
	// DeviceWait is how long the start waits for the display and the
	// remote before it reports ready without them (default 10 s).
	DeviceWait time.Duration
	// DisplayRetry is how often a headless daemon tries the display again
	// (default 10 s).
	DisplayRetry time.Duration
	// Ready is called once, when the display and remote are open (or
	// given up on) and the transfer daemon answered.
	Ready func()
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	Log *slog.Logger
}

// ErrOptions is returned by New for options that are missing or wrong.
var ErrOptions = errors.New("player daemon: bad options")

func (o *Options) defaults() error {
	switch {
	case o.Local == "":
		return fmt.Errorf("%w: no local API socket", ErrOptions)
	case len(o.MediaKeys) == 0:
		return fmt.Errorf("%w: no media key", ErrOptions)
	case o.Identity == nil:
		return fmt.Errorf("%w: no identity key source", ErrOptions)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.TV.Now == nil {
		o.TV.Now = o.Now
	}
	if o.Decoder == nil {
		o.Decoder = FFmpeg{}.Decoder(o.Log.With("part", "decoder"))
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&o.RenderEvery, 100 * time.Millisecond}, {&o.RefreshEvery, 500 * time.Millisecond},
		{&o.ServiceAfter, time.Minute}, {&o.DeviceWait, 10 * time.Second}, {&o.DisplayRetry, 10 * time.Second},
	} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	return nil
}

// Snapshot is what the TV shows, as of the loop's last event.
type Snapshot struct {
	Screen tv.Screen
	// View is the screen's view (tv.MyListView, tv.PurchaseView...).
	View any
	// Shown counts the frames put on the display.
	Shown int
	// DecoderOwnsScreen is set while the decoder draws the picture and
	// the daemon keeps off the display.
	DecoderOwnsScreen bool
	// Playing is set from the start of a playback until its end.
	Playing bool
	// Played counts the playbacks that ended.
	Played int
	// Ready is set once the daemon reported ready.
	Ready bool
}

// Daemon is the player daemon. Make it with New and run it with Run.
type Daemon struct {
	o      Options
	log    *slog.Logger
	c      *local.Client
	app    *tv.App
	r      *tv.Renderer
	events chan func()
	snap   atomic.Pointer[Snapshot]
	listQ  chan []media.ID // list edits for the list writer, newest last
	// keyHook, for tests, sees every content key a playback gets.
	keyHook func(media.ID, *keys.Secret)

	// Everything below belongs to the loop.
	ctx         context.Context
	disp        display.Display
	released    bool // the display is closed for the decoder
	img         *image.RGBA
	lastView    any
	lastRender  time.Time
	renderTimer *time.Timer
	shown       int
	remoteReady bool
	ready       bool

	status    local.Status
	hadStatus bool
	catalog   []api.CatalogItem
	list      []media.ID // as the TV shows it: with edits not yet stored
	listEdits int        // edits sent but not answered
	progress  map[media.ID]local.Progress
	offers    map[media.ID]offer
	windows   map[media.ID]time.Time // the end of the play window of a pass
	dataAt    time.Time              // the last SetData

	service     bool // the service screen shows
	serviceDown bool // ... because the transfer daemon is unreachable
	req         *request
	sess        *session
	played      int
	wg          sync.WaitGroup // goroutines that post events
}

// offer is the head-end's price for playing a title, from a pass answer.
type offer struct {
	raw    string        // as the head-end wrote it: what a confirmation sends back
	price  tv.Price      // as the TV shows it
	window time.Duration // a rental's; zero for a purchase
	buy    bool
	at     time.Time
}

// offerLife is how long a price is shown without asking again.
const offerLife = 5 * time.Minute

// New checks the options and makes the daemon.
func New(o Options) (*Daemon, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	r, err := tv.NewRenderer()
	if err != nil {
		return nil, fmt.Errorf("player daemon: %w", err)
	}
	d := &Daemon{
		o: o, log: o.Log, r: r, app: tv.NewApp(o.TV),
		events:   make(chan func(), 64),
		listQ:    make(chan []media.ID, 16),
		progress: map[media.ID]local.Progress{},
		offers:   map[media.ID]offer{},
		windows:  map[media.ID]time.Time{},
	}
	d.snap.Store(&Snapshot{Screen: d.app.Screen(), View: d.app.View()})
	return d, nil
}

// Snapshot returns what the TV shows. It is safe to call from any
// goroutine.
func (d *Daemon) Snapshot() Snapshot { return *d.snap.Load() }

// Run runs the daemon until ctx ends, and returns nil then: everything
// that goes wrong meanwhile is shown on the TV, logged, and retried.
func (d *Daemon) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.ctx = ctx
	d.c = local.Dial(d.o.Local)
	defer d.c.Close()

	// The display first: nothing else can be shown until it is open or
	// given up on.
	d.openDisplayAtStart(ctx)
	d.wg.Go(func() { d.readKeys(ctx) })
	d.wg.Go(func() { d.syncLoop(ctx) })
	d.wg.Go(func() { d.listWriter(ctx) })
	d.log.Info("player daemon running", "local", d.o.Local, "headless", d.disp == nil)

	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	d.renderTimer = time.NewTimer(time.Hour)
	d.renderTimer.Stop()
	d.after()
	for {
		select {
		case f := <-d.events:
			f()
		case <-tick.C:
			d.tick()
		case <-d.renderTimer.C:
		case <-ctx.Done():
			d.shutdown()
			return nil
		}
		d.after()
	}
}

// post hands f to the loop; it gives up once the daemon stops.
func (d *Daemon) post(ctx context.Context, f func()) {
	select {
	case d.events <- f:
	case <-ctx.Done():
	}
}

// after runs after every event: it reports ready when it is time,
// draws, and publishes the snapshot.
func (d *Daemon) after() {
	if !d.ready && d.remoteReady && d.hadStatus {
		d.ready = true
		d.log.Info("player daemon ready", "headless", d.disp == nil, "box", d.status.Box)
		if d.o.Ready != nil {
			d.o.Ready()
		}
	}
	owns := d.decoderOwnsScreen() // once: the decoder's start flips it from outside
	d.render(owns)
	v := d.app.View()
	if l, ok := v.(tv.MyListView); ok {
		// The interface edits its list in place when the viewer moves an
		// item; readers of the snapshot get their own copy.
		l.Items = slices.Clone(l.Items)
		v = l
	}
	d.snap.Store(&Snapshot{Screen: d.app.Screen(), View: v, Shown: d.shown,
		DecoderOwnsScreen: owns, Playing: d.sess != nil, Played: d.played, Ready: d.ready})
}

func (d *Daemon) tick() {
	if d.sess != nil {
		d.sess.report(d)
	}
	// Rentals' time left counts down on the list.
	if d.o.Now().Sub(d.dataAt) >= 30*time.Second {
		d.setData()
	}
}

// shutdown stops playback (destroying its key) and waits for the
// goroutines.
func (d *Daemon) shutdown() {
	if d.req != nil {
		d.req.cancel()
	}
	if d.sess != nil {
		d.sess.stop(d, "")
		d.sess.wait(5 * time.Second)
		d.sess.key.release()
	}
	// Nothing reads events now: let the goroutines' posts fall through.
	go func() {
		for range d.events {
		}
	}()
	d.wg.Wait()
	if d.disp != nil {
		if err := d.disp.Close(); err != nil {
			d.log.Warn("close display", "err", err)
		}
	}
	d.log.Info("player daemon stopped")
}

// ---- remote ---------------------------------------------------------------------

// readKeys opens the remote and posts its keys, opening it again when it
// fails. The remote counts as ready once open, or after DeviceWait.
func (d *Daemon) readKeys(ctx context.Context) {
	markReady := sync.OnceFunc(func() { d.post(ctx, func() { d.remoteReady = true }) })
	if d.o.OpenRemote == nil {
		d.log.Info("no remote configured: no input")
		markReady()
		return
	}
	timer := time.AfterFunc(d.o.DeviceWait, func() {
		d.log.Warn("no remote control yet: still looking", "waited", d.o.DeviceWait)
		markReady()
	})
	defer timer.Stop()
	for wait := time.Second; ctx.Err() == nil; wait = min(2*wait, 30*time.Second) {
		r, err := d.o.OpenRemote(ctx)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("remote control", "err", err)
				sleep(ctx, wait)
			}
			continue
		}
		d.log.Info("remote control open")
		markReady()
		for {
			k, err := r.ReadKey(ctx)
			if err != nil {
				if ctx.Err() == nil {
					d.log.Warn("remote control failed: opening it again", "err", err)
				}
				break
			}
			d.post(ctx, func() { d.handleKey(k) })
		}
		if c, ok := r.(interface{ Close() error }); ok {
			c.Close()
		}
		wait = time.Second / 2
		sleep(ctx, wait)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// handleKey applies one key from the remote.
func (d *Daemon) handleKey(k remote.Key) {
	d.log.Debug("key", "key", k, "screen", d.app.Screen())
	if d.interceptKey(k) {
		return
	}
	if act := d.app.HandleKey(k); act != nil {
		d.perform(act)
	}
}

// interceptKey takes OK on a title the box holds but the viewer has no
// known rental for, when the daemon has no fresh price: it asks the
// head-end first (the answer may also be that the viewer rented it
// elsewhere), and opens the purchase screen with the price once it is
// known.
func (d *Daemon) interceptKey(k remote.Key) bool {
	if d.app.Screen() != tv.ScreenMyList || (k != remote.OK && k != remote.PlayPause) {
		return false
	}
	v, ok := d.app.View().(tv.MyListView)
	if !ok || v.Moving || len(v.Items) == 0 {
		return false
	}
	it := v.Items[v.Selected]
	if it.Download != tv.Downloaded {
		return false
	}
	if d.req != nil {
		d.app.Notify("Please wait: the box is still asking about “" + d.req.name + "”")
		return true
	}
	if it.Viewable() {
		return false
	}
	id, err := media.ParseID(it.ID)
	if err != nil {
		return false
	}
	if o, ok := d.offers[id]; ok && d.o.Now().Sub(o.at) < offerLife {
		return false
	}
	d.app.Notify("Asking the service about “" + it.Name + "”…")
	d.startRequest(id, it.Name, reqQuery, "")
	return true
}

// perform does what an action from the interface asks.
func (d *Daemon) perform(act tv.Action) {
	switch a := act.(type) {
	case tv.Activate:
		d.activate(a.Code)
	case tv.AddToList, tv.Move, tv.Remove:
		d.editList(a)
	case tv.Buy:
		id, err := media.ParseID(a.Title)
		if err != nil {
			d.app.PurchaseFailed("This title cannot be rented from here.")
			return
		}
		price := formatPrice(a.Price)
		if o, ok := d.offers[id]; ok && o.price == a.Price {
			price = o.raw // exactly as the head-end wrote it
		}
		d.startRequest(id, d.name(id), reqBuy, price)
	case tv.Play:
		id, err := media.ParseID(a.Title)
		if err != nil {
			d.app.SetPlayback(tv.Playback{Ended: true})
			return
		}
		d.startRequest(id, d.name(id), reqPlay, "")
	case tv.SetSpeed, tv.Seek:
		if d.sess != nil && !d.sess.stopping {
			d.sess.control(a)
		}
	case tv.Stop:
		switch {
		case d.sess != nil:
			d.sess.stop(d, "")
		case d.req != nil && d.req.kind == reqPlay:
			d.req.cancel()
			d.req = nil
		}
	}
}

// ---- activation -------------------------------------------------------------------

func (d *Daemon) activate(code string) {
	ctx := d.ctx
	d.wg.Go(func() {
		err := d.c.Activate(ctx, code)
		d.post(ctx, func() {
			var le *local.Error
			switch {
			case err == nil || errors.Is(err, local.ErrActivated):
				d.log.Info("activated from the TV")
				// The transfer daemon's status may have said so first, and
				// the viewer moved on.
				if d.app.Screen() == tv.ScreenActivation {
					d.app.Activated()
				}
			case errors.Is(err, local.ErrRefused) && errors.As(err, &le):
				d.log.Info("activation code refused", "err", err)
				d.app.ActivationFailed(trimSuffix(le.Message, ": "+local.ErrRefused.Error()))
			default:
				d.log.Warn("activation", "err", err)
				d.app.ActivationFailed(d.explain(err))
			}
		})
	})
}

// ---- messages -------------------------------------------------------------------------

// explain says what went wrong in words for the viewer; the details go
// to the log.
func (d *Daemon) explain(err error) string {
	switch {
	case local.IsUnavailable(err):
		return "The box's transfer service is not running. Please try again in a moment."
	case errors.Is(err, local.ErrNotConnected):
		return "The box cannot reach the service right now. Please check its network connection."
	case errors.Is(err, local.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "The service did not answer in time. Please try again."
	case errors.Is(err, local.ErrNotActivated):
		return "This box has not been activated yet."
	case errors.Is(err, local.ErrBusy):
		return "The box is busy. Please try again in a moment."
	case errors.Is(err, errIdentity):
		return "This box cannot open content keys: its identity key is not readable."
	case errors.Is(err, errUnwrap):
		return "The content key for this title could not be opened on this box."
	case errors.Is(err, errStore):
		return "The box's recordings cannot be read right now."
	}
	return "Something went wrong. Please try again."
}

func trimSuffix(s, suffix string) string {
	if len(s) > len(suffix) && s[len(s)-len(suffix):] == suffix {
		return s[:len(s)-len(suffix)]
	}
	return s
}
