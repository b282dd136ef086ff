// Package agent is the transfer engine of a box's transfer daemon, and of
// a media server: it turns the scheduler's commands (TransferStart,
// TransferCancel, TransferConfirmed, DeleteAnswer) into piece protocol
// sessions with other boxes and media servers, and reports how they go
// (TransferStarted, TransferProgress, TransferSucceeded, TransferFailed).
//
// # Transport and who initiates
//
// With Config.RTC (the daemon's default) every transfer runs over a WebRTC
// data channel (package p2p/rtc): on TransferStart both ends call Connect
// for the transfer, the end TransferStart.Initiate names makes the offer,
// and the scheduler relays the signalling. The connection is bound to the
// peer the scheduler named, so a sender refuses a grant for any other
// receiver or transfer on it: a token is then not a bearer credential. A
// media server (AcceptTokenOnly) that does not initiate takes the
// receiver's connection from RTC.Accept, TransferStart or not.
//
// Without RTC the transport is TCP: a sender listens (Config.Listen,
// registered with the scheduler as PieceAddr) and the receiver dials the
// sender's Peer.Addr whatever Initiate says (Config.Dial is the seam). A
// receiver whose peer has no address then fails the transfer at once.
//
// # Admission
//
// A sender serves a connection only if its Hello carries a token the
// scheduler signed for this sender (piece.Serve checks that) and, on a
// box, only for a transfer the scheduler also announced to it with a
// TransferStart whose grant is the same (title, receiver, portions,
// expiry). The token alone would be enough to authorize, but requiring the
// TransferStart keeps a box's uplink (the viewer's) under its own
// scheduler session: the box knows every transfer it serves, can report
// it and can be cancelled. The two messages travel separately, so a
// connection whose TransferStart has not arrived yet waits for it up to
// Config.AdmitWait. A media server sets AcceptTokenOnly: it serves any
// valid token at once (the scheduler may announce such transfers to it
// late or not at all) and reports them all the same.
//
// Each transfer takes one connection: once a session for it ended, another
// connection for it is refused, and the outcome is reported.
//
// # Reports
//
// Both ends report TransferStarted when the receiver is accepted, a
// TransferProgress every Config.ProgressEvery while the counts change (and
// once more before the end if they changed since), then either
// TransferSucceeded or TransferFailed{Reason, BadPieces}. The receiver's
// TransferSucceeded carries the SHA-256 of the whole payload, streamed
// from the store, when the title is complete there (a title fetched from
// several donors at once is complete after the last of them). After a
// TransferCancel is handled, nothing more is reported for that transfer;
// the piece protocol tells the other end at once with a Cancel frame (it
// may report TransferFailed, which the scheduler ignores for a transfer
// it cancelled). When Run ends, transfers stop without reports: the
// scheduler learns from the box going offline.
//
// A repeated TransferStart for a transfer that is running, or that ended
// recently (the last 4096), is ignored. A TransferCancel for a receiving
// transfer that already succeeded means the scheduler rejected the result
// (the whole-title hash did not match): the agent hashes every piece of
// the title again, drops those that fail, and sends the title's new state
// in an Inventory update.
//
// The agent also keeps the inventory (Inventory, SplitInventory,
// SendInventory after an approved deletion) and fills in what it knows of
// a registration (Register).
package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/store"
	"github.com/boxswarm/boxswarm/p2p/piece"
	"github.com/boxswarm/boxswarm/p2p/rtc"
)

// Defaults of Config.
const (
	DefaultProgressEvery = 5 * time.Second
	DefaultAdmitWait     = 10 * time.Second
	DefaultMaxConns      = 128
	// remembered is how many ended transfers are remembered, so that a
	// repeated TransferStart for one is ignored.
	remembered = 4096
)

// Errors.
var (
	// ErrStopped is returned by Handle once Run has ended.
	ErrStopped = errors.New("transfer agent stopped")
	// ErrNoRoute is wrapped by a Dial error that trying again will not
	// fix.
	ErrNoRoute = errors.New("no way to reach the peer")
)

