package turnserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun"
	"github.com/pion/turn/v2"
)

const (
	testRealm  = "boxswarm.test"
	testSecret = "head-end shared secret"
)

// logBuffer collects a server's logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startServer starts a server on loopback; edit adjusts its Config.
func startServer(t *testing.T, edit func(*Config)) (*Server, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	cfg := Config{
		Addr:   "127.0.0.1:0",
		Realm:  testRealm,
		Secret: []byte(testSecret),
		Log:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := Listen(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() {
			t.Logf("server logs:\n%s", logs)
		}
	})
	return s, logs
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newClient returns a TURN client of s, on its own loopback socket.
func newClient(t *testing.T, s *Server, username, password string) *turn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: s.Addr().String(),
		TURNServerAddr: s.Addr().String(),
		Username:       username,
		Password:       password,
		Conn:           conn,
		RTO:            time.Second, // no retransmissions on a slow test machine
		LoggerFactory:  pionLogs(quiet()),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		_ = conn.Close()
	})
	return c
}

// allocate allocates a relay for c, closed when the test ends.
func allocate(t *testing.T, c *turn.Client) (net.PacketConn, error) {
	t.Helper()
	relay, err := c.Allocate()
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = relay.Close() })
	return relay, nil
}

func mint(user string) (username, password string) {
	cr := Mint([]byte(testSecret), user, time.Hour, time.Now(), "unused")
	return cr.Username, cr.Password
}

// eventually waits for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestListenAddress(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr error // nil: works; errAny: any error
	}{
		{"IPv4 wildcard", func(c *Config) { c.Addr = "0.0.0.0:3478" }, ErrUnspecifiedAddr},
		{"IPv6 wildcard", func(c *Config) { c.Addr = "[::]:3478" }, ErrUnspecifiedAddr},
		{"mapped wildcard", func(c *Config) { c.Addr = "[::ffff:0.0.0.0]:3478" }, ErrUnspecifiedAddr},
		{"wildcard relay", func(c *Config) { c.RelayIP = net.IPv4zero }, ErrUnspecifiedAddr},
		{"loopback", nil, nil},
		{"IPv6 with an IPv4 relay", func(c *Config) { c.Addr, c.RelayIP = "[::1]:0", net.IPv4(127, 0, 0, 1) }, nil},
		{"IPv6 without a relay IP", func(c *Config) { c.Addr = "[::1]:0" }, errAny},
		{"hostname", func(c *Config) { c.Addr = "localhost:0" }, errAny},
		{"no port", func(c *Config) { c.Addr = "127.0.0.1" }, errAny},
		{"IPv6 relay", func(c *Config) { c.RelayIP = net.IPv6loopback }, errAny},
		{"no realm", func(c *Config) { c.Realm = "" }, errAny},
		{"no secret", func(c *Config) { c.Secret = nil }, errAny},
		{"negative cap", func(c *Config) { c.MaxAllocationsPerUser = -1 }, errAny},
		{"half a port range", func(c *Config) { c.RelayPortMin = 40000 }, errAny},
		{"inverted port range", func(c *Config) { c.RelayPortMin, c.RelayPortMax = 40010, 40000 }, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Addr: "127.0.0.1:0", Realm: testRealm, Secret: []byte(testSecret), Log: quiet()}
			if tt.edit != nil {
				tt.edit(&cfg)
			}
			host, _, _ := net.SplitHostPort(cfg.Addr)
			if ip := net.ParseIP(host); tt.wantErr == nil && ip.To4() == nil {
				if pc, err := net.ListenPacket("udp6", cfg.Addr); err != nil {
					t.Skipf("no IPv6 loopback: %v", err)
				} else {
					_ = pc.Close()
				}
			}
			s, err := Listen(context.Background(), cfg)
			if err == nil {
				defer s.Close()
			}
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("Listen(%s): %v", cfg.Addr, err)
			case tt.wantErr == nil:
				if ip := s.Addr().(*net.UDPAddr).IP; !ip.Equal(net.ParseIP(host)) {
					t.Errorf("Listen(%s) bound %v", cfg.Addr, s.Addr())
				}
			case err == nil:
				t.Fatalf("Listen(%s) works, want an error", cfg.Addr)
			case tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("Listen(%s): %v, want %v", cfg.Addr, err, tt.wantErr)
			}
			t.Logf("%v", err)
		})
	}
}

