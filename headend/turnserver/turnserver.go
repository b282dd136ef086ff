// Package turnserver is the head-end's STUN and TURN service for boxes. One
// UDP socket, bound to the head-end's public address, answers STUN binding
// requests (so that a box learns its address outside its NAT) and TURN
// allocations (so that two boxes whose NATs defeat hole punching can still
// reach each other, through relays here). It is built on
// github.com/pion/turn/v2.
//
// It guarantees that:
//   - it binds exactly the address it is given, which must be a specific
//     one, never 0.0.0.0 or ::; relays are bound on RelayIP only;
//   - every TURN request is authenticated with the long-term credential
//     mechanism against credentials minted by [Mint] with the shared secret
//     (the TURN REST API convention); malformed and expired usernames,
//     another realm and wrong passwords are refused, and logged at Info
//     with the username, never the password;
//   - a user (the box named in the username, whatever the expiry) holds at
//     most MaxAllocationsPerUser relays at once; another allocation is
//     refused with 486 (Allocation Quota Reached);
//   - relays reach only the peers Config.AllowPeer admits, by default none
//     on loopback, private or link-local networks, so that a relay is no
//     way into the head-end's own networks;
//   - when Close returns, the socket and every relay are closed.
//
// [Server.Stats] counts allocations, refusals and bytes relayed, for export.
package turnserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun"
	"github.com/pion/turn/v2"
)

// DefaultMaxAllocationsPerUser is the per-user relay cap when the Config
// gives none.
const DefaultMaxAllocationsPerUser = 8

// ErrUnspecifiedAddr is returned by Listen for a wildcard address (0.0.0.0
// or ::): the service must bind the public address only.
var ErrUnspecifiedAddr = errors.New("turnserver: address must be a specific IP, not a wildcard (0.0.0.0 or ::)")

// Config configures a Server.
type Config struct {
	// Addr is the ip:port to bind: a specific address (the public one),
	// never 0.0.0.0 or ::. Port 0 picks a free port (for tests).
	Addr string
	// Realm is the long-term credential realm; a request for another realm
	// is refused.
	Realm string
	// Secret is shared with the scheduler, which mints credentials with
	// [Mint].
	Secret []byte
	// RelayIP is the address relays are bound on and announced at (the
	// public one). It defaults to Addr's IP, and must be IPv4: pion/turn v2
	// allocates UDP-over-IPv4 relays only.
	RelayIP net.IP
	// RelayPortMin and RelayPortMax bound the relay ports, inclusive; 0, 0
	// lets the system choose.
	RelayPortMin, RelayPortMax int
	// MaxAllocationsPerUser caps the relays one user holds at once, so that
	// a box cannot exhaust the relay; 0 means DefaultMaxAllocationsPerUser.
	MaxAllocationsPerUser int
	// AllowPeer says whether a relay may exchange datagrams with a peer
	// address. Nil means [DefaultAllowPeer]. Relays of this server (RelayIP)
	// are always allowed, whatever AllowPeer says, so that two relayed
	// boxes can reach each other.
	AllowPeer func(net.IP) bool
	// Log receives the server's logs, pion's included; nil means
	// slog.Default().
	Log *slog.Logger
}

// DefaultAllowPeer admits peers at unicast addresses that are not
// loopback, private (RFC 1918, RFC 4193) or link-local, nor unspecified:
// the addresses boxes are seen at from the internet. A head-end inside the
// ISP's network, whose boxes are seen at private or shared addresses,
// supplies its own AllowPeer.
func DefaultAllowPeer(ip net.IP) bool {
	return ip.IsGlobalUnicast() && !ip.IsPrivate()
}

// Stats are the server's counters since Listen.
type Stats struct {
	Allocations       uint64 // relays allocated
	ActiveAllocations int    // relays held now
	AuthRefusals      uint64 // requests refused for their credentials: malformed, expired, other realm, wrong password
	QuotaRefusals     uint64 // allocations refused because the user held MaxAllocationsPerUser relays
	PeerRefusals      uint64 // permissions and channels refused because AllowPeer refused the peer
	BytesToPeers      uint64 // payload relayed from boxes to peers
	BytesFromPeers    uint64 // payload relayed from peers to boxes
}

// Server is a running STUN and TURN service. Its methods are safe for
// concurrent use.
type Server struct {
	realm     string
	secret    []byte
	maxPer    int
	relayIP   net.IP
	allowPeer func(net.IP) bool
	log       *slog.Logger

	conn *serverConn
	turn *turn.Server

	mu      sync.Mutex
	cur     request // the datagram pion's read loop is handling
	perUser map[string]int
	relays  map[*relayConn]struct{}

	allocations, authRefusals, quotaRefusals, peerRefusals atomic.Uint64
	bytesToPeers, bytesFromPeers                           atomic.Uint64

	closeOnce sync.Once
	closeErr  error
}

