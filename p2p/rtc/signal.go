package rtc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/boxswarm/boxswarm/api"
	"github.com/pion/ice/v2"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v3"
)

// MaxCandidateLen bounds one candidate line (without "candidate:").
// pion's longest, a relay candidate with raddr, rport and generation, is
// under 150 bytes.
const MaxCandidateLen = 512

// ErrBadSignal wraps every reason a signal's data is refused.
var ErrBadSignal = errors.New("rtc: bad signal")

// signalData is a signal's parsed data: a session description for offers
// and answers, a candidate for candidate signals.
type signalData struct {
	kind       api.SignalKind
	sdp        string // offer, answer
	candidates int    // a=candidate lines in sdp
	candidate  webrtc.ICECandidateInit
	relays     []string // "ip:port" of the relay candidates announced
}

// parseSignal checks a signal's data the way the transport needs it before
// pion sees it: an offer or answer is SDP for exactly one data channel
// section with ICE credentials and a SHA-2 fingerprint; a candidate is the
// JSON of one ICE candidate (webrtc.ICECandidateInit), UDP, at a literal
// IP address.
func parseSignal(kind api.SignalKind, data string) (signalData, error) {
	if len(data) == 0 || len(data) > api.MaxSignal {
		return signalData{}, fmt.Errorf("%w: %s: %d bytes of data (1 to %d)", ErrBadSignal, kind, len(data), api.MaxSignal)
	}
	switch kind {
	case api.SignalOffer, api.SignalAnswer:
		n, relays, err := checkSDP(data)
		if err != nil {
			return signalData{}, fmt.Errorf("%w: %s: %w", ErrBadSignal, kind, err)
		}
		return signalData{kind: kind, sdp: data, candidates: n, relays: relays}, nil
	case api.SignalCandidate:
		c, relay, err := parseCandidateJSON(data)
		if err != nil {
			return signalData{}, fmt.Errorf("%w: candidate: %w", ErrBadSignal, err)
		}
		d := signalData{kind: kind, candidate: c}
		if relay != "" {
			d.relays = []string{relay}
		}
		return d, nil
	default:
		return signalData{}, fmt.Errorf("%w: unknown kind %q", ErrBadSignal, kind)
	}
}

// checkSDP checks a session description and returns how many candidates
// it carries, and the addresses of those that are relays.
func checkSDP(s string) (int, []string, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(s); err != nil {
		return 0, nil, fmt.Errorf("SDP does not parse: %w", err)
	}
	if len(d.MediaDescriptions) != 1 {
		return 0, nil, fmt.Errorf("SDP has %d media sections, want 1 (a data channel)", len(d.MediaDescriptions))
	}
	m := d.MediaDescriptions[0]
	if m.MediaName.Media != "application" {
		return 0, nil, fmt.Errorf("SDP media section is %q, want application (data channels only)", m.MediaName.Media)
	}
	if p := strings.Join(m.MediaName.Protos, "/"); p != "UDP/DTLS/SCTP" {
		return 0, nil, fmt.Errorf("SDP media protocol %q, want UDP/DTLS/SCTP", p)
	}
	attr := func(key string) (string, bool) {
		if v, ok := m.Attribute(key); ok {
			return v, true
		}
		return d.Attribute(key)
	}
	for _, key := range []string{"ice-ufrag", "ice-pwd"} {
		if v, ok := attr(key); !ok || v == "" {
			return 0, nil, fmt.Errorf("SDP has no %s", key)
		}
	}
	fps := 0
	for _, as := range [][]sdp.Attribute{d.Attributes, m.Attributes} {
		for _, a := range as {
			if a.Key != "fingerprint" {
				continue
			}
			if err := checkFingerprint(a.Value); err != nil {
				return 0, nil, err
			}
			fps++
		}
	}
	if fps == 0 {
		return 0, nil, errors.New("SDP has no DTLS fingerprint")
	}
	n := 0
	var relays []string
	for _, a := range m.Attributes {
		if a.Key != "candidate" {
			continue
		}
		// pion repeats each candidate for component 2 (RTCP), which
		// a data channel does not use and pion does not count.
		v, rtcp := a.Value, false
		if f := strings.Fields(v); len(f) > 1 && f[1] == "2" {
			f[1] = "1"
			v, rtcp = strings.Join(f, " "), true
		}
		relay, err := checkCandidate(v)
		if err != nil {
			return 0, nil, fmt.Errorf("SDP candidate %q: %w", a.Value, err)
		}
		if rtcp {
			continue
		}
		if relay != "" {
			relays = append(relays, relay)
		}
		n++
	}
	return n, relays, nil
}