// Config configures an Agent.
type Config struct {
	// Self is this box's (or media server's) ID.
	Self  api.BoxID
	Store *store.Store
	// MediaKeys verify the manifest of a title the store does not hold
	// yet, as the sender hands it over.
	MediaKeys []ed25519.PublicKey
	// SchedulerKey verifies transfer tokens.
	SchedulerKey ed25519.PublicKey
	// Send delivers a report to the scheduler (the scheduler client's
	// Send).
	Send func(ctx context.Context, b api.Body) error
	// RTC, if set, carries every transfer: each end connects through it
	// as TransferStart says (who initiates), and Dial is not used. A
	// sender with AcceptTokenOnly that does not initiate takes the
	// receiver's connection from RTC.Accept instead.
	RTC *rtc.Transport
	// Dial connects to a transfer's sender without RTC. nil means TCP to
	// Peer.Addr.
	Dial func(ctx context.Context, peer api.Peer) (io.ReadWriteCloser, error)
	// Listen is where peers connect over TCP to receive from this end, or
	// nil. Run closes it.
	Listen net.Listener
	// UpLimit and DownLimit cap the bytes per second sent and received
	// over all transfers; 0 means no cap.
	UpLimit, DownLimit int
	// ProgressEvery is how often TransferProgress is sent while a transfer
	// moves (default DefaultProgressEvery).
	ProgressEvery time.Duration
	// AcceptTokenOnly serves a connection with a valid token even without
	// a TransferStart for it: for media servers (see the package doc).
	AcceptTokenOnly bool
	// AdmitWait is how long a connection waits for its transfer's
	// TransferStart (default DefaultAdmitWait).
	AdmitWait time.Duration
	// MaxConns bounds the incoming connections served at once (default
	// DefaultMaxConns); more are closed at once.
	MaxConns int
	// IdleTimeout closes a piece connection on which nothing moves
	// (default piece.DefaultIdleTimeout).
	IdleTimeout time.Duration
	// Now is the clock tokens are checked against; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Agent runs a box's transfers. Its methods are safe for concurrent use.
type Agent struct {
	cfg      Config
	instance uint64 // this start's api.Register.Instance
	log      *slog.Logger
	up, down piece.Limiter
	chunk    int
	conns    chan struct{} // one per incoming connection being served

	base context.Context // ends when Run ends
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu        sync.Mutex
	stopped   bool
	transfers map[api.TransferID]*transfer
	ended     map[api.TransferID]endedTransfer
	endOrder  []api.TransferID
	arrived   chan struct{} // closed and replaced when a sending transfer is announced
}

// endedTransfer is what is remembered of a transfer that ended.
type endedTransfer struct {
	role      api.Role
	title     media.ID
	succeeded bool
}

// transfer is one transfer this end takes part in.
type transfer struct {
	start  api.TransferStart
	grant  api.Grant // as this end sees it
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	// admitted is closed when a receiver's connection takes a sending
	// transfer; taken says so, under Agent.mu.
	admitted chan struct{}
	taken    bool

	pieces, bytes atomic.Int64 // moved so far
	succeeded     atomic.Bool

	// quiet is set when the transfer is cancelled: nothing more is
	// reported. reporting is held while a report is sent, so that a
	// cancel can wait for one in flight; reportedPieces and reportedBytes
	// are under it.
	quiet          atomic.Bool
	reporting      chan struct{}
	reportedPieces int64
	reportedBytes  int64
}

// New checks cfg and returns an Agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("transfer agent: no store")
	case len(cfg.SchedulerKey) != ed25519.PublicKeySize:
		return nil, errors.New("transfer agent: no scheduler key")
	case len(cfg.MediaKeys) == 0:
		return nil, errors.New("transfer agent: no media keys")
	case cfg.Send == nil:
		return nil, errors.New("transfer agent: no way to send reports")
	case cfg.UpLimit < 0 || cfg.DownLimit < 0:
		return nil, fmt.Errorf("transfer agent: limits %d up, %d down", cfg.UpLimit, cfg.DownLimit)
	}
	if cfg.Dial == nil {
		cfg.Dial = DialTCP
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = DefaultProgressEvery
	}
	if cfg.AdmitWait <= 0 {
		cfg.AdmitWait = DefaultAdmitWait
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{
		cfg: cfg, log: cfg.Log, chunk: piece.DefaultChunk, instance: rand.Uint64() | 1,
		conns:     make(chan struct{}, cfg.MaxConns),
		transfers: map[api.TransferID]*transfer{}, ended: map[api.TransferID]endedTransfer{},
		arrived: make(chan struct{}),
	}
	a.base, a.stop = context.WithCancel(context.Background())
	if cfg.UpLimit > 0 {
		a.up, _ = piece.NewTokenBucket(cfg.UpLimit, 0)
		// A chunk takes at most about an eighth of a second at the cap.
		a.chunk = min(max(cfg.UpLimit/8, 4<<10), piece.DefaultChunk)
	}
	if cfg.DownLimit > 0 {
		a.down, _ = piece.NewTokenBucket(cfg.DownLimit, 0)
	}
	return a, nil
}

