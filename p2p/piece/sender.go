package piece

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/store"
)

// Defaults of SenderConfig and FetchConfig.
const (
	DefaultWindow       = 64
	DefaultChunk        = 32 << 10
	DefaultHelloTimeout = 10 * time.Second
	DefaultIdleTimeout  = 30 * time.Second
	DefaultWindowBytes  = 8 << 20
	// readBlock is about how much of a piece the sender reads from its
	// store at a time.
	readBlock = 1 << 20
	// farewellWait bounds how long a closing end tries to deliver its
	// Cancel or Error before it closes anyway.
	farewellWait = time.Second
)

// unauthorized is the one answer to every Hello that does not check out.
const unauthorized = "not authorized"

// SenderConfig configures Serve.
type SenderConfig struct {
	Store *store.Store
	// SchedulerKey verifies transfer tokens.
	SchedulerKey ed25519.PublicKey
	// Self is this end's box ID; a grant must name it as the sender.
	Self api.BoxID
	// Now is the clock tokens are checked against; nil means time.Now.
	Now func() time.Time
	// Limiter paces the chunks sent (the upload cap); nil means none.
	Limiter Limiter
	// Admit, if set, is asked about a grant whose token checked out,
	// before the receiver is accepted; an error refuses the receiver as
	// unauthorized. The agent uses it to tie the connection to a transfer
	// the scheduler announced, and to get the context and callbacks of
	// that transfer.
	Admit func(ctx context.Context, g api.Grant) (Session, error)
	// Window is how many pieces a receiver may have requested ahead
	// (default DefaultWindow, at most MaxWindow).
	Window int
	// ChunkSize is the data size of Chunk frames (default DefaultChunk,
	// at most MaxChunkData). Smaller chunks pace a low upload cap more
	// smoothly.
	ChunkSize int
	// HelloTimeout bounds the wait for the Hello; IdleTimeout closes a
	// connection on which nothing moves.
	HelloTimeout, IdleTimeout time.Duration
	Log                       *slog.Logger

	// corrupt, set by tests, may change a chunk before it is sent.
	corrupt func(c *Chunk)
}

// Session is what Admit hands Serve for an admitted receiver.
type Session struct {
	// Ctx, if set, stops the session when done (as Serve's own context
	// does): the transfer was cancelled.
	Ctx context.Context
	// Started is called once the receiver is accepted.
	Started func()
	// Progress is called after each piece sent with the totals so far.
	Progress func(pieces int, bytes int64)
}

