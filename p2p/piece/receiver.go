package piece

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/store"
)

// FetchConfig configures Fetch.
type FetchConfig struct {
	Store *store.Store
	// MediaKeys verify the manifest the sender sends when the store does
	// not hold the title yet.
	MediaKeys []ed25519.PublicKey
	// Grant is what the scheduler allowed (from TransferStart: the
	// transfer, the sender as Sender, this box as Receiver, the title,
	// the portions, the expiry) and Token its signature.
	Grant api.Grant
	Token []byte
	// Want are the pieces to fetch, within the grant; nil means all of
	// the grant's portions. Pieces the store has are skipped.
	Want []api.PieceRange
	// Started is called once the sender accepted (and its manifest, if
	// asked for, checked out).
	Started func()
	// Progress is called after pieces are stored with the totals so far.
	Progress func(pieces int, bytes int64)
	// Limiter paces the chunks read (the download cap); nil means none.
	Limiter Limiter
	// WindowBytes bounds the piece bytes requested ahead (default
	// DefaultWindowBytes; at least two pieces).
	WindowBytes int
	// IdleTimeout closes a connection on which nothing moves.
	IdleTimeout time.Duration
	Log         *slog.Logger
}

// maxBatch bounds the piece bytes handed to the store in one WritePieces.
const maxBatch = 32 << 20

// lingerWait bounds how long the receiver waits, after Done, for the
// sender to close first.
const lingerWait = 2 * time.Second

// Fetch runs the receiver's end of one connection: it presents the grant,
// takes the title's manifest from the sender if the store lacks it, asks
// for the wanted pieces the store does not have, and stores each as it
// completes. It returns once every wanted piece is stored, or with an
// error naming the donor: a refusal, a piece that failed its hash (counted
// in Result.BadPieces; nothing more is stored from that donor), a broken
// protocol, a lost connection, or ctx's end, on which it tells the sender
// with Cancel. Fetch closes conn.
func Fetch(ctx context.Context, conn io.ReadWriteCloser, cfg FetchConfig) (Result, error) {
	g := cfg.Grant
	donor := g.Sender
	res := Result{Peer: donor}
	failf := func(format string, args ...any) error {
		return fmt.Errorf("fetch transfer %d from donor %s: "+format, append([]any{g.Transfer, donor}, args...)...)
	}
	if err := cfg.setDefaults(); err != nil {
		conn.Close()
		return res, failf("%w", err)
	}
	w := newWire(conn)
	defer w.close()
	stopWatch := w.watch(cfg.IdleTimeout)
	defer stopWatch()
	farewellDone := make(chan struct{})
	stopCancel := context.AfterFunc(ctx, func() {
		defer close(farewellDone)
		w.farewell(&Cancel{Reason: "transfer cancelled"}, farewellWait)
	})
	defer func() {
		if !stopCancel() {
			<-farewellDone
		}
	}()

	f := &fetchSession{cfg: &cfg, w: w, res: &res, failf: failf}
	err := f.run(ctx)
	if err == nil {
		return res, nil
	}
	switch {
	case ctx.Err() != nil:
		return res, failf("%w", context.Cause(ctx))
	case f.werr != nil:
		return res, f.werr
	}
	var v *violation
	if errors.As(err, &v) {
		w.farewell(&Error{Code: v.code, Reason: v.reason}, farewellWait)
	}
	return res, failf("%w", w.explain(err, cfg.IdleTimeout))
}