// DialTCP is the TCP transport: it connects to peer.Addr.
func DialTCP(ctx context.Context, peer api.Peer) (io.ReadWriteCloser, error) {
	if peer.Addr == "" {
		return nil, fmt.Errorf("peer %s has no piece address, and TCP is the only transport built: %w", peer.Box, ErrNoRoute)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", peer.Addr)
}

// Run serves incoming piece connections (over TCP if Config.Listen is
// set, and unsolicited WebRTC ones for AcceptTokenOnly) until ctx ends,
// then stops every transfer and returns once they have stopped. Transfers
// run only while Run does.
func (a *Agent) Run(ctx context.Context) error {
	defer a.shutdown()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var loops sync.WaitGroup
	if a.cfg.Listen != nil {
		loops.Go(func() { cancel(a.acceptTCP(ctx)) })
	}
	if a.cfg.RTC != nil && a.cfg.AcceptTokenOnly {
		loops.Go(func() { cancel(a.acceptRTC(ctx)) })
	}
	<-ctx.Done()
	loops.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// acceptTCP serves the TCP listener until ctx ends.
func (a *Agent) acceptTCP(ctx context.Context) error {
	defer context.AfterFunc(ctx, func() { a.cfg.Listen.Close() })()
	for {
		c, err := a.cfg.Listen.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("transfer agent: accept: %w", err)
			}
			a.log.Warn("accept piece connection", "err", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		a.serveIncoming(c, link{addr: c.RemoteAddr().String()})
	}
}

// acceptRTC serves the WebRTC connections of transfers this end did not
// connect itself (AcceptTokenOnly) until ctx ends.
func (a *Agent) acceptRTC(ctx context.Context) error {
	for {
		c, err := a.cfg.RTC.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("transfer agent: accept WebRTC connection: %w", err)
		}
		a.serveIncoming(c, rtcLink(c))
	}
}

// serveIncoming serves a connection unless MaxConns are being served.
func (a *Agent) serveIncoming(c io.ReadWriteCloser, l link) {
	select {
	case a.conns <- struct{}{}:
	default:
		a.log.Warn("too many piece connections; closing one", "peer", l, "max", a.cfg.MaxConns)
		c.Close()
		return
	}
	a.wg.Go(func() {
		defer func() { <-a.conns }()
		a.serveConn(c, l)
	})
}

// link is what the transport says about the other end of a connection.
type link struct {
	addr string
	// peer and transfer are set when the transport vouches for them (the
	// scheduler relayed the connection's signalling for this transfer,
	// from this box): the grant must then name them.
	peer     api.BoxID
	transfer api.TransferID
}

func rtcLink(c *rtc.Conn) link {
	return link{addr: "webrtc " + c.Path().String(), peer: c.Peer(), transfer: c.Transfer()}
}

func (l link) String() string {
	if l.peer == (api.BoxID{}) {
		return l.addr
	}
	return l.peer.String() + " (" + l.addr + ")"
}

// checkGrant refuses a grant for another transfer or receiver than the
// transport vouches for: a token is then not a bearer credential.
func (l link) checkGrant(g api.Grant) error {
	if l.peer == (api.BoxID{}) {
		return nil
	}
	if g.Transfer != l.transfer || g.Receiver != l.peer {
		return fmt.Errorf("the connection of transfer %d from %s carries a grant for transfer %d to %s", l.transfer, l.peer, g.Transfer, g.Receiver)
	}
	return nil
}

// shutdown stops every transfer, quietly, and waits for them.
func (a *Agent) shutdown() {
	a.mu.Lock()
	a.stopped = true
	for _, t := range a.transfers {
		t.quiet.Store(true)
	}
	a.mu.Unlock()
	a.stop()
	a.wg.Wait()
}

// Handle acts on a message from the scheduler: TransferStart,
// TransferCancel, TransferConfirmed and DeleteAnswer (as values or
// pointers). Other messages are none of the agent's business and are
// ignored. Handle does not wait for transfers; it returns an error for a
// message it cannot act on.
func (a *Agent) Handle(ctx context.Context, b api.Body) error {
	switch b := b.(type) {
	case *api.TransferStart:
		return a.Handle(ctx, *b)
	case *api.TransferCancel:
		return a.Handle(ctx, *b)
	case *api.TransferConfirmed:
		return a.Handle(ctx, *b)
	case *api.DeleteAnswer:
		return a.Handle(ctx, *b)
	case api.TransferStart:
		return a.begin(b)
	case api.TransferCancel:
		return a.cancelTransfer(ctx, b)
	case api.TransferConfirmed:
		a.log.Info("transfer confirmed by the scheduler", "transfer", b.Transfer, "title", b.Title)
		return nil
	case api.DeleteAnswer:
		return a.deleteAnswer(ctx, b)
	}
	return nil
}

// begin starts a transfer the scheduler announced.
func (a *Agent) begin(s api.TransferStart) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("transfer %d: %w", s.Transfer, err)
	}
	if s.Peer.Box == a.cfg.Self {
		return fmt.Errorf("transfer %d: this box is its own peer", s.Transfer)
	}
	var cannot error
	if s.Role == api.RoleSend {
		if _, _, err := a.cfg.Store.Manifest(s.Title); err != nil {
			cannot = fmt.Errorf("cannot send title %s: %w", s.Title, err)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return ErrStopped
	}
	if _, ended := a.ended[s.Transfer]; ended || a.transfers[s.Transfer] != nil {
		a.log.Debug("repeated transfer start ignored", "transfer", s.Transfer)
		return nil
	}
	t := a.newTransfer(s)
	if cannot != nil {
		// Reported at once; the transfer counts as ended.
		a.endLocked(t)
		a.wg.Go(func() { a.finish(t, cannot, 0, nil) })
		return nil
	}
	a.transfers[s.Transfer] = t
	t.log.Info("transfer started by the scheduler", "peer", s.Peer.Box, "peer addr", s.Peer.Addr, "portions", s.Portions, "initiate", s.Initiate)
	a.wg.Add(1)
	if s.Role == api.RoleReceive {
		go func() {
			defer a.wg.Done()
			a.receive(t)
		}()
		return nil
	}
	close(a.arrived)
	a.arrived = make(chan struct{})
	go func() {
		defer a.wg.Done()
		a.awaitReceiver(t)
	}()
	if a.cfg.RTC != nil && (s.Initiate || !a.cfg.AcceptTokenOnly) {
		a.wg.Go(func() { a.connectReceiver(t) })
	}
	return nil
}

