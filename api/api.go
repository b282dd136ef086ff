// Package api is the protocol between boxes (and media servers) and the
// head-end's scheduler: the messages of the system's flow, their
// validation, and how they travel.
//
// A box connects out to the head-end over TLS with mutual authentication by
// device certificate and keeps one long-lived stream; a box behind a home
// NAT never needs to accept a connection. On the stream, each message is a
// frame: a 4-byte big-endian length, then a JSON envelope
//
//	{"v": 1, "seq": 17, "type": "transfer_progress", "body": {...}}
//
// Delivery is at least once: each direction numbers its messages with a
// sequence that only grows (it survives reconnects), the receiver
// processes seq == last+1, acknowledges everything up to what it has
// processed, and drops (and acknowledges) anything it has already seen, so
// a message resent after a lost acknowledgement changes nothing. Messages
// that do not parse, are too large, or break a rule are answered with a
// Reject naming the reason, and change nothing.
package api

import (
	"encoding/hex"
	"fmt"
)

// Version is the protocol version this build speaks.
const Version = 1

// MaxFrame bounds one message on the wire; it is checked before the frame
// is read.
const MaxFrame = 256 << 10

// BoxID names a box (or a media server): 16 bytes chosen by the head-end at
// activation, hex on the wire.
type BoxID [16]byte

func (b BoxID) String() string { return hex.EncodeToString(b[:]) }

// MarshalText encodes the ID as hex.
func (b BoxID) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText decodes a hex ID.
func (b *BoxID) UnmarshalText(t []byte) error {
	if len(t) != 2*len(b) {
		return fmt.Errorf("box ID %q: want %d hex digits", t, 2*len(b))
	}
	_, err := hex.Decode(b[:], t)
	return err
}

// TransferID names one transfer between one sender and one receiver.
type TransferID uint64

// NATType is what a box learned about its network with STUN.
type NATType string

// NAT types, from most to least reachable.
const (
	NATOpen           NATType = "open" // public address, accepts connections
	NATFullCone       NATType = "full-cone"
	NATRestricted     NATType = "restricted"
	NATPortRestricted NATType = "port-restricted"
	NATSymmetric      NATType = "symmetric"
	NATUnknown        NATType = "unknown"
)

// Reachability orders NAT types: higher accepts connections from more
// places.
func (n NATType) Reachability() int {
	switch n {
	case NATOpen:
		return 5
	case NATFullCone:
		return 4
	case NATRestricted:
		return 3
	case NATPortRestricted:
		return 2
	case NATSymmetric:
		return 1
	}
	return 0
}

// HolePunchable says whether boxes behind NATs of kinds a and b can
// connect directly: a symmetric NAT's new mapping toward the peer is
// unknown to the peer, so the peer's NAT must let in a port it never sent
// to, which port-restricted and symmetric NATs do not. Pairs that cannot
// go through the head-end's TURN relay.
func HolePunchable(a, b NATType) bool {
	symmetric := func(n NATType) bool { return n == NATSymmetric }
	portBound := func(n NATType) bool { return n == NATSymmetric || n == NATPortRestricted }
	return !(symmetric(a) && portBound(b) || symmetric(b) && portBound(a))
}

// Location places a box in the network, for choosing nearby donors.
type Location struct {
	Region string `json:"region"` // e.g. "eu-west"
	ISP    string `json:"isp"`    // e.g. an AS number as text
}

// PieceRange is an inclusive range of piece indices of one title.
type PieceRange struct {
	First int `json:"first"`
	Last  int `json:"last"`
}

// Count returns the number of pieces in the range.
func (r PieceRange) Count() int { return r.Last - r.First + 1 }
