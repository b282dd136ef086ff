package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/pass"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/store"
	"github.com/boxswarm/boxswarm/p2p/daemon/boxstate"
	"github.com/boxswarm/boxswarm/p2p/local"
	schedclient "github.com/boxswarm/boxswarm/scheduler-client"
)

// box is what a box (not a media server) keeps beside the transfer
// engine: the replicated catalog and priority list (boxstate), the
// relaying of media pass and key requests for the player, and the local
// API's view of it all (it implements local.Backend).
//
// Pass and key answers are matched to requests by title: the title asked
// for, and for a key the title inside the pass. Requests for the same
// title are serialized (each gets its own answer, in turn), so a price
// query and a confirmation never share one. A key answer without a title
// (the vault could not read or verify the pass) goes to the oldest key
// request waiting. An answer that arrives after its request gave up is
// taken by the next request for that title, or dropped if there is none.
type box struct {
	state       *boxstate.DB
	st          *store.Store
	storeSocket string
	log         *slog.Logger
	changes     *changes
	passes      relay[api.PassResponse]
	keys        relay[api.KeyResponse]

	mu         sync.Mutex
	id         api.BoxID
	activated  bool
	needsCode  bool
	lastErr    string
	connected  bool
	session    uint64                                           // counts sessions, so a late end does not mark a newer one down
	client     *schedclient.Client                              // nil until the session is set up
	activateFn func(context.Context, string) (api.BoxID, error) // set while a code is awaited
	codeGiven  chan struct{}                                    // closed once activateFn succeeded
	pubTimer   *time.Timer                                      // fires at the next publish time
	closed     bool

	pubMu  sync.Mutex // one schedulePublish at a time
	actMu  sync.Mutex // one activation at a time
	listMu sync.Mutex // one list edit at a time, so versions are sent in order
}

func openBox(path string, st *store.Store, storeSocket string, log *slog.Logger) (*box, error) {
	state, err := boxstate.Open(path)
	if err != nil {
		return nil, err
	}
	b := &box{state: state, st: st, storeSocket: storeSocket, log: log, changes: newChanges()}
	b.schedulePublish()
	return b, nil
}

func (b *box) close() error {
	b.mu.Lock()
	b.closed = true
	if b.pubTimer != nil {
		b.pubTimer.Stop()
	}
	b.mu.Unlock()
	return b.state.Close()
}

// schedulePublish arranges a change at the next publish time, when the
// published catalog grows without a message.
func (b *box) schedulePublish() {
	// One at a time, so a timer set from an older reading of the catalog
	// never replaces one set from a newer.
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return
	}
	now := time.Now()
	next, ok, err := b.state.NextPublish(now)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil && !b.closed {
		b.log.Warn("catalog publish times", "err", err)
	}
	if b.pubTimer != nil {
		b.pubTimer.Stop()
		b.pubTimer = nil
	}
	if !ok || b.closed {
		return
	}
	b.pubTimer = time.AfterFunc(next.Sub(now), func() {
		b.changes.bump()
		b.schedulePublish()
	})
}

// --- The daemon's side ------------------------------------------------------

// activating says the box is being activated with a configured code.
func (b *box) activating() {
	b.mu.Lock()
	b.needsCode = false
	b.mu.Unlock()
	b.changes.bump()
}

// noteIdentityLost says, in Status.Error, why the box needs a code again.
func (b *box) noteIdentityLost(why error) {
	b.mu.Lock()
	b.lastErr = "the box's identity was lost and replaced; enter a new activation code (" + why.Error() + ")"
	b.mu.Unlock()
	b.changes.bump()
}

// awaitCode waits for the local API to bring a code that activate
// accepts.
func (b *box) awaitCode(ctx context.Context, activate func(context.Context, string) (api.BoxID, error)) error {
	given := make(chan struct{})
	b.mu.Lock()
	b.needsCode, b.activateFn, b.codeGiven = true, activate, given
	b.mu.Unlock()
	b.changes.bump()
	b.log.Info("not activated: waiting for the activation code from the TV")
	select {
	case <-given:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// setClient records the session's client once the box has its identity.
func (b *box) setClient(c *schedclient.Client) {
	b.mu.Lock()
	b.client, b.id, b.activated, b.needsCode, b.activateFn = c, c.Box(), true, false, nil
	b.mu.Unlock()
	b.changes.bump()
}

// sessionUp runs when a session with the head-end comes up; ctx ends with
// it.
func (b *box) sessionUp(ctx context.Context) {
	b.mu.Lock()
	b.session++
	gen := b.session
	b.connected, b.lastErr = true, ""
	b.mu.Unlock()
	b.changes.bump()
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		if b.session == gen {
			b.connected = false
		}
		b.mu.Unlock()
		b.changes.bump()
	})
}

