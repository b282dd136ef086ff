// Package schedclient is the box's end of its connection to the head-end:
// activation, then one long-lived session, reconnected with backoff, that
// carries the box's messages to the scheduler and the scheduler's to the box.
//
// Guarantees:
//   - A message Send accepts is stored in State with the next sequence
//     number before Send returns, and is delivered at least once, across
//     reconnections and restarts of the box (the head-end processes it once).
//   - The head-end's messages reach Handle in sequence order, once each:
//     the sequence is recorded (State.SetLastIn) after Handle returns and
//     before the box acknowledges it, so only a crash between the two can
//     hand the same message to Handle again after the restart.
//
// The rules mirror the gateway's (package gateway documents them): hello,
// ack, reject and heartbeat are control messages with seq 0; a message from
// the head-end with seq == last+1 is handled and acknowledged (an error
// from Handle is logged and sent back as a reject, and the message counts
// as processed); a duplicate gets a reject and an ack of last; a gap gets a
// reject and the connection is closed; a frame that does not decode, or a
// type the head-end may not send, is rejected without effect. After each
// reconnection the box sends again, in order, every stored message above
// the LastSeq of the head-end's hello. The box sends a heartbeat every
// Heartbeat and takes a head-end silent for three of them (the gateway
// answers each heartbeat) for a dead connection.
package schedclient

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
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

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/deviceca"
)

// Identity is the box's device identity: its key and the certificate the
// head-end issued for it at activation.
type Identity struct {
	// Key signs the TLS handshakes: an ed25519.PrivateKey, or a key held
	// elsewhere (board/identity's, in locked memory) whose Public is an
	// ed25519.PublicKey.
	Key         crypto.Signer
	Certificate []byte // DER, from activation
}

// Config configures a Client. Zero durations and counts take the defaults
// below.
type Config struct {
	Addr       string         // head-end host:port
	ServerName string         // the name in the head-end's certificate
	Roots      *x509.CertPool // the head-end's CA
	Identity   Identity
	State      State // durable sequence numbers and outbox
	// Handle receives each head-end message, in order, once. An error is
	// logged and reported to the head-end; the message still counts as
	// processed.
	Handle func(ctx context.Context, body api.Body) error
	// OnConnect, if set, runs on its own goroutine each time a session
	// comes up (hellos exchanged), with a context that ends with the
	// session: the place to send Register and the inventory, which the
	// head-end expects on every connection.
	OnConnect              func(ctx context.Context)
	Log                    *slog.Logger
	Heartbeat              time.Duration // default 15 s
	BackoffMin, BackoffMax time.Duration // reconnect backoff, default 1 s .. 1 min, with jitter

	// Timeout bounds dialling, the TLS handshake, the hello exchange and
	// each write.
	Timeout time.Duration
	// MaxOutbox bounds the messages stored and not yet acknowledged; Send
	// refuses more (ErrOutboxFull).
	MaxOutbox int
}

// Defaults for the zero values of Config.
const (
	DefaultHeartbeat  = 15 * time.Second
	DefaultBackoffMin = time.Second
	DefaultBackoffMax = time.Minute
	DefaultTimeout    = 30 * time.Second
	DefaultMaxOutbox  = 4096
)

// Errors.
var (
	// ErrRejected is wrapped when the head-end refuses an activation or a
	// session (unknown box, replaced certificate...).
	ErrRejected = errors.New("refused by the head-end")
	// ErrOutboxFull is returned by Send while MaxOutbox messages wait for
	// the head-end.
	ErrOutboxFull = errors.New("outbox full")
	// ErrState is wrapped when State fails; Run returns it, since going on
	// would break the sequence guarantees.
	ErrState = errors.New("box state")
)

// Client is a box's connection to the head-end. Its methods are safe for
// concurrent use; Run runs once at a time.
type Client struct {
	cfg  Config
	log  *slog.Logger
	box  api.BoxID
	cert tls.Certificate

	// mu guards the sequence numbers and every State call, which may wait
	// for the disk. The session's reader and sender take only outMu and
	// lastIn, so heartbeats and messages already stored keep flowing
	// while a Send waits for its fsync.
	mu      sync.Mutex
	lastIn  atomic.Uint64 // written under mu
	lastOut uint64
	outMu   sync.Mutex
	outbox  []Outbound    // stored, not acknowledged, in order; written under mu and outMu
	wake    chan struct{} // Send stored a message

	connected atomic.Bool
	running   atomic.Bool
}

