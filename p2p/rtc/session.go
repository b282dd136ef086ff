package rtc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/pion/webrtc/v3"
)

// outQueue bounds the local signals waiting to go to the scheduler: one
// description and the local candidates (a few per interface).
const outQueue = 64

// errLocalClose is the cause of a session whose Conn was closed here,
// errPeerClosed of one whose peer closed the SCTP association.
var (
	errLocalClose = fmt.Errorf("%w by this end", ErrClosed)
	errPeerClosed = fmt.Errorf("%w: the peer closed the connection", ErrConnLost)
)

// session is one transfer's PeerConnection, from Connect (or an
// unsolicited offer) to teardown.
type session struct {
	t           *Transport
	log         *slog.Logger
	transfer    api.TransferID
	peer        api.BoxID
	initiate    bool
	unsolicited bool
	claimed     bool // (t.mu) Connect took over an unsolicited session
	delivered   bool // (t.mu) an unsolicited session's Conn is queued for Accept
	accepted    bool // (t.mu) Accept returned it

	ctx  context.Context // ends, with its cause, when the session must go
	stop context.CancelCauseFunc

	out       chan api.Signal // local signals, in order, for the sender goroutine
	ready     chan struct{}   // closed once conn is set
	lingerReq chan struct{}   // closed by Conn.Close
	low       chan struct{}   // pion's buffered-amount-low events, for Write

	gathered   chan struct{} // closed when ICE gathering completes
	gatherOnce sync.Once
	qmu        sync.Mutex // local candidates against the description
	descSent   bool

	relays relayGate // the peer's relay candidates

	cmu  sync.Mutex // conn against teardown
	conn *Conn

	mu        sync.Mutex // signal handling and pion calls
	closed    bool
	pc        *webrtc.PeerConnection
	dc        *webrtc.DataChannel
	remoteSDP string
	held      []webrtc.ICECandidateInit // remote candidates before the remote description
	ncand     int
	warned    bool
}

// open registers a session for the transfer, sets up its PeerConnection
// (sending the offer if it initiates), and feeds it the signals held for
// the transfer, then extra.
func (t *Transport) open(transfer api.TransferID, peer api.BoxID, initiate, unsolicited bool, extra []heldSignal) (*session, error) {
	ctx, stop := context.WithCancelCause(t.ctx)
	s := &session{
		t:           t,
		log:         t.log.With("transfer", transfer, "peer", peer),
		transfer:    transfer,
		peer:        peer,
		initiate:    initiate,
		unsolicited: unsolicited,
		ctx:         ctx,
		stop:        stop,
		out:         make(chan api.Signal, outQueue),
		ready:       make(chan struct{}),
		lingerReq:   make(chan struct{}),
		low:         make(chan struct{}, 1),
		gathered:    make(chan struct{}),
	}
	// Signals for the transfer that arrive while it is set up wait on s.mu,
	// behind the held ones.
	s.mu.Lock()
	defer s.mu.Unlock()

	t.mu.Lock()
	switch {
	case t.closed:
		t.mu.Unlock()
		stop(ErrClosed)
		return nil, ErrClosed
	case t.sessions[transfer] != nil:
		t.mu.Unlock()
		stop(ErrBusy)
		return nil, ErrBusy
	case len(t.sessions) >= t.cfg.MaxConns:
		t.mu.Unlock()
		stop(ErrTooManyConns)
		return nil, fmt.Errorf("%w (%d)", ErrTooManyConns, t.cfg.MaxConns)
	}
	t.sessions[transfer] = s
	delete(t.ended, transfer)
	held := append(t.takePendingLocked(transfer), extra...)
	t.wg.Add(2)
	if unsolicited {
		t.wg.Add(1)
		go s.deliver()
	}
	t.mu.Unlock()
	go s.run()
	go s.send()

	if err := s.setupLocked(); err != nil {
		err = fmt.Errorf("rtc: setting up the peer connection: %w", err)
		s.stop(err)
		return nil, err
	}
	s.log.Debug("rtc: connecting", "initiate", initiate, "unsolicited", unsolicited, "held_signals", len(held))
	for _, h := range held {
		if h.sig.From != peer {
			t.log.Info("rtc: held signal refused", "transfer", transfer, "from", h.sig.From, "kind", h.sig.Kind,
				"err", fmt.Errorf("%w: transfer %d is with %s", ErrWrongPeer, transfer, peer))
			continue
		}
		if err := s.handleLocked(h.d); err != nil {
			t.log.Info("rtc: held signal refused", "transfer", transfer, "from", h.sig.From, "kind", h.sig.Kind, "err", err)
		}
	}
	return s, nil
}