// checkFingerprint accepts "sha-256|sha-384|sha-512 XX:XX:...".
func checkFingerprint(v string) error {
	alg, val, ok := strings.Cut(v, " ")
	if !ok {
		return fmt.Errorf("fingerprint %q is not \"<hash> <value>\"", v)
	}
	var n int
	switch strings.ToLower(alg) {
	case "sha-256":
		n = 32
	case "sha-384":
		n = 48
	case "sha-512":
		n = 64
	default:
		return fmt.Errorf("fingerprint hash %q (want sha-256, sha-384 or sha-512)", alg)
	}
	parts := strings.Split(val, ":")
	if len(parts) != n {
		return fmt.Errorf("%s fingerprint has %d bytes, want %d", alg, len(parts), n)
	}
	for _, p := range parts {
		if len(p) != 2 {
			return fmt.Errorf("%s fingerprint byte %q is not two hex digits", alg, p)
		}
		if _, err := strconv.ParseUint(p, 16, 8); err != nil {
			return fmt.Errorf("%s fingerprint byte %q is not two hex digits", alg, p)
		}
	}
	return nil
}

// candidateJSON is webrtc.ICECandidateInit with presence kept apart from
// zero values.
type candidateJSON struct {
	Candidate        *string `json:"candidate"`
	SDPMid           *string `json:"sdpMid"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex"`
	UsernameFragment *string `json:"usernameFragment"`
}

