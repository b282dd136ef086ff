package piece

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/store"
	"github.com/boxswarm/boxswarm/p2p/piece/piecetest"
)

var (
	senderID   = piecetest.BoxID(0xaa)
	receiverID = piecetest.BoxID(0xbb)
)

// transport makes a connected pair: the receiver's end and the sender's.
type transport struct {
	name string
	pair func(t *testing.T) (recv, send io.ReadWriteCloser)
}

var transports = []transport{
	{"pipe", func(t *testing.T) (io.ReadWriteCloser, io.ReadWriteCloser) {
		a, b := net.Pipe()
		return a, b
	}},
	{"tcp", tcpPair},
}

func tcpPair(t *testing.T) (io.ReadWriteCloser, io.ReadWriteCloser) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return c, <-accepted
}

// fixture is a sender's store holding a title and an empty receiver store.
type fixture struct {
	title      *piecetest.Title
	from, to   *store.Store
	grant      api.Grant
	token      []byte
	senderConf SenderConfig
	fetchConf  FetchConfig
}

func newFixture(t *testing.T, pieces int) *fixture {
	t.Helper()
	dir := t.TempDir()
	ti := piecetest.MakeTitle(t, dir, pieces*(64<<10)-1000, 64<<10)
	from := piecetest.OpenStore(t, dir+"/from")
	piecetest.Fill(t, from, ti)
	to := piecetest.OpenStore(t, dir+"/to")
	g, tok := piecetest.Grant(7, senderID, receiverID, ti)
	log := piecetest.Logger(t)
	return &fixture{
		title: ti, from: from, to: to, grant: g, token: tok,
		senderConf: SenderConfig{Store: from, SchedulerKey: piecetest.SchedulerPub, Self: senderID, Log: log.With("end", "sender")},
		fetchConf:  FetchConfig{Store: to, MediaKeys: []ed25519.PublicKey{piecetest.MediaPub}, Grant: g, Token: tok, Log: log.With("end", "receiver")},
	}
}

type outcome struct {
	res Result
	err error
}

// run runs Serve and Fetch against each other and returns both outcomes.
func run(ctx context.Context, t *testing.T, tr transport, sc SenderConfig, fc FetchConfig) (sent, fetched outcome) {
	t.Helper()
	rc, sconn := tr.pair(t)
	done := make(chan outcome, 1)
	go func() {
		res, err := Serve(ctx, sconn, sc)
		done <- outcome{res, err}
	}()
	res, err := Fetch(ctx, rc, fc)
	return <-done, outcome{res, err}
}

func TestTransfer(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			f := newFixture(t, 40)
			var started atomic.Bool
			var lastPieces atomic.Int64
			f.fetchConf.Started = func() { started.Store(true) }
			f.fetchConf.Progress = func(p int, b int64) { lastPieces.Store(int64(p)) }
			f.fetchConf.WindowBytes = 256 << 10 // 4 pieces ahead
			var sentProgress atomic.Int64
			f.senderConf.Admit = func(ctx context.Context, g api.Grant) (Session, error) {
				return Session{Progress: func(p int, b int64) { sentProgress.Store(int64(p)) }}, nil
			}
			sent, got := run(t.Context(), t, tr, f.senderConf, f.fetchConf)
			if sent.err != nil || got.err != nil {
				t.Fatalf("sender: %v; receiver: %v", sent.err, got.err)
			}
			piecetest.Complete(t, f.to, f.title)
			n := f.title.Manifest.NumPieces()
			if got.res.Pieces != n || got.res.Bytes != int64(len(f.title.Payload)) || got.res.Peer != senderID {
				t.Errorf("receiver result %+v, want %d pieces, %d bytes", got.res, n, len(f.title.Payload))
			}
			if sent.res.Pieces != n || sent.res.Peer != receiverID {
				t.Errorf("sender result %+v", sent.res)
			}
			if !started.Load() || lastPieces.Load() != int64(n) || sentProgress.Load() != int64(n) {
				t.Errorf("started %v, progress %d/%d of %d", started.Load(), lastPieces.Load(), sentProgress.Load(), n)
			}
			// The sender's lock is gone with the session.
			if err := f.from.DeleteTitle(f.title.ID()); err != nil {
				t.Errorf("delete after sending: %v", err)
			}
		})
	}
}