// connectReceiver makes a sending transfer's WebRTC connection and serves
// the receiver on it. If that fails, so does the transfer.
func (a *Agent) connectReceiver(t *transfer) {
	c, err := a.cfg.RTC.Connect(t.ctx, t.start.Transfer, t.start.Peer.Box, t.start.Initiate)
	if err != nil {
		a.failUntaken(t, fmt.Errorf("connect to receiver %s: %w", t.start.Peer.Box, err))
		return
	}
	t.log.Info("connected to the receiver", "path", c.Path())
	a.serveIncoming(c, rtcLink(c))
}

func (a *Agent) newTransfer(s api.TransferStart) *transfer {
	g := api.Grant{Transfer: s.Transfer, Title: s.Title, Portions: s.Portions, Expires: s.Expires}
	if s.Role == api.RoleReceive {
		g.Sender, g.Receiver = s.Peer.Box, a.cfg.Self
	} else {
		g.Sender, g.Receiver = a.cfg.Self, s.Peer.Box
	}
	t := &transfer{
		start: s, grant: g, admitted: make(chan struct{}), reporting: make(chan struct{}, 1),
		log: a.log.With("transfer", s.Transfer, "role", s.Role, "title", s.Title),
	}
	t.ctx, t.cancel = context.WithCancel(a.base)
	return t
}

// end forgets a transfer, remembering that it ran.
func (a *Agent) end(t *transfer) {
	a.mu.Lock()
	a.endLocked(t)
	a.mu.Unlock()
}

func (a *Agent) endLocked(t *transfer) {
	id := t.start.Transfer
	if a.transfers[id] == t {
		delete(a.transfers, id)
	}
	if _, ok := a.ended[id]; !ok {
		a.ended[id] = endedTransfer{role: t.start.Role, title: t.start.Title, succeeded: t.succeeded.Load()}
		a.endOrder = append(a.endOrder, id)
		if len(a.endOrder) > remembered {
			delete(a.ended, a.endOrder[0])
			a.endOrder = a.endOrder[1:]
		}
	}
	t.cancel()
}