// parseCandidateJSON decodes one candidate object: no unknown fields, no
// trailing data, the only media section (mid "" or "0", index 0).
func parseCandidateJSON(data string) (webrtc.ICECandidateInit, string, error) {
	dec := json.NewDecoder(strings.NewReader(data))
	dec.DisallowUnknownFields()
	var c candidateJSON
	if err := dec.Decode(&c); err != nil {
		return webrtc.ICECandidateInit{}, "", fmt.Errorf("JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return webrtc.ICECandidateInit{}, "", errors.New("JSON: data after the candidate object")
	}
	if c.Candidate == nil {
		return webrtc.ICECandidateInit{}, "", errors.New(`no "candidate" field`)
	}
	if c.SDPMid != nil && *c.SDPMid != "" && *c.SDPMid != "0" {
		return webrtc.ICECandidateInit{}, "", fmt.Errorf("sdpMid %q (the only media section is 0)", *c.SDPMid)
	}
	if c.SDPMLineIndex != nil && *c.SDPMLineIndex != 0 {
		return webrtc.ICECandidateInit{}, "", fmt.Errorf("sdpMLineIndex %d (the only media section is 0)", *c.SDPMLineIndex)
	}
	if c.UsernameFragment != nil && len(*c.UsernameFragment) > 256 {
		return webrtc.ICECandidateInit{}, "", fmt.Errorf("usernameFragment of %d bytes", len(*c.UsernameFragment))
	}
	line := strings.TrimPrefix(*c.Candidate, "candidate:")
	relay, err := checkCandidate(line)
	if err != nil {
		return webrtc.ICECandidateInit{}, "", err
	}
	return webrtc.ICECandidateInit{
		Candidate:        "candidate:" + line,
		SDPMid:           c.SDPMid,
		SDPMLineIndex:    c.SDPMLineIndex,
		UsernameFragment: c.UsernameFragment,
	}, relay, nil
}

// marshalCandidate is the signal data for a local candidate.
func marshalCandidate(c webrtc.ICECandidateInit) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		return "", fmt.Errorf("rtc: encoding candidate: %w", err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// checkCandidate checks one candidate line (RFC 8839 section 5.1, without
// "candidate:"): UDP, component 1, a literal IP address and port, a known
// type, then key-value extensions; and that pion parses it too. For a
// relay candidate it returns its address, "ip:port".
func checkCandidate(line string) (string, error) {
	if line == "" {
		return "", errors.New("empty candidate (end-of-candidates is not used)")
	}
	if len(line) > MaxCandidateLen {
		return "", fmt.Errorf("candidate of %d bytes (at most %d)", len(line), MaxCandidateLen)
	}
	if line[0] == ' ' || line[0] == '\t' {
		return "", errors.New("candidate has no foundation")
	}
	f := strings.Fields(line)
	if len(f) < 8 {
		return "", fmt.Errorf("candidate has %d fields, want at least 8", len(f))
	}
	if len(f[0]) > 32 || strings.IndexFunc(f[0], func(r rune) bool { return !isICEChar(r) }) >= 0 {
		return "", fmt.Errorf("candidate foundation %q", f[0])
	}
	if f[1] != "1" {
		return "", fmt.Errorf("candidate component %q (data channels use 1)", f[1])
	}
	if !strings.EqualFold(f[2], "udp") {
		return "", fmt.Errorf("candidate transport %q (only udp)", f[2])
	}
	if _, err := strconv.ParseUint(f[3], 10, 32); err != nil {
		return "", fmt.Errorf("candidate priority %q", f[3])
	}
	if err := checkAddr(f[4]); err != nil {
		return "", fmt.Errorf("candidate address: %w", err)
	}
	if err := checkPort(f[5]); err != nil {
		return "", fmt.Errorf("candidate port: %w", err)
	}
	if f[6] != "typ" {
		return "", fmt.Errorf(`candidate field 7 is %q, want "typ"`, f[6])
	}
	switch f[7] {
	case "host", "srflx", "prflx", "relay":
	default:
		return "", fmt.Errorf("candidate type %q", f[7])
	}
	ext := f[8:]
	if len(ext)%2 != 0 {
		return "", fmt.Errorf("candidate extension %q has no value", ext[len(ext)-1])
	}
	for i := 0; i < len(ext); i += 2 {
		k, v := ext[i], ext[i+1]
		var err error
		switch k {
		case "raddr":
			// 0.0.0.0 is what pion gives for relays on a wildcard socket.
			if _, perr := netip.ParseAddr(v); perr != nil {
				err = errors.New("not an IP address")
			}
		case "rport":
			if v != "0" {
				err = checkPort(v)
			}
		case "generation", "network-id", "network-cost":
			_, err = strconv.ParseUint(v, 10, 32)
		case "tcptype":
			err = errors.New("tcptype on a udp candidate")
		default:
			if len(k) > 64 || len(v) > 256 {
				err = errors.New("too long")
			}
		}
		if err != nil {
			return "", fmt.Errorf("candidate extension %s %q: %w", k, v, err)
		}
	}
	if _, err := ice.UnmarshalCandidate(line); err != nil {
		return "", fmt.Errorf("candidate: %w", err)
	}
	if f[7] != "relay" {
		return "", nil
	}
	return addrKey(f[4], f[5]), nil
}

// addrKey is the canonical "ip:port" of a candidate's address.
func addrKey(ip, port string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip + ":" + port
	}
	p, _ := strconv.ParseUint(port, 10, 16)
	return netip.AddrPortFrom(a.Unmap(), uint16(p)).String()
}

func isICEChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '+' || r == '/'
}

// checkAddr accepts a literal unicast IP address: never a name a peer
// could make a box look up, nor mDNS.
func checkAddr(s string) error {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return fmt.Errorf("%q is not an IP address", s)
	}
	if a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
		return fmt.Errorf("%s is not a unicast address", s)
	}
	return nil
}

func checkPort(s string) error {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil || p == 0 {
		return fmt.Errorf("%q is not a port", s)
	}
	return nil
}