// request is what the server knows of the datagram pion is handling.
// pion/turn v2 handles each datagram of a socket synchronously, on the
// goroutine that read it, calling AuthHandler and then (for an Allocate)
// the RelayAddressGenerator before it reads the next; that is what lets
// them learn which request, and so which user, they serve.
type request struct {
	src          net.Addr
	msg          *stun.Message // a decoded STUN request, else nil
	user         string        // set once the request is authenticated
	username     string
	key          []byte
	quotaRefused bool
}

// Listen binds cfg.Addr and serves STUN and TURN on it until Close. ctx
// bounds only the setup.
func Listen(ctx context.Context, cfg Config) (*Server, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("turnserver: %w", err)
	}
	addr, relayIP, err := checkConfig(&cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{
		realm:     cfg.Realm,
		secret:    append([]byte(nil), cfg.Secret...),
		maxPer:    cfg.MaxAllocationsPerUser,
		relayIP:   relayIP,
		allowPeer: cfg.AllowPeer,
		log:       cfg.Log,
		perUser:   make(map[string]int),
		relays:    make(map[*relayConn]struct{}),
	}

	network := "udp4"
	if addr.Addr().Is6() {
		network = "udp6"
	}
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, network, addr.String())
	if err != nil {
		return nil, fmt.Errorf("turnserver: listen: %w", err)
	}
	s.conn = &serverConn{PacketConn: pc, s: s, done: make(chan struct{})}

	var inner turn.RelayAddressGenerator
	if cfg.RelayPortMin == 0 && cfg.RelayPortMax == 0 {
		inner = &turn.RelayAddressGeneratorStatic{
			RelayAddress: relayIP,
			Address:      relayIP.String(),
		}
	} else {
		span := cfg.RelayPortMax - cfg.RelayPortMin + 1
		inner = &turn.RelayAddressGeneratorPortRange{
			RelayAddress: relayIP,
			Address:      relayIP.String(),
			MinPort:      uint16(cfg.RelayPortMin),
			MaxPort:      uint16(cfg.RelayPortMax),
			// It tries random ports in the range (10 times by default);
			// try enough that a busy range still yields its free ports.
			MaxRetries: min(max(2*span, 10), 1000),
		}
	}

	s.turn, err = turn.NewServer(turn.ServerConfig{
		Realm:         cfg.Realm,
		AuthHandler:   s.authenticate,
		LoggerFactory: pionLogs(cfg.Log),
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn:            s.conn,
			RelayAddressGenerator: &relayGenerator{inner: inner, s: s},
			PermissionHandler:     s.permit,
		}},
	})
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("turnserver: %w", err)
	}
	s.log.Info("turnserver: listening", "addr", pc.LocalAddr(), "realm", cfg.Realm, "relay_ip", relayIP,
		"relay_ports", fmt.Sprintf("%d-%d", cfg.RelayPortMin, cfg.RelayPortMax), "max_allocations_per_user", s.maxPer)
	return s, nil
}

// checkConfig validates cfg and fills in its defaults.
func checkConfig(cfg *Config) (netip.AddrPort, net.IP, error) {
	addr, err := netip.ParseAddrPort(cfg.Addr)
	if err != nil {
		return netip.AddrPort{}, nil, fmt.Errorf("turnserver: address %q is not ip:port: %w", cfg.Addr, err)
	}
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	if addr.Addr().IsUnspecified() {
		return netip.AddrPort{}, nil, fmt.Errorf("%w (got %s)", ErrUnspecifiedAddr, cfg.Addr)
	}
	if addr.Addr().IsMulticast() {
		return netip.AddrPort{}, nil, fmt.Errorf("turnserver: address %s is multicast", cfg.Addr)
	}
	relayIP := cfg.RelayIP
	if relayIP == nil {
		relayIP = net.IP(addr.Addr().AsSlice())
	}
	switch {
	case relayIP.IsUnspecified():
		return netip.AddrPort{}, nil, fmt.Errorf("%w (relay IP %s)", ErrUnspecifiedAddr, relayIP)
	case relayIP.To4() == nil:
		return netip.AddrPort{}, nil, fmt.Errorf("turnserver: relay IP %s is not IPv4 (pion/turn v2 relays over IPv4 only); set RelayIP", relayIP)
	}
	relayIP = relayIP.To4()
	switch {
	case cfg.Realm == "":
		return netip.AddrPort{}, nil, errors.New("turnserver: no realm")
	case len(cfg.Secret) == 0:
		return netip.AddrPort{}, nil, errors.New("turnserver: no secret")
	case cfg.MaxAllocationsPerUser < 0:
		return netip.AddrPort{}, nil, fmt.Errorf("turnserver: negative MaxAllocationsPerUser %d", cfg.MaxAllocationsPerUser)
	case cfg.RelayPortMin == 0 && cfg.RelayPortMax == 0:
	case cfg.RelayPortMin < 1 || cfg.RelayPortMax > 65535 || cfg.RelayPortMin > cfg.RelayPortMax:
		return netip.AddrPort{}, nil, fmt.Errorf("turnserver: relay port range %d-%d", cfg.RelayPortMin, cfg.RelayPortMax)
	}
	if cfg.MaxAllocationsPerUser == 0 {
		cfg.MaxAllocationsPerUser = DefaultMaxAllocationsPerUser
	}
	if cfg.AllowPeer == nil {
		cfg.AllowPeer = DefaultAllowPeer
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return addr, relayIP, nil
}

// Addr is the address the server is bound to.
func (s *Server) Addr() net.Addr { return s.conn.LocalAddr() }

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	active := len(s.relays)
	s.mu.Unlock()
	return Stats{
		Allocations:       s.allocations.Load(),
		ActiveAllocations: active,
		AuthRefusals:      s.authRefusals.Load(),
		QuotaRefusals:     s.quotaRefusals.Load(),
		PeerRefusals:      s.peerRefusals.Load(),
		BytesToPeers:      s.bytesToPeers.Load(),
		BytesFromPeers:    s.bytesFromPeers.Load(),
	}
}

