package daemon

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/board/identity"
	"github.com/boxswarm/boxswarm/board/remote"
	"github.com/boxswarm/boxswarm/headend/pass"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/keys"
	"github.com/boxswarm/boxswarm/media/keywrap"
	"github.com/boxswarm/boxswarm/media/store"
	"github.com/boxswarm/boxswarm/player"
	"github.com/boxswarm/boxswarm/player/sink"
	"github.com/boxswarm/boxswarm/player/tv"
)

// Errors of the steps between a pass and playback, for explain.
var (
	errIdentity = errors.New("identity key")
	errUnwrap   = errors.New("unwrap content key")
	errStore    = errors.New("media store")
	errKeyGone  = errors.New("content key destroyed: playback stopped")
)

// reqKind is why the daemon asks for a pass.
type reqKind int

const (
	// reqQuery: OK on a title with no known rental: the price, or a pass
	// if the viewer has a rental after all.
	reqQuery reqKind = iota
	// reqPlay: the interface's Play, for a title with a known rental.
	reqPlay
	// reqBuy: the interface's Buy: a confirmed price.
	reqBuy
)

func (k reqKind) String() string { return [...]string{"query", "play", "buy"}[k] }

// request is a pass (and key) request under way. One at a time.
type request struct {
	title  media.ID
	name   string
	kind   reqKind
	cancel context.CancelFunc
}

// keyResult is what asking for a pass and its key came to.
type keyResult struct {
	resp      api.PassResponse // the last pass answer
	pass      *pass.Pass       // the granted pass, parsed
	keyReason string           // the key vault's refusal, for the viewer
	secret    *keys.Secret
	hdr       keywrap.Header
	store     *store.Client
	err       error
}

// startRequest asks for a pass for the title, and if one is granted for
// its key, in a goroutine; keyAnswer takes the outcome.
func (d *Daemon) startRequest(id media.ID, name string, kind reqKind, price string) {
	if d.req != nil {
		d.req.cancel()
	}
	ctx, cancel := context.WithCancel(d.ctx)
	r := &request{title: id, name: name, kind: kind, cancel: cancel}
	d.req = r
	d.log.Info("asking for a media pass", "title", id, "kind", kind, "price", price)
	d.wg.Go(func() {
		res := d.fetchKey(ctx, r, price)
		handOver(d.ctx, d, func() { d.keyAnswer(r, res) }, func() { d.drop(res) })
	})
}

// fetchKey asks for the pass, then the key, and unwraps it.
func (d *Daemon) fetchKey(ctx context.Context, r *request, price string) keyResult {
	var res keyResult
	req := api.PassRequest{Title: r.title}
	if r.kind == reqBuy {
		req.Confirm, req.Price = true, price
	}
	res.resp, res.err = d.c.Pass(ctx, req)
	if res.err != nil || len(res.resp.Pass) == 0 {
		return res
	}
	res.pass = parsePass(d, res.resp.Pass)
	// The box's ID and the store's socket, as of now.
	st, err := d.c.Status(ctx)
	if err != nil {
		res.err = err
		return res
	}
	if st.StoreSocket == "" {
		res.err = fmt.Errorf("%w: the transfer daemon serves no store socket", errStore)
		return res
	}
	// The store first: a key fetched for a title that cannot be read
	// would spend the pass for nothing.
	sc, err := store.Dial(ctx, st.StoreSocket, d.o.MediaKeys...)
	if err != nil {
		res.err = fmt.Errorf("%w: %w", errStore, err)
		return res
	}
	var kr api.KeyResponse
	for attempt := 0; ; attempt++ {
		kr, err = d.c.Key(ctx, res.resp.Pass)
		if err != nil {
			sc.Close()
			res.err = err
			return res
		}
		if len(kr.WrappedKey) > 0 {
			break
		}
		outcome, reason := splitOutcome(kr.Reason)
		d.log.Info("key refused by the vault", "title", r.title, "outcome", outcome, "reason", reason)
		if attempt == 0 && retryWithNewPass[outcome] {
			// The pass went stale or was spent: the same purchase gets a
			// new one, free of charge.
			again, err := d.c.Pass(ctx, api.PassRequest{Title: r.title})
			if err == nil && len(again.Pass) > 0 {
				res.resp, res.pass = again, parsePass(d, again.Pass)
				continue
			}
		}
		sc.Close()
		res.keyReason = reason
		return res
	}
	id, err := d.o.Identity(ctx)
	if err != nil {
		sc.Close()
		res.err = fmt.Errorf("%w: %w", errIdentity, err)
		return res
	}
	res.secret, res.hdr, err = keywrap.Unwrap(id.PrivateKey(), st.Box, r.title, kr.WrappedKey, d.o.Now())
	if cerr := id.Close(); cerr != nil {
		d.log.Warn("close identity key", "err", cerr)
	}
	if err != nil {
		sc.Close()
		res.err = fmt.Errorf("%w: %w", errUnwrap, err)
		return res
	}
	res.store = sc
	return res
}

