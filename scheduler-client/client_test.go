package schedclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/deviceca"
	"github.com/boxswarm/boxswarm/media"
)

func testLog(t *testing.T) *slog.Logger {
	if os.Getenv("BOXSWARM_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// headEnd is a scripted head-end: the test plays the gateway's part by
// hand, to check the client's rules one by one.
type headEnd struct {
	t     *testing.T
	ca    *deviceca.CA
	l     net.Listener
	conns chan *tls.Conn
}

func newHeadEnd(t *testing.T) *headEnd {
	ca, err := deviceca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.IssueServer([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{srv},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.Pool(),
		MinVersion:   tls.VersionTLS13,
	})
	if err != nil {
		t.Fatal(err)
	}
	he := &headEnd{t: t, ca: ca, l: l, conns: make(chan *tls.Conn, 16)}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(he.conns)
				return
			}
			he.conns <- c.(*tls.Conn)
		}
	}()
	t.Cleanup(func() { l.Close() })
	return he
}

// box makes a box identity and a client for it.
func (he *headEnd) box(mod func(*Config)) (*Client, *handled) {
	he.t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		he.t.Fatal(err)
	}
	var id api.BoxID
	rand.Read(id[:])
	der, err := he.ca.IssueDevice(id, pub, time.Hour)
	if err != nil {
		he.t.Fatal(err)
	}
	h := &handled{}
	cfg := Config{
		Addr: he.l.Addr().String(), ServerName: "127.0.0.1", Roots: he.ca.Pool(),
		Identity: Identity{Key: key, Certificate: der},
		State:    MemState(),
		Handle:   h.handle,
		Log:      testLog(he.t),
		// Heartbeats slow enough not to get in the way of the scripts.
		Heartbeat:  10 * time.Second,
		BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
		Timeout: 5 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		he.t.Fatal(err)
	}
	return c, h
}

// handled records what Handle saw; it fails for a delete_answer whose
// reason is "fail".
type handled struct {
	mu     sync.Mutex
	bodies []api.Body
}

func (h *handled) handle(_ context.Context, b api.Body) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.bodies = append(h.bodies, b)
	if d, ok := b.(api.DeleteAnswer); ok && d.Reason == "fail" {
		return errors.New("cannot delete: title is playing")
	}
	return nil
}

func (h *handled) types() []api.Type {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ts []api.Type
	for _, b := range h.bodies {
		ts = append(ts, b.Type())
	}
	return ts
}

func run(t *testing.T, c *Client) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// peer is the head-end's side of one connection.
type peer struct {
	t *testing.T
	c *tls.Conn
}

func (he *headEnd) accept() *peer {
	he.t.Helper()
	select {
	case c := <-he.conns:
		he.t.Cleanup(func() { c.Close() })
		return &peer{t: he.t, c: c}
	case <-time.After(5 * time.Second):
		he.t.Fatal("the box did not connect")
		return nil
	}
}

func (p *peer) send(seq uint64, b api.Body) {
	p.t.Helper()
	if err := api.WriteMessage(p.c, seq, b); err != nil {
		p.t.Fatal(err)
	}
}

// next returns the next message other than a heartbeat.
func (p *peer) next() (api.Message, error) {
	for {
		p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		m, err := api.ReadMessage(p.c)
		if err != nil || m.Body.Type() != (api.Heartbeat{}).Type() {
			return m, err
		}
	}
}

func want[T api.Body](p *peer) (T, uint64) {
	p.t.Helper()
	m, err := p.next()
	if err != nil {
		p.t.Fatalf("read: %v", err)
	}
	b, ok := m.Body.(T)
	if !ok {
		var zero T
		p.t.Fatalf("got %s %+v (seq %d), want %s", m.Body.Type(), m.Body, m.Seq, zero.Type())
	}
	return b, m.Seq
}

