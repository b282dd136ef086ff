package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
)

// stream is what a session runs on: the box's *tls.Conn, or an in-memory
// stand-in in the fuzz test.
type stream interface {
	io.ReadWriter
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
	CloseWrite() error
}

// ctrlFrame is a control message queued by the reader for the sender.
type ctrlFrame struct {
	frame []byte
	final bool // the last frame: close our side once it is written
}

// session is one authenticated connection of one box. Its reader (the
// goroutine that runs runBox) reads and delivers; its sender owns every
// write and the messages owed to the box.
type session struct {
	g      *Gateway
	box    api.BoxID
	remote string
	log    *slog.Logger
	c      stream
	kill   func() error // closes the connection at once
	br     *bufio.Reader
	bw     *bufio.Writer // the sender's, once it runs
	cancel context.CancelFunc

	// prev is the connection this one replaced; done is closed once this
	// session and every one before it have made their last Handler call.
	prev *session
	done chan struct{}

	live      atomic.Bool // past hello: Connected was called
	closing   chan struct{}
	closeOnce sync.Once

	ctrl       chan ctrlFrame
	notify     chan struct{} // Notify: more messages are owed
	ackSig     chan struct{} // ackHigh rose
	ackHigh    atomic.Uint64 // highest ack from the box
	sentHigh   atomic.Uint64 // highest sequence sent (or known processed) on this connection
	senderDone chan struct{}

	lastIn  uint64 // reader only: highest sequence processed from the box
	ackOwed bool   // reader only: lastIn has not been acknowledged yet
	rejects int    // reader only: rejected since the last message processed
}

// runBox runs the session of an authenticated box until the connection
// ends. release frees the connection's handshake slot once hello is done.
func (g *Gateway) runBox(ctx context.Context, c stream, kill func() error, box api.BoxID, remote string, release func()) {
	sctx, cancel := context.WithCancel(ctx)
	s := &session{
		g:          g,
		box:        box,
		remote:     remote,
		log:        g.log.With("box", box.String(), "remote", remote),
		c:          c,
		kill:       kill,
		br:         bufio.NewReaderSize(c, 8<<10),
		bw:         bufio.NewWriterSize(c, 32<<10),
		cancel:     cancel,
		done:       make(chan struct{}),
		closing:    make(chan struct{}),
		ctrl:       make(chan ctrlFrame, 64),
		notify:     make(chan struct{}, 1),
		ackSig:     make(chan struct{}, 1),
		senderDone: make(chan struct{}),
	}
	g.register(s)
	defer s.finish()
	defer s.shutdown()
	stop := context.AfterFunc(ctx, s.shutdown)
	defer stop()

	if !s.waitPrev() {
		return
	}
	hello, ok := s.hello(sctx)
	if !ok {
		return
	}
	release()

	s.sentHigh.Store(hello.LastSeq)
	s.ackHigh.Store(hello.LastSeq)
	s.live.Store(true)
	g.cfg.Handler.Connected(box, remote)
	s.log.Info("box connected", "last_in", s.lastIn, "last_out", hello.LastSeq)
	go s.sendLoop(sctx, hello.LastSeq)
	s.readLoop(ctx)
	s.shutdown()
	<-s.senderDone
	s.live.Store(false)
	g.cfg.Handler.Disconnected(box)
	s.log.Info("box disconnected")
}

func (g *Gateway) register(s *session) {
	g.mu.Lock()
	s.prev = g.sessions[s.box]
	g.sessions[s.box] = s
	g.mu.Unlock()
	if s.prev != nil {
		s.prev.log.Info("box connected again: closing this connection", "new_remote", s.remote)
		s.prev.shutdown()
	}
}

// waitPrev waits until the connection this one replaced has made its last
// Handler call, so that the two never deliver concurrently.
func (s *session) waitPrev() bool {
	if s.prev == nil {
		return true
	}
	t := time.NewTimer(s.g.cfg.HandshakeTimeout)
	defer t.Stop()
	select {
	case <-s.prev.done:
		return true
	case <-s.closing:
		return false
	case <-t.C:
		s.refuse(0, "the box's previous connection is still closing; try again")
		return false
	}
}

// finish ends the session's part in the chain of connections of its box.
func (s *session) finish() {
	s.g.mu.Lock()
	if s.g.sessions[s.box] == s {
		delete(s.g.sessions, s.box)
	}
	s.g.mu.Unlock()
	if s.prev != nil {
		<-s.prev.done
		s.prev = nil
	}
	close(s.done)
}