// sessionError records why the session with the head-end ended or could
// not start.
func (b *box) sessionError(msg string) {
	b.mu.Lock()
	// The TV knows which box it is.
	msg = strings.TrimPrefix(msg, "box "+b.id.String()+": ")
	changed := b.lastErr != msg
	b.lastErr = msg
	b.mu.Unlock()
	if changed {
		b.changes.bump()
	}
}

// handle takes the head-end's messages for the box and passes the rest
// to next (the transfer engine).
func (b *box) handle(ctx context.Context, body api.Body, next func(context.Context, api.Body) error) error {
	switch m := body.(type) {
	case api.CatalogUpdate:
		if err := b.state.ApplyCatalog(m); err != nil {
			return err
		}
		b.log.Info("catalog updated", "full", m.Full, "items", len(m.Items))
		b.changes.bump()
		b.schedulePublish()
		return nil
	case api.PriorityList:
		taken, changed, err := b.state.OfferList(m)
		if err != nil {
			return err
		}
		if !taken {
			b.log.Info("older priority list from the head-end ignored", "version", m.Version)
			return nil
		}
		if changed {
			b.log.Info("priority list from the head-end", "version", m.Version, "titles", len(m.Titles))
			b.changes.bump()
		}
		return nil
	case api.PassResponse:
		if !b.passes.answer(m.Title, m) {
			b.log.Info("media pass answer nobody waits for dropped", "title", m.Title)
		}
		return nil
	case api.KeyResponse:
		if !b.keys.answer(m.Title, m) {
			b.log.Info("key answer nobody waits for dropped", "title", m.Title)
		}
		return nil
	case api.TransferConfirmed:
		b.changes.bump()
	}
	return next(ctx, body)
}

// observeSend wraps the engine's Send: what it reports of the store's
// titles is a change of progress for the TV.
func (b *box) observeSend(send func(context.Context, api.Body) error) func(context.Context, api.Body) error {
	return func(ctx context.Context, body api.Body) error {
		err := send(ctx, body)
		if err != nil {
			return err
		}
		switch m := body.(type) {
		case api.TransferProgress:
			if len(m.Have) > 0 { // the receiver's: its store changed
				b.changes.bump()
			}
		case api.TransferSucceeded, api.TransferFailed, api.Inventory:
			b.changes.bump()
		}
		return nil
	}
}

// sessionTap passes the scheduler client's log on, and notes the errors
// that end or prevent its sessions for Status (the client reports them
// only in its log).
type sessionTap struct {
	slog.Handler
	note func(string)
}

// disconnectedMsg is the scheduler client's log message for a session
// that ended or could not start, with the error as "err".
const disconnectedMsg = "disconnected from the head-end"

func (h sessionTap) Enabled(context.Context, slog.Level) bool { return true }

func (h sessionTap) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == disconnectedMsg {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" {
				h.note(a.Value.String())
				return false
			}
			return true
		})
	}
	if !h.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h sessionTap) WithAttrs(as []slog.Attr) slog.Handler {
	return sessionTap{h.Handler.WithAttrs(as), h.note}
}

func (h sessionTap) WithGroup(name string) slog.Handler {
	return sessionTap{h.Handler.WithGroup(name), h.note}
}

// --- local.Backend ---------------------------------------------------------

var _ local.Backend = (*box)(nil)

func (b *box) Status(context.Context) (local.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return local.Status{Box: b.id, Activated: b.activated, NeedsCode: b.needsCode, Connected: b.connected,
		Error: b.lastErr, StoreSocket: b.storeSocket}, nil
}