// cancelTransfer stops a transfer; nothing more is reported for it once
// this returns nil.
func (a *Agent) cancelTransfer(ctx context.Context, c api.TransferCancel) error {
	a.mu.Lock()
	t := a.transfers[c.Transfer]
	e, ended := a.ended[c.Transfer]
	recheck := t == nil && ended && e.role == api.RoleReceive && e.succeeded && !a.stopped
	if recheck {
		// Once.
		e.succeeded = false
		a.ended[c.Transfer] = e
		a.wg.Go(func() { a.recheck(c, e.title) })
	}
	a.mu.Unlock()
	if t == nil {
		if !recheck {
			a.log.Debug("cancel for a transfer not running", "transfer", c.Transfer)
		}
		return nil
	}
	t.quiet.Store(true)
	// Wait for a report already on its way.
	select {
	case t.reporting <- struct{}{}:
		<-t.reporting
	case <-ctx.Done():
		t.cancel()
		return fmt.Errorf("cancel transfer %d: %w", c.Transfer, ctx.Err())
	}
	t.log.Info("transfer cancelled by the scheduler", "reason", c.Reason)
	a.end(t)
	return nil
}

// recheck answers a cancel of a receiving transfer that had succeeded:
// the scheduler did not accept the result (the whole-title hash did not
// match), so every piece of the title is hashed again, those that fail are
// dropped, and the scheduler gets the title's new state.
func (a *Agent) recheck(c api.TransferCancel, id media.ID) {
	log := a.log.With("transfer", c.Transfer, "title", id)
	log.Warn("scheduler rejected a finished transfer; verifying the title", "reason", c.Reason)
	bad, err := a.cfg.Store.Verify(a.base, id)
	if err != nil {
		log.Warn("verify title", "err", err)
		return
	}
	have, err := a.cfg.Store.Have(id)
	if err != nil {
		log.Warn("verify title", "err", err)
		return
	}
	log.Info("title verified", "bad pieces", len(bad), "present", have.Count(), "pieces", have.Len())
	ts := api.TitleState{Title: id, Complete: have.Complete()}
	if !ts.Complete {
		ts.Have = have.Bytes()
	}
	if err := a.cfg.Send(a.base, api.Inventory{Titles: []api.TitleState{ts}}); err != nil {
		log.Warn("report title state", "err", err)
	}
}

// report sends b for t unless t was cancelled.
func (a *Agent) report(t *transfer, b api.Body) {
	t.reporting <- struct{}{}
	defer func() { <-t.reporting }()
	a.reportLocked(t, b)
}

func (a *Agent) reportLocked(t *transfer, b api.Body) {
	if t.quiet.Load() {
		return
	}
	if err := a.cfg.Send(a.base, b); err != nil {
		t.log.Warn("report to the scheduler", "type", b.Type(), "err", err)
	}
}

// reportProgress sends TransferProgress if the counts moved since the last.
func (a *Agent) reportProgress(t *transfer) {
	t.reporting <- struct{}{}
	defer func() { <-t.reporting }()
	p, b := t.pieces.Load(), t.bytes.Load()
	if p == t.reportedPieces && b == t.reportedBytes {
		return
	}
	t.reportedPieces, t.reportedBytes = p, b
	msg := api.TransferProgress{Transfer: t.start.Transfer, Pieces: int(p), Bytes: b}
	if t.start.Role == api.RoleReceive {
		// Pieces stored are verified: the scheduler may have them sent on.
		if have, err := a.cfg.Store.Have(t.start.Title); err == nil {
			msg.Have = have.Bytes()
		}
	}
	a.reportLocked(t, msg)
}

