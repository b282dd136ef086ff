package dhcp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"
)

// Lease is an address a server granted.
type Lease struct {
	Interface string
	Addr      netip.Prefix // the address and the subnet's prefix length
	Router    netip.Addr   // invalid if the server named none
	DNS       []netip.Addr
	Server    netip.Addr
	Duration  time.Duration
	T1, T2    time.Duration
	Acquired  time.Time
}

func (l Lease) String() string {
	dns := make([]string, len(l.DNS))
	for i, a := range l.DNS {
		dns[i] = a.String()
	}
	router := "none"
	if l.Router.IsValid() {
		router = l.Router.String()
	}
	return fmt.Sprintf("%s %s router %s dns %s server %s lease %s", l.Interface, l.Addr, router, strings.Join(dns, ","), l.Server, l.Duration)
}

// Client keeps one interface configured by DHCP.
type Client struct {
	Interface string
	// Hostname is sent to the server (option 12) when set.
	Hostname string
	// ResolvConf, if set, is rewritten with each lease's name servers.
	ResolvConf string
	// OnLease is called after a new or renewed lease has been applied.
	OnLease func(Lease)
	Log     *slog.Logger
}

func (c *Client) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

// params are the options the client asks for.
var params = []byte{OptSubnetMask, OptRouter, OptDNS, OptLeaseTime, OptRenewalT1, OptRebindT2}

// retransmission backs off from one second to sixteen (RFC 2131 4.1
// suggests four to sixty-four; the box has nothing better to do while it
// has no address, and QEMU's servers answer at once).
func retransmission(attempt int) time.Duration {
	return min(time.Second<<attempt, 16*time.Second)
}

func newXID() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

// exchange broadcasts req until a reply accepted by want arrives or ctx
// ends.
func (c *Client) exchange(ctx context.Context, ifc *net.Interface, req *Message, want func(*Message) bool) (*Message, error) {
	conn, err := listenPacket(ifc, false)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	payload, err := req.Marshal()
	if err != nil {
		return nil, err
	}
	src := netip.IPv4Unspecified()
	if req.CIAddr.IsValid() && !req.CIAddr.IsUnspecified() {
		src = req.CIAddr
	}
	d := datagram{srcMAC: ifc.HardwareAddr, dstMAC: broadcastMAC, srcIP: src, dstIP: netip.AddrFrom4([4]byte{255, 255, 255, 255}),
		srcPort: ClientPort, dstPort: ServerPort, payload: payload}
	for attempt := 0; ; attempt++ {
		if err := conn.send(d); err != nil {
			return nil, fmt.Errorf("send on %s: %w", ifc.Name, err)
		}
		until := time.Now().Add(retransmission(attempt))
		for {
			r, err := conn.receive(ctx, ClientPort, until)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break // send again
				}
				return nil, fmt.Errorf("receive on %s: %w", ifc.Name, err)
			}
			m, err := Parse(r.payload)
			if err != nil || m.Op != opReply || m.XID != req.XID || !macEqual(m.CHAddr, ifc.HardwareAddr) {
				continue
			}
			if want(m) {
				return m, nil
			}
		}
	}
}

func macEqual(a, b net.HardwareAddr) bool { return string(a) == string(b) }

func (c *Client) request(ifc *net.Interface, typ byte, xid uint32) *Message {
	m := &Message{Op: opRequest, XID: xid, Flags: flagBroadcast, CHAddr: ifc.HardwareAddr}
	m.Set(OptMessageType, []byte{typ})
	m.Set(OptClientID, append([]byte{1}, ifc.HardwareAddr...))
	if c.Hostname != "" {
		m.Set(OptHostname, []byte(c.Hostname))
	}
	m.Set(OptParams, params)
	return m
}

// ErrNak says the server refused the address asked for.
var ErrNak = errors.New("server refused the address (DHCPNAK)")

// Acquire asks for a new lease (DISCOVER, OFFER, REQUEST, ACK) and
// returns it without configuring anything.
func (c *Client) Acquire(ctx context.Context) (Lease, error) {
	ifc, err := net.InterfaceByName(c.Interface)
	if err != nil {
		return Lease{}, err
	}
	xid := newXID()
	offer, err := c.exchange(ctx, ifc, c.request(ifc, Discover, xid), func(m *Message) bool {
		_, hasServer := m.Addr(OptServerID)
		return m.Type() == Offer && m.YIAddr.Is4() && !m.YIAddr.IsUnspecified() && hasServer
	})
	if err != nil {
		return Lease{}, fmt.Errorf("DHCP discover on %s: %w", c.Interface, err)
	}
	server, _ := offer.Addr(OptServerID)
	req := c.request(ifc, Request, xid)
	req.Set(OptRequestedIP, AddrOption(offer.YIAddr))
	req.Set(OptServerID, AddrOption(server))
	return c.finish(ctx, ifc, req, offer.YIAddr)
}

// renew asks the server to extend a lease.
func (c *Client) renew(ctx context.Context, l Lease) (Lease, error) {
	ifc, err := net.InterfaceByName(c.Interface)
	if err != nil {
		return Lease{}, err
	}
	req := c.request(ifc, Request, newXID())
	req.CIAddr = l.Addr.Addr()
	return c.finish(ctx, ifc, req, l.Addr.Addr())
}