// retryWithNewPass lists the key vault's refusals that a new pass cures.
var retryWithNewPass = map[string]bool{"replayed": true, "expired": true, "no-pass": true, "malformed-pass": true}

// parsePass reads a granted pass for its play window. The daemon does
// not check the signature (it has no issuer keys; the vault does): it
// only learns how long the rental lasts, for the TV.
func parsePass(d *Daemon, raw []byte) *pass.Pass {
	p, err := pass.Parse(raw)
	if err != nil {
		d.log.Warn("media pass unreadable: rental time left unknown", "err", err)
		return nil
	}
	return p
}

// splitOutcome splits the key vault's reason "outcome: sentence".
func splitOutcome(reason string) (outcome, sentence string) {
	code, rest, ok := strings.Cut(reason, ": ")
	if !ok || code == "" || strings.IndexFunc(code, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r == '-') }) >= 0 {
		return "", reason
	}
	return code, rest
}

// keyAnswer takes the outcome of a request in the loop.
func (d *Daemon) keyAnswer(r *request, res keyResult) {
	if d.req != r {
		// Cancelled (Stop while asking), or replaced.
		d.drop(res)
		return
	}
	d.req = nil
	r.cancel()
	now := d.o.Now()
	if res.pass != nil {
		d.windows[r.title] = res.pass.NotAfter
	}
	switch {
	case res.err != nil:
		d.log.Warn("no key for the title", "title", r.title, "kind", r.kind, "err", res.err)
		d.drop(res)
		if errors.Is(res.err, identity.ErrNeedsReactivation) {
			d.showService("This box must be activated again.", res.err.Error())
			return
		}
		d.setData()
		d.refused(r, d.explain(res.err))
	case res.secret != nil:
		d.log.Info("content key unwrapped", "title", r.title, "key_expires", res.hdr.Expires)
		d.setData()
		d.beginPlayback(r, res)
	case len(res.resp.Pass) == 0 && res.resp.Price != "":
		o, ok := parseOffer(res.resp, now)
		delete(d.windows, r.title)
		if !ok {
			d.log.Warn("price from the head-end not understood", "title", r.title, "price", res.resp.Price)
			d.setData()
			d.refused(r, res.resp.Reason)
			return
		}
		d.offers[r.title] = o
		d.setData()
		d.openPurchase(r, res.resp.Reason)
	case res.keyReason != "":
		d.setData()
		d.refused(r, res.keyReason)
	default:
		delete(d.windows, r.title)
		d.setData()
		reason := res.resp.Reason
		if reason == "" {
			reason = "The service did not allow this title to be played."
		}
		d.log.Info("media pass refused", "title", r.title, "reason", reason)
		d.refused(r, reason)
	}
}

// drop lets go of what a result holds.
func (d *Daemon) drop(res keyResult) {
	if res.secret != nil {
		res.secret.Destroy()
	}
	if res.store != nil {
		res.store.Close()
	}
}

// refused shows why a request came to nothing, where the viewer is.
func (d *Daemon) refused(r *request, msg string) {
	switch r.kind {
	case reqBuy:
		d.app.PurchaseFailed(msg)
	case reqPlay:
		d.app.SetPlayback(tv.Playback{Ended: true})
		d.app.Notify(msg)
	default:
		d.app.Notify(msg)
	}
}

// openPurchase shows the purchase screen for the title with the price
// just learned. The interface opens it itself on OK for a downloaded
// title without a rental, with the price the daemon gave it in Data; it
// has no call to open it from outside, so the daemon goes back to My
// List and presses OK for the viewer, on the same title.
func (d *Daemon) openPurchase(r *request, reason string) {
	switch d.app.Screen() {
	case tv.ScreenPurchase:
		d.app.PurchaseFailed(reason) // not busy any more, so Back works
		d.app.HandleKey(remote.Back)
	case tv.ScreenPlayback:
		d.app.SetPlayback(tv.Playback{Ended: true})
	}
	if v, ok := d.app.View().(tv.MyListView); ok && len(v.Items) > 0 && v.Items[v.Selected].ID == r.title.String() {
		d.app.HandleKey(remote.OK)
	}
	if d.app.Screen() != tv.ScreenPurchase {
		d.app.Notify(reason)
		return
	}
	if r.kind == reqBuy || r.kind == reqPlay {
		// The viewer confirmed another price, or thought the rental was
		// still on: say why they are asked (again).
		d.app.PurchaseFailed(reason)
	}
}