// New checks cfg, loads its State and returns a client ready to Run.
func New(cfg Config) (*Client, error) {
	switch {
	case cfg.Addr == "":
		return nil, errors.New("scheduler client: no head-end address")
	case cfg.Roots == nil:
		return nil, errors.New("scheduler client: no trust roots for the head-end")
	case cfg.State == nil:
		return nil, errors.New("scheduler client: no state")
	case cfg.Handle == nil:
		return nil, errors.New("scheduler client: no Handle function")
	case cfg.Identity.Key == nil:
		return nil, errors.New("scheduler client: no identity key")
	}
	if _, ok := cfg.Identity.Key.Public().(ed25519.PublicKey); !ok {
		return nil, errors.New("scheduler client: identity key is not an Ed25519 key")
	}
	leaf, err := x509.ParseCertificate(cfg.Identity.Certificate)
	if err != nil {
		return nil, fmt.Errorf("scheduler client: device certificate: %w", err)
	}
	if pub, ok := leaf.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(cfg.Identity.Key.Public()) {
		return nil, errors.New("scheduler client: device certificate is not for the identity key")
	}
	box, err := deviceca.DeviceID(leaf)
	if err != nil {
		return nil, fmt.Errorf("scheduler client: %w", err)
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&cfg.Heartbeat, DefaultHeartbeat}, {&cfg.BackoffMin, DefaultBackoffMin},
		{&cfg.BackoffMax, DefaultBackoffMax}, {&cfg.Timeout, DefaultTimeout},
	} {
		if *d.v < 0 {
			return nil, fmt.Errorf("scheduler client: negative duration %v", *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = cfg.BackoffMin
	}
	if cfg.MaxOutbox <= 0 {
		cfg.MaxOutbox = DefaultMaxOutbox
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	lastIn, lastOut, pending, err := cfg.State.Load()
	if err != nil {
		return nil, fmt.Errorf("scheduler client: box %s: load: %w: %w", box, ErrState, err)
	}
	c := &Client{
		cfg:     cfg,
		log:     cfg.Log.With("box", box.String()),
		box:     box,
		cert:    tls.Certificate{Certificate: [][]byte{cfg.Identity.Certificate}, PrivateKey: cfg.Identity.Key, Leaf: leaf},
		lastOut: lastOut,
		outbox:  pending,
		wake:    make(chan struct{}, 1),
	}
	c.lastIn.Store(lastIn)
	return c, nil
}

// Box returns the box's ID, from its certificate.
func (c *Client) Box() api.BoxID { return c.box }

// Connected reports whether a session is up (hellos exchanged).
func (c *Client) Connected() bool { return c.connected.Load() }

// Send stores a message for the head-end with the next sequence number and
// returns; Run delivers it, at least once. Only the types a box may send
// are accepted (api.FromBox).
func (c *Client) Send(ctx context.Context, b api.Body) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !api.FromBox(b.Type()) {
		return fmt.Errorf("box %s: send %s: not a message a box sends", c.box, b.Type())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.outbox) >= c.cfg.MaxOutbox { // outbox changes only under mu
		return fmt.Errorf("box %s: send %s: %d messages wait for the head-end: %w", c.box, b.Type(), len(c.outbox), ErrOutboxFull)
	}
	seq := c.lastOut + 1
	frame, err := api.Encode(seq, b)
	if err != nil {
		return fmt.Errorf("box %s: send: %w", c.box, err)
	}
	if err := c.cfg.State.AppendOut(seq, frame); err != nil {
		return fmt.Errorf("box %s: store message %d: %w: %w", c.box, seq, ErrState, err)
	}
	c.lastOut = seq
	c.outMu.Lock()
	c.outbox = append(c.outbox, Outbound{Seq: seq, Frame: frame})
	c.outMu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// Run connects to the head-end and keeps a session up, reconnecting with
// backoff, until ctx ends; then it returns nil. It returns an error only
// for what reconnecting cannot fix: a State that fails (ErrState).
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return fmt.Errorf("box %s: Run is already running", c.box)
	}
	defer c.running.Store(false)
	backoff := c.cfg.BackoffMin
	for {
		start := time.Now()
		reached, err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrState) {
			return err
		}
		// A session that got going and held for a while was no failure to
		// back off from; one that keeps dying at once is.
		if reached && time.Since(start) >= c.cfg.BackoffMax {
			backoff = c.cfg.BackoffMin
		}
		// Jitter spreads out boxes that lost the head-end together.
		wait := backoff/2 + rand.N(backoff/2+1)
		lvl := slog.LevelInfo
		if errors.Is(err, ErrRejected) {
			lvl = slog.LevelError
		}
		c.log.Log(ctx, lvl, "disconnected from the head-end", "err", err, "retry_in", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil
		}
		backoff = min(2*backoff, c.cfg.BackoffMax)
	}
}