// shutdown ends the connection at once; both goroutines then return.
func (s *session) shutdown() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.cancel()
		s.kill()
	})
}

// hello exchanges hellos; the sender does not run yet, so it writes
// directly.
func (s *session) hello(ctx context.Context) (api.Hello, bool) {
	cfg := &s.g.cfg
	last, err := cfg.Handler.LastProcessed(ctx, s.box)
	if err != nil {
		s.log.Error("cannot start a session", "err", fmt.Errorf("last processed sequence of box %s: %w", s.box, err))
		s.refuse(0, "the head-end cannot load this box's state; try again later")
		return api.Hello{}, false
	}
	s.lastIn = last
	frame, err := api.Encode(0, api.Hello{Versions: []int{api.Version}, LastSeq: last, Software: "boxswarm-gateway"})
	if err != nil {
		panic(err) // a constant message: cannot fail
	}
	s.c.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
	if _, err := s.bw.Write(frame); err != nil || s.bw.Flush() != nil {
		s.log.Info("could not send hello", "err", err)
		return api.Hello{}, false
	}

	s.c.SetReadDeadline(time.Now().Add(cfg.HandshakeTimeout))
	m, err := api.ReadMessage(s.br)
	switch {
	case isClosed(err) || isTimeout(err):
		s.log.Info("no hello from the box", "err", err)
		return api.Hello{}, false
	case err != nil:
		s.refuse(m.Seq, "hello: "+err.Error())
		return api.Hello{}, false
	}
	h, ok := m.Body.(api.Hello)
	switch {
	case !ok:
		s.refuse(m.Seq, fmt.Sprintf("%s before hello: a session starts with hello", m.Body.Type()))
		return api.Hello{}, false
	case m.Seq != 0:
		s.refuse(m.Seq, fmt.Sprintf("hello with sequence %d: control messages carry 0", m.Seq))
		return api.Hello{}, false
	case !slices.Contains(h.Versions, api.Version):
		s.refuse(0, fmt.Sprintf("no common protocol version: the box speaks %v, the head-end %d", h.Versions, api.Version))
		return api.Hello{}, false
	}
	return h, true
}

// refuse rejects and closes before the sender runs.
func (s *session) refuse(seq uint64, why string) {
	s.log.Warn("session refused", "reason", why)
	if frame, err := api.Encode(0, api.Reject{Seq: seq, Reason: api.FitReason(why)}); err == nil {
		s.c.SetWriteDeadline(time.Now().Add(s.g.cfg.WriteTimeout))
		if _, err := s.bw.Write(frame); err == nil {
			s.bw.Flush()
		}
	}
	s.linger()
}

// linger closes our side and reads what the box still sends for a moment,
// so that the box gets to read our last words before the socket closes.
func (s *session) linger() {
	s.c.SetReadDeadline(time.Now().Add(lingerTime))
	s.c.CloseWrite()
	drain(s.br)
}

// readLoop reads the box's messages until the connection ends.
func (s *session) readLoop(ctx context.Context) {
	idle := s.g.cfg.IdleTimeout
	for {
		// Acknowledge once nothing complete is waiting: a burst gets one
		// ack, and a box that waits for its ack gets it before we block.
		if s.ackOwed && !api.FrameBuffered(s.br) {
			if !s.queue(api.Ack{Seq: s.lastIn}, false) {
				return
			}
			s.ackOwed = false
		}
		s.c.SetReadDeadline(time.Now().Add(idle))
		frame, err := api.ReadFrame(s.br)
		if err != nil {
			switch {
			case errors.Is(err, api.ErrTooLarge):
				s.fail(0, err.Error())
			case errors.Is(err, api.ErrMalformed):
				if s.reject(0, err.Error()) {
					continue
				}
			case isTimeout(err):
				s.log.Info("box silent: disconnecting", "idle_timeout", idle)
			case isClosed(err):
				s.log.Debug("connection closed", "err", err)
			default:
				s.log.Info("read failed", "err", err)
			}
			return
		}
		m, err := api.Decode(frame)
		switch {
		case errors.Is(err, api.ErrVersion):
			s.fail(m.Seq, err.Error())
			return
		case err != nil:
			if !s.reject(m.Seq, err.Error()) {
				return
			}
		default:
			if !s.inbound(ctx, m) {
				return
			}
		}
	}
}