var errAny = errors.New("any error")

func TestListenCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Listen(ctx, Config{Addr: "127.0.0.1:0", Realm: testRealm, Secret: []byte(testSecret), Log: quiet()})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Listen: %v, want context.Canceled", err)
	}
}

func TestMint(t *testing.T) {
	now := time.Unix(1_700_000_000, 500_000_000)
	tests := []struct {
		name, addr, user string
		ttl              time.Duration
		want             string // the username
		wantPassword     string
		wantURLs         []string
	}{
		{
			// Password computed independently:
			// printf %s 1700003600:box1 | openssl dgst -sha1 -hmac 'head-end shared secret' -binary | base64
			name: "IPv4", addr: "203.0.113.7:3478", user: "box1", ttl: time.Hour,
			want: "1700003600:box1", wantPassword: "Jf0NQUHOUB1uHKgdPHiYVnf+I14=",
			wantURLs: []string{"stun:203.0.113.7:3478", "turn:203.0.113.7:3478?transport=udp"},
		},
		{
			name: "IPv6", addr: "[2001:db8::1]:3478", user: "box1", ttl: time.Hour,
			want: "1700003600:box1", wantPassword: "Jf0NQUHOUB1uHKgdPHiYVnf+I14=",
			wantURLs: []string{"stun:[2001:db8::1]:3478", "turn:[2001:db8::1]:3478?transport=udp"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Mint([]byte(testSecret), tt.user, tt.ttl, now, tt.addr)
			if c.Username != tt.want {
				t.Errorf("username %q, want %q", c.Username, tt.want)
			}
			if c.Password != tt.wantPassword {
				t.Errorf("password %q, want %q", c.Password, tt.wantPassword)
			}
			if fmt.Sprint(c.URLs) != fmt.Sprint(tt.wantURLs) {
				t.Errorf("URLs %q, want %q", c.URLs, tt.wantURLs)
			}
			if want := time.Unix(1_700_003_600, 0); !c.Expires.Equal(want) {
				t.Errorf("expires %v, want %v", c.Expires, want)
			}
			user, exp, err := parseUsername(c.Username)
			if err != nil || user != tt.user || !exp.Equal(c.Expires) {
				t.Errorf("parseUsername(%q) = %q, %v, %v", c.Username, user, exp, err)
			}
		})
	}
}

