package rtc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/pion/datachannel"
	"github.com/pion/sctp"
	"github.com/pion/webrtc/v3"
)

// Path says which ICE candidate pair carries a connection.
type Path struct {
	Local, Remote string // candidate types: host, srflx, prflx, relay
	Relayed       bool   // either end is a TURN relay
}

func (p Path) String() string {
	if p.Local == "" {
		return "unknown"
	}
	s := p.Local + "->" + p.Remote
	if p.Relayed {
		s += " (relayed)"
	}
	return s
}

// Conn is an io.ReadWriteCloser byte stream over one reliable ordered
// data channel. One Read and one Write may run at once; Close may be
// called from any goroutine, at any time.
//
// The end of the stream is an empty message, which Write never sends
// otherwise: Read returns io.EOF only after it, so a connection that
// breaks is never taken for one the peer closed.
type Conn struct {
	s    *session
	dc   *webrtc.DataChannel
	raw  datachannel.ReadWriteCloser
	path Path
	// remote is the selected remote candidate's address, "ip:port".
	remote string

	rmu        sync.Mutex
	buf        []byte // the rest of the last message, buf[rpos:rend]
	rpos, rend int
	eof        bool
	rdlMu      sync.Mutex // read deadline against Close
	unblocked  bool

	wmu     sync.Mutex
	wdl     deadline
	finSent bool // (wmu) the end-of-stream marker went

	closeOnce sync.Once
	closed    chan struct{}
}

func newConn(s *session, dc *webrtc.DataChannel, raw datachannel.ReadWriteCloser, path Path, remote string) *Conn {
	return &Conn{
		s:      s,
		dc:     dc,
		raw:    raw,
		path:   path,
		remote: remote,
		buf:    make([]byte, MaxMessage),
		wdl:    makeDeadline(),
		closed: make(chan struct{}),
	}
}

// Transfer is the transfer the connection belongs to.
func (c *Conn) Transfer() api.TransferID { return c.s.transfer }

// Peer is the box at the other end, as the scheduler named it.
func (c *Conn) Peer() api.BoxID { return c.s.peer }

// Path is the candidate pair ICE selected when the channel opened. A
// remote candidate pion learned as peer-reflexive that the peer announced
// as a relay is a relay.
func (c *Conn) Path() Path {
	p := c.path
	if p.Remote == webrtc.ICECandidateTypePrflx.String() && c.s.relays.isRelay(c.remote) {
		p.Remote, p.Relayed = webrtc.ICECandidateTypeRelay.String(), true
	}
	return p
}

// Read reads bytes of the peer's messages, in order.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	for c.rpos == c.rend {
		if err := c.readState(); err != nil {
			return 0, err
		}
		// A caller's buffer that holds any message takes it directly.
		dst := c.buf
		if len(p) >= MaxMessage {
			dst = p
		}
		n, err := c.raw.Read(dst)
		if err != nil {
			return 0, c.readErr(err)
		}
		if n == 0 {
			c.eof = true
			return 0, io.EOF
		}
		if len(p) >= MaxMessage {
			return n, nil
		}
		c.rpos, c.rend = 0, n
	}
	n := copy(p, c.buf[c.rpos:c.rend])
	c.rpos += n
	return n, nil
}

// readState says why Read cannot read, if it cannot.
func (c *Conn) readState() error {
	select {
	case <-c.closed:
		return c.closedErr()
	default:
	}
	if c.eof {
		return io.EOF
	}
	return nil
}

func (c *Conn) readErr(err error) error {
	select {
	case <-c.closed:
		return c.closedErr()
	default:
	}
	switch {
	case errors.Is(err, io.ErrShortBuffer):
		err := fmt.Errorf("%w (transfer %d)", ErrMessageTooLarge, c.s.transfer)
		c.s.stop(err)
		return err
	case errors.Is(err, sctp.ErrReadDeadlineExceeded):
		if c.s.ctx.Err() != nil {
			return c.brokenErr()
		}
		return fmt.Errorf("rtc: read transfer %d: %w", c.s.transfer, os.ErrDeadlineExceeded)
	}
	if c.s.ctx.Err() != nil {
		return c.brokenErr()
	}
	return fmt.Errorf("%w (transfer %d): %w", ErrConnLost, c.s.transfer, err)
}

// brokenErr is why the session ended, for a Conn not closed here.
func (c *Conn) brokenErr() error {
	return fmt.Errorf("rtc: transfer %d with %s: %w", c.s.transfer, c.s.peer, context.Cause(c.s.ctx))
}

