// Package dhcp brings the box's wired network up with DHCPv4 (RFC 2131,
// options from RFC 2132): a client small enough for process 1, and the
// small server the QEMU harness runs on tap networks. Both speak through
// raw packet sockets, the client because its interface has no address
// yet, the server because it answers on one interface of a bridge; the
// client configures the interface through rtnetlink. Only golang.org/x/sys
// is used.
//
// The client asks for an address, a router and name servers, renews at T1,
// rebinds at T2 and starts over when a lease runs out; it never uses
// ARP to check the offered address (the QEMU networks it meets hand out
// each address once).
package dhcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"
)

// Message types (option 53).
const (
	Discover byte = 1
	Offer    byte = 2
	Request  byte = 3
	Decline  byte = 4
	Ack      byte = 5
	Nak      byte = 6
	Release  byte = 7
)

// Options the box uses.
const (
	OptPad         byte = 0
	OptSubnetMask  byte = 1
	OptRouter      byte = 3
	OptDNS         byte = 6
	OptHostname    byte = 12
	OptRequestedIP byte = 50
	OptLeaseTime   byte = 51
	OptMessageType byte = 53
	OptServerID    byte = 54
	OptParams      byte = 55
	OptRenewalT1   byte = 58
	OptRebindT2    byte = 59
	OptClientID    byte = 61
	OptEnd         byte = 255
)

// Ports.
const (
	ServerPort = 67
	ClientPort = 68
)

// BOOTP operations.
const (
	opRequest = 1
	opReply   = 2
)

// flagBroadcast asks the server to broadcast its replies: the client has
// no address to receive a unicast on.
const flagBroadcast = 0x8000

var magicCookie = [4]byte{99, 130, 83, 99}

// fixedLen is the BOOTP header before the magic cookie; minLen is the
// smallest message BOOTP relays accept.
const (
	fixedLen = 236
	minLen   = 300
)

// Message is a DHCP message.
type Message struct {
	Op     byte
	XID    uint32
	Secs   uint16
	Flags  uint16
	CIAddr netip.Addr // the client's current address (renewing)
	YIAddr netip.Addr // "your" address: what the server offers
	SIAddr netip.Addr
	GIAddr netip.Addr
	CHAddr net.HardwareAddr // the client's MAC (6 bytes on Ethernet)
	// Options in the order they are encoded; a code appears once.
	Options []Option
}

// Option is one DHCP option.
type Option struct {
	Code byte
	Data []byte
}

// Get returns an option's data.
func (m *Message) Get(code byte) ([]byte, bool) {
	for _, o := range m.Options {
		if o.Code == code {
			return o.Data, true
		}
	}
	return nil, false
}

// Set adds or replaces an option.
func (m *Message) Set(code byte, data []byte) {
	for i := range m.Options {
		if m.Options[i].Code == code {
			m.Options[i].Data = data
			return
		}
	}
	m.Options = append(m.Options, Option{code, data})
}

// Type is the message type (option 53), 0 if missing.
func (m *Message) Type() byte {
	if d, ok := m.Get(OptMessageType); ok && len(d) == 1 {
		return d[0]
	}
	return 0
}

// Addr reads an option holding one IPv4 address.
func (m *Message) Addr(code byte) (netip.Addr, bool) {
	d, ok := m.Get(code)
	if !ok || len(d) != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(d)), true
}

// Addrs reads an option holding a list of IPv4 addresses.
func (m *Message) Addrs(code byte) []netip.Addr {
	d, ok := m.Get(code)
	if !ok || len(d)%4 != 0 {
		return nil
	}
	var as []netip.Addr
	for ; len(d) > 0; d = d[4:] {
		as = append(as, netip.AddrFrom4([4]byte(d[:4])))
	}
	return as
}

// Duration reads an option holding seconds (lease time, T1, T2).
func (m *Message) Duration(code byte) (time.Duration, bool) {
	d, ok := m.Get(code)
	if !ok || len(d) != 4 {
		return 0, false
	}
	return time.Duration(binary.BigEndian.Uint32(d)) * time.Second, true
}

// AddrOption encodes IPv4 addresses as option data.
func AddrOption(as ...netip.Addr) []byte {
	var b []byte
	for _, a := range as {
		v := a.As4()
		b = append(b, v[:]...)
	}
	return b
}