func TestSTUNBinding(t *testing.T) {
	s, _ := startServer(t, nil)
	conn, err := net.DialUDP("udp4", nil, s.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	c, err := stun.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	var mapped stun.XORMappedAddress
	var doErr error
	err = c.Do(stun.MustBuild(stun.TransactionID, stun.BindingRequest), func(e stun.Event) {
		if e.Error != nil {
			doErr = e.Error
			return
		}
		doErr = mapped.GetFrom(e.Message)
	})
	if err != nil || doErr != nil {
		t.Fatalf("binding: %v, %v", err, doErr)
	}
	local := conn.LocalAddr().(*net.UDPAddr)
	if !mapped.IP.Equal(local.IP) || mapped.Port != local.Port {
		t.Fatalf("mapped address %v, want %v", mapped, local)
	}
}

func TestRelay(t *testing.T) {
	s, _ := startServer(t, nil)
	credA := Mint([]byte(testSecret), "box-a", time.Hour, time.Now(), s.Addr().String())
	credB := Mint([]byte(testSecret), "box-b", time.Hour, time.Now(), s.Addr().String())
	a := newClient(t, s, credA.Username, credA.Password)
	b := newClient(t, s, credB.Username, credB.Password)

	// The client learns its mapped address from the same socket.
	if _, err := a.SendBindingRequest(); err != nil {
		t.Fatalf("binding through the TURN client: %v", err)
	}

	relayA, err := allocate(t, a)
	if err != nil {
		t.Fatalf("allocate A: %v", err)
	}
	relayB, err := allocate(t, b)
	if err != nil {
		t.Fatalf("allocate B: %v", err)
	}
	for _, r := range []net.PacketConn{relayA, relayB} {
		if ip := r.LocalAddr().(*net.UDPAddr).IP; !ip.Equal(net.IPv4(127, 0, 0, 1)) {
			t.Errorf("relay at %v, want the server's IP", r.LocalAddr())
		}
	}
	if got := s.Stats(); got.Allocations != 2 || got.ActiveAllocations != 2 {
		t.Fatalf("stats %+v, want 2 allocations", got)
	}

	// B lets A's relay in; A's first WriteTo creates A's permission.
	if err := b.CreatePermission(relayA.LocalAddr()); err != nil {
		t.Fatalf("B permits A: %v", err)
	}
	msg := []byte("piece 42 of title 7")
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, 1500)
		_ = relayB.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := relayB.ReadFrom(buf)
		switch {
		case err != nil:
			got <- err
		case !bytes.Equal(buf[:n], msg):
			got <- fmt.Errorf("B read %q, want %q", buf[:n], msg)
		case from.String() != relayA.LocalAddr().String():
			got <- fmt.Errorf("B read from %v, want A's relay %v", from, relayA.LocalAddr())
		default:
			got <- nil
		}
	}()
	// UDP: resend until B has it.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		if _, err := relayA.WriteTo(msg, relayB.LocalAddr()); err != nil {
			t.Fatalf("A sends: %v", err)
		}
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		case <-tick.C:
		}
	}

	// The relay may count a datagram just after forwarding it.
	st := s.Stats()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); st = s.Stats() {
		if st.BytesToPeers >= uint64(len(msg)) && st.BytesFromPeers >= uint64(len(msg)) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st.BytesToPeers < uint64(len(msg)) || st.BytesFromPeers < uint64(len(msg)) {
		t.Errorf("stats %+v, want at least %d bytes each way", st, len(msg))
	}
	if st.AuthRefusals+st.QuotaRefusals+st.PeerRefusals != 0 {
		t.Errorf("stats %+v, want no refusals", st)
	}

	// Deallocating releases the relays.
	_ = relayA.Close()
	_ = relayB.Close()
	eventually(t, "relays released", func() bool { return s.Stats().ActiveAllocations == 0 })
}

func TestRefusedCredentials(t *testing.T) {
	s, logs := startServer(t, nil)
	now := time.Now()
	good := Mint([]byte(testSecret), "box-c", time.Hour, now, "")
	expired := Mint([]byte(testSecret), "box-c", time.Hour, now.Add(-2*time.Hour), "")
	otherSecret := Mint([]byte("another head-end's secret"), "box-c", time.Hour, now, "")
	tests := []struct {
		name               string
		username, password string
		reason             string // in the log
	}{
		{"expired", expired.Username, expired.Password, "expired"},
		{"wrong password", good.Username, good.Password + "x", "wrong password"},
		{"another head-end's secret", otherSecret.Username, otherSecret.Password, "wrong password"},
		{"no expiry", "box-c", password([]byte(testSecret), "box-c"), "malformed username"},
		{"no user", "9999999999:", password([]byte(testSecret), "9999999999:"), "malformed username"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.Stats()
			c := newClient(t, s, tt.username, tt.password)
			if _, err := allocate(t, c); err == nil {
				t.Fatal("allocation works, want a refusal")
			} else {
				t.Logf("refused: %v", err)
			}
			st := s.Stats()
			if st.AuthRefusals <= before.AuthRefusals || st.Allocations != before.Allocations {
				t.Errorf("stats %+v after %+v, want a refusal and no allocation", st, before)
			}
			line := logLine(logs.String(), "username="+tt.username+" ")
			if !strings.Contains(line, "level=INFO") || !strings.Contains(line, tt.reason) {
				t.Errorf("log line %q, want an Info line with %q", line, tt.reason)
			}
			if strings.Contains(logs.String(), tt.password) {
				t.Errorf("the password is in the logs")
			}
		})
	}

	// The same client with good credentials works.
	c := newClient(t, s, good.Username, good.Password)
	if _, err := allocate(t, c); err != nil {
		t.Fatalf("allocate with good credentials: %v", err)
	}
}

// logLine returns the last line of logs that contains s.
func logLine(logs, s string) string {
	lines := strings.Split(logs, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return lines[i]
		}
	}
	return ""
}

