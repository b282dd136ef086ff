package rtc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/pion/ice/v2"
	"github.com/pion/transport/v2"
	"github.com/pion/transport/v2/stdnet"
	"github.com/pion/webrtc/v3"
)

// MaxMessage is the largest data channel message a Conn sends or accepts:
// what pion/webrtc v3 sends (it announces no larger max-message-size).
const MaxMessage = 64 << 10

// Defaults for the zero values of Config's fields.
const (
	DefaultUDPBuffer         = 4 << 20
	DefaultConnectTimeout    = 20 * time.Second
	DefaultHighWater         = 1 << 20
	DefaultLowWater          = 512 << 10
	DefaultSCTPReceiveBuffer = 768 << 10
	DefaultMaxConns          = 64
	DefaultMaxCandidates     = 32
	DefaultMaxPending        = 256
	DefaultPendingTTL        = 15 * time.Second
	DefaultLinger            = 5 * time.Second
	DefaultRelayWait         = 2 * time.Second
	DefaultGatherWait        = 2 * time.Second
)

// Errors a Transport or Conn returns, wrapped with what failed.
var (
	ErrClosed            = errors.New("rtc: closed")
	ErrWrongPeer         = errors.New("rtc: signal from a box that is not the transfer's peer")
	ErrUnexpectedSignal  = errors.New("rtc: unexpected signal")
	ErrBusy              = errors.New("rtc: transfer already has a connection")
	ErrTooManyConns      = errors.New("rtc: too many connections")
	ErrTooManyCandidates = errors.New("rtc: too many candidates")
	ErrPendingFull       = errors.New("rtc: too many signals held for transfers not yet connected")
	ErrConnectTimeout    = errors.New("rtc: connect timed out")
	ErrICEFailed         = errors.New("rtc: ICE failed: no candidate pair connects the two ends")
	ErrDTLSFailed        = errors.New("rtc: DTLS failed: the peer's certificate does not match the fingerprint in its SDP, or the handshake broke")
	ErrMessageTooLarge   = errors.New("rtc: peer sent a message larger than 64 KiB")
	ErrConnLost          = errors.New("rtc: connection lost without the peer closing it")
)

// Config configures a Transport.
type Config struct {
	Self   api.BoxID
	Signal func(ctx context.Context, s api.Signal) error // sends to the scheduler, which relays to s.To
	ICE    func() api.ICECredentials                     // current STUN/TURN URLs and credentials; nil: none
	// Net is the network ICE uses: nil is the real one; a *vnet.Net in
	// tests.
	Net transport.Net
	// RelayOnly uses TURN relay candidates only (tests, benchmarks).
	RelayOnly bool
	// AcceptUnsolicited answers offers for transfers Connect was not (yet)
	// called for; their connections come out of Accept (media servers).
	// A Connect(initiate=false) for such a transfer, from the same peer,
	// takes the connection over if Accept has not returned it yet.
	AcceptUnsolicited bool
	// UDPBuffer is SO_RCVBUF and SO_SNDBUF for ICE sockets on the real
	// network (best effort); 0 means DefaultUDPBuffer, negative leaves the
	// kernel's default.
	UDPBuffer int
	// ConnectTimeout bounds Connect, and an unsolicited connection's setup.
	ConnectTimeout time.Duration
	Log            *slog.Logger

	// HighWater and LowWater, in bytes, pace Write: it blocks while the
	// data channel buffers more than HighWater, until that falls to
	// LowWater. SCTPReceiveBuffer is SCTP's receive window. The defaults
	// (1 MiB, 512 KiB, 768 KiB) were measured on loopback (BENCHMARKS.md,
	// "Peer transfers"): the thresholds hardly matter, but a window of 1
	// MiB or more lets a burst overflow pion's in-process packet buffers
	// (1,000,000 bytes each), and every packet they drop stalls SCTP for a
	// retransmission timeout of a second. The price of the small window
	// is a ceiling of window/RTT per connection (about 15 MB/s at 50 ms),
	// which is above a home uplink.
	HighWater, LowWater int
	SCTPReceiveBuffer   int
	// MaxConns bounds connections connecting or open at once;
	// MaxCandidates the remote candidates per transfer; MaxPending the
	// signals held for transfers not yet connected, each for PendingTTL.
	MaxConns, MaxCandidates, MaxPending int
	PendingTTL                          time.Duration
	// Linger bounds how long a closed Conn waits for the peer to
	// acknowledge what was written before the PeerConnection goes.
	Linger time.Duration
	// RelayWait is how long the controlling end waits before it may pick
	// a relayed pair, so that a direct pair found meanwhile wins.
	RelayWait time.Duration
	// GatherWait bounds how long the offer (and the answer) waits for ICE
	// gathering to complete; candidates found later trickle.
	GatherWait time.Duration
	// Loopback offers loopback addresses as host candidates, and IPFilter,
	// if set, chooses the local addresses to gather (tests on one host).
	Loopback bool
	IPFilter func(net.IP) bool
}

