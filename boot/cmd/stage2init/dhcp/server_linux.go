package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// ServerConfig describes the one subnet a Server hands addresses out of.
type ServerConfig struct {
	// Interface is where clients are: the server listens and answers on
	// it alone.
	Interface string
	// Addr is the server's address and the subnet; it is the server
	// identifier and the replies' source.
	Addr netip.Prefix
	// First is the first address handed out; the next one goes to the
	// next new client, up to Count of them.
	First netip.Addr
	Count int
	// Router and DNS are what clients are told; Router is left out when
	// invalid.
	Router netip.Addr
	DNS    []netip.Addr
	// Lease is the lease time; an hour if zero.
	Lease time.Duration
	Log   *slog.Logger
}

// Server is a DHCP server for a test network: every client (by MAC) gets
// the next free address of a small pool and keeps it.
type Server struct {
	cfg  ServerConfig
	conn *packetConn
	ifc  *net.Interface

	mu     sync.Mutex
	leases map[string]netip.Addr // MAC -> address
	next   netip.Addr
	given  int
}

// ListenServer opens the server's socket. The interface is looked up and
// the socket made in the calling thread's network namespace, so a caller
// serving inside another namespace calls ListenServer from a thread
// switched into it; Serve can then run anywhere.
func ListenServer(cfg ServerConfig) (*Server, error) {
	if !cfg.Addr.Addr().Is4() || !cfg.First.Is4() || !cfg.Addr.Contains(cfg.First) || cfg.Count <= 0 {
		return nil, fmt.Errorf("dhcp server: %s cannot hand out %d addresses from %s", cfg.Addr, cfg.Count, cfg.First)
	}
	if cfg.Lease == 0 {
		cfg.Lease = time.Hour
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ifc, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("dhcp server: %w", err)
	}
	conn, err := listenPacket(ifc, true)
	if err != nil {
		return nil, fmt.Errorf("dhcp server on %s: %w", cfg.Interface, err)
	}
	return &Server{cfg: cfg, conn: conn, ifc: ifc, leases: map[string]netip.Addr{}, next: cfg.First}, nil
}

// Close stops the server.
func (s *Server) Close() error { return s.conn.Close() }

// Leases returns the addresses handed out so far, by MAC.
func (s *Server) Leases() map[string]netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]netip.Addr, len(s.leases))
	for k, v := range s.leases {
		m[k] = v
	}
	return m
}

// Serve answers until ctx ends or the server is closed.
func (s *Server) Serve(ctx context.Context) error {
	for {
		d, err := s.conn.receive(ctx, ServerPort, time.Time{})
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("dhcp server on %s: %w", s.cfg.Interface, err)
		}
		m, err := Parse(d.payload)
		if err != nil || m.Op != opRequest || len(m.CHAddr) != 6 {
			continue
		}
		reply := s.answer(m)
		if reply == nil {
			continue
		}
		payload, err := reply.Marshal()
		if err != nil {
			return err
		}
		out := datagram{srcMAC: s.ifc.HardwareAddr, dstMAC: broadcastMAC, srcIP: s.cfg.Addr.Addr(),
			dstIP: netip.AddrFrom4([4]byte{255, 255, 255, 255}), srcPort: ServerPort, dstPort: ClientPort, payload: payload}
		if err := s.conn.send(out); err != nil {
			s.cfg.Log.Warn("dhcp reply not sent", "to", m.CHAddr, "err", err)
		}
	}
}

// answer decides the reply to a client message, nil for none.
func (s *Server) answer(m *Message) *Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	mac := m.CHAddr.String()
	addr, known := s.leases[mac]
	reply := func(typ byte, yi netip.Addr) *Message {
		r := &Message{Op: opReply, XID: m.XID, Flags: m.Flags, GIAddr: m.GIAddr, CHAddr: m.CHAddr, YIAddr: yi,
			SIAddr: s.cfg.Addr.Addr(), CIAddr: netip.IPv4Unspecified()}
		r.Set(OptMessageType, []byte{typ})
		r.Set(OptServerID, AddrOption(s.cfg.Addr.Addr()))
		if typ == Nak {
			r.YIAddr, r.SIAddr = netip.IPv4Unspecified(), netip.IPv4Unspecified()
			return r
		}
		mask := net.CIDRMask(s.cfg.Addr.Bits(), 32)
		r.Set(OptSubnetMask, []byte(mask))
		if s.cfg.Router.IsValid() {
			r.Set(OptRouter, AddrOption(s.cfg.Router))
		}
		if len(s.cfg.DNS) > 0 {
			r.Set(OptDNS, AddrOption(s.cfg.DNS...))
		}
		r.Set(OptLeaseTime, SecondsOption(s.cfg.Lease))
		return r
	}
	switch m.Type() {
	case Discover:
		if !known {
			if s.given >= s.cfg.Count || !s.cfg.Addr.Contains(s.next) {
				s.cfg.Log.Warn("dhcp pool exhausted", "client", mac)
				return nil
			}
			addr = s.next
			s.leases[mac], s.next, s.given = addr, s.next.Next(), s.given+1
		}
		return reply(Offer, addr)
	case Request:
		want, ok := m.Addr(OptRequestedIP)
		if !ok {
			want = m.CIAddr
		}
		if id, ok := m.Addr(OptServerID); ok && id != s.cfg.Addr.Addr() {
			return nil // the client chose another server
		}
		if !known || want != addr {
			return reply(Nak, netip.Addr{})
		}
		s.cfg.Log.Info("dhcp lease", "client", mac, "addr", addr)
		return reply(Ack, addr)
	case Release:
		return nil // addresses are kept per MAC anyway
	}
	return nil
}