// SecondsOption encodes a duration as option data.
func SecondsOption(d time.Duration) []byte {
	return binary.BigEndian.AppendUint32(nil, uint32(min(d/time.Second, 1<<32-1)))
}

func addr4(a netip.Addr) [4]byte {
	if !a.Is4() {
		return [4]byte{}
	}
	return a.As4()
}

// Marshal encodes the message, padded to the 300 bytes BOOTP relays
// expect.
func (m *Message) Marshal() ([]byte, error) {
	if len(m.CHAddr) > 16 {
		return nil, fmt.Errorf("dhcp: hardware address of %d bytes", len(m.CHAddr))
	}
	b := make([]byte, fixedLen, minLen)
	b[0] = m.Op
	b[1] = 1 // Ethernet
	b[2] = byte(len(m.CHAddr))
	binary.BigEndian.PutUint32(b[4:], m.XID)
	binary.BigEndian.PutUint16(b[8:], m.Secs)
	binary.BigEndian.PutUint16(b[10:], m.Flags)
	for i, a := range []netip.Addr{m.CIAddr, m.YIAddr, m.SIAddr, m.GIAddr} {
		v := addr4(a)
		copy(b[12+4*i:], v[:])
	}
	copy(b[28:44], m.CHAddr)
	b = append(b, magicCookie[:]...)
	for _, o := range m.Options {
		if o.Code == OptPad || o.Code == OptEnd {
			continue
		}
		if len(o.Data) > 255 {
			return nil, fmt.Errorf("dhcp: option %d has %d bytes, at most 255 fit", o.Code, len(o.Data))
		}
		b = append(b, o.Code, byte(len(o.Data)))
		b = append(b, o.Data...)
	}
	b = append(b, OptEnd)
	for len(b) < minLen {
		b = append(b, OptPad)
	}
	return b, nil
}

// ErrMalformed is wrapped by every Parse error.
var ErrMalformed = errors.New("malformed DHCP message")

// Parse decodes a message. Options overloaded into the file and sname
// fields (option 52) are not read: the servers the box meets do not use
// them.
func Parse(b []byte) (*Message, error) {
	if len(b) < fixedLen+len(magicCookie) {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	if [4]byte(b[fixedLen:fixedLen+4]) != magicCookie {
		return nil, fmt.Errorf("%w: no magic cookie", ErrMalformed)
	}
	hlen := int(b[2])
	if hlen > 16 {
		return nil, fmt.Errorf("%w: hardware address length %d", ErrMalformed, hlen)
	}
	m := &Message{
		Op:     b[0],
		XID:    binary.BigEndian.Uint32(b[4:]),
		Secs:   binary.BigEndian.Uint16(b[8:]),
		Flags:  binary.BigEndian.Uint16(b[10:]),
		CIAddr: netip.AddrFrom4([4]byte(b[12:16])),
		YIAddr: netip.AddrFrom4([4]byte(b[16:20])),
		SIAddr: netip.AddrFrom4([4]byte(b[20:24])),
		GIAddr: netip.AddrFrom4([4]byte(b[24:28])),
		CHAddr: slices.Clone(net.HardwareAddr(b[28 : 28+hlen])),
	}
	for o := b[fixedLen+4:]; ; {
		if len(o) == 0 {
			return nil, fmt.Errorf("%w: options do not end", ErrMalformed)
		}
		code := o[0]
		if code == OptEnd {
			break
		}
		if code == OptPad {
			o = o[1:]
			continue
		}
		if len(o) < 2 || len(o) < 2+int(o[1]) {
			return nil, fmt.Errorf("%w: option %d runs past the end", ErrMalformed, code)
		}
		data := slices.Clone(o[2 : 2+int(o[1])])
		if _, dup := m.Get(code); dup {
			// RFC 3396 concatenates repeated options.
			old, _ := m.Get(code)
			data = append(slices.Clone(old), data...)
		}
		m.Set(code, data)
		o = o[2+int(o[1]):]
	}
	if m.Type() == 0 {
		return nil, fmt.Errorf("%w: no message type", ErrMalformed)
	}
	return m, nil
}