// setupLocked creates the PeerConnection and its data channel, and the
// offer if this end initiates.
func (s *session) setupLocked() error {
	if s.closed {
		return context.Cause(s.ctx)
	}
	a, err := s.t.newAPI(&s.relays)
	if err != nil {
		return err
	}
	pc, err := a.NewPeerConnection(s.t.iceConfig())
	if err != nil {
		return err
	}
	s.pc = pc
	s.relays.watch(pc)
	pc.OnICECandidate(s.localCandidate)
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		s.log.Debug("rtc: peer connection state", "state", st)
		switch st {
		case webrtc.PeerConnectionStateFailed:
			if pc.SCTP().Transport().State() == webrtc.DTLSTransportStateFailed {
				s.stop(ErrDTLSFailed)
			} else {
				s.stop(ErrICEFailed)
			}
		case webrtc.PeerConnectionStateClosed:
			s.stop(ErrClosed)
		}
	})
	// When the peer closes, SCTP ends long before ICE notices: go then.
	// What arrived stays readable (Conn.Read).
	pc.SCTP().OnClose(func(err error) {
		if err != nil {
			s.stop(fmt.Errorf("%w: SCTP: %w", ErrConnLost, err))
			return
		}
		s.stop(errPeerClosed)
	})
	pc.SCTP().Transport().OnStateChange(func(st webrtc.DTLSTransportState) {
		if st == webrtc.DTLSTransportStateFailed {
			s.stop(ErrDTLSFailed)
		}
	})
	// Only the pre-negotiated channel is used; one the peer opens is not.
	pc.OnDataChannel(func(d *webrtc.DataChannel) {
		s.log.Info("rtc: closing a data channel the peer opened", "label", d.Label())
		_ = d.Close()
	})

	// Pre-negotiated (id 0 at both ends): no DCEP exchange, and the
	// answering end need not wait for the peer to open it.
	negotiated, id := true, uint16(0)
	dc, err := pc.CreateDataChannel("piece", &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &id})
	if err != nil {
		return err
	}
	s.dc = dc
	dc.SetBufferedAmountLowThreshold(uint64(s.t.cfg.LowWater))
	dc.OnBufferedAmountLow(func() {
		select {
		case s.low <- struct{}{}:
		default:
		}
	})
	dc.OnOpen(func() { s.opened(pc, dc) })

	if !s.initiate {
		return nil
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		return err
	}
	s.announceLocked(api.SignalOffer)
	return nil
}

// opened runs when the data channel opens: the Conn is made and handed to
// whoever waits.
func (s *session) opened(pc *webrtc.PeerConnection, dc *webrtc.DataChannel) {
	raw, err := dc.Detach()
	if err != nil {
		s.stop(fmt.Errorf("rtc: detaching the data channel: %w", err))
		return
	}
	path, remote := selectedPath(pc)
	c := newConn(s, dc, raw, path, remote)
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.ctx.Err() != nil {
		_ = raw.Close()
		return
	}
	s.conn = c
	close(s.ready)
	s.log.Info("rtc: connected", "local", c.path.Local, "remote", c.path.Remote, "relayed", c.path.Relayed)
}

// selectedPath is the candidate pair ICE chose, if it did, and the
// remote candidate's address.
func selectedPath(pc *webrtc.PeerConnection) (Path, string) {
	pair, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Local == nil || pair.Remote == nil {
		return Path{}, ""
	}
	p := Path{Local: pair.Local.Typ.String(), Remote: pair.Remote.Typ.String()}
	p.Relayed = pair.Local.Typ == webrtc.ICECandidateTypeRelay || pair.Remote.Typ == webrtc.ICECandidateTypeRelay
	return p, addrKey(pair.Remote.Address, strconv.Itoa(int(pair.Remote.Port)))
}

// handle applies a signal from the peer.
func (s *session) handle(d signalData) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handleLocked(d)
}