// Transport makes WebRTC data channel connections for one box.
type Transport struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelCauseFunc
	bufLog *sync.Once // the UDP buffer log line, once per Transport
	accept chan *Conn
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	sessions map[api.TransferID]*session
	pending  []heldSignal // oldest first
	// ended holds when each recent connection ended, so that signals
	// still on their way for it (duplicates, late candidates) are dropped
	// rather than held for a Connect that will not come.
	ended map[api.TransferID]time.Time
}

// heldSignal is a signal for a transfer not connected yet.
type heldSignal struct {
	sig api.Signal
	d   signalData
	at  time.Time
}

// New returns a Transport; it starts nothing until Connect or HandleSignal.
func New(cfg Config) (*Transport, error) {
	if cfg.Self == (api.BoxID{}) {
		return nil, errors.New("rtc: no Self")
	}
	if cfg.Signal == nil {
		return nil, errors.New("rtc: no Signal function")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.UDPBuffer, DefaultUDPBuffer)
	def(&cfg.HighWater, DefaultHighWater)
	def(&cfg.LowWater, DefaultLowWater)
	def(&cfg.SCTPReceiveBuffer, DefaultSCTPReceiveBuffer)
	def(&cfg.MaxConns, DefaultMaxConns)
	def(&cfg.MaxCandidates, DefaultMaxCandidates)
	def(&cfg.MaxPending, DefaultMaxPending)
	defDur(&cfg.ConnectTimeout, DefaultConnectTimeout)
	defDur(&cfg.PendingTTL, DefaultPendingTTL)
	defDur(&cfg.Linger, DefaultLinger)
	defDur(&cfg.RelayWait, DefaultRelayWait)
	defDur(&cfg.GatherWait, DefaultGatherWait)
	switch {
	case cfg.HighWater < 0 || cfg.LowWater < 0 || cfg.LowWater >= cfg.HighWater:
		return nil, fmt.Errorf("rtc: LowWater %d must be below HighWater %d", cfg.LowWater, cfg.HighWater)
	case cfg.SCTPReceiveBuffer < MaxMessage || cfg.SCTPReceiveBuffer > 1<<30:
		return nil, fmt.Errorf("rtc: SCTPReceiveBuffer %d outside %d..%d", cfg.SCTPReceiveBuffer, MaxMessage, 1<<30)
	case cfg.MaxConns < 0 || cfg.MaxCandidates < 0 || cfg.MaxPending < 0:
		return nil, errors.New("rtc: negative bound")
	case cfg.ConnectTimeout < 0 || cfg.PendingTTL < 0 || cfg.Linger < 0 || cfg.RelayWait < 0 || cfg.GatherWait < 0:
		return nil, errors.New("rtc: negative duration")
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Transport{
		cfg:      cfg,
		log:      cfg.Log,
		ctx:      ctx,
		cancel:   cancel,
		bufLog:   new(sync.Once),
		accept:   make(chan *Conn, cfg.MaxConns),
		sessions: make(map[api.TransferID]*session),
		ended:    make(map[api.TransferID]time.Time),
	}, nil
}

// newAPI builds the pion API for one PeerConnection: a fresh view of the
// network interfaces each time (a box's address can change), detached
// data channels, no mDNS, UDP only, and the gate on every socket.
func (t *Transport) newAPI(gate *relayGate) (*webrtc.API, error) {
	var se webrtc.SettingEngine
	se.LoggerFactory = pionLogs(t.log)
	se.DetachDataChannels()
	se.SetSCTPMaxReceiveBufferSize(uint32(t.cfg.SCTPReceiveBuffer))
	// Boxes are not browsers: their peers are told real addresses, and
	// mDNS would put multicast on the viewer's network for nothing.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	se.SetIncludeLoopbackCandidate(t.cfg.Loopback)
	if t.cfg.IPFilter != nil {
		se.SetIPFilter(t.cfg.IPFilter)
	}
	se.SetRelayAcceptanceMinWait(t.cfg.RelayWait)
	n := t.cfg.Net
	if n == nil {
		std, err := stdnet.NewNet()
		if err != nil {
			return nil, fmt.Errorf("rtc: network interfaces: %w", err)
		}
		n = std
		if t.cfg.UDPBuffer > 0 {
			n = bufNet{Net: std, size: t.cfg.UDPBuffer, log: t.log, once: t.bufLog}
		}
	}
	se.SetNet(gatedNet{Net: n, gate: gate})
	return webrtc.NewAPI(webrtc.WithSettingEngine(se)), nil
}

// iceConfig is the PeerConnection configuration from Config.ICE.
func (t *Transport) iceConfig() webrtc.Configuration {
	var c webrtc.Configuration
	if t.cfg.ICE != nil {
		creds := t.cfg.ICE()
		if len(creds.URLs) > 0 {
			if !creds.Expires.IsZero() && time.Now().After(creds.Expires) {
				t.log.Warn("rtc: TURN credentials expired; relays will be refused", "expires", creds.Expires)
			}
			c.ICEServers = []webrtc.ICEServer{{
				URLs:       creds.URLs,
				Username:   creds.Username,
				Credential: creds.Password,
			}}
		}
	}
	if t.cfg.RelayOnly {
		c.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	return c
}

// HandleSignal takes a signal the scheduler relayed (s.From is the peer).
// Signals for a transfer not yet Connected are held briefly (bounded count
// and age) so an offer that overtakes the local TransferStart is not lost.
// It returns an error for a signal it refuses (malformed, from the wrong
// box, beyond a bound, unexpected); the caller logs it and carries on.
func (t *Transport) HandleSignal(ctx context.Context, sig api.Signal) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("rtc: handling signal: %w", err)
	}
	if t.ctx.Err() != nil {
		return ErrClosed
	}
	switch {
	case sig.To != (api.BoxID{}) && sig.To != t.cfg.Self:
		return t.refuse(sig, fmt.Errorf("%w: addressed to %s, not this box", ErrBadSignal, sig.To))
	case sig.From == (api.BoxID{}):
		return t.refuse(sig, fmt.Errorf("%w: no sender", ErrBadSignal))
	case sig.From == t.cfg.Self:
		return t.refuse(sig, fmt.Errorf("%w: from this box itself", ErrBadSignal))
	}
	d, err := parseSignal(sig.Kind, sig.Data)
	if err != nil {
		if sig.Kind == api.SignalOffer || sig.Kind == api.SignalAnswer {
			t.failOnBadDescription(sig, err)
		}
		return t.refuse(sig, err)
	}
	for range 2 {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return ErrClosed
		}
		s := t.sessions[sig.Transfer]
		if s == nil {
			if d.kind == api.SignalOffer && t.cfg.AcceptUnsolicited {
				t.mu.Unlock()
				_, err := t.open(sig.Transfer, sig.From, false, true, []heldSignal{{sig: sig, d: d, at: time.Now()}})
				if errors.Is(err, ErrBusy) {
					continue // a session appeared meanwhile: hand it the offer
				}
				if err != nil {
					return t.refuse(sig, err)
				}
				return nil
			}
			if at, ok := t.ended[sig.Transfer]; ok && time.Since(at) <= t.cfg.PendingTTL {
				t.mu.Unlock()
				t.log.Debug("rtc: signal for a connection that ended dropped", "transfer", sig.Transfer, "from", sig.From, "kind", sig.Kind)
				return nil
			}
			err := t.holdLocked(sig, d)
			t.mu.Unlock()
			if err != nil {
				return t.refuse(sig, err)
			}
			t.log.Debug("rtc: signal held for a transfer not connected yet", "transfer", sig.Transfer, "from", sig.From, "kind", sig.Kind)
			return nil
		}
		t.mu.Unlock()
		if sig.From != s.peer {
			return t.refuse(sig, fmt.Errorf("%w: transfer %d is with %s", ErrWrongPeer, sig.Transfer, s.peer))
		}
		if err := s.handle(d); err != nil {
			return t.refuse(sig, err)
		}
		return nil
	}
	return t.refuse(sig, ErrBusy)
}

