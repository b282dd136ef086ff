package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/deviceca"
	"github.com/boxswarm/boxswarm/headend/gateway/gatewaytest"
)

var _ Handler = (*gatewaytest.Handler)(nil)

const goodCode = "ABCD-1234"

// fixture is a gateway on loopback with an in-memory handler.
type fixture struct {
	t     *testing.T
	ca    *deviceca.CA
	h     *gatewaytest.Handler
	g     *Gateway
	addr  string
	roots *x509.CertPool
}

// testLog logs through t when BOXSWARM_TEST_LOG is set, and drops
// everything otherwise (the chaos test logs thousands of lines).
func testLog(t testing.TB) *slog.Logger {
	if os.Getenv("BOXSWARM_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newFixture(t *testing.T, mod func(*Config)) *fixture {
	t.Helper()
	ca, err := deviceca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.IssueServer([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	h := gatewaytest.New(goodCode)
	cfg := Config{
		TLS:              &tls.Config{Certificates: []tls.Certificate{srv}},
		CA:               ca,
		Handler:          h,
		Log:              testLog(t),
		HandshakeTimeout: 5 * time.Second,
		IdleTimeout:      10 * time.Second,
		WriteTimeout:     5 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &fixture{t: t, ca: ca, h: h, g: g, addr: l.Addr().String(), roots: ca.Pool()}
}

// testBox is a box identity.
type testBox struct {
	id   api.BoxID
	key  ed25519.PrivateKey
	der  []byte
	cert tls.Certificate
}

func newIdentity(t *testing.T, ca *deviceca.CA, id api.BoxID) testBox {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := ca.IssueDevice(id, pub, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return testBox{id: id, key: key, der: der, cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

func randomID(t *testing.T) api.BoxID {
	var id api.BoxID
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	return id
}

// newBox makes a box the handler knows.
func (f *fixture) newBox() testBox {
	b := newIdentity(f.t, f.ca, randomID(f.t))
	f.h.AddBox(b.id, b.der)
	return b
}

func (f *fixture) ctx(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	f.t.Cleanup(cancel)
	return ctx
}

// rawBox speaks frames to the gateway by hand, to say what a correct box
// never would.
type rawBox struct {
	t *testing.T
	c *tls.Conn
}

// dial connects with cert, or with no certificate if cert is nil. The TLS
// handshake error, if any, is returned rather than failing the test.
func (f *fixture) dial(cert *tls.Certificate) (*rawBox, error) {
	f.t.Helper()
	cfg := &tls.Config{RootCAs: f.roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", f.addr, cfg)
	if err != nil {
		return nil, err
	}
	f.t.Cleanup(func() { c.Close() })
	return &rawBox{t: f.t, c: c}, nil
}

func (f *fixture) mustDial(cert *tls.Certificate) *rawBox {
	f.t.Helper()
	rb, err := f.dial(cert)
	if err != nil {
		f.t.Fatal(err)
	}
	return rb
}

func (rb *rawBox) send(seq uint64, b api.Body) {
	rb.t.Helper()
	if err := api.WriteMessage(rb.c, seq, b); err != nil {
		rb.t.Fatalf("send %s: %v", b.Type(), err)
	}
}

// sendJSON sends an envelope as given, framed.
func (rb *rawBox) sendJSON(env string) {
	rb.t.Helper()
	rb.sendRaw(frameOf([]byte(env)))
}

func (rb *rawBox) sendRaw(b []byte) {
	rb.t.Helper()
	if _, err := rb.c.Write(b); err != nil {
		rb.t.Fatalf("send: %v", err)
	}
}

func frameOf(payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
	return append(b, payload...)
}

// read returns the next message, or the error that ended the stream.
func (rb *rawBox) read() (api.Message, error) {
	rb.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	return api.ReadMessage(rb.c)
}

func (rb *rawBox) next() api.Message {
	rb.t.Helper()
	m, err := rb.read()
	if err != nil {
		rb.t.Fatalf("read: %v", err)
	}
	return m
}

// expect reads the next message and checks its type.
func expect[T api.Body](rb *rawBox) (T, uint64) {
	rb.t.Helper()
	m := rb.next()
	b, ok := m.Body.(T)
	if !ok {
		var zero T
		rb.t.Fatalf("got %s %+v (seq %d), want %s", m.Body.Type(), m.Body, m.Seq, zero.Type())
	}
	return b, m.Seq
}

// expectReject reads a reject and checks its reason holds want.
func (rb *rawBox) expectReject(want string) api.Reject {
	rb.t.Helper()
	r, seq := expect[api.Reject](rb)
	if seq != 0 {
		rb.t.Errorf("reject carries sequence %d, want 0", seq)
	}
	if !strings.Contains(r.Reason, want) {
		rb.t.Errorf("reject reason %q, want it to contain %q", r.Reason, want)
	}
	return r
}

// expectClosed checks the gateway closes the connection with nothing more
// to say.
func (rb *rawBox) expectClosed() {
	rb.t.Helper()
	m, err := rb.read()
	if err == nil {
		rb.t.Fatalf("got %s %+v, want the connection closed", m.Body.Type(), m.Body)
	}
	if !errors.Is(err, io.EOF) && !isClosed(err) {
		rb.t.Fatalf("read: %v, want the connection closed", err)
	}
}

// expectOpen checks the connection is alive and nothing else is queued: a
// heartbeat comes straight back.
func (rb *rawBox) expectOpen() {
	rb.t.Helper()
	rb.send(0, api.Heartbeat{})
	expect[api.Heartbeat](rb)
}

// hello does the box's half of the hello exchange and returns the
// gateway's.
func (rb *rawBox) hello(lastSeq uint64) api.Hello {
	rb.t.Helper()
	rb.send(0, api.Hello{Versions: []int{api.Version}, LastSeq: lastSeq})
	h, seq := expect[api.Hello](rb)
	if seq != 0 {
		rb.t.Errorf("hello carries sequence %d", seq)
	}
	return h
}