// rawAllocate sends an Allocate request for username in realm (pion's
// client always uses the realm the server names, so it cannot send
// another) and returns the server's answer to it.
func rawAllocate(t *testing.T, s *Server, username, password, realm string) *stun.Message {
	t.Helper()
	conn, err := net.DialUDP("udp4", nil, s.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	transport := stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}} // UDP
	allocateType := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	roundTrip := func(m *stun.Message) *stun.Message {
		t.Helper()
		if _, err := conn.Write(m.Raw); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		res := &stun.Message{Raw: buf[:n]}
		if err := res.Decode(); err != nil {
			t.Fatal(err)
		}
		if res.TransactionID != m.TransactionID {
			t.Fatal("answer to another transaction")
		}
		return res
	}

	res := roundTrip(stun.MustBuild(stun.TransactionID, allocateType, transport, stun.Fingerprint))
	var nonce stun.Nonce
	if err := nonce.GetFrom(res); err != nil {
		t.Fatalf("challenge without a nonce: %v", err)
	}
	return roundTrip(stun.MustBuild(stun.TransactionID, allocateType, transport,
		stun.NewUsername(username), stun.NewRealm(realm), nonce,
		stun.NewLongTermIntegrity(username, realm, password), stun.Fingerprint))
}

func errorCode(m *stun.Message) stun.ErrorCode {
	var code stun.ErrorCodeAttribute
	if m.Type.Class != stun.ClassErrorResponse || code.GetFrom(m) != nil {
		return 0
	}
	return code.Code
}

func TestRefusedRealm(t *testing.T) {
	s, logs := startServer(t, nil)
	tests := []struct {
		realm string
		want  stun.ErrorCode // 0: success
	}{
		{"elsewhere.test", stun.CodeBadRequest},
		{testRealm + " ", stun.CodeBadRequest},
		{testRealm, 0},
	}
	for _, tt := range tests {
		t.Run(tt.realm, func(t *testing.T) {
			// Correct password: with a realm unchecked, the key would
			// match, since the client computes it with the same realm.
			username, password := mint("box-d")
			before := s.Stats()
			res := rawAllocate(t, s, username, password, tt.realm)
			if got := errorCode(res); got != tt.want || (tt.want == 0 && res.Type.Class != stun.ClassSuccessResponse) {
				t.Fatalf("answer %v (error %d), want error %d", res.Type, got, tt.want)
			}
			st := s.Stats()
			if tt.want == 0 {
				if st.AuthRefusals != before.AuthRefusals || st.Allocations != before.Allocations+1 {
					t.Errorf("stats %+v after %+v, want one allocation", st, before)
				}
				return
			}
			if st.AuthRefusals != before.AuthRefusals+1 || st.Allocations != before.Allocations {
				t.Errorf("stats %+v after %+v, want one refusal", st, before)
			}
			if line := logLine(logs.String(), "other realm"); !strings.Contains(line, "username="+username) {
				t.Errorf("log line %q, want the username", line)
			}
		})
	}
}

func TestAllocationCap(t *testing.T) {
	const max = 2
	s, logs := startServer(t, func(c *Config) { c.MaxAllocationsPerUser = max })

	var relays []net.PacketConn
	for i := range max {
		// Each allocation with fresh credentials: the cap is per user
		// (box), not per username.
		username, password := mint("box-e")
		r, err := allocate(t, newClient(t, s, username, password))
		if err != nil {
			t.Fatalf("allocation %d: %v", i+1, err)
		}
		relays = append(relays, r)
	}

	username, password := mint("box-e")
	over := newClient(t, s, username, password)
	_, err := allocate(t, over)
	if err == nil || !strings.Contains(err.Error(), "486") {
		t.Fatalf("allocation %d: %v, want 486 Allocation Quota Reached", max+1, err)
	}
	if st := s.Stats(); st.QuotaRefusals != 1 || st.ActiveAllocations != max {
		t.Errorf("stats %+v, want one quota refusal and %d relays", st, max)
	}
	if line := logLine(logs.String(), "reason=quota"); !strings.Contains(line, "user=box-e") || !strings.Contains(line, "level=INFO") {
		t.Errorf("log line %q, want an Info line naming the user", line)
	}

	// Another box is not affected.
	otherUser, otherPassword := mint("box-f")
	if _, err := allocate(t, newClient(t, s, otherUser, otherPassword)); err != nil {
		t.Fatalf("another box: %v", err)
	}

	// The 486 carries MESSAGE-INTEGRITY, like every answer to an
	// authenticated request.
	res := rawAllocate(t, s, username, password, testRealm)
	if errorCode(res) != stun.CodeAllocQuotaReached {
		t.Fatalf("raw allocation: %v (error %d), want 486", res.Type, errorCode(res))
	}
	if err := stun.NewLongTermIntegrity(username, testRealm, password).Check(res); err != nil {
		t.Errorf("486 integrity: %v", err)
	}

	// Releasing a relay makes room again.
	_ = relays[0].Close()
	eventually(t, "a relay released", func() bool { return s.Stats().ActiveAllocations == max })
	if _, err := allocate(t, over); err != nil {
		t.Fatalf("allocation after a release: %v", err)
	}
}