// inbound applies the rules of the package comment to one decoded message.
// It returns false when the connection must end.
func (s *session) inbound(ctx context.Context, m api.Message) bool {
	t := m.Body.Type()
	switch b := m.Body.(type) {
	case api.Hello, api.Ack, api.Reject, api.Heartbeat:
		if m.Seq != 0 {
			return s.reject(m.Seq, fmt.Sprintf("%s is a control message and carries sequence 0, not %d", t, m.Seq))
		}
		switch b := b.(type) {
		case api.Hello:
			return s.reject(0, "hello after the session started")
		case api.Heartbeat:
			return s.queue(api.Heartbeat{}, false)
		case api.Reject:
			s.log.Info("box rejected a message", "seq", b.Seq, "reason", b.Reason)
		case api.Ack:
			if sent := s.sentHigh.Load(); b.Seq > sent {
				return s.reject(0, fmt.Sprintf("ack of sequence %d, but the head-end has sent up to %d", b.Seq, sent))
			}
			if b.Seq > s.ackHigh.Load() {
				s.ackHigh.Store(b.Seq)
				select {
				case s.ackSig <- struct{}{}:
				default:
				}
			}
		}
		return true
	}
	if !api.FromBox(t) {
		return s.reject(m.Seq, fmt.Sprintf("%s is not a message a box may send on an authenticated connection", t))
	}
	switch {
	case m.Seq == 0:
		return s.reject(0, fmt.Sprintf("%s without a sequence number: only control messages carry 0", t))
	case m.Seq <= s.lastIn:
		s.ackOwed = false
		return s.reject(m.Seq, fmt.Sprintf("duplicate sequence %d (already processed)", m.Seq)) &&
			s.queue(api.Ack{Seq: s.lastIn}, false)
	case m.Seq > s.lastIn+1:
		s.fail(m.Seq, fmt.Sprintf("sequence %d skips ahead: expected %d", m.Seq, s.lastIn+1))
		return false
	}
	err := s.g.cfg.Handler.Deliver(ctx, s.box, m.Seq, m.Body)
	if err != nil && ctx.Err() != nil {
		s.log.Info("gateway stopping: message left for the box to resend", "seq", m.Seq, "err", err)
		return false
	}
	s.lastIn = m.Seq
	s.ackOwed = true
	s.rejects = 0
	if err != nil {
		s.log.Info("handler rejected a message", "seq", m.Seq, "type", t, "err", err)
		return s.reject(m.Seq, err.Error())
	}
	return true
}

// maxRejects is how many messages in a row, with none processed between
// them, a connection may have rejected before it is closed: a box that
// only sends what cannot be used is broken or hostile, and each reject
// costs a log line and a write.
const maxRejects = 100

// reject queues a reject; the connection stays open unless it has had
// too many.
func (s *session) reject(seq uint64, why string) bool {
	if s.rejects++; s.rejects > maxRejects {
		s.fail(seq, fmt.Sprintf("%s; %d messages in a row rejected: closing the connection", why, maxRejects))
		return false
	}
	s.log.Info("rejecting a message", "seq", seq, "reason", why)
	return s.queue(api.Reject{Seq: seq, Reason: api.FitReason(why)}, false)
}

// fail sends a last reject and closes the connection gracefully.
func (s *session) fail(seq uint64, why string) {
	s.log.Warn("closing the connection", "seq", seq, "reason", why)
	if !s.queue(api.Reject{Seq: seq, Reason: api.FitReason(why)}, true) {
		return
	}
	select {
	case <-s.senderDone:
		s.c.SetReadDeadline(time.Now().Add(lingerTime))
		drain(s.br)
	case <-s.closing:
	}
}

// queue hands a control message to the sender; false if the connection is
// closing.
func (s *session) queue(b api.Body, final bool) bool {
	frame, err := api.Encode(0, b)
	if err != nil {
		s.log.Error("cannot encode a control message", "err", err)
		return false
	}
	select {
	case s.ctrl <- ctrlFrame{frame, final}:
		return true
	case <-s.closing:
		return false
	}
}