// failOnBadDescription ends the connection of a transfer whose peer sent
// a description that does not parse: nothing else could make it connect,
// and Connect says why now rather than at its timeout.
func (t *Transport) failOnBadDescription(sig api.Signal, err error) {
	t.mu.Lock()
	s := t.sessions[sig.Transfer]
	t.mu.Unlock()
	if s == nil || s.peer != sig.From {
		return
	}
	select {
	case <-s.ready:
		return // connected already: a stray duplicate cannot hurt it
	default:
	}
	s.stop(err)
}

// refuse logs a refused signal and returns err with its origin.
func (t *Transport) refuse(sig api.Signal, err error) error {
	t.log.Info("rtc: signal refused", "transfer", sig.Transfer, "from", sig.From, "kind", sig.Kind, "bytes", len(sig.Data), "err", err)
	return fmt.Errorf("rtc: %s for transfer %d from %s: %w", sig.Kind, sig.Transfer, sig.From, err)
}

// holdLocked keeps a signal for a transfer not connected yet, within
// MaxPending overall and a session's worth of signals per transfer.
func (t *Transport) holdLocked(sig api.Signal, d signalData) error {
	now := time.Now()
	t.pending = slices.DeleteFunc(t.pending, func(h heldSignal) bool { return now.Sub(h.at) > t.cfg.PendingTTL })
	if len(t.pending) >= t.cfg.MaxPending {
		return fmt.Errorf("%w (%d)", ErrPendingFull, t.cfg.MaxPending)
	}
	n := 0
	for _, h := range t.pending {
		if h.sig.Transfer == sig.Transfer {
			n++
		}
	}
	// A description, its duplicate, and the candidates.
	if n >= t.cfg.MaxCandidates+2 {
		return fmt.Errorf("%w: %d signals already held for transfer %d", ErrTooManyCandidates, n, sig.Transfer)
	}
	t.pending = append(t.pending, heldSignal{sig: sig, d: d, at: now})
	return nil
}

