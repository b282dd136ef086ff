// Package gateway is the head-end's end of the box connection. It accepts
// boxes over TLS 1.3 with mutual authentication, runs the session protocol
// of package api on each connection, and hands the boxes' messages to the
// scheduler (a Handler): each message once, in sequence order, and each of
// the scheduler's messages to its box at least once.
//
// # Connections
//
// A connection without a client certificate may send exactly one message,
// activate, with seq 0, as its first. The gateway calls Handler.Activate,
// answers activated (also seq 0: the box has no identity yet, so the
// exchange belongs to no sequenced session) and closes. Anything else gets a
// reject and the connection is closed.
//
// A connection with a certificate has had its chain verified by TLS against
// the device CA, for client authentication. The gateway reads the box ID
// from it (deviceca.DeviceID) and asks Handler.Authenticate whether it is
// that box's registered certificate; if not (unknown box, replaced or
// revoked certificate) the box gets a reject naming the reason and the
// connection closes. A certificate from anywhere else fails the TLS
// handshake itself (alert "unknown certificate authority"). One connection
// per box: a new authenticated connection replaces the old one, which is
// closed; the new one makes its first Handler call only after the old one
// has made its last, so no sequence number is ever delivered twice.
//
// # Session
//
// Both sides send hello (seq 0) with the versions they speak and LastSeq,
// the highest sequence number they have processed from the other. The
// gateway takes the box's LastSeq as an acknowledgement (Handler.Acked) and
// sends, in order, everything Handler.Pending returns after it. Acked is
// never given more than the highest sequence Pending has returned, whatever
// a box's hello or ack claims.
//
// hello, ack, reject and heartbeat are control messages: seq 0, never
// numbered, never delivered to the Handler. Heartbeat is one of them
// because liveness has nothing to resend (numbering it would put a durable
// write per box every few seconds on both ends); the gateway answers each
// heartbeat with one, so a box can tell a dead connection from a quiet one.
// Every other message carries seq >= 1.
//
// From the box, the gateway keeps last, the highest sequence processed
// (Handler.LastProcessed when the session starts):
//   - seq == last+1: Handler.Deliver, then ack. If Deliver fails, the box
//     gets a reject with the error's text and then the ack: the sequence
//     counts as processed, so a bad message is not retried forever. Acks are
//     coalesced: one ack covers every message that had already fully
//     arrived when it is sent.
//   - seq <= last: a duplicate. Reject "duplicate sequence N (already
//     processed)" and ack last; nothing is delivered.
//   - seq > last+1: a gap, which a correct box never makes. Reject, close.
//
// Rejected without any effect, not even on the sequence (the connection
// stays open): a frame that does not decode (the reject carries the
// decoder's error); a message type a box may not send (a box sends
// register, inventory, priority_list, delete_request, transfer_started,
// transfer_progress, transfer_succeeded, transfer_failed, measurement,
// signal, pass_request and key_request; everything else is the head-end's,
// and activate belongs to connections without a certificate); a control
// message with
// a sequence number or a numbered one without; a second hello; an ack of
// more than was sent. Rejected and closed, since the stream cannot be
// trusted or resynchronised: a frame over api.MaxFrame, another protocol
// version, a gap, and the 101st message in a row rejected without one
// processed between (a box that sends only garbage costs a log line and a
// write per frame until then). A rejection that leaves the sequence
// untouched means the box's message stays unacknowledged; a correct box
// never sends one.
//
// If Deliver fails because the gateway is shutting down (its context has
// ended), the message is neither rejected nor acknowledged: the box sends it
// again to the next gateway.
//
// To the box: Notify makes the connection's sender fetch Handler.Pending
// after the highest sequence already sent on this connection, and write it,
// keeping at most MaxInFlight messages unacknowledged. Unacknowledged
// messages are resent, all of them in order, after RetryBase, then after
// twice that, up to RetryMax; an ack that makes progress calls Handler.Acked
// and starts the count again. After MaxRetries resends without progress the
// gateway calls Handler.Unreachable and closes the connection (and then
// calls Disconnected, as for every connection that called Connected).
//
// # Resources
//
// At most MaxConns connections and MaxHandshakes connections still in their
// handshake (TLS, authentication or activation, hello) at once; beyond
// that new connections are closed at once, and the box retries with
// backoff. A handshake must finish within HandshakeTimeout; a box that
// sends nothing, not even a heartbeat, for IdleTimeout is disconnected.
// Each connection has one reader, which calls Deliver, and one sender,
// which owns every write (each with WriteTimeout) and every Pending and
// Acked call, so a box that reads slowly holds up neither Notify nor other
// boxes. A frame is at most api.MaxFrame, refused by its length before it
// is read.
package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/deviceca"
	"github.com/boxswarm/boxswarm/headend/schedstore"
)