func (s *session) handleLocked(d signalData) error {
	if s.closed || s.pc == nil {
		return fmt.Errorf("%w: transfer %d's connection is gone", ErrClosed, s.transfer)
	}
	switch d.kind {
	case api.SignalOffer:
		if s.initiate {
			// Both ends were told to initiate: neither will answer.
			err := fmt.Errorf("%w: an offer, but this end initiates transfer %d", ErrUnexpectedSignal, s.transfer)
			s.stop(err)
			return err
		}
		return s.describeLocked(webrtc.SDPTypeOffer, d)
	case api.SignalAnswer:
		if !s.initiate {
			return fmt.Errorf("%w: an answer, but this end made no offer", ErrUnexpectedSignal)
		}
		return s.describeLocked(webrtc.SDPTypeAnswer, d)
	default:
		if s.ncand >= s.t.cfg.MaxCandidates {
			if !s.warned {
				s.warned = true
				s.log.Warn("rtc: peer sent too many candidates; dropping the rest", "max", s.t.cfg.MaxCandidates)
			}
			return fmt.Errorf("%w (%d for transfer %d)", ErrTooManyCandidates, s.t.cfg.MaxCandidates, s.transfer)
		}
		s.ncand++
		s.relays.announce(d.relays)
		if s.remoteSDP == "" {
			s.held = append(s.held, d.candidate)
			return nil
		}
		if err := s.pc.AddICECandidate(d.candidate); err != nil {
			return fmt.Errorf("rtc: adding candidate %q: %w", d.candidate.Candidate, err)
		}
		return nil
	}
}

// describeLocked sets the remote description, adds the candidates held
// for it, and answers an offer. A broken description ends the session:
// nothing else could make it connect.
func (s *session) describeLocked(typ webrtc.SDPType, d signalData) error {
	if s.remoteSDP != "" {
		if s.remoteSDP == d.sdp {
			return nil // delivered twice
		}
		return fmt.Errorf("%w: a second, different %s (renegotiation is not supported)", ErrUnexpectedSignal, typ)
	}
	if s.ncand+d.candidates > s.t.cfg.MaxCandidates {
		err := fmt.Errorf("%w: the %s carries %d candidates (%d already)", ErrTooManyCandidates, typ, d.candidates, s.ncand)
		s.stop(err)
		return err
	}
	s.relays.announce(d.relays)
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: typ, SDP: d.sdp}); err != nil {
		err = fmt.Errorf("%w: %s refused: %w", ErrBadSignal, typ, err)
		s.stop(err)
		return err
	}
	s.ncand += d.candidates
	s.remoteSDP = d.sdp
	for _, c := range s.held {
		if err := s.pc.AddICECandidate(c); err != nil {
			s.log.Info("rtc: held candidate refused", "candidate", c.Candidate, "err", err)
		}
	}
	s.held = nil
	if typ != webrtc.SDPTypeOffer {
		return nil
	}
	answer, err := s.pc.CreateAnswer(nil)
	if err == nil {
		err = s.pc.SetLocalDescription(answer)
	}
	if err != nil {
		err = fmt.Errorf("rtc: answering: %w", err)
		s.stop(err)
		return err
	}
	s.announceLocked(api.SignalAnswer)
	return nil
}

// announceLocked sends the local description once ICE gathering has
// completed, or after Config.GatherWait: the description then carries
// every candidate found so far (see the package doc, "Candidates"), and
// later ones trickle.
func (s *session) announceLocked(kind api.SignalKind) {
	pc := s.pc
	s.t.wg.Add(1) // the session's run goroutine holds the count above 0
	go func() {
		defer s.t.wg.Done()
		timer := time.NewTimer(s.t.cfg.GatherWait)
		defer timer.Stop()
		select {
		case <-s.gathered:
		case <-timer.C:
			s.log.Info("rtc: ICE gathering incomplete; sending the candidates found so far", "kind", kind, "waited", s.t.cfg.GatherWait)
		case <-s.ctx.Done():
			return
		}
		s.qmu.Lock()
		defer s.qmu.Unlock()
		desc := pc.LocalDescription()
		if desc == nil {
			s.stop(fmt.Errorf("rtc: no local %s to send", kind))
			return
		}
		s.descSent = true
		s.enqueue(api.Signal{Transfer: s.transfer, To: s.peer, Kind: kind, Data: desc.SDP})
	}()
}

// localCandidate trickles a candidate gathered after the description
// went; those found before are in it.
func (s *session) localCandidate(c *webrtc.ICECandidate) {
	if c == nil {
		s.gatherOnce.Do(func() { close(s.gathered) })
		return
	}
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if !s.descSent {
		return
	}
	data, err := marshalCandidate(c.ToJSON())
	if err != nil {
		s.log.Error("rtc: local candidate not sent", "err", err)
		return
	}
	s.enqueue(api.Signal{Transfer: s.transfer, To: s.peer, Kind: api.SignalCandidate, Data: data})
}