// endedLocked records that a transfer's connection ended.
func (t *Transport) endedLocked(transfer api.TransferID) {
	now := time.Now()
	for id, at := range t.ended {
		if now.Sub(at) > t.cfg.PendingTTL || len(t.ended) >= t.cfg.MaxPending {
			delete(t.ended, id)
		}
	}
	t.ended[transfer] = now
	t.pending = slices.DeleteFunc(t.pending, func(h heldSignal) bool { return h.sig.Transfer == transfer })
}

// takePendingLocked removes and returns the unexpired signals held for a
// transfer, oldest first.
func (t *Transport) takePendingLocked(transfer api.TransferID) []heldSignal {
	now := time.Now()
	var out []heldSignal
	t.pending = slices.DeleteFunc(t.pending, func(h heldSignal) bool {
		if now.Sub(h.at) > t.cfg.PendingTTL {
			return true
		}
		if h.sig.Transfer == transfer {
			out = append(out, h)
			return true
		}
		return false
	})
	return out
}

// Connect returns the data channel connection of one transfer with peer.
// If initiate, this end creates the offer; otherwise it waits for the
// peer's offer and answers. Both ends of a transfer call Connect with the
// same transfer ID. It gives up after Config.ConnectTimeout or when ctx
// ends; the connection then goes.
func (t *Transport) Connect(ctx context.Context, transfer api.TransferID, peer api.BoxID, initiate bool) (*Conn, error) {
	switch {
	case peer == (api.BoxID{}):
		return nil, fmt.Errorf("rtc: connect transfer %d: no peer", transfer)
	case peer == t.cfg.Self:
		return nil, fmt.Errorf("rtc: connect transfer %d: the peer is this box", transfer)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("rtc: connect transfer %d with %s: %w", transfer, peer, err)
	}
	s, err := t.claim(transfer, peer, initiate)
	if err == nil && s == nil {
		s, err = t.open(transfer, peer, initiate, false, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("rtc: connect transfer %d with %s: %w", transfer, peer, err)
	}
	return s.wait(ctx)
}

// claim takes over an unsolicited session for the transfer that Accept
// has not returned yet; it returns nil, nil if there is no session.
func (t *Transport) claim(transfer api.TransferID, peer api.BoxID, initiate bool) (*session, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	s := t.sessions[transfer]
	switch {
	case s == nil:
		return nil, nil
	case !s.unsolicited || s.claimed || s.accepted || initiate:
		return nil, ErrBusy
	case s.peer != peer:
		return nil, fmt.Errorf("%w: the peer's offer came from %s", ErrBusy, s.peer)
	}
	s.claimed = true
	return s, nil
}

// Accept returns connections made from unsolicited offers
// (Config.AcceptUnsolicited).
func (t *Transport) Accept(ctx context.Context) (*Conn, error) {
	for {
		select {
		case c := <-t.accept:
			t.mu.Lock()
			mine := !c.s.claimed // a Connect may have taken it while it was queued
			c.s.accepted = mine
			t.mu.Unlock()
			if mine {
				return c, nil
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("rtc: accept: %w", ctx.Err())
		case <-t.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// Close tears down every connection and returns once every goroutine the
// Transport started has ended.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.pending = nil
	t.mu.Unlock()
	t.cancel(ErrClosed)
	t.wg.Wait()
	return nil
}