func (p *peer) wantAck(seq uint64) {
	p.t.Helper()
	if a, _ := want[api.Ack](p); a.Seq != seq {
		p.t.Fatalf("ack %d, want %d", a.Seq, seq)
	}
}

func (p *peer) wantReject(seq uint64, reason string) {
	p.t.Helper()
	r, _ := want[api.Reject](p)
	if r.Seq != seq || !strings.Contains(r.Reason, reason) {
		p.t.Fatalf("reject %+v, want seq %d and a reason containing %q", r, seq, reason)
	}
}

// hello reads the box's hello and answers with lastSeq.
func (p *peer) hello(lastSeq uint64) api.Hello {
	p.t.Helper()
	h, _ := want[api.Hello](p)
	p.send(0, api.Hello{Versions: []int{api.Version}, LastSeq: lastSeq})
	return h
}

func confirmed(n int) api.TransferConfirmed {
	return api.TransferConfirmed{Transfer: api.TransferID(n), Title: media.ID{1}}
}

// TestClientRules: the box's side of the sequencing rules, message by
// message, against a head-end played by the test.
func TestClientRules(t *testing.T) {
	he := newHeadEnd(t)
	c, h := he.box(nil)
	run(t, c)
	p := he.accept()
	if hl := p.hello(0); hl.LastSeq != 0 || !slices.Contains(hl.Versions, api.Version) {
		t.Fatalf("box hello %+v", hl)
	}

	p.send(1, confirmed(1))
	p.wantAck(1)

	// The same again: a duplicate, rejected and acknowledged, not handled.
	p.send(1, confirmed(1))
	p.wantReject(1, "duplicate sequence 1 (already processed)")
	p.wantAck(1)

	// A type only a box sends: rejected, no effect on the sequence.
	p.send(2, api.Register{NAT: api.NATOpen})
	p.wantReject(2, "register is not a message the head-end may send")

	// Frames that do not decode: rejected with the decoder's words.
	api.WriteMessage(p.c, 0, api.Heartbeat{})
	p.c.Write([]byte{0, 0, 0, 12})
	p.c.Write([]byte(`{"v":1,"seq"`))
	p.wantReject(0, "malformed message")

	// Control messages carry no sequence, sequenced ones do.
	p.send(4, api.Ack{Seq: 0})
	p.wantReject(4, "control message")
	p.send(0, confirmed(2))
	p.wantReject(0, "without a sequence number")

	// A message Handle fails on: reported, and still processed.
	p.send(2, api.DeleteAnswer{Title: media.ID{2}, Reason: "fail"})
	p.wantReject(2, "cannot delete: title is playing")
	p.wantAck(2)

	p.send(3, confirmed(3))
	p.wantAck(3)

	// An ack of more than the box sent.
	p.send(0, api.Ack{Seq: 1})
	p.wantReject(0, "ack of sequence 1, but the box has sent up to 0")

	// A gap: rejected, and the box closes the connection...
	p.send(5, confirmed(5))
	p.wantReject(5, "sequence 5 skips ahead: expected 4")
	if m, err := p.next(); err == nil {
		t.Fatalf("got %s after the gap, want the connection closed", m.Body.Type())
	}
	// ...and comes back saying where it is.
	p2 := he.accept()
	if hl := p2.hello(0); hl.LastSeq != 3 {
		t.Errorf("reconnected with LastSeq %d, want 3", hl.LastSeq)
	}
	p2.send(4, confirmed(4))
	p2.wantAck(4)

	got := h.types()
	wantTypes := []api.Type{"transfer_confirmed", "delete_answer", "transfer_confirmed", "transfer_confirmed"}
	if !slices.Equal(got, wantTypes) {
		t.Errorf("handled %v, want %v", got, wantTypes)
	}
}