// conn is one session's connection.
type conn struct {
	c       *Client
	tc      *tls.Conn
	raw     net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	closing chan struct{}
	once    sync.Once

	ctrl       chan ctrlFrame
	sentHigh   atomic.Uint64 // highest of the box's sequences sent, or known processed
	senderDone chan struct{}
	senderErr  error // set before senderDone closes

	ackOwed bool // reader only
}

type ctrlFrame struct {
	frame []byte
	final bool
}

func (s *conn) shutdown() {
	s.once.Do(func() {
		close(s.closing)
		s.raw.Close()
	})
}

// session runs one connection; reached reports whether hellos were
// exchanged.
func (c *Client) session(ctx context.Context) (reached bool, err error) {
	d := net.Dialer{Timeout: c.cfg.Timeout}
	raw, err := d.DialContext(ctx, "tcp", c.cfg.Addr)
	if err != nil {
		return false, fmt.Errorf("box %s: connect to %s: %w", c.box, c.cfg.Addr, err)
	}
	s := &conn{
		c:          c,
		raw:        raw,
		closing:    make(chan struct{}),
		ctrl:       make(chan ctrlFrame, 64),
		senderDone: make(chan struct{}),
	}
	defer s.shutdown()
	stop := context.AfterFunc(ctx, s.shutdown)
	defer stop()

	raw.SetDeadline(time.Now().Add(c.cfg.Timeout))
	s.tc = tls.Client(raw, &tls.Config{
		Certificates: []tls.Certificate{c.cert},
		RootCAs:      c.cfg.Roots,
		ServerName:   c.cfg.ServerName,
		MinVersion:   tls.VersionTLS13,
	})
	if err := s.tc.HandshakeContext(ctx); err != nil {
		return false, fmt.Errorf("box %s: TLS with %s: %w", c.box, c.cfg.Addr, err)
	}
	s.br = bufio.NewReaderSize(s.tc, 8<<10)
	s.bw = bufio.NewWriterSize(s.tc, 32<<10)

	h, err := s.hello()
	if err != nil {
		return false, err
	}
	raw.SetDeadline(time.Time{})
	s.sentHigh.Store(h.LastSeq)
	c.connected.Store(true)
	defer c.connected.Store(false)
	c.log.Info("connected to the head-end", "addr", c.cfg.Addr, "last_in", c.lastInNow(), "head_end_last_seq", h.LastSeq)

	go s.sendLoop()
	if c.cfg.OnConnect != nil {
		sessionCtx, endSession := context.WithCancel(ctx)
		defer endSession()
		go c.cfg.OnConnect(sessionCtx)
	}
	err = s.readLoop(ctx)
	s.shutdown()
	<-s.senderDone
	if err == nil || errors.Is(err, errClosing) {
		err = s.senderErr
	}
	if err == nil {
		err = fmt.Errorf("box %s: connection closed", c.box)
	}
	return true, err
}

func (c *Client) lastInNow() uint64 { return c.lastIn.Load() }