// Close stops the server: it closes the socket, waits for pion's read loop
// to end, and closes every relay. It may be called more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		// pion's Close closes the socket but neither waits for its read
		// loop nor closes the relays: that happens later, on the read
		// loop's goroutine. Do both here, so that nothing outlives Close.
		err := s.turn.Close()
		<-s.conn.done
		s.mu.Lock()
		relays := make([]*relayConn, 0, len(s.relays))
		for rc := range s.relays {
			relays = append(relays, rc)
		}
		s.mu.Unlock()
		for _, rc := range relays {
			if cerr := rc.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}
		if err != nil {
			s.closeErr = fmt.Errorf("turnserver: close: %w", err)
		}
		s.log.Info("turnserver: closed", "addr", s.conn.LocalAddr(), "relays_closed", len(relays))
	})
	return s.closeErr
}

// begin records the datagram pion's read loop is about to handle.
func (s *Server) begin(b []byte, src net.Addr) {
	var m *stun.Message
	if isRequest(b) {
		m = &stun.Message{Raw: append([]byte(nil), b...)}
		if m.Decode() != nil {
			m = nil
		}
	}
	s.mu.Lock()
	s.cur = request{src: src, msg: m}
	s.mu.Unlock()
}

// authenticate is pion's AuthHandler: it returns the long-term key for a
// minted username, or refuses. pion checks the request's MESSAGE-INTEGRITY
// with the key; authenticate checks it first, to log a wrong password, and
// records the user for the quota.
func (s *Server) authenticate(username, realm string, src net.Addr) ([]byte, bool) {
	refuse := func(reason string, args ...any) ([]byte, bool) {
		s.authRefusals.Add(1)
		s.log.Info("turnserver: credentials refused", append([]any{"username", username, "from", src, "reason", reason}, args...)...)
		return nil, false
	}
	if realm != s.realm {
		return refuse("other realm", "realm", realm)
	}
	user, expires, err := parseUsername(username)
	if err != nil {
		return refuse("malformed username", "err", err)
	}
	if !time.Now().Before(expires) {
		return refuse("expired", "expired", expires.UTC())
	}
	key := turn.GenerateAuthKey(username, realm, password(s.secret, username))

	s.mu.Lock()
	c := &s.cur
	if c.msg == nil || !sameAddr(c.src, src) {
		// Not the datagram begin recorded (pion handling requests some
		// other way than this package expects): pion still checks the
		// integrity, but no allocation can be attributed to a user.
		s.mu.Unlock()
		return key, true
	}
	wrong := stun.MessageIntegrity(key).Check(c.msg) != nil
	if !wrong {
		c.user, c.username, c.key = user, username, key
	}
	s.mu.Unlock()
	if wrong {
		return refuse("wrong password")
	}
	return key, true
}

// permit is pion's PermissionHandler.
func (s *Server) permit(client net.Addr, peer net.IP) bool {
	if peer.Equal(s.relayIP) || s.allowPeer(peer) {
		return true
	}
	s.peerRefusals.Add(1)
	s.mu.Lock()
	username := ""
	if sameAddr(s.cur.src, client) {
		username = s.cur.username
	}
	s.mu.Unlock()
	s.log.Info("turnserver: peer refused", "username", username, "from", client, "peer", peer)
	return false
}

// reserve takes one of the current user's relays, or says why not.
func (s *Server) reserve() (user string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &s.cur
	switch {
	case c.user == "":
		return "", errUnattributed
	case s.perUser[c.user] >= s.maxPer:
		c.quotaRefused = true
		return c.user, errQuota
	}
	s.perUser[c.user]++
	return c.user, nil
}

// release returns one of user's relays.
func (s *Server) release(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseLocked(user)
}

func (s *Server) releaseLocked(user string) {
	if s.perUser[user]--; s.perUser[user] <= 0 {
		delete(s.perUser, user)
	}
}

func sameAddr(a, b net.Addr) bool {
	return a != nil && b != nil && a.Network() == b.Network() && a.String() == b.String()
}