func (c *SenderConfig) setDefaults() error {
	if c.Store == nil || len(c.SchedulerKey) != ed25519.PublicKeySize {
		return errors.New("piece sender: config needs a store and the scheduler's key")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Limiter == nil {
		c.Limiter = unlimited{}
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	c.Window = min(c.Window, MaxWindow)
	if c.ChunkSize <= 0 {
		c.ChunkSize = DefaultChunk
	}
	c.ChunkSize = min(c.ChunkSize, MaxChunkData)
	if c.HelloTimeout <= 0 {
		c.HelloTimeout = DefaultHelloTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Serve runs the sender's end of one connection: it reads the Hello,
// checks the grant, and, if it checks out, serves the pieces the receiver
// asks for until the receiver is done, cancels, breaks the protocol, or
// ctx (or the admitted Session's context) ends. The title is locked in
// the store while it is served. Serve closes conn. It returns nil once the
// receiver said Done.
func Serve(ctx context.Context, conn io.ReadWriteCloser, cfg SenderConfig) (Result, error) {
	if err := cfg.setDefaults(); err != nil {
		conn.Close()
		return Result{}, err
	}
	w := newWire(conn)
	defer w.close()

	// Before the receiver is admitted there is nothing to say on
	// cancellation.
	stopEarly := context.AfterFunc(ctx, w.close)
	stopWatch := w.watch(cfg.HelloTimeout)
	m, err := w.recv()
	stopWatch()
	if err != nil {
		stopEarly()
		switch {
		case ctx.Err() != nil:
			return Result{}, fmt.Errorf("piece sender: waiting for hello: %w", context.Cause(ctx))
		case errors.Is(err, ErrVersion):
			w.farewell(&Refuse{Code: RefuseVersion, Reason: fmt.Sprintf("this end speaks piece protocol version %d", Version)}, farewellWait)
		case errors.Is(err, ErrMalformed):
			w.farewell(&Refuse{Code: RefuseUnauthorized, Reason: unauthorized}, farewellWait)
			return Result{}, fmt.Errorf("piece sender: read hello: %w: %w", err, ErrUnauthorized)
		}
		return Result{}, fmt.Errorf("piece sender: read hello: %w", w.explain(err, cfg.HelloTimeout))
	}
	hello, _ := m.(*Hello)
	if err := cfg.authorize(hello); err != nil {
		stopEarly()
		cfg.Log.Info("piece connection refused", "err", err)
		w.farewell(&Refuse{Code: RefuseUnauthorized, Reason: unauthorized}, farewellWait)
		return Result{}, fmt.Errorf("piece sender: %w: %w", err, ErrUnauthorized)
	}
	g := hello.Grant
	peer := g.Receiver
	res := Result{Peer: peer}
	log := cfg.Log.With("transfer", g.Transfer, "receiver", peer, "title", g.Title)
	failf := func(format string, args ...any) error {
		return fmt.Errorf("send transfer %d to receiver %s: "+format, append([]any{g.Transfer, peer}, args...)...)
	}
	refuse := func(code RefuseCode, reason string, err error) (Result, error) {
		stopEarly()
		w.farewell(&Refuse{Code: code, Reason: reason}, farewellWait)
		return res, failf("%w", err)
	}

	var sess Session
	if cfg.Admit != nil {
		if sess, err = cfg.Admit(ctx, g); err != nil {
			log.Info("piece connection not admitted", "err", err)
			return refuse(RefuseUnauthorized, unauthorized, fmt.Errorf("%w: %w", err, ErrUnauthorized))
		}
	}
	man, signed, err := cfg.Store.Manifest(g.Title)
	if err != nil {
		log.Warn("granted title not available", "err", err)
		return refuse(RefuseUnavailable, "title not available", fmt.Errorf("%w: %w", err, ErrRefused))
	}
	unlock, err := cfg.Store.Lock(g.Title, "sending to "+peer.String())
	if err != nil {
		return refuse(RefuseUnavailable, "title not available", fmt.Errorf("%w: %w", err, ErrRefused))
	}
	defer unlock()

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if sess.Ctx != nil {
		defer context.AfterFunc(sess.Ctx, cancel)()
	}
	stopEarly()
	if sctx.Err() != nil {
		return res, failf("%w", context.Cause(sctx))
	}
	// A write stuck on a receiver that does not read is undone by the
	// close that follows the Cancel.
	defer context.AfterFunc(sctx, func() { w.farewell(&Cancel{Reason: "transfer cancelled"}, farewellWait) })()
	stopWatch = w.watch(cfg.IdleTimeout)
	defer stopWatch()
	accept := &Accept{Window: uint16(cfg.Window)}
	if hello.WantManifest {
		accept.ManifestSize = uint32(len(signed))
	}
	if err := w.send(accept); err != nil {
		return res, failf("send accept: %w", err)
	}
	if hello.WantManifest {
		for off := 0; off < len(signed); off += MaxBody {
			if err := w.send(&Manifest{Data: signed[off:min(off+MaxBody, len(signed))]}); err != nil {
				return res, failf("send manifest: %w", err)
			}
		}
	}
	log.Debug("receiver accepted", "portions", g.Portions, "manifest", hello.WantManifest)
	if sess.Started != nil {
		sess.Started()
	}

	s := &sendSession{
		cfg: &cfg, w: w, g: g, m: man, queue: make(chan Request, cfg.Window), res: &res, sess: sess,
		buf: make([]byte, max(cfg.ChunkSize, readBlock/cfg.ChunkSize*cfg.ChunkSize)),
	}
	err = s.run(sctx)
	switch {
	case err == nil:
		log.Debug("transfer sent", "pieces", res.Pieces, "bytes", res.Bytes)
		return res, nil
	case sctx.Err() != nil && !errors.Is(err, ErrPeerCancelled):
		return res, failf("%w", context.Cause(sctx))
	}
	return res, failf("%w", w.explain(err, cfg.IdleTimeout))
}

// authorize checks a Hello. The token's signature is checked whatever
// else is wrong, so that refusals take the same time.
func (c *SenderConfig) authorize(h *Hello) error {
	if h == nil {
		return errors.New("first frame is not a hello")
	}
	err := h.Grant.Verify(c.SchedulerKey, h.Token, c.Now())
	if h.Grant.Sender != c.Self {
		return fmt.Errorf("transfer %d: grant names sender %s, this end is %s", h.Grant.Transfer, h.Grant.Sender, c.Self)
	}
	return err
}

// errDone ends the read loop when the receiver says Done.
var errDone = errors.New("done")

type sendSession struct {
	cfg     *SenderConfig
	w       *wire
	g       api.Grant
	m       *media.Manifest
	queue   chan Request
	pending atomic.Int64 // pieces requested and not yet sent
	res     *Result
	sess    Session
	buf     []byte // one read block
}

// run serves requests until the receiver is done or something stops it.
func (s *sendSession) run(ctx context.Context) error {
	var rerr error
	rdone := make(chan struct{})
	go func() {
		defer close(rdone)
		rerr = s.readLoop()
	}()
	defer func() {
		s.w.close()
		<-rdone
	}()
	// stopped reports why the session must end, if it must.
	stopped := func() error {
		select {
		case <-rdone:
			return rerr
		default:
		}
		return ctx.Err()
	}
	for {
		if err := stopped(); err != nil {
			return s.end(ctx, err)
		}
		select {
		case r := <-s.queue:
			if err := s.serve(ctx, r, stopped); err != nil {
				return s.end(ctx, err)
			}
		case <-rdone:
		case <-ctx.Done():
		}
	}
}

// end turns the reason a session stopped into its result, telling the
// receiver what it needs to know.
func (s *sendSession) end(ctx context.Context, err error) error {
	var v *violation
	switch {
	case errors.Is(err, errDone):
		return nil
	case errors.Is(err, ErrPeerCancelled), errors.Is(err, ErrPeerError):
	case ctx.Err() != nil:
		s.w.farewell(&Cancel{Reason: "transfer cancelled"}, farewellWait)
		return ctx.Err()
	case errors.As(err, &v):
		s.w.farewell(&Error{Code: v.code, Reason: v.reason}, farewellWait)
	}
	return err
}

// readLoop reads the receiver's requests into the queue.
func (s *sendSession) readLoop() error {
	n := s.m.NumPieces()
	for {
		m, err := s.w.recv()
		switch {
		case errors.Is(err, ErrMalformed), errors.Is(err, ErrVersion):
			return &violation{CodeProtocol, err.Error(), fmt.Errorf("%w: %w", err, ErrProtocol)}
		case errors.Is(err, io.EOF):
			return fmt.Errorf("receiver closed the connection before it was done: %w", err)
		case err != nil:
			return fmt.Errorf("read: %w", err)
		}
		switch m := m.(type) {
		case *Request:
			if m.Last >= n {
				return &violation{CodeProtocol, fmt.Sprintf("pieces %d to %d: the title has %d", m.First, m.Last, n), ErrProtocol}
			}
			if !covers(s.g.Portions, m.First, m.Last) {
				return &violation{CodeNotGranted, fmt.Sprintf("pieces %d to %d are not all in the grant", m.First, m.Last), ErrNotGranted}
			}
			if p := s.pending.Add(int64(m.Last - m.First + 1)); p > int64(s.cfg.Window) {
				return &violation{CodeProtocol, fmt.Sprintf("%d pieces requested ahead, window is %d", p, s.cfg.Window), ErrProtocol}
			}
			// Every queued request holds at least one pending piece, so
			// the queue (window long) has room.
			s.queue <- *m
		case *Done:
			return errDone
		case *Cancel:
			return fmt.Errorf("%w: %q", ErrPeerCancelled, m.Reason)
		case *Error:
			return fmt.Errorf("%w: %v: %q", ErrPeerError, m.Code, m.Reason)
		default:
			return &violation{CodeProtocol, fmt.Sprintf("unexpected %v from the receiver", m.Type()), ErrProtocol}
		}
	}
}

// serve sends the pieces of one request.
func (s *sendSession) serve(ctx context.Context, r Request, stopped func() error) error {
	for i := r.First; i <= r.Last; i++ {
		if err := stopped(); err != nil {
			return err
		}
		// A piece is read a block at a time, so that a server with many
		// receivers holds little of each in memory.
		pieceOff, size := s.m.PieceSpan(i)
		for blockOff := int64(0); blockOff < size; blockOff += int64(len(s.buf)) {
			block := s.buf[:min(int64(len(s.buf)), size-blockOff)]
			_, err := s.cfg.Store.ReadAt(s.g.Title, block, pieceOff+blockOff)
			switch {
			case errors.Is(err, store.ErrMissing):
				return &violation{CodeMissing, fmt.Sprintf("piece %d is not here", i), fmt.Errorf("piece %d: %w", i, ErrMissing)}
			case err != nil && !(errors.Is(err, io.EOF) && blockOff+int64(len(block)) == size):
				return &violation{CodeInternal, "store failure", fmt.Errorf("piece %d: %w", i, err)}
			}
			for off := 0; off < len(block); off += s.cfg.ChunkSize {
				c := &Chunk{Piece: i, Offset: int(blockOff) + off, Data: block[off:min(off+s.cfg.ChunkSize, len(block))]}
				if err := s.cfg.Limiter.WaitN(ctx, len(c.Data)); err != nil {
					return err
				}
				s.w.touch()
				if s.cfg.corrupt != nil {
					s.cfg.corrupt(c)
				}
				if err := s.w.send(c); err != nil {
					return s.writeFailed(err, stopped)
				}
			}
		}
		// The receiver may ask for more as soon as it reads PieceEnd.
		s.pending.Add(-1)
		if err := s.w.send(&PieceEnd{Piece: i}); err != nil {
			return s.writeFailed(err, stopped)
		}
		s.res.Pieces++
		s.res.Bytes += size
		if s.sess.Progress != nil {
			s.sess.Progress(s.res.Pieces, s.res.Bytes)
		}
	}
	return nil
}

// writeFailed prefers the reason the connection went away, if known, to
// the write error it caused.
func (s *sendSession) writeFailed(err error, stopped func() error) error {
	if why := stopped(); why != nil {
		return why
	}
	return fmt.Errorf("write: %w", err)
}