// progressLoop reports progress every ProgressEvery until stop is called.
func (a *Agent) progressLoop(t *transfer) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(a.cfg.ProgressEvery)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				a.reportProgress(t)
			case <-quit:
				return
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// finish reports how a transfer ended.
func (a *Agent) finish(t *transfer, err error, bad int, hash []byte) {
	if t.quiet.Load() {
		return
	}
	a.reportProgress(t)
	if err != nil {
		t.log.Warn("transfer failed", "pieces", t.pieces.Load(), "bad pieces", bad, "err", err)
		a.report(t, api.TransferFailed{Transfer: t.start.Transfer, Reason: truncate(err.Error(), api.MaxReason), BadPieces: bad})
		return
	}
	t.succeeded.Store(true)
	t.log.Info("transfer succeeded", "pieces", t.pieces.Load(), "bytes", t.bytes.Load(), "title complete", hash != nil)
	a.report(t, api.TransferSucceeded{Transfer: t.start.Transfer, PayloadHash: hash})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// receive runs a receiving transfer: dial the sender, fetch, report.
func (a *Agent) receive(t *transfer) {
	defer a.end(t)
	conn, err := a.connectSender(t)
	if err != nil {
		a.finish(t, err, 0, nil)
		return
	}
	stop := a.progressLoop(t)
	res, err := piece.Fetch(t.ctx, conn, piece.FetchConfig{
		Store: a.cfg.Store, MediaKeys: a.cfg.MediaKeys,
		Grant: t.grant, Token: t.start.Token,
		Started:  func() { a.report(t, api.TransferStarted{Transfer: t.start.Transfer}) },
		Progress: t.progress,
		Limiter:  a.down, IdleTimeout: a.cfg.IdleTimeout, Log: t.log,
	})
	stop()
	var hash []byte
	if err == nil {
		hash, err = a.payloadHash(t.ctx, t.start.Title)
	}
	a.finish(t, err, res.BadPieces, hash)
}

func (t *transfer) progress(pieces int, bytes int64) {
	t.pieces.Store(int64(pieces))
	t.bytes.Store(bytes)
}

// connectSender connects to a receiving transfer's sender.
func (a *Agent) connectSender(t *transfer) (io.ReadWriteCloser, error) {
	if a.cfg.RTC == nil {
		return a.dial(t)
	}
	c, err := a.cfg.RTC.Connect(t.ctx, t.start.Transfer, t.start.Peer.Box, t.start.Initiate)
	if err != nil {
		return nil, fmt.Errorf("connect to donor %s: %w", t.start.Peer.Box, err)
	}
	t.log.Info("connected to the donor", "path", c.Path())
	return c, nil
}

// dial connects to the sender over TCP, trying a few times over about two
// seconds.
func (a *Agent) dial(t *transfer) (io.ReadWriteCloser, error) {
	wait := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		c, err := a.cfg.Dial(t.ctx, t.start.Peer)
		if err == nil {
			return c, nil
		}
		if attempt == 4 || t.ctx.Err() != nil || errors.Is(err, ErrNoRoute) {
			return nil, fmt.Errorf("connect to donor %s: %w", t.start.Peer.Box, err)
		}
		t.log.Debug("connect to donor", "attempt", attempt, "err", err)
		select {
		case <-time.After(wait):
			wait *= 2
		case <-t.ctx.Done():
			return nil, fmt.Errorf("connect to donor %s: %w", t.start.Peer.Box, t.ctx.Err())
		}
	}
}

// payloadHash returns the SHA-256 of the title's payload, streamed from the
// store, if the title is complete; nil if it is not.
func (a *Agent) payloadHash(ctx context.Context, id media.ID) ([]byte, error) {
	st := a.cfg.Store
	have, err := st.Have(id)
	if err != nil || !have.Complete() {
		return nil, err
	}
	unlock, err := st.Lock(id, "hashing the payload")
	if err != nil {
		return nil, err
	}
	defer unlock()
	m, _, err := st.Manifest(id)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < int64(m.PayloadSize); {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := st.ReadAt(id, buf[:min(int64(len(buf)), int64(m.PayloadSize)-off)], off)
		if err != nil && !(errors.Is(err, io.EOF) && n > 0) {
			return nil, fmt.Errorf("hash payload of %s: %w", id, err)
		}
		h.Write(buf[:n])
		off += int64(n)
	}
	sum := h.Sum(nil)
	if [32]byte(sum) != m.PayloadHash {
		// Every piece matched its hash, so the signed manifest disagrees
		// with itself; the scheduler judges.
		a.log.Error("payload hash differs from the manifest's although every piece matched", "title", id)
	}
	return sum, nil
}

// awaitReceiver waits for the receiver of a sending transfer to connect;
// the connection then owns the transfer. Without one before the token
// expires, the transfer fails.
func (a *Agent) awaitReceiver(t *transfer) {
	timer := time.NewTimer(t.start.Expires.Sub(a.cfg.Now()))
	defer timer.Stop()
	select {
	case <-t.admitted:
		return
	case <-t.ctx.Done():
		a.end(t)
	case <-timer.C:
		a.failUntaken(t, fmt.Errorf("receiver %s did not connect before the token expired", t.start.Peer.Box))
	}
}