func TestResume(t *testing.T) {
	f := newFixture(t, 20)
	// The receiver already has the title and pieces 0-9 and 15.
	piecetest.Fill(t, f.to, f.title, api.PieceRange{First: 0, Last: 9}, api.PieceRange{First: 15, Last: 15})
	sent, got := run(t.Context(), t, transports[1], f.senderConf, f.fetchConf)
	if sent.err != nil || got.err != nil {
		t.Fatalf("sender: %v; receiver: %v", sent.err, got.err)
	}
	piecetest.Complete(t, f.to, f.title)
	if sent.res.Pieces != 9 || got.res.Pieces != 9 {
		t.Errorf("sent %d, fetched %d pieces; want the 9 missing", sent.res.Pieces, got.res.Pieces)
	}

	// Nothing left to fetch: Hello, Accept, Done.
	sent, got = run(t.Context(), t, transports[0], f.senderConf, f.fetchConf)
	if sent.err != nil || got.err != nil || sent.res.Pieces != 0 || got.res.Pieces != 0 {
		t.Fatalf("complete title: sender %+v; receiver %+v", sent, got)
	}
}

func TestWantSubset(t *testing.T) {
	f := newFixture(t, 20)
	f.fetchConf.Want = []api.PieceRange{{First: 3, Last: 5}, {First: 11, Last: 11}}
	sent, got := run(t.Context(), t, transports[0], f.senderConf, f.fetchConf)
	if sent.err != nil || got.err != nil {
		t.Fatalf("sender: %v; receiver: %v", sent.err, got.err)
	}
	have, _ := f.to.Have(f.title.ID())
	if have.Count() != 4 || !have.Has(3) || !have.Has(5) || !have.Has(11) {
		t.Errorf("have %x", have.Bytes())
	}
	f.fetchConf.Want = []api.PieceRange{{First: 0, Last: 20}}
	f.fetchConf.Grant.Portions = []api.PieceRange{{First: 0, Last: 10}}
	if _, err := Fetch(t.Context(), nopConn{}, f.fetchConf); err == nil || !strings.Contains(err.Error(), "not all in the grant") {
		t.Errorf("want outside the grant: %v", err)
	}
}

type nopConn struct{}

func (nopConn) Read([]byte) (int, error)    { return 0, io.EOF }
func (nopConn) Write(p []byte) (int, error) { return len(p), nil }
func (nopConn) Close() error                { return nil }

func TestCorruptChunk(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			f := newFixture(t, 20)
			f.senderConf.corrupt = func(c *Chunk) {
				if c.Piece == 6 && c.Offset == 0 {
					c.Data = bytes.Clone(c.Data)
					c.Data[100] ^= 1
				}
			}
			f.fetchConf.WindowBytes = 128 << 10
			sent, got := run(t.Context(), t, tr, f.senderConf, f.fetchConf)
			if !errors.Is(got.err, store.ErrPieceHash) || !strings.Contains(got.err.Error(), "donor "+senderID.String()) || !strings.Contains(got.err.Error(), "piece 6") {
				t.Fatalf("receiver error %v; want a hash failure naming the donor and piece 6", got.err)
			}
			if got.res.BadPieces != 1 {
				t.Errorf("bad pieces %d, want 1", got.res.BadPieces)
			}
			if !errors.Is(sent.err, ErrPeerCancelled) {
				t.Errorf("sender error %v, want the receiver's cancel", sent.err)
			}
			have, _ := f.to.Have(f.title.ID())
			if have.Has(6) {
				t.Error("the corrupt piece was stored")
			}
			for i := range 6 {
				if !have.Has(i) {
					t.Errorf("piece %d before the bad one is missing", i)
				}
			}
			if have.Count() != got.res.Pieces {
				t.Errorf("store has %d pieces, result says %d", have.Count(), got.res.Pieces)
			}
		})
	}
}

// rawHello sends a Hello over a pipe to Serve and returns every frame the
// sender sent before closing, and Serve's error.
func rawHello(t *testing.T, sc SenderConfig, first []byte) ([]Message, [][]byte, error) {
	t.Helper()
	a, b := net.Pipe()
	errc := make(chan error, 1)
	go func() {
		_, err := Serve(t.Context(), b, sc)
		errc <- err
	}()
	go a.Write(first)
	var msgs []Message
	var raws [][]byte
	buf := make([]byte, MaxFrame)
	for {
		m, err := ReadFrame(a, buf)
		if err != nil {
			break
		}
		msgs = append(msgs, m)
		raws = append(raws, AppendFrame(nil, m))
	}
	a.Close()
	return msgs, raws, <-errc
}