func (s *session) enqueue(sig api.Signal) {
	select {
	case s.out <- sig:
	default:
		s.log.Warn("rtc: too many local signals queued; dropped one", "kind", sig.Kind)
	}
}

// send hands local signals to Config.Signal, in order. A description that
// cannot be sent ends the session; a candidate is only logged.
func (s *session) send() {
	defer s.t.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case sig := <-s.out:
			if err := s.t.cfg.Signal(s.ctx, sig); err != nil {
				if s.ctx.Err() != nil {
					return
				}
				if sig.Kind != api.SignalCandidate {
					s.stop(fmt.Errorf("rtc: sending the %s: %w", sig.Kind, err))
					return
				}
				s.log.Info("rtc: candidate not sent", "err", err)
			}
		}
	}
}

// run waits for the session's end: a failure, the Transport's Close, or
// the Conn's Close, after which it lingers until the peer has
// acknowledged what was written. Then it tears everything down.
func (s *session) run() {
	defer s.t.wg.Done()
	select {
	case <-s.ctx.Done():
	case <-s.lingerReq:
		s.linger()
		s.stop(errLocalClose)
	}
	s.teardown()
}

// linger waits, up to Config.Linger, until nothing written is
// unacknowledged, so that closing the PeerConnection loses nothing.
func (s *session) linger() {
	s.cmu.Lock()
	dc := s.conn.dc // lingerReq is closed by the Conn
	s.cmu.Unlock()
	deadline := time.NewTimer(s.t.cfg.Linger)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for dc.BufferedAmount() > 0 {
		select {
		case <-s.ctx.Done():
			return
		case <-deadline.C:
			s.log.Info("rtc: closing with data unacknowledged", "buffered", dc.BufferedAmount(), "linger", s.t.cfg.Linger)
			return
		case <-tick.C:
		}
	}
}

func (s *session) teardown() {
	cause := context.Cause(s.ctx)
	s.mu.Lock()
	s.closed = true
	pc := s.pc
	s.mu.Unlock()
	s.cmu.Lock()
	c := s.conn
	s.cmu.Unlock()
	if c != nil {
		c.unblockRead()
	}
	if pc != nil {
		if err := pc.GracefulClose(); err != nil {
			s.log.Debug("rtc: closing the peer connection", "err", err)
		}
	}
	t := s.t
	t.mu.Lock()
	if t.sessions[s.transfer] == s {
		delete(t.sessions, s.transfer)
		if !t.closed {
			t.endedLocked(s.transfer)
		}
	}
	t.mu.Unlock()
	switch {
	case errors.Is(cause, errLocalClose), errors.Is(cause, errPeerClosed):
		s.log.Debug("rtc: connection closed", "cause", cause)
	case errors.Is(cause, ErrClosed):
		s.log.Debug("rtc: connection closed", "cause", cause)
	default:
		s.log.Info("rtc: connection ended", "cause", cause)
	}
}

// wait returns the Conn once it is open, or why not.
func (s *session) wait(ctx context.Context) (*Conn, error) {
	timer := time.NewTimer(s.t.cfg.ConnectTimeout)
	defer timer.Stop()
	select {
	case <-s.ready:
		return s.conn, nil
	case <-s.ctx.Done():
	case <-ctx.Done():
		s.stop(ctx.Err())
	case <-timer.C:
		s.stop(fmt.Errorf("%w after %s", ErrConnectTimeout, s.t.cfg.ConnectTimeout))
	}
	return nil, fmt.Errorf("rtc: connect transfer %d with %s: %w", s.transfer, s.peer, context.Cause(s.ctx))
}

// deliver hands an unsolicited session's Conn to Accept, unless Connect
// took it over.
func (s *session) deliver() {
	defer s.t.wg.Done()
	timer := time.NewTimer(s.t.cfg.ConnectTimeout)
	defer timer.Stop()
	select {
	case <-s.ready:
	case <-s.ctx.Done():
		return
	case <-timer.C:
		s.t.mu.Lock()
		claimed := s.claimed
		s.t.mu.Unlock()
		if !claimed {
			s.stop(fmt.Errorf("%w after %s", ErrConnectTimeout, s.t.cfg.ConnectTimeout))
		}
		return
	}
	t := s.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if s.claimed {
		return
	}
	s.delivered = true
	select {
	case t.accept <- s.conn:
	default: // cannot happen: the queue holds MaxConns
		s.stop(fmt.Errorf("%w: accept queue full", ErrTooManyConns))
	}
}