var priceRE = regexp.MustCompile(`^(-?)([0-9]{1,15})\.([0-9]{2}) ([A-Z]{3})$`)

// parseOffer reads the head-end's price ("3.99 EUR", customers.Money's
// form) and what it offers: a rental for its window, or a purchase.
func parseOffer(resp api.PassResponse, now time.Time) (offer, bool) {
	m := priceRE.FindStringSubmatch(resp.Price)
	if m == nil {
		return offer{}, false
	}
	units, _ := strconv.ParseInt(m[2], 10, 64)
	cents, _ := strconv.ParseInt(m[3], 10, 64)
	amount := units*100 + cents
	if m[1] == "-" {
		amount = -amount
	}
	o := offer{raw: resp.Price, price: tv.Price{Amount: amount, Currency: m[4]}, at: now,
		buy: resp.Offer == api.OfferBuy}
	if !o.buy {
		o.window = time.Duration(resp.WindowSeconds) * time.Second
	}
	return o, true
}

// formatPrice writes a price as the head-end does (customers.Money).
func formatPrice(p tv.Price) string {
	sign, a := "", p.Amount
	if a < 0 {
		sign, a = "-", -a
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, a/100, a%100, p.Currency)
}

// ---- playback -----------------------------------------------------------------------

// session is one playback.
type session struct {
	title       media.ID
	name        string
	key         *heldKey
	player      *player.Player
	cancel      context.CancelFunc // the player's context
	scancel     context.CancelFunc // the decoder's
	started     atomic.Bool        // the decoder has its stream
	done        chan struct{}      // Play returned
	expiry      *time.Timer
	stopping    bool      // loop only
	notice      string    // loop only: what to tell the viewer at the end
	lastControl time.Time // loop only: the last trick-play key
}

// beginPlayback plays the title with the key just unwrapped.
func (d *Daemon) beginPlayback(r *request, res keyResult) {
	if d.sess != nil {
		d.sess.stop(d, "")
	}
	pctx, cancel := context.WithCancel(d.ctx)
	sctx, scancel := context.WithCancel(d.ctx)
	s := &session{title: r.title, name: r.name, key: &heldKey{s: res.secret, title: r.title},
		cancel: cancel, scancel: scancel, done: make(chan struct{})}
	if d.keyHook != nil {
		d.keyHook(r.title, res.secret)
	}
	s.player = player.New(res.store, player.Options{MediaKeys: d.o.MediaKeys, Keys: s.key, Log: d.log, Paced: !d.o.Unpaced})
	d.sess = s
	var length time.Duration
	for _, it := range d.catalog {
		if it.Title == r.title {
			length = time.Duration(it.Minutes) * time.Minute
		}
	}
	d.app.SetPlayback(tv.Playback{Title: r.title.String(), Name: r.name, Speed: 1, Duration: length})
	// The key's expiry ends playback even mid-title.
	s.expiry = time.AfterFunc(time.Until(res.hdr.Expires), func() {
		d.post(d.ctx, func() {
			if d.sess == s {
				d.log.Info("content key expired: playback stopped", "title", r.title)
				s.stop(d, "Your rental of “"+r.name+"” has ended.")
			}
		})
	})
	d.wg.Go(func() {
		err := func() error {
			dec, err := d.o.Decoder(sctx)
			if err != nil {
				return fmt.Errorf("decoder: %w", err)
			}
			return s.player.Play(pctx, r.title, &keyedSink{Sink: dec, s: s, d: d}, player.From{Resume: true})
		}()
		s.key.release()
		res.store.Close()
		close(s.done)
		d.post(d.ctx, func() { d.playbackEnded(s, err) })
	})
}