// TestClientResendsWhatTheHeadEndLacks: stored messages go out at once; a
// reconnection resends exactly those above the head-end's hello LastSeq,
// in order; acknowledged ones leave the state.
func TestClientResendsWhatTheHeadEndLacks(t *testing.T) {
	he := newHeadEnd(t)
	st := MemState()
	c, _ := he.box(func(cfg *Config) { cfg.State = st })
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		if err := c.Send(ctx, api.TransferProgress{Transfer: 1, Pieces: i}); err != nil {
			t.Fatal(err)
		}
	}
	run(t, c)
	p := he.accept()
	p.hello(0)
	for i := uint64(1); i <= 3; i++ {
		if _, seq := want[api.TransferProgress](p); seq != i {
			t.Fatalf("got seq %d, want %d", seq, i)
		}
	}
	p.send(0, api.Ack{Seq: 1})
	p.c.Close() // 2 and 3 processed or not: the next hello says

	p2 := he.accept()
	p2.hello(2)
	if m, seq := want[api.TransferProgress](p2); seq != 3 || m.Pieces != 3 {
		t.Fatalf("resent %d (pieces %d), want only 3", seq, m.Pieces)
	}
	if err := c.Send(ctx, api.Inventory{Full: true}); err != nil {
		t.Fatal(err)
	}
	if _, seq := want[api.Inventory](p2); seq != 4 {
		t.Fatalf("new message as %d, want 4", seq)
	}
	p2.send(0, api.Ack{Seq: 4})
	waitFor(t, func() bool { _, _, pending, _ := st.Load(); return len(pending) == 0 })
}

// TestClientStateBehindHeadEnd: a box whose state was lost (or restored
// from an old copy) learns from the head-end's hello which numbers are
// taken, and does not reuse them: its next message is not taken for a
// duplicate.
func TestClientStateBehindHeadEnd(t *testing.T) {
	he := newHeadEnd(t)
	st := MemState()
	c, _ := he.box(func(cfg *Config) { cfg.State = st })
	run(t, c)
	p := he.accept()
	p.hello(7)
	waitFor(t, c.Connected)
	if err := c.Send(context.Background(), api.Inventory{Full: true}); err != nil {
		t.Fatal(err)
	}
	if _, seq := want[api.Inventory](p); seq != 8 {
		t.Errorf("next message numbered %d, want 8", seq)
	}
	if _, lastOut, _, _ := st.Load(); lastOut != 8 {
		t.Errorf("state's last out %d, want 8", lastOut)
	}
}

// TestClientRefusedSession: the head-end's reject at hello is the error
// (ErrRejected with the reason), and the box keeps trying.
func TestClientRefusedSession(t *testing.T) {
	he := newHeadEnd(t)
	c, _ := he.box(nil)
	errs := make(chan error, 1)
	go func() {
		_, err := c.session(context.Background())
		errs <- err
	}()
	p := he.accept()
	want[api.Hello](p)
	p.send(0, api.Reject{Reason: "box 01… not accepted: unknown box"})
	p.c.Close()
	err := <-errs
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "unknown box") {
		t.Fatalf("session: %v", err)
	}
	run(t, c)
	he.accept() // and again, after its backoff
}

// TestClientDetectsDeadHeadEnd: a head-end that answers nothing, not even
// heartbeats, for three heartbeats is taken for dead, and the box
// reconnects.
func TestClientDetectsDeadHeadEnd(t *testing.T) {
	he := newHeadEnd(t)
	c, _ := he.box(func(cfg *Config) { cfg.Heartbeat = 100 * time.Millisecond })
	run(t, c)
	p := he.accept()
	p.hello(0)
	start := time.Now()
	// Read (and ignore) the heartbeats until the box gives up.
	for {
		p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := api.ReadMessage(p.c); err != nil {
			break
		}
	}
	he.accept()
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Errorf("reconnected after %v, want about 300 ms", d)
	}
}