// hello exchanges hellos and drops what the head-end says it has
// processed.
func (s *conn) hello() (api.Hello, error) {
	c := s.c
	frame, err := api.Encode(0, api.Hello{Versions: []int{api.Version}, LastSeq: c.lastInNow(), Software: "boxswarm-box"})
	if err != nil {
		panic(err) // a constant message: cannot fail
	}
	if _, err := s.bw.Write(frame); err != nil || s.bw.Flush() != nil {
		return api.Hello{}, fmt.Errorf("box %s: send hello: %w", c.box, errors.Join(err, s.bw.Flush()))
	}
	m, err := api.ReadMessage(s.br)
	if err != nil {
		return api.Hello{}, fmt.Errorf("box %s: read hello: %w", c.box, err)
	}
	switch b := m.Body.(type) {
	case api.Reject:
		return api.Hello{}, fmt.Errorf("box %s: session: %s: %w", c.box, b.Reason, ErrRejected)
	case api.Hello:
		if !containsVersion(b.Versions) {
			return api.Hello{}, fmt.Errorf("box %s: no common protocol version: the head-end speaks %v, the box %d", c.box, b.Versions, api.Version)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if b.LastSeq > c.lastOut {
			c.log.Warn("the head-end has processed messages this box does not remember sending: its state was lost; numbering continues above them",
				"head_end_last_seq", b.LastSeq, "last_out", c.lastOut)
		}
		if err := c.ackOut(b.LastSeq); err != nil {
			return api.Hello{}, err
		}
		return b, nil
	default:
		return api.Hello{}, fmt.Errorf("box %s: %s instead of hello", c.box, m.Body.Type())
	}
}

func containsVersion(vs []int) bool {
	for _, v := range vs {
		if v == api.Version {
			return true
		}
	}
	return false
}

// ackOut drops acknowledged messages; c.mu is held.
func (c *Client) ackOut(seq uint64) error {
	if seq <= c.lastOut && (len(c.outbox) == 0 || c.outbox[0].Seq > seq) {
		return nil // nothing to drop: spare the State a write
	}
	if err := c.cfg.State.AckOut(seq); err != nil {
		return fmt.Errorf("box %s: record ack %d: %w: %w", c.box, seq, ErrState, err)
	}
	c.outMu.Lock()
	n := 0
	for n < len(c.outbox) && c.outbox[n].Seq <= seq {
		n++
	}
	c.outbox = slices.Delete(c.outbox, 0, n)
	c.outMu.Unlock()
	c.lastOut = max(c.lastOut, seq)
	return nil
}

// readLoop reads the head-end's messages until the connection ends. Its
// error is what ended it.
func (s *conn) readLoop(ctx context.Context) error {
	c := s.c
	silent := 3 * c.cfg.Heartbeat
	for {
		if s.ackOwed && !api.FrameBuffered(s.br) {
			if !s.queue(api.Ack{Seq: c.lastInNow()}, false) {
				return nil
			}
			s.ackOwed = false
		}
		s.raw.SetReadDeadline(time.Now().Add(silent))
		frame, err := api.ReadFrame(s.br)
		if err != nil {
			switch {
			case errors.Is(err, api.ErrTooLarge):
				return s.fail(0, err.Error())
			case errors.Is(err, api.ErrMalformed):
				if s.reject(0, err.Error()) {
					continue
				}
			}
			return fmt.Errorf("box %s: read: %w", c.box, err)
		}
		m, err := api.Decode(frame)
		switch {
		case errors.Is(err, api.ErrVersion):
			return s.fail(m.Seq, err.Error())
		case err != nil:
			if !s.reject(m.Seq, err.Error()) {
				return nil
			}
		default:
			if err := s.inbound(ctx, m); err != nil {
				return err
			}
		}
	}
}

// errClosing ends the read loop without being an error of its own.
var errClosing = errors.New("connection closing")

// inbound applies the rules to one message from the head-end.
func (s *conn) inbound(ctx context.Context, m api.Message) error {
	c := s.c
	ok := func(b bool) error {
		if !b {
			return errClosing
		}
		return nil
	}
	t := m.Body.Type()
	switch b := m.Body.(type) {
	case api.Hello, api.Ack, api.Reject, api.Heartbeat:
		if m.Seq != 0 {
			return ok(s.reject(m.Seq, fmt.Sprintf("%s is a control message and carries sequence 0, not %d", t, m.Seq)))
		}
		switch b := b.(type) {
		case api.Hello:
			return ok(s.reject(0, "hello after the session started"))
		case api.Reject:
			c.log.Warn("the head-end rejected a message", "seq", b.Seq, "reason", b.Reason)
		case api.Ack:
			if sent := s.sentHigh.Load(); b.Seq > sent {
				return ok(s.reject(0, fmt.Sprintf("ack of sequence %d, but the box has sent up to %d", b.Seq, sent)))
			}
			c.mu.Lock()
			err := c.ackOut(b.Seq)
			c.mu.Unlock()
			return err
		}
		return nil // a heartbeat: the read deadline moved, that is all
	}
	if !api.FromHeadEnd(t) {
		return ok(s.reject(m.Seq, fmt.Sprintf("%s is not a message the head-end may send", t)))
	}
	last := c.lastInNow()
	switch {
	case m.Seq == 0:
		return ok(s.reject(0, fmt.Sprintf("%s without a sequence number: only control messages carry 0", t)))
	case m.Seq <= last:
		s.ackOwed = false
		return ok(s.reject(m.Seq, fmt.Sprintf("duplicate sequence %d (already processed)", m.Seq)) &&
			s.queue(api.Ack{Seq: last}, false))
	case m.Seq > last+1:
		return s.fail(m.Seq, fmt.Sprintf("sequence %d skips ahead: expected %d", m.Seq, last+1))
	}
	herr := c.cfg.Handle(ctx, m.Body)
	if herr != nil && ctx.Err() != nil {
		return errClosing // stopping: not processed, the head-end sends it again
	}
	c.mu.Lock()
	err := c.cfg.State.SetLastIn(m.Seq)
	if err == nil {
		c.lastIn.Store(m.Seq)
	}
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("box %s: record processed message %d: %w: %w", c.box, m.Seq, ErrState, err)
	}
	s.ackOwed = true
	if herr != nil {
		c.log.Warn("handling a head-end message failed", "seq", m.Seq, "type", t, "err", herr)
		return ok(s.reject(m.Seq, herr.Error()))
	}
	return nil
}