// failUntaken ends a sending transfer in failure unless a receiver's
// connection already took it or it ended otherwise.
func (a *Agent) failUntaken(t *transfer, err error) {
	a.mu.Lock()
	mine := !t.taken && a.transfers[t.start.Transfer] == t
	if mine {
		delete(a.transfers, t.start.Transfer) // no admission from now on
	}
	a.mu.Unlock()
	if !mine {
		return
	}
	a.finish(t, err, 0, nil)
	a.end(t)
}

// serveConn serves one piece connection to a receiver.
func (a *Agent) serveConn(c io.ReadWriteCloser, l link) {
	var t *transfer
	var stop func()
	_, err := piece.Serve(a.base, c, piece.SenderConfig{
		Store: a.cfg.Store, SchedulerKey: a.cfg.SchedulerKey, Self: a.cfg.Self, Now: a.cfg.Now,
		Limiter: a.up, ChunkSize: a.chunk, IdleTimeout: a.cfg.IdleTimeout, Log: a.log.With("peer", l),
		Admit: func(ctx context.Context, g api.Grant) (piece.Session, error) {
			if err := l.checkGrant(g); err != nil {
				return piece.Session{}, err
			}
			var err error
			if t, err = a.admit(ctx, g); err != nil {
				return piece.Session{}, err
			}
			stop = a.progressLoop(t)
			return piece.Session{
				Ctx:      t.ctx,
				Started:  func() { a.report(t, api.TransferStarted{Transfer: t.start.Transfer}) },
				Progress: t.progress,
			}, nil
		},
	})
	if t == nil {
		a.log.Info("piece connection not served", "peer", l, "err", err)
		return
	}
	stop()
	a.finish(t, err, 0, nil)
	a.end(t)
}