// Handler is the scheduler side of the gateway.
type Handler interface {
	// Activate consumes an activation code for a new box and returns its ID.
	// issue makes the box's device certificate once the ID is known; the handler
	// stores the box (with the certificate's SHA-256) before returning.
	Activate(ctx context.Context, code string, pub ed25519.PublicKey,
		issue func(api.BoxID) (der []byte, err error)) (api.BoxID, []byte, error)
	// Authenticate accepts a connecting box whose certificate chains to the CA:
	// it must be a known box presenting exactly its registered certificate.
	Authenticate(ctx context.Context, box api.BoxID, certSHA256 [32]byte) error
	// Deliver processes one message from a box; the gateway calls it in sequence
	// order, once per sequence number, and acknowledges the message after it returns.
	// An error rejects the message: the box gets a Reject with the error text (the
	// sequence still counts as processed, so a bad message is not retried forever).
	Deliver(ctx context.Context, box api.BoxID, seq uint64, body api.Body) error
	// Acked: the box has processed the head-end's messages up to seq.
	Acked(ctx context.Context, box api.BoxID, seq uint64) error
	// Pending returns the messages owed to the box with Seq > after, in order.
	Pending(ctx context.Context, box api.BoxID, after uint64) ([]schedstore.Outbound, error)
	// LastProcessed returns the highest sequence number processed from the box.
	LastProcessed(ctx context.Context, box api.BoxID) (uint64, error)
	Connected(box api.BoxID, remote string)
	Disconnected(box api.BoxID)
	// Unreachable: a message to the box went unacknowledged through every retry.
	Unreachable(box api.BoxID)
}

// Config configures a Gateway. Zero durations and counts take the defaults
// below.
type Config struct {
	Listen  string      // host:port, used when Serve is given no listener
	TLS     *tls.Config // server certificate; the gateway sets client auth from CA
	CA      *deviceca.CA
	Handler Handler
	Log     *slog.Logger
	// Resend timing: unacknowledged messages are resent with exponential backoff
	// from RetryBase up to RetryMax; after MaxRetries the box is Unreachable.
	RetryBase, RetryMax           time.Duration
	MaxRetries                    int
	HandshakeTimeout, IdleTimeout time.Duration

	// WriteTimeout bounds each write to a box.
	WriteTimeout time.Duration
	// MaxConns and MaxHandshakes bound the connections open at once, and
	// those of them not yet past their handshake.
	MaxConns, MaxHandshakes int
	// MaxInFlight bounds the messages sent to one box and not yet
	// acknowledged, which the gateway keeps in memory to resend.
	MaxInFlight int
	// DeviceValidity is how long a device certificate issued at
	// activation is valid.
	DeviceValidity time.Duration
}

// Defaults for the zero values of Config.
const (
	DefaultRetryBase        = 5 * time.Second
	DefaultRetryMax         = 5 * time.Minute
	DefaultMaxRetries       = 8
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultIdleTimeout      = time.Minute // four of the box's default heartbeats
	DefaultWriteTimeout     = 30 * time.Second
	DefaultMaxConns         = 20000
	DefaultMaxHandshakes    = 128
	DefaultMaxInFlight      = 128
	DefaultDeviceValidity   = 20 * 365 * 24 * time.Hour
)

// lingerTime is how long a connection closed after a reject keeps reading
// (and discarding) what the box still sends, so the close does not turn
// into a TCP reset that could destroy the reject before the box reads it.
const lingerTime = time.Second

// Gateway accepts box connections. Its methods are safe for concurrent use.
type Gateway struct {
	cfg        Config
	tls        *tls.Config
	log        *slog.Logger
	conns      chan struct{} // a slot per open connection
	handshakes chan struct{} // a slot per connection in its handshake

	mu       sync.Mutex
	sessions map[api.BoxID]*session
	addr     net.Addr
	serving  bool
}