func (s *conn) reject(seq uint64, why string) bool {
	s.c.log.Info("rejecting a head-end message", "seq", seq, "reason", why)
	return s.queue(api.Reject{Seq: seq, Reason: api.FitReason(why)}, false)
}

// fail sends a last reject, closes gracefully and returns why.
func (s *conn) fail(seq uint64, why string) error {
	err := fmt.Errorf("box %s: closing the connection: %s", s.c.box, why)
	if s.queue(api.Reject{Seq: seq, Reason: api.FitReason(why)}, true) {
		select {
		case <-s.senderDone:
			s.raw.SetReadDeadline(time.Now().Add(time.Second))
			drain(s.br)
		case <-s.closing:
		}
	}
	return err
}

func (s *conn) queue(b api.Body, final bool) bool {
	frame, err := api.Encode(0, b)
	if err != nil {
		s.c.log.Error("cannot encode a control message", "err", err)
		return false
	}
	select {
	case s.ctrl <- ctrlFrame{frame, final}:
		return true
	case <-s.closing:
		return false
	}
}

// sendLoop owns the connection's writes: stored messages above what the
// head-end has, control messages from the reader, heartbeats.
func (s *conn) sendLoop() {
	defer close(s.senderDone)
	c := s.c
	tick := time.NewTicker(c.cfg.Heartbeat)
	defer tick.Stop()
	heartbeat, err := api.Encode(0, api.Heartbeat{})
	if err != nil {
		panic(err) // a constant message: cannot fail
	}
	ok := s.sendStored()
	for ok {
		if ok = s.flush(); !ok {
			break
		}
		select {
		case <-s.closing:
			return
		case f := <-s.ctrl:
			ok = s.write(f.frame)
			for ok && !f.final && len(s.ctrl) > 0 {
				f = <-s.ctrl
				ok = s.write(f.frame)
			}
			if f.final {
				if ok && s.flush() {
					s.tc.CloseWrite()
				}
				return
			}
		case <-c.wake:
			ok = s.sendStored()
		case <-tick.C:
			ok = s.write(heartbeat)
		}
	}
	s.shutdown()
}

// sendStored sends the stored messages not sent on this connection yet.
func (s *conn) sendStored() bool {
	c := s.c
	c.outMu.Lock()
	var todo []Outbound
	for _, o := range c.outbox {
		if o.Seq > s.sentHigh.Load() {
			todo = append(todo, o)
		}
	}
	c.outMu.Unlock()
	for _, o := range todo {
		s.sentHigh.Store(o.Seq)
		if !s.write(o.Frame) {
			return false
		}
	}
	return true
}

func (s *conn) write(frame []byte) bool {
	s.raw.SetWriteDeadline(time.Now().Add(s.c.cfg.Timeout))
	if _, err := s.bw.Write(frame); err != nil {
		s.senderErr = fmt.Errorf("box %s: write: %w", s.c.box, err)
		return false
	}
	return true
}

func (s *conn) flush() bool {
	if s.bw.Buffered() == 0 {
		return true
	}
	s.raw.SetWriteDeadline(time.Now().Add(s.c.cfg.Timeout))
	if err := s.bw.Flush(); err != nil {
		s.senderErr = fmt.Errorf("box %s: write: %w", s.c.box, err)
		return false
	}
	return true
}

// drain reads and drops what the peer still sends, up to a bound.
func drain(r io.Reader) {
	io.CopyN(io.Discard, r, 64<<10)
}