// admit ties a connection whose token checked out to its transfer, waiting
// up to AdmitWait for the TransferStart.
func (a *Agent) admit(ctx context.Context, g api.Grant) (*transfer, error) {
	deadline := time.NewTimer(a.cfg.AdmitWait)
	defer deadline.Stop()
	for {
		a.mu.Lock()
		t := a.transfers[g.Transfer]
		switch {
		case a.stopped:
			a.mu.Unlock()
			return nil, ErrStopped
		case t != nil:
			err := t.matches(g)
			if err != nil {
				a.mu.Unlock()
				return nil, err
			}
			t.taken = true
			close(t.admitted)
			a.mu.Unlock()
			return t, nil
		case a.isEnded(g.Transfer):
			a.mu.Unlock()
			return nil, fmt.Errorf("transfer %d has ended", g.Transfer)
		case a.cfg.AcceptTokenOnly:
			t := a.newTransfer(api.TransferStart{
				Transfer: g.Transfer, Title: g.Title, Role: api.RoleSend, Peer: api.Peer{Box: g.Receiver},
				Portions: g.Portions, Expires: g.Expires,
			})
			t.taken = true
			close(t.admitted)
			a.transfers[g.Transfer] = t
			a.mu.Unlock()
			t.log.Info("serving a transfer on its token alone", "receiver", g.Receiver, "portions", g.Portions)
			return t, nil
		}
		arrived := a.arrived
		a.mu.Unlock()
		select {
		case <-arrived:
		case <-deadline.C:
			return nil, fmt.Errorf("transfer %d: no TransferStart from the scheduler within %v", g.Transfer, a.cfg.AdmitWait)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (a *Agent) isEnded(id api.TransferID) bool {
	_, ok := a.ended[id]
	return ok
}

// matches checks that a connection's grant is the transfer the scheduler
// announced and that it is free. Called under Agent.mu.
func (t *transfer) matches(g api.Grant) error {
	s := t.start
	switch {
	case s.Role != api.RoleSend:
		return fmt.Errorf("transfer %d: this end receives", s.Transfer)
	case t.taken:
		return fmt.Errorf("transfer %d: a receiver already connected", s.Transfer)
	case g.Title != s.Title || g.Receiver != s.Peer.Box || g.Expires.Unix() != s.Expires.Unix() || !slices.Equal(g.Portions, s.Portions):
		return fmt.Errorf("transfer %d: the grant differs from the scheduler's TransferStart", s.Transfer)
	}
	return nil
}

// deleteAnswer deletes a title whose deletion the scheduler approved, and
// sends the new inventory.
func (a *Agent) deleteAnswer(ctx context.Context, d api.DeleteAnswer) error {
	if !d.Approved {
		a.log.Info("deletion deferred by the scheduler", "title", d.Title, "reason", d.Reason)
		return nil
	}
	err := a.cfg.Store.DeleteTitle(d.Title)
	switch {
	case errors.Is(err, store.ErrUnknownTitle):
		return nil
	case err != nil:
		return fmt.Errorf("delete title %s: %w", d.Title, err)
	}
	a.log.Info("title deleted", "title", d.Title)
	return a.SendInventory(ctx)
}

// SendInventory sends the full inventory, in as many messages as it
// takes.
func (a *Agent) SendInventory(ctx context.Context) error {
	inv, err := a.Inventory()
	if err != nil {
		return err
	}
	for _, m := range SplitInventory(inv) {
		if err := a.cfg.Send(ctx, m); err != nil {
			return fmt.Errorf("send inventory: %w", err)
		}
	}
	return nil
}

// Inventory lists every title in the store: complete, or with its piece
// bitmap. It is Full, and may hold more than one message can carry; see
// SplitInventory.
func (a *Agent) Inventory() (api.Inventory, error) {
	titles, err := a.cfg.Store.Titles()
	if err != nil {
		return api.Inventory{}, fmt.Errorf("inventory: %w", err)
	}
	inv := api.Inventory{Full: true, Titles: []api.TitleState{}}
	for _, ti := range titles {
		ts := api.TitleState{Title: ti.ID, Complete: ti.Complete}
		if !ti.Complete {
			have, err := a.cfg.Store.Have(ti.ID)
			if errors.Is(err, store.ErrUnknownTitle) {
				continue // deleted meanwhile
			}
			if err != nil {
				return api.Inventory{}, fmt.Errorf("inventory: %w", err)
			}
			ts.Have = have.Bytes()
		}
		inv.Titles = append(inv.Titles, ts)
	}
	return inv, nil
}

// inventoryBudget bounds the encoded size of one Inventory message, well
// under api.MaxFrame.
const inventoryBudget = api.MaxFrame / 2

// SplitInventory cuts an inventory into messages that each fit the
// protocol's limits: at most api.MaxTitles titles and about half a frame
// of JSON. The first keeps inv.Full; the rest add to it.
func SplitInventory(inv api.Inventory) []api.Inventory {
	out := []api.Inventory{{Full: inv.Full, Titles: []api.TitleState{}}}
	size := 0
	for _, ts := range inv.Titles {
		// A title's JSON: the ID in hex, the flag, the bitmap in base64.
		n := 64 + 4*(len(ts.Have)+2)/3
		cur := &out[len(out)-1]
		if len(cur.Titles) == api.MaxTitles || len(cur.Titles) > 0 && size+n > inventoryBudget {
			out = append(out, api.Inventory{Titles: []api.TitleState{}})
			cur, size = &out[len(out)-1], 0
		}
		cur.Titles = append(cur.Titles, ts)
		size += n
	}
	return out
}

// Register fills in what the agent knows of a registration: capacity and
// free space from the store, the caps, and PieceAddr from the listener if
// r has none and the listener's address can be dialled as it is.
func (a *Agent) Register(r api.Register) (api.Register, error) {
	_, reserved, capacity, err := a.cfg.Store.Usage()
	if err != nil {
		return r, fmt.Errorf("register: %w", err)
	}
	r.Capacity, r.Free = capacity, max(capacity-reserved, 0)
	r.Instance = a.instance
	if a.cfg.UpLimit > 0 {
		r.UpKbps = int(min(int64(a.cfg.UpLimit)*8/1000, 100_000_000))
	}
	if a.cfg.DownLimit > 0 {
		r.DownKbps = int(min(int64(a.cfg.DownLimit)*8/1000, 100_000_000))
	}
	if r.PieceAddr == "" && a.cfg.Listen != nil {
		if ta, ok := a.cfg.Listen.Addr().(*net.TCPAddr); ok && !ta.IP.IsUnspecified() {
			r.PieceAddr = ta.String()
		}
	}
	if r.NAT == "" {
		r.NAT = api.NATUnknown
	}
	return r, nil
}