func (c *Conn) closedErr() error {
	return fmt.Errorf("%w (transfer %d)", ErrClosed, c.s.transfer)
}

// Write sends p as messages of at most MaxMessage bytes, blocking while
// more than Config.HighWater bytes are unacknowledged.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.finSent {
		return 0, fmt.Errorf("%w for writing (transfer %d)", ErrClosed, c.s.transfer)
	}
	n := 0
	for len(p) > 0 {
		if err := c.waitWritable(); err != nil {
			return n, err
		}
		m := min(len(p), MaxMessage)
		if _, err := c.raw.Write(p[:m]); err != nil {
			return n, c.writeErr(err)
		}
		n += m
		p = p[m:]
	}
	return n, nil
}

// waitWritable blocks while the channel buffers more than the high-water
// mark. pion signals s.low when the amount falls to the low-water mark;
// s.low holds one event, so one that fires between the check and the wait
// is not lost.
func (c *Conn) waitWritable() error {
	high := uint64(c.s.t.cfg.HighWater)
	for {
		select {
		case <-c.closed:
			return c.closedErr()
		case <-c.s.ctx.Done():
			return c.brokenErr()
		case <-c.wdl.wait():
			return fmt.Errorf("rtc: write transfer %d: %w", c.s.transfer, os.ErrDeadlineExceeded)
		default:
		}
		if c.dc.BufferedAmount() <= high {
			return nil
		}
		select {
		case <-c.s.low:
		case <-c.closed:
		case <-c.s.ctx.Done():
		case <-c.wdl.wait():
		}
	}
}

func (c *Conn) writeErr(err error) error {
	select {
	case <-c.closed:
		return c.closedErr()
	default:
	}
	if c.s.ctx.Err() != nil {
		return c.brokenErr()
	}
	return fmt.Errorf("%w (transfer %d): %w", ErrConnLost, c.s.transfer, err)
}

// CloseWrite ends the stream this end writes: the peer reads io.EOF after
// everything written, and this end can still read. Write fails from then
// on.
func (c *Conn) CloseWrite() error {
	select {
	case <-c.closed:
		return c.closedErr()
	default:
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.finLocked()
}

// finLocked sends the end-of-stream marker, once.
func (c *Conn) finLocked() error {
	if c.finSent {
		return nil
	}
	c.finSent = true
	if c.s.ctx.Err() != nil {
		return c.brokenErr()
	}
	if _, err := c.raw.Write(nil); err != nil {
		return c.writeErr(err)
	}
	return nil
}

// Close ends the connection: the peer reads io.EOF after everything
// written (if it had not had it from CloseWrite), and Read and Write here
// fail with ErrClosed. It returns at once; the PeerConnection goes once
// the peer has acknowledged the data (or after Config.Linger).
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		// A Write blocked on flow control returns now that closed is
		// closed, so this does not wait long.
		c.wmu.Lock()
		_ = c.finLocked() // if it cannot go, the peer sees the end without it
		c.wmu.Unlock()
		c.unblockRead()
		close(c.s.lingerReq)
	})
	return nil
}

// unblockRead makes a Read blocked in pion return.
func (c *Conn) unblockRead() {
	c.rdlMu.Lock()
	defer c.rdlMu.Unlock()
	c.unblocked = true
	if d, ok := c.raw.(datachannel.ReadDeadliner); ok {
		_ = d.SetReadDeadline(time.Now())
	}
}

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline makes a Read blocked at t, or later, return an error
// wrapping os.ErrDeadlineExceeded; the zero time clears it.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.rdlMu.Lock()
	defer c.rdlMu.Unlock()
	if c.unblocked {
		if err := c.readState(); err != nil {
			return err
		}
		return c.brokenErr()
	}
	d, ok := c.raw.(datachannel.ReadDeadliner)
	if !ok {
		return errors.New("rtc: the data channel has no read deadline")
	}
	return d.SetReadDeadline(t)
}

// SetWriteDeadline makes a Write blocked at t, or later, return an error
// wrapping os.ErrDeadlineExceeded; the zero time clears it.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wdl.set(t)
	return nil
}

// deadline is a settable deadline whose wait channel closes when it
// passes (net.Pipe's pattern).
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{}
}

func makeDeadline() deadline { return deadline{cancel: make(chan struct{})} }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait until it closed cancel
	}
	d.timer = nil
	closed := isClosed(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(cancel) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
