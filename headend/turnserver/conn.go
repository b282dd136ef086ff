package turnserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/pion/stun"
	"github.com/pion/turn/v2"
)

var (
	errQuota        = errors.New("allocation quota reached")
	errUnattributed = errors.New("allocation not attributable to an authenticated user")
)

// Message types this package looks for on the wire.
var (
	typeAllocateError  = stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse)
	typeDataIndication = stun.NewType(stun.MethodData, stun.ClassIndication)
)

// stunType returns the type of the STUN message in b, if b is one.
func stunType(b []byte) (stun.MessageType, bool) {
	if !stun.IsMessage(b) {
		return stun.MessageType{}, false
	}
	var t stun.MessageType
	t.ReadValue(binary.BigEndian.Uint16(b[0:2]))
	return t, true
}

// isRequest says whether b is a STUN request.
func isRequest(b []byte) bool {
	t, ok := stunType(b)
	return ok && t.Class == stun.ClassRequest
}

// serverConn is the socket pion serves on. Reading, it tells the Server
// which datagram pion is about to handle; writing, it counts bytes relayed
// to boxes and turns pion's refusal of an over-quota allocation into 486.
type serverConn struct {
	net.PacketConn
	s        *Server
	done     chan struct{} // closed when pion's read loop ends
	doneOnce sync.Once
}

func (c *serverConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if err != nil {
		// pion's read loop ends on any error.
		c.doneOnce.Do(func() { close(c.done) })
		return n, addr, err
	}
	c.s.begin(p[:n], addr)
	return n, addr, nil
}

func (c *serverConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	t, isSTUN := stunType(p)
	if isSTUN && t == typeAllocateError {
		if q := c.s.quotaResponse(p, addr); q != nil {
			if _, err := c.PacketConn.WriteTo(q, addr); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	n, err := c.PacketConn.WriteTo(p, addr)
	if err == nil {
		c.s.bytesFromPeers.Add(uint64(relayedPayload(p, t, isSTUN)))
	}
	return n, err
}

// relayedPayload is the size of the peer's payload in a datagram pion
// sends a box: ChannelData or a Data indication; 0 for anything else.
func relayedPayload(p []byte, t stun.MessageType, isSTUN bool) int {
	switch {
	case len(p) >= 4 && p[0]&0xc0 == 0x40: // ChannelData: channel numbers are 0x4000-0x7fff
		return int(binary.BigEndian.Uint16(p[2:4]))
	case isSTUN && t == typeDataIndication:
		m := &stun.Message{Raw: p}
		if m.Decode() != nil {
			return 0
		}
		data, err := m.Get(stun.AttrData)
		if err != nil {
			return 0
		}
		return len(data)
	}
	return 0
}

// quotaResponse returns the 486 (Allocation Quota Reached) response to
// send instead of p, pion's error response to the request being handled,
// if that request was refused for its quota. pion/turn v2.1.6 answers any
// failure of the RelayAddressGenerator with 508 (Insufficient Capacity)
// and has no quota of its own.
func (s *Server) quotaResponse(p []byte, to net.Addr) []byte {
	s.mu.Lock()
	c := s.cur
	s.mu.Unlock()
	if !c.quotaRefused || c.msg == nil || !sameAddr(c.src, to) {
		return nil
	}
	resp := &stun.Message{Raw: append([]byte(nil), p...)}
	if resp.Decode() != nil || resp.TransactionID != c.msg.TransactionID {
		return nil
	}
	// An error response to an authenticated request carries
	// MESSAGE-INTEGRITY (RFC 5389 section 10.2.2).
	q, err := stun.Build(
		stun.NewTransactionIDSetter(c.msg.TransactionID),
		typeAllocateError,
		stun.CodeAllocQuotaReached,
		stun.MessageIntegrity(c.key),
		stun.Fingerprint,
	)
	if err != nil {
		s.log.Error("turnserver: building 486 response", "err", err)
		return nil
	}
	return q.Raw
}

// relayGenerator allocates relays for pion within the per-user quota, and
// tracks them.
type relayGenerator struct {
	inner turn.RelayAddressGenerator
	s     *Server
}

func (g *relayGenerator) Validate() error {
	if err := g.inner.Validate(); err != nil {
		return fmt.Errorf("relay address generator: %w", err)
	}
	return nil
}

func (g *relayGenerator) AllocatePacketConn(network string, requestedPort int) (net.PacketConn, net.Addr, error) {
	s := g.s
	user, err := s.reserve()
	switch {
	case errors.Is(err, errQuota):
		s.quotaRefusals.Add(1)
		s.log.Info("turnserver: allocation refused", "user", user, "reason", "quota", "max", s.maxPer)
		return nil, nil, fmt.Errorf("user %s: %w (%d)", user, err, s.maxPer)
	case err != nil:
		s.log.Error("turnserver: allocation refused", "err", err)
		return nil, nil, err
	}
	pc, addr, err := g.inner.AllocatePacketConn(network, requestedPort)
	if err != nil {
		s.release(user)
		s.log.Warn("turnserver: cannot allocate relay", "user", user, "err", err)
		return nil, nil, fmt.Errorf("allocate relay: %w", err)
	}
	rc := &relayConn{PacketConn: pc, s: s, user: user}
	s.mu.Lock()
	s.relays[rc] = struct{}{}
	s.mu.Unlock()
	s.allocations.Add(1)
	s.log.Debug("turnserver: relay allocated", "user", user, "relay", addr)
	return rc, addr, nil
}

func (g *relayGenerator) AllocateConn(network string, requestedPort int) (net.Conn, net.Addr, error) {
	return nil, nil, errors.New("turnserver: TCP relays are not offered")
}

// relayConn is one relay's socket: it counts what boxes send peers, and
// returns the user's quota when pion (or Close) closes it.
type relayConn struct {
	net.PacketConn
	s    *Server
	user string
	once sync.Once
}

func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	n, err := c.PacketConn.WriteTo(p, addr)
	c.s.bytesToPeers.Add(uint64(max(n, 0)))
	return n, err
}

func (c *relayConn) Close() error {
	var err error
	// Server.Close closes the relays it finds tracked, racing pion's
	// closing them: untrack a relay only once its socket is closed, so
	// that Server.Close either finds it (and waits in once.Do for the
	// close under way) or finds it already closed.
	c.once.Do(func() {
		s := c.s
		err = c.PacketConn.Close()
		s.mu.Lock()
		delete(s.relays, c)
		s.releaseLocked(c.user)
		s.mu.Unlock()
		s.log.Debug("turnserver: relay closed", "user", c.user, "relay", c.PacketConn.LocalAddr())
	})
	return err
}