// Activate tries a code from the TV. A refused code leaves the box
// waiting for another, with the head-end's reason in Status.Error.
func (b *box) Activate(ctx context.Context, code string) error {
	b.actMu.Lock()
	defer b.actMu.Unlock()
	b.mu.Lock()
	fn, given, activated, id := b.activateFn, b.codeGiven, b.activated, b.id
	b.mu.Unlock()
	switch {
	case activated:
		return fmt.Errorf("box %s: %w", id, local.ErrActivated)
	case fn == nil:
		return fmt.Errorf("the box waits for no code: it has a certificate or was started with a code: %w", local.ErrActivated)
	}
	id, err := fn(ctx, code)
	if err != nil {
		if ctx.Err() != nil {
			return err // the TV gave up: nothing to show
		}
		msg := err.Error()
		var kind error = local.ErrNotConnected
		var ae *activateError
		switch {
		case errors.As(err, &ae) && ae.refused:
			msg, kind = refusalReason(ae.err), local.ErrRefused
		case errors.As(err, &ae):
		default:
			kind = local.ErrInternal
		}
		b.mu.Lock()
		b.lastErr = msg
		b.mu.Unlock()
		b.changes.bump()
		b.log.Info("activation from the TV failed", "err", err)
		return fmt.Errorf("%s: %w", msg, kind)
	}
	b.mu.Lock()
	b.id, b.activated, b.needsCode, b.lastErr, b.activateFn = id, true, false, "", nil
	b.mu.Unlock()
	close(given)
	b.changes.bump()
	return nil
}

// refusalReason returns the head-end's reason out of schedclient's
// refusal ("activate at ADDR: REASON: refused by the head-end").
func refusalReason(err error) string {
	s := err.Error()
	s = strings.TrimSuffix(s, ": "+schedclient.ErrRejected.Error())
	if strings.HasPrefix(s, "activate at ") {
		if i := strings.Index(s, ": "); i >= 0 {
			s = s[i+2:]
		}
	}
	return s
}

// Catalog returns the items published by now.
func (b *box) Catalog(context.Context) ([]api.CatalogItem, error) {
	return b.state.Catalog(time.Now())
}

func (b *box) List(context.Context) (api.PriorityList, error) { return b.state.List() }

// sessionClient returns the head-end client, or ErrNotActivated.
func (b *box) sessionClient() (*schedclient.Client, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.client == nil {
		return nil, false, fmt.Errorf("no device certificate yet: %w", local.ErrNotActivated)
	}
	return b.client, b.connected, nil
}

