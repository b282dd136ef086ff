package rtc

import (
	"net"
	"strconv"
	"sync"

	"github.com/pion/transport/v2"
	"github.com/pion/webrtc/v3"
)

// relayGate knows the peer's relay candidates and holds back packets from
// each until pion has added it as a relay.
//
// Why: pion adds the candidates of a remote description asynchronously,
// one goroutine each, while its agent starts at once. A connectivity
// check from the peer's relay that wins that race makes pion create a
// peer-reflexive candidate for the relay's address, with a direct
// candidate's priority and acceptance wait, and the controlling end then
// nominates the relayed pair after a second although a direct pair works
// (TestNATMatrix caught it on a loaded machine, once in a few hundred
// pairings). The peer resends its checks, so dropping the early ones costs
// a check interval at most.
type relayGate struct {
	mu     sync.Mutex
	relays map[string]bool        // "ip:port" announced by the peer → pion has it as a relay
	known  func() map[string]bool // the relays pion has, "ip:port"
}

// announce records relay candidates the peer announced. Call it before
// handing them to pion, so that no check from them slips in first.
func (g *relayGate) announce(relays []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.relays == nil {
		g.relays = make(map[string]bool)
	}
	for _, r := range relays {
		if _, ok := g.relays[r]; !ok {
			g.relays[r] = false
		}
	}
}

// watch names the PeerConnection whose agent the gate asks.
func (g *relayGate) watch(pc *webrtc.PeerConnection) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.known = func() map[string]bool { return remoteRelays(pc) }
}

// isRelay says whether the peer announced addr ("ip:port") as a relay.
func (g *relayGate) isRelay(addr string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.relays[addr]
	return ok
}

// holdBack says whether a packet from the address must be dropped: it is
// an announced relay that pion does not know yet.
func (g *relayGate) holdBack(from net.Addr) bool {
	u, ok := from.(*net.UDPAddr)
	if !ok {
		return false
	}
	key := addrKey(u.IP.String(), strconv.Itoa(u.Port))
	g.mu.Lock()
	added, announced := g.relays[key]
	knownFn := g.known
	g.mu.Unlock()
	if !announced || added || knownFn == nil {
		return false
	}
	// Rare (only until pion catches up), so a stats walk is affordable.
	known := knownFn()
	g.mu.Lock()
	defer g.mu.Unlock()
	for r := range known {
		if _, ok := g.relays[r]; ok {
			g.relays[r] = true
		}
	}
	return !known[key]
}

// remoteRelays is the set of relay candidates pion's agent holds for the
// peer, "ip:port".
func remoteRelays(pc *webrtc.PeerConnection) map[string]bool {
	set := make(map[string]bool)
	for _, st := range pc.GetStats() {
		c, ok := st.(webrtc.ICECandidateStats)
		if ok && c.Type == webrtc.StatsTypeRemoteCandidate && c.CandidateType == webrtc.ICECandidateTypeRelay {
			set[addrKey(c.IP, strconv.Itoa(int(c.Port)))] = true
		}
	}
	return set
}

// gatedNet applies a relayGate to the sockets of host and
// server-reflexive candidates, where a check from the peer's relay
// arrives directly. (A check that reaches this end's own relay makes a
// relayed pair whatever pion calls its remote end.)
type gatedNet struct {
	transport.Net
	gate *relayGate
}

func (n gatedNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return gatedConn{UDPConn: c, gate: n.gate}, nil
}

// gatedConn drops what the gate holds back. pion's candidates read with
// ReadFrom only.
type gatedConn struct {
	transport.UDPConn
	gate *relayGate
}

func (c gatedConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, from, err := c.UDPConn.ReadFrom(p)
		if err != nil || !c.gate.holdBack(from) {
			return n, from, err
		}
	}
}