func TestRefuse(t *testing.T) {
	f := newFixture(t, 4)
	g, tok := f.grant, f.token
	other := piecetest.MakeTitle(t, t.TempDir(), 100<<10, 64<<10)
	hello := func(g api.Grant, tok []byte) []byte { return AppendFrame(nil, &Hello{Grant: g, Token: tok}) }
	with := func(change func(g *api.Grant)) api.Grant {
		c := g
		c.Portions = append([]api.PieceRange(nil), g.Portions...)
		change(&c)
		return c
	}
	signed := func(g api.Grant) []byte { return hello(g, g.Sign(piecetest.SchedulerKey)) }
	garbage := bytes.Repeat([]byte{0x55}, 64)
	for _, tc := range []struct {
		name  string
		frame []byte
		code  RefuseCode
	}{
		{"bad token", hello(g, garbage), RefuseUnauthorized},
		{"token by another key", hello(g, g.Sign(piecetest.OtherKey)), RefuseUnauthorized},
		{"expired", signed(with(func(g *api.Grant) { g.Expires = time.Now().Add(-time.Second) })), RefuseUnauthorized},
		{"for another receiver", hello(with(func(g *api.Grant) { g.Receiver = piecetest.BoxID(0xcc) }), tok), RefuseUnauthorized},
		{"for another title", hello(with(func(g *api.Grant) { g.Title = other.ID() }), tok), RefuseUnauthorized},
		{"for other portions", hello(with(func(g *api.Grant) { g.Portions[0].Last++ }), tok), RefuseUnauthorized},
		{"for another transfer", hello(with(func(g *api.Grant) { g.Transfer++ }), tok), RefuseUnauthorized},
		{"for another sender", signed(with(func(g *api.Grant) { g.Sender = piecetest.BoxID(0xcc) })), RefuseUnauthorized},
		{"not a hello", AppendFrame(nil, &Request{First: 0, Last: 0}), RefuseUnauthorized},
		{"malformed hello", hello(g, tok)[:40], RefuseUnauthorized},
		{"other version", append([]byte{2}, hello(g, tok)[1:]...), RefuseVersion},
		{"title not held", signed(with(func(g *api.Grant) { g.Title = other.ID() })), RefuseUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frame := tc.frame
			if tc.name == "malformed hello" {
				// A header that matches the truncated body.
				frame[2], frame[3] = 0, byte(len(frame)-HeaderSize)
			}
			msgs, raws, err := rawHello(t, f.senderConf, frame)
			if len(msgs) != 1 {
				t.Fatalf("sender sent %d frames, want one Refuse: %+v", len(msgs), msgs)
			}
			r, ok := msgs[0].(*Refuse)
			if !ok || r.Code != tc.code {
				t.Fatalf("sender sent %+v, want a refusal %v", msgs[0], tc.code)
			}
			if tc.code == RefuseUnauthorized {
				if !bytes.Equal(raws[0], AppendFrame(nil, &Refuse{Code: RefuseUnauthorized, Reason: unauthorized})) {
					t.Errorf("refusal %q differs from the one for every unauthorized peer", raws[0])
				}
				if !errors.Is(err, ErrUnauthorized) {
					t.Errorf("Serve: %v, want ErrUnauthorized", err)
				}
			}
			if err == nil {
				t.Error("Serve returned nil")
			}
		})
	}

	// Fetch reports the refusal.
	f.fetchConf.Token = garbage
	_, got := run(t.Context(), t, transports[0], f.senderConf, f.fetchConf)
	if !errors.Is(got.err, ErrUnauthorized) || !strings.Contains(got.err.Error(), senderID.String()) {
		t.Errorf("Fetch with a bad token: %v", got.err)
	}
	if ti, _ := f.to.Titles(); len(ti) != 0 {
		t.Errorf("refused receiver learned the title: %+v", ti)
	}

	// Admit can refuse an otherwise good token, the same way.
	f.senderConf.Admit = func(context.Context, api.Grant) (Session, error) { return Session{}, errors.New("no such transfer") }
	msgs, _, err := rawHello(t, f.senderConf, hello(g, tok))
	if len(msgs) != 1 || msgs[0].(*Refuse).Reason != unauthorized || !errors.Is(err, ErrUnauthorized) {
		t.Errorf("not admitted: %+v, %v", msgs, err)
	}
}