func TestSendRefuses(t *testing.T) {
	he := newHeadEnd(t)
	c, _ := he.box(func(cfg *Config) { cfg.MaxOutbox = 2 })
	ctx := context.Background()
	for _, b := range []api.Body{
		api.Heartbeat{}, api.Hello{Versions: []int{1}}, api.Ack{}, api.Activate{Code: "x", PublicKey: make([]byte, 32)},
		api.TransferStart{}, api.Registered{},
	} {
		if err := c.Send(ctx, b); err == nil || !strings.Contains(err.Error(), "not a message a box sends") {
			t.Errorf("Send(%s) = %v", b.Type(), err)
		}
	}
	if err := c.Send(ctx, api.Register{Capacity: 1, Free: 2}); err == nil || !strings.Contains(err.Error(), "free 2 of capacity 1") {
		t.Errorf("Send(invalid register) = %v", err)
	}
	for range 2 {
		if err := c.Send(ctx, api.Inventory{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Send(ctx, api.Inventory{}); !errors.Is(err, ErrOutboxFull) {
		t.Errorf("Send beyond MaxOutbox = %v", err)
	}
	if _, lastOut, pending, _ := c.cfg.State.Load(); lastOut != 2 || len(pending) != 2 {
		t.Errorf("state holds %d messages up to %d, want the 2 accepted", len(pending), lastOut)
	}
}

// TestActivateChecksTheAnswer: the box takes a certificate only if it is
// for its key, from the head-end's CA, and names the box it was told.
func TestActivateChecksTheAnswer(t *testing.T) {
	he := newHeadEnd(t)
	other, err := deviceca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	id := api.BoxID{7}
	issue := func(ca *deviceca.CA, id api.BoxID, pub ed25519.PublicKey) []byte {
		der, err := ca.IssueDevice(id, pub, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	for _, tc := range []struct {
		name   string
		answer api.Body
		want   string
	}{
		{"good", api.Activated{Box: id, Certificate: issue(he.ca, id, pub)}, ""},
		{"refused", api.Reject{Reason: "activation refused: unknown activation code"}, "unknown activation code"},
		{"certificate for another key", api.Activated{Box: id, Certificate: issue(he.ca, id, otherPub)}, "another key"},
		{"certificate from another CA", api.Activated{Box: id, Certificate: issue(other, id, pub)}, "unknown authority"},
		{"certificate of another box", api.Activated{Box: api.BoxID{8}, Certificate: issue(he.ca, id, pub)}, "the certificate box"},
		{"not a certificate", api.Activated{Box: id, Certificate: []byte("junk")}, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				got, der, err := Activate(context.Background(), he.l.Addr().String(), "127.0.0.1", he.ca.Pool(), "CODE", pub)
				if err == nil && (got != id || len(der) == 0) {
					err = errors.New("wrong box")
				}
				done <- err
			}()
			p := he.accept()
			m, seq := want[api.Activate](p)
			if seq != 0 || m.Code != "CODE" || !ed25519.PublicKey(m.PublicKey).Equal(pub) {
				t.Errorf("activate %+v seq %d", m, seq)
			}
			p.send(0, tc.answer)
			err := <-done
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Activate = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestNewRefusesBadIdentity(t *testing.T) {
	he := newHeadEnd(t)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := he.ca.IssueDevice(api.BoxID{1}, otherPub, time.Hour)
	srv, _ := he.ca.IssueServer([]string{"x.example"})
	for _, tc := range []struct {
		name string
		id   Identity
		want string
	}{
		{"certificate of another key", Identity{Key: key, Certificate: der}, "not for the identity key"},
		{"server certificate", Identity{Key: key, Certificate: srv.Certificate[0]}, "not for the identity key"},
		{"garbage", Identity{Key: key, Certificate: []byte("x")}, "device certificate"},
		{"no key", Identity{Certificate: der}, "no identity key"},
		{"not Ed25519", Identity{Key: ecdsaKey(t), Certificate: der}, "not an Ed25519 key"},
	} {
		_, err := New(Config{Addr: "x:1", Roots: x509.NewCertPool(), State: MemState(), Handle: (&handled{}).handle, Identity: tc.id})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ecdsaKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