func (c *FetchConfig) setDefaults() error {
	g := c.Grant
	switch {
	case c.Store == nil:
		return errors.New("config has no store")
	case len(g.Portions) == 0 || len(g.Portions) > api.MaxPortions:
		return fmt.Errorf("grant has %d portions", len(g.Portions))
	case len(c.Token) == 0 || len(c.Token) > MaxToken:
		return fmt.Errorf("token of %d bytes", len(c.Token))
	}
	for _, p := range g.Portions {
		if p.First < 0 || p.Last < p.First || p.Last >= media.MaxPieces {
			return fmt.Errorf("grant portion %d-%d", p.First, p.Last)
		}
	}
	if c.Want == nil {
		c.Want = g.Portions
	}
	for _, p := range c.Want {
		if p.First < 0 || p.Last < p.First || !covers(g.Portions, p.First, p.Last) {
			return fmt.Errorf("wanted pieces %d-%d are not all in the grant", p.First, p.Last)
		}
	}
	if c.Limiter == nil {
		c.Limiter = unlimited{}
	}
	if c.WindowBytes <= 0 {
		c.WindowBytes = DefaultWindowBytes
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

type fetchSession struct {
	cfg   *FetchConfig
	w     *wire
	res   *Result
	failf func(format string, args ...any) error
	m     *media.Manifest

	free  chan []byte // piece buffers to reuse
	wdone chan struct{}
	werr  error // why the writer stopped; read after wdone
}

func (f *fetchSession) run(ctx context.Context) error {
	cfg, g := f.cfg, f.cfg.Grant
	_, _, err := cfg.Store.Manifest(g.Title)
	wantManifest := errors.Is(err, store.ErrUnknownTitle)
	if err != nil && !wantManifest {
		return err
	}
	if wantManifest && len(cfg.MediaKeys) == 0 {
		return errors.New("the store lacks the title and no media keys are configured to check its manifest")
	}
	if err := f.w.send(&Hello{Grant: g, Token: cfg.Token, WantManifest: wantManifest}); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	m, err := f.recv()
	if err != nil {
		return err
	}
	var accept *Accept
	switch m := m.(type) {
	case *Accept:
		accept = m
	case *Refuse:
		if m.Code == RefuseUnauthorized {
			return fmt.Errorf("%w: %q", ErrUnauthorized, m.Reason)
		}
		return fmt.Errorf("%w: %v: %q", ErrRefused, m.Code, m.Reason)
	default:
		return unexpected(m)
	}
	if (accept.ManifestSize != 0) != wantManifest {
		return &violation{CodeProtocol, fmt.Sprintf("manifest of %d bytes when asked for %v", accept.ManifestSize, wantManifest), ErrProtocol}
	}
	if wantManifest {
		if err := f.takeManifest(int(accept.ManifestSize)); err != nil {
			return err
		}
	}
	if f.m, _, err = cfg.Store.Manifest(g.Title); err != nil {
		return err
	}
	needed, err := f.needed()
	if err != nil {
		return err
	}
	if cfg.Started != nil {
		cfg.Started()
	}
	cfg.Log.Debug("fetching", "transfer", g.Transfer, "donor", g.Sender, "title", g.Title, "pieces", len(needed), "manifest", wantManifest)
	if len(needed) > 0 {
		window := min(int(accept.Window), max(2, cfg.WindowBytes/int(f.m.PieceSize)))
		if err := f.fetch(ctx, needed, window); err != nil {
			return err
		}
	}
	if err := f.w.send(&Done{}); err != nil {
		return fmt.Errorf("send done: %w", err)
	}
	// Let the sender close first, so that Done is read before the
	// connection goes.
	t := time.AfterFunc(lingerWait, f.w.close)
	defer t.Stop()
	for {
		if _, err := f.w.recv(); err != nil {
			return nil
		}
	}
}

// recv reads the next frame, turning a Cancel or Error into an error.
func (f *fetchSession) recv() (Message, error) {
	m, err := f.w.recv()
	switch {
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrVersion):
		return nil, &violation{CodeProtocol, err.Error(), fmt.Errorf("%w: %w", err, ErrProtocol)}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("donor closed the connection: %w", err)
	case err != nil:
		return nil, fmt.Errorf("read: %w", err)
	}
	switch m := m.(type) {
	case *Cancel:
		return nil, fmt.Errorf("%w: %q", ErrPeerCancelled, m.Reason)
	case *Error:
		if m.Code == CodeMissing {
			return nil, fmt.Errorf("%w: %q", ErrMissing, m.Reason)
		}
		return nil, fmt.Errorf("%w: %v: %q", ErrPeerError, m.Code, m.Reason)
	}
	return m, nil
}

func unexpected(m Message) error {
	return &violation{CodeProtocol, fmt.Sprintf("unexpected %v from the sender", m.Type()), ErrProtocol}
}

// takeManifest reads the signed manifest, checks it names the granted title
// and is signed by a trusted media key, and adds the title to the store.
func (f *fetchSession) takeManifest(size int) error {
	signed := make([]byte, 0, min(size, 1<<20))
	for len(signed) < size {
		m, err := f.recv()
		if err != nil {
			return err
		}
		mf, ok := m.(*Manifest)
		if !ok {
			return unexpected(m)
		}
		if len(signed)+len(mf.Data) > size {
			return &violation{CodeProtocol, fmt.Sprintf("manifest longer than the %d bytes announced", size), ErrProtocol}
		}
		signed = append(signed, mf.Data...)
	}
	m, err := media.Verify(signed, f.cfg.MediaKeys...)
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if m.ID != f.cfg.Grant.Title {
		return fmt.Errorf("manifest of title %s, granted %s: %w", m.ID, f.cfg.Grant.Title, ErrProtocol)
	}
	if _, err := f.cfg.Store.AddTitle(signed); err != nil {
		return err
	}
	return nil
}

// needed lists the wanted pieces the store lacks, in order.
func (f *fetchSession) needed() ([]int, error) {
	n := f.m.NumPieces()
	have, err := f.cfg.Store.Have(f.cfg.Grant.Title)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, p := range f.cfg.Want {
		if p.Last >= n {
			return nil, fmt.Errorf("wanted pieces %d-%d: the title has %d", p.First, p.Last, n)
		}
		for i := p.First; i <= p.Last; i++ {
			if !have.Has(i) {
				out = append(out, i)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// fetch requests the needed pieces, a window at a time, and hands each
// complete piece to the writer.
func (f *fetchSession) fetch(ctx context.Context, needed []int, window int) error {
	pieces := make(chan store.Piece, window)
	f.free = make(chan []byte, window+2)
	f.wdone = make(chan struct{})
	go f.writeLoop(ctx, pieces)
	handedAll := false
	defer func() {
		if !handedAll {
			close(pieces)
		}
		<-f.wdone
	}()

	var expect []int // requested and not complete, in order
	next := 0
	var cur []byte // the piece being assembled: expect[0]
	got := 0
	for done := 0; done < len(needed); {
		for len(expect) < window && next < len(needed) {
			first := needed[next]
			last := first
			next++
			for next < len(needed) && needed[next] == last+1 && len(expect)+last-first+1 < window {
				last++
				next++
			}
			if err := f.w.send(&Request{First: first, Last: last}); err != nil {
				return fmt.Errorf("send request: %w", err)
			}
			for i := first; i <= last; i++ {
				expect = append(expect, i)
			}
		}
		m, err := f.recv()
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case *Chunk:
			_, size := f.m.PieceSpan(m.Piece)
			if m.Piece != expect[0] || m.Offset != got || int64(got+len(m.Data)) > size {
				return &violation{CodeProtocol, fmt.Sprintf("chunk of piece %d at %d (%d bytes), expected piece %d at %d", m.Piece, m.Offset, len(m.Data), expect[0], got), ErrProtocol}
			}
			if cur == nil {
				cur = f.buffer()
			}
			copy(cur[got:], m.Data)
			got += len(m.Data)
			if err := f.cfg.Limiter.WaitN(ctx, len(m.Data)); err != nil {
				return err
			}
			f.w.touch()
		case *PieceEnd:
			_, size := f.m.PieceSpan(expect[0])
			if m.Piece != expect[0] || int64(got) != size {
				return &violation{CodeProtocol, fmt.Sprintf("end of piece %d after %d bytes, expected piece %d of %d bytes", m.Piece, got, expect[0], size), ErrProtocol}
			}
			select {
			case pieces <- store.Piece{Index: m.Piece, Data: cur[:size]}:
			case <-f.wdone:
				return f.werr
			}
			cur, got = nil, 0
			expect = expect[1:]
			done++
		default:
			return unexpected(m)
		}
	}
	close(pieces)
	handedAll = true
	<-f.wdone
	return f.werr
}

// buffer returns a piece buffer, reusing one the writer is done with.
func (f *fetchSession) buffer() []byte {
	select {
	case b := <-f.free:
		return b
	default:
		return make([]byte, f.m.PieceSize)
	}
}

// writeLoop stores complete pieces, batching what has queued up. A batch
// the store refuses for a bad hash is written again piece by piece, so
// the good ones count and the bad ones are named; then the writer stops.
func (f *fetchSession) writeLoop(ctx context.Context, in <-chan store.Piece) {
	defer close(f.wdone)
	title := f.cfg.Grant.Title
	// Pieces that arrived are written even if ctx ends meanwhile: they
	// are checked, and a later transfer need not fetch them again.
	wctx := context.WithoutCancel(ctx)
	var batch []store.Piece
	for p := range in {
		batch = append(batch[:0], p)
		bytes := len(p.Data)
	more:
		for bytes < maxBatch {
			select {
			case q, ok := <-in:
				if !ok {
					break more
				}
				batch = append(batch, q)
				bytes += len(q.Data)
			default:
				break more
			}
		}
		stored := batch
		err := f.cfg.Store.WritePieces(wctx, title, batch)
		switch {
		case errors.Is(err, store.ErrPieceHash):
			stored, err = f.writeEach(wctx, batch)
		case err != nil:
			stored, err = nil, f.failf("store pieces %d to %d: %w", batch[0].Index, batch[len(batch)-1].Index, err)
		}
		for _, q := range stored {
			f.res.Pieces++
			f.res.Bytes += int64(len(q.Data))
		}
		f.w.touch()
		if len(stored) > 0 && f.cfg.Progress != nil {
			f.cfg.Progress(f.res.Pieces, f.res.Bytes)
		}
		for _, q := range batch {
			select {
			case f.free <- q.Data[:cap(q.Data)]:
			default:
			}
		}
		if err != nil {
			f.werr = err
			// Stop the reader: the donor is told why.
			var reason string
			if f.res.BadPieces > 0 {
				reason = "a piece failed its hash"
			} else {
				reason = "the receiver's store failed"
			}
			f.w.farewell(&Cancel{Reason: reason}, farewellWait)
			return
		}
	}
}

// writeEach writes pieces one at a time after a batch failed its hash
// check, and returns those stored; the error names the first bad piece.
func (f *fetchSession) writeEach(ctx context.Context, batch []store.Piece) ([]store.Piece, error) {
	var stored []store.Piece
	var first error
	for _, p := range batch {
		err := f.cfg.Store.WritePiece(ctx, f.cfg.Grant.Title, p.Index, p.Data)
		switch {
		case err == nil:
			stored = append(stored, p)
		case errors.Is(err, store.ErrPieceHash):
			f.res.BadPieces++
			if first == nil {
				first = f.failf("piece %d: %w", p.Index, err)
			}
		default:
			if first == nil {
				first = f.failf("store piece %d: %w", p.Index, err)
			}
		}
	}
	return stored, first
}