// rawSession is a hand-driven receiver that got past Hello and Accept.
type rawSession struct {
	t    *testing.T
	c    net.Conn
	buf  []byte
	errc chan error
}

func startRaw(t *testing.T, f *fixture) *rawSession {
	a, b := net.Pipe()
	s := &rawSession{t: t, c: a, buf: make([]byte, MaxFrame), errc: make(chan error, 1)}
	go func() {
		_, err := Serve(t.Context(), b, f.senderConf)
		s.errc <- err
	}()
	s.send(&Hello{Grant: f.grant, Token: f.token})
	if _, ok := s.recv().(*Accept); !ok {
		t.Fatal("not accepted")
	}
	return s
}

func (s *rawSession) send(m Message) {
	if _, err := s.c.Write(AppendFrame(nil, m)); err != nil {
		s.t.Fatal(err)
	}
}

func (s *rawSession) recv() Message {
	m, err := ReadFrame(s.c, s.buf)
	if err != nil {
		s.t.Fatal(err)
	}
	return m
}

// rest reads until the sender closes and returns what it sent.
func (s *rawSession) rest() []Message {
	var out []Message
	for {
		m, err := ReadFrame(s.c, s.buf)
		if err != nil {
			return out
		}
		out = append(out, m)
	}
}

func TestRequestOutsideGrant(t *testing.T) {
	f := newFixture(t, 8)
	f.grant.Portions = []api.PieceRange{{First: 0, Last: 1}, {First: 4, Last: 5}}
	f.token = f.grant.Sign(piecetest.SchedulerKey)
	for _, tc := range []struct {
		name string
		req  []Request
		code ErrorCode
		err  error
	}{
		{"gap between portions", []Request{{First: 1, Last: 4}}, CodeNotGranted, ErrNotGranted},
		{"after", []Request{{First: 6, Last: 6}}, CodeNotGranted, ErrNotGranted},
		{"past the title", []Request{{First: 5, Last: 9}}, CodeProtocol, ErrProtocol},
		{"over the window", []Request{{First: 4, Last: 5}}, CodeProtocol, ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.senderConf.Window = 1
			s := startRaw(t, f)
			go func() {
				for _, r := range tc.req {
					s.send(&r)
				}
			}()
			msgs := s.rest()
			last, ok := msgs[len(msgs)-1].(*Error)
			if !ok || last.Code != tc.code {
				t.Fatalf("sender sent %+v, want it to end with an Error %v", msgs, tc.code)
			}
			for _, m := range msgs {
				if c, ok := m.(*Chunk); ok && !f.grant.Covers(c.Piece) {
					t.Errorf("sent piece %d outside the grant", c.Piece)
				}
			}
			if err := <-s.errc; !errors.Is(err, tc.err) {
				t.Errorf("Serve: %v, want %v", err, tc.err)
			}
		})
	}
	// Within the grant, pieces come in request order, as chunks then an end.
	f.senderConf.Window = 3
	s := startRaw(t, f)
	s.send(&Request{First: 4, Last: 5})
	s.send(&Request{First: 0, Last: 0})
	var order []int
	for len(order) < 3 {
		switch m := s.recv().(type) {
		case *PieceEnd:
			order = append(order, m.Piece)
		case *Chunk:
		default:
			t.Fatalf("unexpected %+v", m)
		}
	}
	if order[0] != 4 || order[1] != 5 || order[2] != 0 {
		t.Errorf("pieces in order %v", order)
	}
	s.send(&Done{})
	if err := <-s.errc; err != nil {
		t.Errorf("Serve after Done: %v", err)
	}
}

func TestDonorMissingPiece(t *testing.T) {
	f := newFixture(t, 10)
	dir := t.TempDir()
	partial := piecetest.OpenStore(t, dir)
	piecetest.Fill(t, partial, f.title, api.PieceRange{First: 0, Last: 4})
	f.senderConf.Store = partial
	_, got := run(t.Context(), t, transports[0], f.senderConf, f.fetchConf)
	if !errors.Is(got.err, ErrMissing) || !strings.Contains(got.err.Error(), senderID.String()) {
		t.Fatalf("Fetch from a donor without piece 5: %v", got.err)
	}
	if got.res.Pieces != 5 {
		t.Errorf("stored %d pieces, want the 5 the donor had", got.res.Pieces)
	}
}