func (c *Client) finish(ctx context.Context, ifc *net.Interface, req *Message, want netip.Addr) (Lease, error) {
	ack, err := c.exchange(ctx, ifc, req, func(m *Message) bool {
		return m.Type() == Nak || m.Type() == Ack && m.YIAddr == want
	})
	if err != nil {
		return Lease{}, fmt.Errorf("DHCP request for %s on %s: %w", want, c.Interface, err)
	}
	if ack.Type() == Nak {
		return Lease{}, fmt.Errorf("DHCP request for %s on %s: %w", want, c.Interface, ErrNak)
	}
	return leaseOf(c.Interface, ack, time.Now()), nil
}

// leaseOf reads a lease out of an ACK, with RFC 2131's defaults for what
// it leaves out.
func leaseOf(ifname string, ack *Message, now time.Time) Lease {
	l := Lease{Interface: ifname, Acquired: now, DNS: ack.Addrs(OptDNS)}
	bits := 24
	if mask, ok := ack.Get(OptSubnetMask); ok && len(mask) == 4 {
		if ones, sz := net.IPMask(mask).Size(); sz == 32 {
			bits = ones
		}
	}
	l.Addr = netip.PrefixFrom(ack.YIAddr, bits)
	if rs := ack.Addrs(OptRouter); len(rs) > 0 {
		l.Router = rs[0]
	}
	l.Server, _ = ack.Addr(OptServerID)
	var ok bool
	if l.Duration, ok = ack.Duration(OptLeaseTime); !ok || l.Duration == 0 {
		l.Duration = time.Hour
	}
	if l.T1, ok = ack.Duration(OptRenewalT1); !ok || l.T1 >= l.Duration {
		l.T1 = l.Duration / 2
	}
	if l.T2, ok = ack.Duration(OptRebindT2); !ok || l.T2 >= l.Duration || l.T2 < l.T1 {
		l.T2 = l.Duration * 7 / 8
	}
	return l
}

// apply configures the interface for a lease, replacing old.
func (c *Client) apply(l, old Lease) error {
	ifc, err := net.InterfaceByName(l.Interface)
	if err != nil {
		return err
	}
	if old.Addr.IsValid() && old.Addr != l.Addr {
		if err := DelAddr(ifc.Index, old.Addr); err != nil {
			c.log().Warn("old address not removed", "err", err)
		}
	}
	if err := AddAddr(ifc.Index, l.Addr); err != nil {
		return err
	}
	if l.Router.IsValid() && l.Router.Is4() && !l.Router.IsUnspecified() {
		if err := AddDefaultRoute(ifc.Index, l.Router); err != nil {
			return err
		}
	}
	if c.ResolvConf != "" && len(l.DNS) > 0 {
		var b strings.Builder
		b.WriteString("# written by the box's DHCP client\n")
		for _, a := range l.DNS {
			fmt.Fprintf(&b, "nameserver %s\n", a)
		}
		if err := os.WriteFile(c.ResolvConf, []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Run brings the interface up and keeps it configured until ctx ends:
// it acquires a lease, renews it from T1 on, and starts over when it
// runs out.
func (c *Client) Run(ctx context.Context) error {
	if err := LinkUp(c.Interface); err != nil {
		return err
	}
	var cur Lease
	for attempt := 0; ; {
		l, err := c.Acquire(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.log().Warn("no lease yet", "interface", c.Interface, "err", err)
			attempt++
			if !sleep(ctx, retransmission(attempt)) {
				return ctx.Err()
			}
			continue
		}
		attempt = 0
		for l.Addr.IsValid() {
			if err := c.apply(l, cur); err != nil {
				return fmt.Errorf("applying %s: %w", l, err)
			}
			cur = l
			if c.OnLease != nil {
				c.OnLease(l)
			}
			l = c.keep(ctx, cur)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		c.log().Warn("lease expired", "lease", cur)
		if err := c.expire(cur); err != nil {
			c.log().Warn("expired address not removed", "err", err)
		}
		cur = Lease{}
	}
}

// keep waits for T1 and then renews until it succeeds or the lease runs
// out: it returns the renewed lease, or the zero Lease once l expired.
func (c *Client) keep(ctx context.Context, l Lease) Lease {
	expiry := l.Acquired.Add(l.Duration)
	if !sleep(ctx, time.Until(l.Acquired.Add(l.T1))) {
		return Lease{}
	}
	for time.Now().Before(expiry) {
		// Each try may take until half the time left (RFC 2131 4.4.5
		// waits that long between tries), at least ten seconds.
		left := time.Until(expiry)
		tctx, cancel := context.WithTimeout(ctx, max(left/2, min(left, 10*time.Second)))
		nl, err := c.renew(tctx, l)
		cancel()
		if err == nil {
			return nl
		}
		if ctx.Err() != nil {
			return Lease{}
		}
		if errors.Is(err, ErrNak) {
			return Lease{} // start over at once
		}
		c.log().Warn("renewal failed", "lease", l, "err", err)
	}
	return Lease{}
}

func (c *Client) expire(l Lease) error {
	ifc, err := net.InterfaceByName(l.Interface)
	if err != nil {
		return err
	}
	return DelAddr(ifc.Index, l.Addr)
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