func sendErr(what string, err error) error {
	if errors.Is(err, schedclient.ErrOutboxFull) {
		return fmt.Errorf("%s: %w: %w", what, local.ErrNotConnected, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// SetList stores the TV's edit with the version after the one held and
// sends it; one that cannot be sent is undone.
func (b *box) SetList(ctx context.Context, titles []media.ID) (api.PriorityList, error) {
	c, _, err := b.sessionClient()
	if err != nil {
		return api.PriorityList{}, err
	}
	b.listMu.Lock()
	defer b.listMu.Unlock()
	pl, was, err := b.state.EditList(titles)
	if errors.Is(err, boxstate.ErrInvalid) {
		return api.PriorityList{}, fmt.Errorf("%w: %w", local.ErrBadRequest, err)
	}
	if err != nil {
		return api.PriorityList{}, err
	}
	if err := c.Send(ctx, pl); err != nil {
		if uerr := b.state.UndoEdit(pl, was); uerr != nil {
			b.log.Warn("list edit not sent and not undone", "version", pl.Version, "err", uerr)
		}
		return api.PriorityList{}, sendErr(fmt.Sprintf("send list version %d", pl.Version), err)
	}
	b.log.Info("priority list edited on the TV", "version", pl.Version, "titles", len(pl.Titles))
	b.changes.bump()
	return pl, nil
}

func (b *box) Progress(_ context.Context, titles []media.ID) (map[media.ID]local.Progress, error) {
	out := make(map[media.ID]local.Progress, len(titles))
	for _, id := range titles {
		have, err := b.st.Have(id)
		switch {
		case errors.Is(err, store.ErrUnknownTitle):
			out[id] = local.Progress{}
		case err != nil:
			return nil, err
		default:
			out[id] = local.Progress{Complete: have.Complete(), Have: have.Count(), Pieces: have.Len()}
		}
	}
	return out, nil
}

// Pass sends the request and waits for the answer for its title. It
// refuses at once while the session is down rather than leave a request
// (perhaps a confirmed purchase) to go out when nobody waits any more.
func (b *box) Pass(ctx context.Context, req api.PassRequest) (api.PassResponse, error) {
	c, up, err := b.sessionClient()
	if err != nil {
		return api.PassResponse{}, err
	}
	if !up {
		return api.PassResponse{}, fmt.Errorf("pass for title %s: %w", req.Title, local.ErrNotConnected)
	}
	return b.passes.do(ctx, req.Title, func() error {
		if err := c.Send(ctx, req); err != nil {
			return sendErr(fmt.Sprintf("pass for title %s", req.Title), err)
		}
		return nil
	})
}

// Key checks that raw is a media pass for this box, sends it to the key
// vault and waits for the answer for the pass's title.
func (b *box) Key(ctx context.Context, raw []byte) (api.KeyResponse, error) {
	p, err := pass.Parse(raw)
	if err != nil {
		return api.KeyResponse{}, fmt.Errorf("%w: %w", local.ErrBadRequest, err)
	}
	c, up, err := b.sessionClient()
	if err != nil {
		return api.KeyResponse{}, err
	}
	if p.Box != c.Box() {
		return api.KeyResponse{}, fmt.Errorf("media pass %s is for box %s, this is box %s: %w", p.ID, p.Box, c.Box(), local.ErrBadRequest)
	}
	if !up {
		return api.KeyResponse{}, fmt.Errorf("key for title %s: %w", p.Title, local.ErrNotConnected)
	}
	return b.keys.do(ctx, p.Title, func() error {
		if err := c.Send(ctx, api.KeyRequest{Pass: raw}); err != nil {
			return sendErr(fmt.Sprintf("key for title %s", p.Title), err)
		}
		return nil
	})
}

func (b *box) Changes(ctx context.Context, since uint64) (uint64, error) {
	return b.changes.wait(ctx, since)
}

// --- Change numbers ---------------------------------------------------------

// changes counts changes the TV should see. It starts from the clock
// (microseconds), so a number from before a restart is below any after it
// and answers at once.
type changes struct {
	mu sync.Mutex
	n  uint64
	ch chan struct{} // closed at the next change
}

func newChanges() *changes {
	return &changes{n: uint64(time.Now().UnixMicro()), ch: make(chan struct{})}
}

func (c *changes) bump() {
	c.mu.Lock()
	c.n++
	close(c.ch)
	c.ch = make(chan struct{})
	c.mu.Unlock()
}

// wait returns the current number once it is not since.
func (c *changes) wait(ctx context.Context, since uint64) (uint64, error) {
	for {
		c.mu.Lock()
		n, ch := c.n, c.ch
		c.mu.Unlock()
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

// --- Matching answers to requests -------------------------------------------

// relay matches the head-end's answers to requests by title, one request
// per title at a time.
type relay[T any] struct {
	mu      sync.Mutex
	turns   map[media.ID]*turn
	waiting []*waiter[T] // in the order sent
}

type turn struct {
	token chan struct{} // holds a value while a request for the title is out
	refs  int
}

type waiter[T any] struct {
	title media.ID
	ch    chan T
}

// do waits for the title's turn, sends, and waits for the answer.
func (r *relay[T]) do(ctx context.Context, title media.ID, send func() error) (T, error) {
	var zero T
	r.mu.Lock()
	if r.turns == nil {
		r.turns = make(map[media.ID]*turn)
	}
	t := r.turns[title]
	if t == nil {
		t = &turn{token: make(chan struct{}, 1)}
		r.turns[title] = t
	}
	t.refs++
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		if t.refs--; t.refs == 0 {
			delete(r.turns, title)
		}
		r.mu.Unlock()
	}()
	select {
	case t.token <- struct{}{}:
	case <-ctx.Done():
		return zero, fmt.Errorf("title %s: waiting for an earlier request: %w", title, ctx.Err())
	}
	defer func() { <-t.token }()

	w := &waiter[T]{title: title, ch: make(chan T, 1)}
	r.mu.Lock()
	r.waiting = append(r.waiting, w)
	r.mu.Unlock()
	defer r.remove(w)
	if err := send(); err != nil {
		return zero, err
	}
	select {
	case v := <-w.ch:
		return v, nil
	case <-ctx.Done():
		return zero, fmt.Errorf("title %s: waiting for the head-end: %w", title, ctx.Err())
	}
}

func (r *relay[T]) remove(w *waiter[T]) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, x := range r.waiting {
		if x == w {
			r.waiting = slices.Delete(r.waiting, i, i+1)
			return
		}
	}
}

// answer hands v to the request waiting for title, or for the zero
// title to the oldest request waiting, and reports whether one was.
func (r *relay[T]) answer(title media.ID, v T) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, w := range r.waiting {
		if w.title == title || title == (media.ID{}) {
			r.waiting = slices.Delete(r.waiting, i, i+1)
			w.ch <- v
			return true
		}
	}
	return false
}