func TestUntrustedManifest(t *testing.T) {
	f := newFixture(t, 4)
	f.fetchConf.MediaKeys = []ed25519.PublicKey{piecetest.OtherKey.Public().(ed25519.PublicKey)}
	_, got := run(t.Context(), t, transports[0], f.senderConf, f.fetchConf)
	if !errors.Is(got.err, media.ErrManifestSignature) {
		t.Fatalf("Fetch with a manifest signed by an untrusted key: %v", got.err)
	}
	if ti, _ := f.to.Titles(); len(ti) != 0 {
		t.Errorf("title added: %+v", ti)
	}
}

func TestCancel(t *testing.T) {
	for _, end := range []string{"receiver", "sender"} {
		for _, tr := range transports {
			t.Run(end+"/"+tr.name, func(t *testing.T) {
				f := newFixture(t, 40)
				// Slow enough that the transfer is under way when cancelled.
				lim, _ := NewTokenBucket(256<<10, 0)
				f.senderConf.Limiter = lim
				ctx, cancel := context.WithCancel(t.Context())
				sctx, fctx := t.Context(), t.Context()
				if end == "receiver" {
					fctx = ctx
				} else {
					sctx = ctx
				}
				var once sync.Once
				f.fetchConf.Progress = func(p int, _ int64) {
					if p >= 3 {
						once.Do(cancel)
					}
				}
				rc, sconn := tr.pair(t)
				done := make(chan outcome, 1)
				go func() {
					res, err := Serve(sctx, sconn, f.senderConf)
					done <- outcome{res, err}
				}()
				res, err := Fetch(fctx, rc, f.fetchConf)
				stopped := time.Now()
				sent := <-done
				if wait := time.Since(stopped); wait > 2*time.Second {
					t.Errorf("the other end took %v to stop", wait)
				}
				if end == "receiver" {
					if !errors.Is(err, context.Canceled) || !errors.Is(sent.err, ErrPeerCancelled) {
						t.Fatalf("receiver: %v; sender: %v", err, sent.err)
					}
				} else {
					if !errors.Is(sent.err, context.Canceled) || !errors.Is(err, ErrPeerCancelled) {
						t.Fatalf("receiver: %v; sender: %v", err, sent.err)
					}
				}
				if res.Pieces < 3 || res.Pieces >= f.title.Manifest.NumPieces() {
					t.Errorf("stored %d pieces", res.Pieces)
				}
				if err := f.from.DeleteTitle(f.title.ID()); err != nil {
					t.Errorf("sender's lock outlived the session: %v", err)
				}
			})
		}
	}
}

func TestIdleTimeout(t *testing.T) {
	f := newFixture(t, 4)
	a, b := net.Pipe()
	defer b.Close()
	go io.Copy(io.Discard, b) // a sender that reads and never answers
	f.fetchConf.IdleTimeout = 200 * time.Millisecond
	start := time.Now()
	_, err := Fetch(t.Context(), a, f.fetchConf)
	if !errors.Is(err, ErrTimeout) || time.Since(start) > 2*time.Second {
		t.Fatalf("Fetch from a silent sender: %v after %v", err, time.Since(start))
	}

	// A receiver that never says hello.
	a, b = net.Pipe()
	defer a.Close()
	f.senderConf.HelloTimeout = 200 * time.Millisecond
	_, err = Serve(t.Context(), b, f.senderConf)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Serve without a hello: %v", err)
	}
}

