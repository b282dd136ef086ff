package rtc

import (
	"errors"
	"net"
	"testing"

	"github.com/pion/transport/v2"
)

// packetsConn hands out queued packets, then an error.
type packetsConn struct {
	transport.UDPConn
	from []*net.UDPAddr
}

var errDrained = errors.New("no more packets")

func (c *packetsConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if len(c.from) == 0 {
		return 0, nil, errDrained
	}
	from := c.from[0]
	c.from = c.from[1:]
	return copy(p, from.String()), from, nil
}

func TestRelayGate(t *testing.T) {
	relay := &net.UDPAddr{IP: net.IPv4(1, 2, 3, 4), Port: 5000}
	direct := &net.UDPAddr{IP: net.IPv4(28, 1, 1, 1), Port: 49155}
	otherRelay := &net.UDPAddr{IP: net.IPv4(1, 2, 3, 4), Port: 5001}
	pionHas := map[string]bool{}
	asks := 0
	var g relayGate
	g.known = func() map[string]bool { asks++; return pionHas }
	g.announce([]string{relay.String(), otherRelay.String()})

	read := func(from ...*net.UDPAddr) []string {
		c := gatedConn{UDPConn: &packetsConn{from: from}, gate: &g}
		var got []string
		buf := make([]byte, 64)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				if !errors.Is(err, errDrained) {
					t.Fatal(err)
				}
				return got
			}
			got = append(got, string(buf[:n]))
		}
	}
	// pion does not know the relay yet: its packets go, others pass.
	if got := read(relay, direct, relay); len(got) != 1 || got[0] != direct.String() {
		t.Fatalf("before pion has the relay, read %q; want only %s", got, direct)
	}
	if !g.isRelay(relay.String()) || g.isRelay(direct.String()) {
		t.Error("isRelay does not follow the announcements")
	}
	pionHas[relay.String()] = true
	if got := read(relay, otherRelay); len(got) != 1 || got[0] != relay.String() {
		t.Fatalf("once pion has %s, read %q; want it alone", relay, got)
	}
	before := asks
	if got := read(relay, relay); len(got) != 2 {
		t.Fatalf("read %q, want both packets of the known relay", got)
	}
	if asks != before {
		t.Errorf("asked pion %d more times about a relay it already confirmed", asks-before)
	}
}