// New checks cfg and returns a gateway ready to Serve.
func New(cfg Config) (*Gateway, error) {
	switch {
	case cfg.CA == nil:
		return nil, errors.New("gateway: no device CA")
	case cfg.Handler == nil:
		return nil, errors.New("gateway: no handler")
	case cfg.TLS == nil || len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil:
		return nil, errors.New("gateway: TLS configuration without a server certificate")
	case cfg.TLS.GetConfigForClient != nil:
		// It would replace the client authentication set below.
		return nil, errors.New("gateway: TLS GetConfigForClient is not supported")
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&cfg.RetryBase, DefaultRetryBase}, {&cfg.RetryMax, DefaultRetryMax},
		{&cfg.HandshakeTimeout, DefaultHandshakeTimeout}, {&cfg.IdleTimeout, DefaultIdleTimeout},
		{&cfg.WriteTimeout, DefaultWriteTimeout}, {&cfg.DeviceValidity, DefaultDeviceValidity},
	} {
		if *d.v < 0 {
			return nil, fmt.Errorf("gateway: negative duration %v", *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	for _, n := range []struct {
		v   *int
		def int
	}{
		{&cfg.MaxRetries, DefaultMaxRetries}, {&cfg.MaxConns, DefaultMaxConns},
		{&cfg.MaxHandshakes, DefaultMaxHandshakes}, {&cfg.MaxInFlight, DefaultMaxInFlight},
	} {
		if *n.v < 0 {
			return nil, fmt.Errorf("gateway: negative limit %d", *n.v)
		}
		if *n.v == 0 {
			*n.v = n.def
		}
	}
	if cfg.RetryMax < cfg.RetryBase {
		cfg.RetryMax = cfg.RetryBase
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	tc := cfg.TLS.Clone()
	tc.MinVersion = tls.VersionTLS13
	// Not RequireAndVerifyClientCert: a box without a certificate must be
	// able to activate. A certificate that is sent is verified all the
	// same, and the gateway then insists on a verified chain itself.
	tc.ClientAuth = tls.VerifyClientCertIfGiven
	tc.ClientCAs = cfg.CA.Pool()
	return &Gateway{
		cfg:        cfg,
		tls:        tc,
		log:        cfg.Log,
		conns:      make(chan struct{}, cfg.MaxConns),
		handshakes: make(chan struct{}, cfg.MaxHandshakes),
		sessions:   make(map[api.BoxID]*session),
	}, nil
}

// Addr returns the address the gateway listens on, or nil before Serve.
func (g *Gateway) Addr() net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.addr
}

// Connected reports whether the box has a connection past its hello.
func (g *Gateway) Connected(box api.BoxID) bool {
	g.mu.Lock()
	s := g.sessions[box]
	g.mu.Unlock()
	return s != nil && s.live.Load()
}

// Notify tells the gateway that new messages are owed to box: if it is
// connected, its sender fetches them (Handler.Pending) and sends them. It
// never blocks; notifications for a box that is busy coalesce.
func (g *Gateway) Notify(box api.BoxID) {
	g.mu.Lock()
	s := g.sessions[box]
	g.mu.Unlock()
	if s != nil {
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
}

// Serve accepts connections on l (on Config.Listen if l is nil) until ctx
// ends, then closes every connection, waits for them to finish and returns
// nil. It returns an error if the listener fails. A gateway serves once.
func (g *Gateway) Serve(ctx context.Context, l net.Listener) error {
	if l == nil {
		var err error
		if l, err = net.Listen("tcp", g.cfg.Listen); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
	}
	g.mu.Lock()
	if g.serving {
		g.mu.Unlock()
		return errors.New("gateway: already serving")
	}
	g.serving, g.addr = true, l.Addr()
	g.mu.Unlock()
	g.log.Info("gateway listening", "addr", l.Addr().String())

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // runs after cancel: connections end with ctx
	defer cancel()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()

	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("gateway: %w", err)
			}
			// Out of file descriptors and the like: wait, rather than
			// spin, for connections to close.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			g.log.Error("accept failed", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		delay = 0
		select {
		case g.conns <- struct{}{}:
		default:
			g.log.Warn("connection limit reached: closing a new connection", "remote", c.RemoteAddr().String(), "limit", g.cfg.MaxConns)
			c.Close()
			continue
		}
		wg.Go(func() {
			defer func() { <-g.conns }()
			g.serveConn(ctx, c)
		})
	}
}

// serveConn runs one connection from TCP accept to close.
func (g *Gateway) serveConn(ctx context.Context, raw net.Conn) {
	remote := raw.RemoteAddr().String()
	defer raw.Close()
	select {
	case g.handshakes <- struct{}{}:
	default:
		g.log.Warn("handshake limit reached: closing a new connection", "remote", remote, "limit", g.cfg.MaxHandshakes)
		return
	}
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { <-g.handshakes }) }
	defer release()

	// Closing the raw connection, not the TLS one, ends a connection at
	// once: tls.Conn.Close would first try to send close_notify, which a
	// box that reads nothing could hold up for seconds.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	raw.SetDeadline(time.Now().Add(g.cfg.HandshakeTimeout))
	c := tls.Server(raw, g.tls)
	hctx, cancel := context.WithTimeout(ctx, g.cfg.HandshakeTimeout)
	defer cancel()
	if err := c.HandshakeContext(hctx); err != nil {
		g.log.Info("TLS handshake failed", "remote", remote, "err", err)
		linger(c, raw)
		return
	}
	cs := c.ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		g.activate(hctx, c, raw, remote)
		return
	}
	if len(cs.VerifiedChains) == 0 {
		// Unreachable with VerifyClientCertIfGiven; kept so that a change
		// to the TLS settings cannot let an unverified certificate in.
		g.closeWithReject(c, raw, remote, api.BoxID{}, "device certificate not verified")
		return
	}
	box, err := deviceca.DeviceID(cs.PeerCertificates[0])
	if err != nil {
		g.closeWithReject(c, raw, remote, api.BoxID{}, err.Error())
		return
	}
	if err := g.cfg.Handler.Authenticate(hctx, box, sha256.Sum256(cs.PeerCertificates[0].Raw)); err != nil {
		g.closeWithReject(c, raw, remote, box, fmt.Sprintf("box %s not accepted: %v", box, err))
		return
	}
	if pub, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey); ok {
		ctx = WithDeviceKey(ctx, pub)
	}
	g.runBox(ctx, c, raw.Close, box, remote, release)
}