func TestRateLimit(t *testing.T) {
	const rate = 1 << 20
	f := newFixture(t, 32) // 2 MiB
	lim, err := NewTokenBucket(rate, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.senderConf.Limiter = lim
	start := time.Now()
	sent, got := run(t.Context(), t, transports[1], f.senderConf, f.fetchConf)
	if sent.err != nil || got.err != nil {
		t.Fatalf("sender: %v; receiver: %v", sent.err, got.err)
	}
	took := time.Since(start)
	want := time.Duration(float64(len(f.title.Payload)-MaxFrame) / rate * float64(time.Second))
	t.Logf("%d bytes at %d B/s took %v (ideal %v)", len(f.title.Payload), rate, took, want)
	if took < want*9/10 || took > want*3 {
		t.Errorf("took %v, want about %v", took, want)
	}

	// The receiver's limiter paces too.
	to := piecetest.OpenStore(t, t.TempDir())
	f.fetchConf.Store = to
	f.senderConf.Limiter = nil
	f.fetchConf.Limiter, _ = NewTokenBucket(rate, 0)
	start = time.Now()
	if sent, got := run(t.Context(), t, transports[1], f.senderConf, f.fetchConf); sent.err != nil || got.err != nil {
		t.Fatalf("sender: %v; receiver: %v", sent.err, got.err)
	}
	if took := time.Since(start); took < want*9/10 || took > want*3 {
		t.Errorf("download cap: took %v, want about %v", took, want)
	}
}

func TestTokenBucket(t *testing.T) {
	b, err := NewTokenBucket(100<<10, 10<<10)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10 {
				b.WaitN(t.Context(), 5<<10)
			}
		})
	}
	wg.Wait()
	// 200 KiB through a 100 KiB/s bucket that started with 10 KiB.
	if took := time.Since(start); took < 1800*time.Millisecond || took > 4*time.Second {
		t.Errorf("took %v, want about 1.9s", took)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := b.WaitN(ctx, 1<<20); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitN past its context: %v", err)
	}
	for _, bad := range [][2]int{{0, 0}, {-1, 0}, {1, -1}} {
		if _, err := NewTokenBucket(bad[0], bad[1]); err == nil {
			t.Errorf("NewTokenBucket(%d, %d) accepted", bad[0], bad[1])
		}
	}
}

func TestThreeDonors(t *testing.T) {
	f := newFixture(t, 30)
	portions := []api.PieceRange{{First: 0, Last: 9}, {First: 10, Last: 19}, {First: 20, Last: 29}}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, p := range portions {
		donor := piecetest.BoxID(byte(0x10 + i))
		s := piecetest.OpenStore(t, t.TempDir())
		piecetest.Fill(t, s, f.title)
		g, tok := piecetest.Grant(api.TransferID(100+i), donor, receiverID, f.title, p)
		sc := f.senderConf
		sc.Store, sc.Self = s, donor
		fc := f.fetchConf
		fc.Grant, fc.Token = g, tok
		wg.Go(func() {
			sent, got := run(t.Context(), t, transports[i%2], sc, fc)
			errs[i] = errors.Join(sent.err, got.err)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	piecetest.Complete(t, f.to, f.title)
}

// TestLargePieces moves pieces larger than the sender's read block, in
// chunks that do not divide it.
func TestLargePieces(t *testing.T) {
	dir := t.TempDir()
	ti := piecetest.MakeTitle(t, dir, 10<<20, 4<<20)
	from := piecetest.OpenStore(t, dir+"/from")
	piecetest.Fill(t, from, ti)
	to := piecetest.OpenStore(t, dir+"/to")
	g, tok := piecetest.Grant(3, senderID, receiverID, ti)
	var chunks, short atomic.Int64
	sc := SenderConfig{Store: from, SchedulerKey: piecetest.SchedulerPub, Self: senderID, ChunkSize: 48 << 10, corrupt: func(c *Chunk) {
		chunks.Add(1)
		if len(c.Data) != 48<<10 {
			short.Add(1)
		}
	}}
	fc := FetchConfig{Store: to, MediaKeys: []ed25519.PublicKey{piecetest.MediaPub}, Grant: g, Token: tok}
	sent, got := run(t.Context(), t, transports[1], sc, fc)
	if sent.err != nil || got.err != nil {
		t.Fatalf("sender: %v; receiver: %v", sent.err, got.err)
	}
	piecetest.Complete(t, to, ti)
	t.Logf("%d pieces of %d bytes in %d chunks, %d short", ti.Manifest.NumPieces(), ti.Manifest.PieceSize, chunks.Load(), short.Load())
	// Blocks are whole chunks: only a piece's last chunk is short.
	if short.Load() > int64(ti.Manifest.NumPieces()) {
		t.Errorf("%d short chunks for %d pieces", short.Load(), ti.Manifest.NumPieces())
	}
}
