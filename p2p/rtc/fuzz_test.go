package rtc

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/boxswarm/boxswarm/api"
)

// seedOffer is an offer pion made (gathering complete, one loopback host
// candidate, repeated for component 2 as pion does).
const seedOffer = "v=0\r\no=- 3119344078257957893 1795276701 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=msid-semantic:WMS*\r\n" +
	"a=fingerprint:sha-256 28:B1:45:FB:A1:CE:22:D5:AC:3C:5B:23:B0:45:25:D9:B7:E8:E8:79:F6:66:CB:46:70:CF:0C:62:22:AE:1D:2A\r\n" +
	"a=extmap-allow-mixed\r\na=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n" +
	"a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=sctp-port:5000\r\na=ice-ufrag:xInwdRHpUxjGdKtm\r\na=ice-pwd:GZfgobcXaTxdxrAYscxcXpXpwokcqxwJ\r\n" +
	"a=candidate:2878742611 1 udp 2130706431 127.0.0.1 32781 typ host\r\na=candidate:2878742611 2 udp 2130706431 127.0.0.1 32781 typ host\r\n" +
	"a=candidate:1 1 udp 16777215 1.2.3.4 50001 typ relay raddr 0.0.0.0 rport 0\r\na=end-of-candidates\r\n"

// FuzzSignal feeds parseSignal, the parser of everything a peer sends
// through the scheduler, arbitrary kinds and data: it must never panic,
// refuse only with ErrBadSignal, and what it accepts must be what the
// transport relies on.
func FuzzSignal(f *testing.F) {
	f.Add("offer", seedOffer)
	f.Add("answer", strings.Replace(seedOffer, "a=setup:actpass", "a=setup:active", 1))
	f.Add("candidate", goodCandidate)
	f.Add("candidate", `{"candidate":"candidate:3 1 udp 1694498815 27.1.1.1 49152 typ srflx raddr 192.168.0.2 rport 40000 generation 0","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}`)
	f.Add("candidate", `{"candidate":"candidate:4 1 UDP 16777215 1.2.3.4 50000 typ relay raddr 0.0.0.0 rport 0"}`)
	f.Add("candidate", `{"candidate":"candidate:5 1 udp 2130706431 ::1 50000 typ host"}`)
	f.Add("offer", "v=0\r\n")
	f.Add("candidate", `{"candidate":null}`)
	f.Add("renegotiate", "x")
	f.Fuzz(func(t *testing.T, kind, data string) {
		d, err := parseSignal(api.SignalKind(kind), data)
		if err != nil {
			if !errors.Is(err, ErrBadSignal) {
				t.Fatalf("refused without ErrBadSignal: %v", err)
			}
			return
		}
		for _, r := range d.relays {
			if _, err := netip.ParseAddrPort(r); err != nil {
				t.Fatalf("relay address %q: %v", r, err)
			}
		}
		switch d.kind {
		case api.SignalOffer, api.SignalAnswer:
			if d.sdp != data {
				t.Fatal("the SDP passed on is not the one received")
			}
			if d.candidates > strings.Count(data, "candidate:") || len(d.relays) > d.candidates {
				t.Fatalf("%d candidates, %d relays counted", d.candidates, len(d.relays))
			}
		case api.SignalCandidate:
			// What is accepted goes back out (and in) unchanged.
			out, err := marshalCandidate(d.candidate)
			if err != nil {
				t.Fatal(err)
			}
			d2, err := parseSignal(api.SignalCandidate, out)
			if err != nil {
				t.Fatalf("re-encoded candidate %q refused: %v", out, err)
			}
			if d2.candidate.Candidate != d.candidate.Candidate {
				t.Fatalf("round trip changed %q to %q", d.candidate.Candidate, d2.candidate.Candidate)
			}
			line := strings.TrimPrefix(d.candidate.Candidate, "candidate:")
			if len(line) > MaxCandidateLen || !strings.HasPrefix(d.candidate.Candidate, "candidate:") {
				t.Fatalf("accepted candidate %q", d.candidate.Candidate)
			}
		default:
			t.Fatalf("accepted kind %q", kind)
		}
	})
}