type deviceKeyCtx struct{}

// WithDeviceKey returns ctx carrying a box's identity key, as the gateway
// passes it to Handler.Deliver (exported for tests of Handlers).
func WithDeviceKey(ctx context.Context, key ed25519.PublicKey) context.Context {
	return context.WithValue(ctx, deviceKeyCtx{}, key)
}

// DeviceKey returns, in Handler.Deliver, the identity key of the box's
// verified device certificate: what a service answering the box may bind
// its answer to (media passes, wrapped keys), since messages never name
// their own sender's key.
func DeviceKey(ctx context.Context) (ed25519.PublicKey, bool) {
	k, ok := ctx.Value(deviceKeyCtx{}).(ed25519.PublicKey)
	return k, ok
}

// activate serves a connection without a certificate: one activate, one
// answer.
func (g *Gateway) activate(ctx context.Context, c *tls.Conn, raw net.Conn, remote string) {
	log := g.log.With("remote", remote)
	m, err := api.ReadMessage(c)
	switch {
	case isClosed(err) || isTimeout(err):
		log.Info("activation connection ended before a message", "err", err)
		return
	case err != nil:
		g.closeWithReject(c, raw, remote, api.BoxID{}, "activation: "+err.Error())
		return
	case m.Body.Type() != (api.Activate{}).Type():
		g.closeWithReject(c, raw, remote, api.BoxID{}, fmt.Sprintf("%s from a connection without a device certificate, which may only activate", m.Body.Type()))
		return
	case m.Seq != 0:
		g.closeWithReject(c, raw, remote, api.BoxID{}, fmt.Sprintf("activate with sequence %d: it is not part of a session and carries 0", m.Seq))
		return
	}
	a := m.Body.(api.Activate)
	pub := ed25519.PublicKey(a.PublicKey)
	box, der, err := g.cfg.Handler.Activate(ctx, a.Code, pub, func(id api.BoxID) ([]byte, error) {
		return g.cfg.CA.IssueDevice(id, pub, g.cfg.DeviceValidity)
	})
	if err != nil {
		g.closeWithReject(c, raw, remote, api.BoxID{}, "activation refused: "+err.Error())
		return
	}
	frame, err := api.Encode(0, api.Activated{Box: box, Certificate: der})
	if err == nil {
		_, err = c.Write(frame)
	}
	if err != nil {
		// The code is spent and the box never heard: Handler.Activate
		// should accept the same code again from the same key.
		log.Error("activated box but could not tell it", "box", box.String(), "err", err)
	} else {
		log.Info("box activated", "box", box.String())
	}
	linger(c, raw)
}

// closeWithReject sends a reject (seq 0) to a connection before its session
// starts, and closes it.
func (g *Gateway) closeWithReject(c *tls.Conn, raw net.Conn, remote string, box api.BoxID, why string) {
	log := g.log.With("remote", remote)
	if box != (api.BoxID{}) {
		log = log.With("box", box.String())
	}
	log.Warn("connection refused", "reason", why)
	if frame, err := api.Encode(0, api.Reject{Reason: api.FitReason(why)}); err == nil {
		raw.SetWriteDeadline(time.Now().Add(g.cfg.WriteTimeout))
		c.Write(frame)
	}
	linger(c, raw)
}

// linger closes a connection gracefully: our side ends (close_notify, or
// a TCP FIN if TLS never got that far), what the peer still sends is read
// and dropped for a moment, then the socket closes.
func linger(c *tls.Conn, raw net.Conn) {
	raw.SetDeadline(time.Now().Add(lingerTime))
	var r io.Reader = c
	if c.CloseWrite() != nil {
		if cw, ok := raw.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		r = raw
	}
	drain(r)
	raw.Close()
}