// playbackEnded takes the end of a playback in the loop.
func (d *Daemon) playbackEnded(s *session, err error) {
	s.key.release()
	s.expiry.Stop()
	s.cancel()
	s.scancel()
	if d.sess != s {
		return
	}
	d.sess = nil
	d.played++
	msg := s.notice
	var fe *player.FrameError
	switch {
	case err == nil:
		d.log.Info("playback over: end of title", "title", s.title)
	case s.stopping || errors.Is(err, player.ErrStopped):
		d.log.Info("playback stopped", "title", s.title)
	case errors.As(err, &fe):
		d.log.Error("playback stopped on a bad frame", "title", s.title, "err", err)
		msg = "Playback stopped: part of “" + s.name + "” on this box is damaged."
	default:
		d.log.Error("playback failed", "title", s.title, "err", err)
		msg = "Playback of “" + s.name + "” stopped: " + d.explain(err)
	}
	d.app.SetPlayback(tv.Playback{Ended: true})
	if msg != "" {
		d.app.Notify(msg)
	}
	d.setData()
}

// stop ends the playback: the key is destroyed at once (or as soon as the
// player lets go of it), and the player is stopped, then hurried.
func (s *session) stop(d *Daemon, notice string) {
	if s.stopping {
		return
	}
	s.stopping, s.notice = true, notice
	s.player.Stop()
	s.key.destroy()
	// The player sees Stop between frames. One waiting for a piece that
	// is still arriving sees only its context; a decoder that no longer
	// reads is killed.
	time.AfterFunc(time.Second, s.cancel)
	time.AfterFunc(4*time.Second, s.scancel)
	if notice != "" {
		d.app.SetPlayback(tv.Playback{Ended: true})
		d.app.Notify(notice)
	}
}

// wait waits up to t for Play to return.
func (s *session) wait(t time.Duration) {
	select {
	case <-s.done:
	case <-time.After(t):
	}
}

// controlSettle is how long after a trick-play key the interface keeps
// what the key set (speed, position) rather than the player's report,
// which may not include the command yet: a report from just before it
// would undo the key on screen, and the next key would then be taken
// from the wrong state (Play/Pause pausing twice).
const controlSettle = time.Second

// control passes a trick-play action to the player.
func (s *session) control(a tv.Action) {
	s.lastControl = time.Now()
	switch a := a.(type) {
	case tv.SetSpeed:
		switch a.Speed {
		case 0:
			s.player.Pause()
		case 1:
			s.player.Resume()
			s.player.SetSpeed(1)
		default:
			s.player.Resume()
			s.player.SetSpeed(a.Speed)
		}
	case tv.Seek:
		s.player.Seek(a.To)
	}
}

// report gives the interface the player's state.
func (s *session) report(d *Daemon) {
	if s.stopping || time.Since(s.lastControl) < controlSettle {
		return
	}
	st := s.player.Status()
	if st.Title != s.title || st.State == player.Stopped {
		return
	}
	speed := st.Speed
	if st.State == player.Paused {
		speed = 0
	}
	d.app.SetPlayback(tv.Playback{Title: s.title.String(), Name: s.name, Speed: speed, Position: st.Position, Duration: st.Duration})
}

// keyedSink tells the session when the decoder starts: the player has
// made its frame cipher by then and no longer reads the key's bytes.
type keyedSink struct {
	sink.Sink
	s *session
	d *Daemon
}

func (k *keyedSink) Start(ctx context.Context, tracks []media.Track) error {
	if err := k.s.key.started(); err != nil {
		return err
	}
	if err := k.Sink.Start(ctx, tracks); err != nil {
		return err
	}
	k.s.started.Store(true)
	k.d.post(k.d.ctx, func() {}) // the loop lets go of the screen now
	return nil
}

// heldKey is a playback's content key: the player's keys.Source, and the
// one place that destroys it. keys.Secret.Destroy unmaps the memory, so
// it must not run while the player reads the bytes (between ContentKey
// and the decoder's Start): a destroy asked for then waits for Start.
type heldKey struct {
	mu    sync.Mutex
	s     *keys.Secret
	title media.ID
	lent  bool // the player may be reading the bytes
	gone  bool // destroyed, or to be once the player lets go
}

var _ keys.Source = (*heldKey)(nil)

func (h *heldKey) ContentKey(_ context.Context, id media.ID) (*keys.Secret, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.gone:
		return nil, errKeyGone
	case id != h.title:
		return nil, fmt.Errorf("content key for title %s asked for title %s: %w", h.title, id, keys.ErrNoKey)
	}
	h.lent = true
	return h.s, nil
}

// started: the player let go of the bytes.
func (h *heldKey) started() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lent = false
	if h.gone {
		h.s.Destroy()
		return errKeyGone
	}
	return nil
}

// destroy destroys the key now, or as soon as the player lets go.
func (h *heldKey) destroy() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gone = true
	if !h.lent {
		h.s.Destroy()
	}
}

// release destroys the key once Play has returned.
func (h *heldKey) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gone, h.lent = true, false
	h.s.Destroy()
}