// sendLoop owns the writes of the connection and the messages owed to the
// box. claimed is what the box's hello said it had processed.
//
// Handler.Acked is only ever given a sequence number Pending has returned
// (or one below it): a box's hello or ack claiming more than it was ever
// sent cannot make the handler drop messages it has not assigned yet.
func (s *session) sendLoop(ctx context.Context, claimed uint64) {
	defer close(s.senderDone)
	cfg := &s.g.cfg
	h := cfg.Handler
	var (
		unacked []schedstore.Outbound // sent, in order, not yet acknowledged
		after   = claimed             // the box has everything up to here, or it is in unacked
		known   uint64                // highest sequence Pending has returned
		acked   uint64                // highest passed to Acked
		more    = true                // Pending may hold messages not sent yet
		attempt = 0                   // resends since the last progress
		armed   = false
		timer   = time.NewTimer(time.Hour)
	)
	timer.Stop()
	defer timer.Stop()
	arm := func(d time.Duration) { timer.Reset(d); armed = true }
	backoff := func(n int) time.Duration {
		d := cfg.RetryBase
		for ; n > 0 && d < cfg.RetryMax; n-- {
			d *= 2
		}
		return min(d, cfg.RetryMax)
	}
	// fetch sends what Pending holds beyond after, up to MaxInFlight
	// unacknowledged; from is where Pending starts (0 at first, to learn
	// what the hello acknowledged).
	fetch := func(from uint64) bool {
		msgs, err := h.Pending(ctx, s.box, from)
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			s.log.Error("cannot load messages owed", "err", fmt.Errorf("pending messages of box %s: %w", s.box, err))
			more = true
			if !armed {
				arm(cfg.RetryBase)
			}
			return true
		}
		more = false
		prev := from
		for _, o := range msgs {
			if o.Seq <= prev || len(o.Frame) == 0 {
				s.log.Error("handler returned messages out of order: not sent", "seq", o.Seq, "after", prev)
				break
			}
			prev = o.Seq
			known = max(known, o.Seq)
			if o.Seq <= after {
				continue // acknowledged by the hello
			}
			if len(unacked) >= cfg.MaxInFlight {
				more = true
				break
			}
			// Recorded before the write, so the box's ack of it, however
			// quick, is never taken for an ack of something unsent.
			s.sentHigh.Store(o.Seq)
			after = o.Seq
			unacked = append(unacked, o)
			if !s.write(o.Frame) {
				return false
			}
		}
		if len(unacked) > 0 && !armed {
			arm(backoff(0))
		}
		return true
	}
	// ack passes progress on to the handler and drops what it covers.
	ack := func(a uint64) {
		a = min(a, known)
		if a <= acked {
			return
		}
		acked = a
		n := 0
		for n < len(unacked) && unacked[n].Seq <= a {
			n++
		}
		unacked = slices.Delete(unacked, 0, n)
		if err := h.Acked(ctx, s.box, a); err != nil {
			s.log.Error("cannot record acknowledgement", "seq", a, "err", err)
		}
		attempt = 0
		if len(unacked) > 0 {
			arm(backoff(0))
		} else {
			timer.Stop()
			armed = false
		}
	}

	ok := fetch(0)
	ack(claimed)
	for ok {
		if !s.flush() {
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
					s.c.CloseWrite()
				}
				return // the reader lingers and closes
			}
		case <-s.notify:
			ok = fetch(after)
		case <-s.ackSig:
			ack(s.ackHigh.Load())
			if more {
				ok = fetch(after)
			}
		case <-timer.C:
			armed = false
			if len(unacked) == 0 {
				if more {
					ok = fetch(after)
				}
				continue
			}
			if attempt >= cfg.MaxRetries {
				s.log.Warn("box unreachable: messages unacknowledged after every resend",
					"resends", attempt, "first_unacked", unacked[0].Seq, "unacked", len(unacked))
				h.Unreachable(s.box)
				s.shutdown()
				return
			}
			attempt++
			s.log.Info("resending unacknowledged messages", "attempt", attempt, "first", unacked[0].Seq, "count", len(unacked))
			for _, o := range unacked {
				if ok = s.write(o.Frame); !ok {
					break
				}
			}
			arm(backoff(attempt))
		}
	}
	s.shutdown()
}

// write buffers one frame; false if the connection failed.
func (s *session) write(frame []byte) bool {
	s.c.SetWriteDeadline(time.Now().Add(s.g.cfg.WriteTimeout))
	if _, err := s.bw.Write(frame); err != nil {
		s.log.Info("write failed", "err", err)
		return false
	}
	return true
}

func (s *session) flush() bool {
	if s.bw.Buffered() == 0 {
		return true
	}
	s.c.SetWriteDeadline(time.Now().Add(s.g.cfg.WriteTimeout))
	if err := s.bw.Flush(); err != nil {
		s.log.Info("write failed", "err", err)
		return false
	}
	return true
}