func TestPeerPolicy(t *testing.T) {
	tests := []struct {
		name      string
		allowPeer func(net.IP) bool
		peer      string
		want      bool
	}{
		{"public", nil, "192.0.2.1:9", true},
		{"the relay itself", nil, "127.0.0.1:9", true},
		{"other loopback", nil, "127.0.0.2:9", false},
		{"private", nil, "10.1.2.3:9", false},
		{"link-local", nil, "169.254.169.254:80", false},
		{"private, allowed", func(net.IP) bool { return true }, "10.1.2.3:9", true},
		{"public, refused", func(net.IP) bool { return false }, "192.0.2.1:9", false},
		{"relay, refused", func(net.IP) bool { return false }, "127.0.0.1:9", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, logs := startServer(t, func(c *Config) { c.AllowPeer = tt.allowPeer })
			username, password := mint("box-g")
			c := newClient(t, s, username, password)
			if _, err := allocate(t, c); err != nil {
				t.Fatal(err)
			}
			peer, err := net.ResolveUDPAddr("udp4", tt.peer)
			if err != nil {
				t.Fatal(err)
			}
			err = c.CreatePermission(peer)
			if got := err == nil; got != tt.want {
				t.Fatalf("CreatePermission(%v): %v, want allowed %v", peer, err, tt.want)
			}
			wantRefusals := uint64(1)
			if tt.want {
				wantRefusals = 0
			}
			if got := s.Stats().PeerRefusals; got != wantRefusals {
				t.Errorf("%d peer refusals, want %d", got, wantRefusals)
			}
			if !tt.want {
				if line := logLine(logs.String(), "peer refused"); !strings.Contains(line, "username="+username) {
					t.Errorf("log line %q, want the username", line)
				}
			}
		})
	}
}

func TestRelayPortRange(t *testing.T) {
	// Find a few free ports; the range may still collide with another
	// process, so allocate fewer relays than it holds.
	probe, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lo := probe.LocalAddr().(*net.UDPAddr).Port
	_ = probe.Close()
	hi := min(lo+20, 65535)
	lo = hi - 20

	s, _ := startServer(t, func(c *Config) { c.RelayPortMin, c.RelayPortMax = lo, hi })
	for i := range 3 {
		username, password := mint(fmt.Sprintf("box-h%d", i))
		r, err := allocate(t, newClient(t, s, username, password))
		if err != nil {
			t.Fatalf("allocate: %v", err)
		}
		if p := r.LocalAddr().(*net.UDPAddr).Port; p < lo || p > hi {
			t.Errorf("relay port %d outside %d-%d", p, lo, hi)
		}
	}
}

func TestClose(t *testing.T) {
	logs := &logBuffer{}
	s, err := Listen(context.Background(), Config{
		Addr: "127.0.0.1:0", Realm: testRealm, Secret: []byte(testSecret),
		Log: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	username, password := mint("box-i")
	c := newClient(t, s, username, password)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if st := s.Stats(); st.ActiveAllocations != 0 {
		t.Errorf("stats after Close %+v, want no relays", st)
	}
	// Both the server's socket and the relay's are free again.
	for _, addr := range []net.Addr{s.Addr(), relay.LocalAddr()} {
		pc, err := net.ListenPacket("udp4", addr.String())
		if err != nil {
			t.Errorf("%v still bound after Close (server %v, relay %v): %v", addr, s.Addr(), relay.LocalAddr(), err)
			continue
		}
		_ = pc.Close()
	}
}
