package dhcp

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestMessageRoundTrip(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	m := &Message{Op: opReply, XID: 0xdeadbeef, Flags: flagBroadcast, CHAddr: mac,
		CIAddr: netip.IPv4Unspecified(), YIAddr: netip.MustParseAddr("10.0.2.15"),
		SIAddr: netip.MustParseAddr("10.0.2.2"), GIAddr: netip.IPv4Unspecified()}
	m.Set(OptMessageType, []byte{Ack})
	m.Set(OptSubnetMask, []byte{255, 255, 255, 0})
	m.Set(OptRouter, AddrOption(netip.MustParseAddr("10.0.2.2")))
	m.Set(OptDNS, AddrOption(netip.MustParseAddr("10.0.2.3"), netip.MustParseAddr("1.1.1.1")))
	m.Set(OptServerID, AddrOption(netip.MustParseAddr("10.0.2.2")))
	m.Set(OptLeaseTime, SecondsOption(24*time.Hour))
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < minLen {
		t.Errorf("message of %d bytes, BOOTP wants at least %d", len(b), minLen)
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.XID != m.XID || got.Flags != m.Flags || got.YIAddr != m.YIAddr || !bytes.Equal(got.CHAddr, mac) || got.Type() != Ack {
		t.Errorf("round trip changed the header: %+v", got)
	}
	l := leaseOf("eth0", got, time.Unix(0, 0))
	want := "eth0 10.0.2.15/24 router 10.0.2.2 dns 10.0.2.3,1.1.1.1 server 10.0.2.2 lease 24h0m0s"
	if l.String() != want {
		t.Errorf("lease %q, want %q", l, want)
	}
	if l.T1 != 12*time.Hour || l.T2 != 21*time.Hour {
		t.Errorf("T1 %s T2 %s, want RFC 2131's defaults 12h and 21h", l.T1, l.T2)
	}
}

func TestLeaseDefaults(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     []Option
		wantBits int
		wantDur  time.Duration
		wantT1   time.Duration
	}{
		{"nothing", nil, 24, time.Hour, 30 * time.Minute},
		{"mask /16", []Option{{OptSubnetMask, []byte{255, 255, 0, 0}}}, 16, time.Hour, 30 * time.Minute},
		{"bad mask", []Option{{OptSubnetMask, []byte{255, 0, 255, 0}}}, 24, time.Hour, 30 * time.Minute},
		{"T1 past the lease", []Option{{OptLeaseTime, SecondsOption(time.Minute)}, {OptRenewalT1, SecondsOption(time.Hour)}}, 24, time.Minute, 30 * time.Second},
		{"zero lease", []Option{{OptLeaseTime, SecondsOption(0)}}, 24, time.Hour, 30 * time.Minute},
	} {
		m := &Message{YIAddr: netip.MustParseAddr("192.168.7.9"), Options: tc.opts}
		l := leaseOf("eth0", m, time.Now())
		if l.Addr.Bits() != tc.wantBits || l.Duration != tc.wantDur || l.T1 != tc.wantT1 {
			t.Errorf("%s: /%d lease %s T1 %s, want /%d %s %s", tc.name, l.Addr.Bits(), l.Duration, l.T1, tc.wantBits, tc.wantDur, tc.wantT1)
		}
		if l.Router.IsValid() {
			t.Errorf("%s: router %s from nowhere", tc.name, l.Router)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	good := &Message{Op: opRequest, XID: 1, CHAddr: net.HardwareAddr{1, 2, 3, 4, 5, 6}}
	good.Set(OptMessageType, []byte{Discover})
	b, _ := good.Marshal()
	end := bytes.IndexByte(b[fixedLen+4:], OptEnd) + fixedLen + 4
	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
	}{
		{"short", func(b []byte) []byte { return b[:100] }},
		{"no cookie", func(b []byte) []byte { b[fixedLen] = 0; return b }},
		{"long hardware address", func(b []byte) []byte { b[2] = 17; return b }},
		{"no end", func(b []byte) []byte { return b[:end] }},
		{"option past the end", func(b []byte) []byte { return append(b[:end], 12, 9, 'x') }},
		{"no type", func(b []byte) []byte { return append(b[:fixedLen+4], OptEnd) }},
	} {
		_, err := Parse(tc.mutate(append([]byte(nil), b...)))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Parse = %v, want ErrMalformed", tc.name, err)
		}
	}
	if _, err := Parse(b); err != nil {
		t.Errorf("the unchanged message: %v", err)
	}
}

func TestFrameRoundTrip(t *testing.T) {
	d := datagram{srcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, dstMAC: broadcastMAC,
		srcIP: netip.IPv4Unspecified(), dstIP: netip.MustParseAddr("255.255.255.255"),
		srcPort: ClientPort, dstPort: ServerPort, payload: []byte("hello")}
	f := d.frame()
	if checksum(f[ethHeaderLen:ethHeaderLen+ipHeaderLen]) != 0 {
		t.Error("the IPv4 header checksum does not verify")
	}
	got, err := parseFrame(f)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.payload) != "hello" || got.srcPort != ClientPort || got.dstPort != ServerPort || got.dstIP != d.dstIP {
		t.Errorf("round trip gave %+v", got)
	}
	for name, bad := range map[string][]byte{
		"truncated": f[:30],
		"not IPv4":  append(append([]byte(nil), f[:12]...), append([]byte{0x86, 0xdd}, f[14:]...)...),
		"UDP length past the end": func() []byte {
			b := append([]byte(nil), f...)
			b[ethHeaderLen+ipHeaderLen+5] = 200
			return b
		}(),
	} {
		if _, err := parseFrame(bad); err == nil {
			t.Errorf("%s: parseFrame accepted it", name)
		}
	}
}

func FuzzParse(f *testing.F) {
	m := &Message{Op: opReply, XID: 7, CHAddr: net.HardwareAddr{1, 2, 3, 4, 5, 6}, YIAddr: netip.MustParseAddr("10.0.0.2")}
	m.Set(OptMessageType, []byte{Offer})
	m.Set(OptDNS, AddrOption(netip.MustParseAddr("10.0.0.1")))
	b, _ := m.Marshal()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		// What parses must encode and parse back to the same options.
		out, err := m.Marshal()
		if err != nil {
			return // an option longer than 255 bytes after RFC 3396 joining
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("re-encoded message does not parse: %v", err)
		}
		if len(again.Options) != len(m.Options) || again.Type() != m.Type() || again.XID != m.XID {
			t.Fatalf("round trip changed the message: %+v vs %+v", m, again)
		}
		_ = leaseOf("x", m, time.Time{})
	})
}
