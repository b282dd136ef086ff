package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// listen opens a UDP socket inside ns.
func listen(t *testing.T, ns NS, addr netip.Addr) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := ns.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s on %s: %v", ns.Name, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// recv reads one datagram, or reports that none came before the timeout.
func recv(c *net.UDPConn, timeout time.Duration) (string, netip.AddrPort, error) {
	buf := make([]byte, 1500)
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return "", netip.AddrPort{}, err
	}
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return "", netip.AddrPort{}, err
	}
	return string(buf[:n]), netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), nil
}

func send(t *testing.T, c *net.UDPConn, to netip.AddrPort, msg string) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort([]byte(msg), to); err != nil {
		t.Fatalf("send %q from %s to %s: %v", msg, c.LocalAddr(), to, err)
	}
}

func localPort(c *net.UDPConn) uint16 { return c.LocalAddr().(*net.UDPAddr).AddrPort().Port() }

// TestKernelNATTranslation sends from a home host to several servers on the internet: each
// must see the datagram coming from the router's WAN address, the answers
// must come back through the NAT, and the source port must be kept
// (MASQUERADE) or differ between destinations (--random-fully).
func TestKernelNATTranslation(t *testing.T) {
	t.Parallel()
	const destinations = 4
	for _, nat := range []NAT{Masquerade, RandomFully} {
		t.Run(nat.String(), func(t *testing.T) {
			t.Parallel()
			top := Start(t, Config{Homes: []HomeConfig{{NAT: nat}, {NAT: nat}}})
			home := top.Homes[0]

			var servers []*net.UDPConn
			for range destinations {
				servers = append(servers, listen(t, top.Internet.NS, top.Internet.Addr))
			}
			client := listen(t, home.Host, home.HostAddr)
			seen := map[uint16]bool{}
			for i, srv := range servers {
				msg := fmt.Sprintf("hello %d", i)
				send(t, client, srv.LocalAddr().(*net.UDPAddr).AddrPort(), msg)
				got, from, err := recv(srv, 3*time.Second)
				if err != nil || got != msg {
					t.Fatalf("server %d: got %q from %v, %v; want %q", i, got, from, err, msg)
				}
				if from.Addr() != home.WANAddr {
					t.Errorf("server %d saw the host as %v, want the router's WAN address %v", i, from, home.WANAddr)
				}
				seen[from.Port()] = true
				if nat == Masquerade && from.Port() != localPort(client) {
					t.Errorf("server %d saw source port %d, want the host's own %d (MASQUERADE keeps a free port)", i, from.Port(), localPort(client))
				}
				send(t, srv, from, "reply")
				if got, _, err := recv(client, 3*time.Second); err != nil || got != "reply" {
					t.Fatalf("the reply from server %d did not come back through the NAT: %q, %v", i, got, err)
				}
			}
			t.Logf("%v: %d destinations saw %d source ports", nat, destinations, len(seen))
			if nat == RandomFully && len(seen) < 2 {
				t.Errorf("--random-fully: all %d destinations saw the same source port %v", destinations, seen)
			}
		})
	}
}

// TestKernelNATLoopback: a namespace reaches its own address, which goes through
// its loopback device (down in a new namespace, and then such datagrams
// vanish silently). Two TURN relays of one server talk this way.
func TestKernelNATLoopback(t *testing.T) {
	t.Parallel()
	top := Start(t, Config{Homes: []HomeConfig{{}}})
	for _, tc := range []struct {
		ns   NS
		addr netip.Addr
	}{
		{top.Internet.NS, top.Internet.Addr},
		{top.Homes[0].Router, top.Homes[0].WANAddr},
		{top.Homes[0].Host, top.Homes[0].HostAddr},
	} {
		a, b := listen(t, tc.ns, tc.addr), listen(t, tc.ns, tc.addr)
		send(t, a, b.LocalAddr().(*net.UDPAddr).AddrPort(), "self")
		if got, _, err := recv(b, time.Second); err != nil || got != "self" {
			t.Errorf("%s: a datagram to its own address %v: %q, %v", tc.ns.Name, tc.addr, got, err)
		}
	}
}

// TestKernelNATDo: Do runs in the namespace and leaves the caller's thread alone;
// a panic comes back to the caller.
func TestKernelNATDo(t *testing.T) {
	t.Parallel()
	top := Start(t, Config{Homes: []HomeConfig{{}}})
	host := top.Homes[0].Host
	self := func() string {
		l, err := os.Readlink("/proc/thread-self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	outside := self()
	var inside string
	if err := host.Do(func() error {
		var err error
		inside, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside == outside {
		t.Errorf("Do ran in the caller's namespace %s", inside)
	}
	if got := self(); got != outside {
		t.Errorf("after Do, this goroutine is in %s, want %s", got, outside)
	}
	wantErr := errors.New("from fn")
	if err := host.Do(func() error { return wantErr }); !errors.Is(err, wantErr) {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want fn's panic", r)
			}
		}()
		_ = host.Do(func() error { panic("boom") })
		t.Errorf("Do returned after a panic")
	}()
}

// TestKernelNATIsolation: homes reach each other only through the NATs, and the
// internet cannot reach into a home.
func TestKernelNATIsolation(t *testing.T) {
	t.Parallel()
	top := Start(t, Config{Homes: []HomeConfig{{}, {}}})
	a, b := top.Homes[0], top.Homes[1]
	target := listen(t, b.Host, b.HostAddr)
	port := localPort(target)

	fromA := listen(t, a.Host, a.HostAddr)
	fromInternet := listen(t, top.Internet.NS, top.Internet.Addr)
	// A send may fail outright (the internet has no route to private
	// addresses) or the datagram is dropped on the way: either way
	// nothing may arrive.
	for _, p := range []struct {
		from *net.UDPConn
		to   netip.Addr
	}{
		{fromA, b.HostAddr},        // LAN to LAN
		{fromA, b.WANAddr},         // unsolicited, to B's router
		{fromInternet, b.HostAddr}, // internet to LAN
	} {
		_, _ = p.from.WriteToUDPAddrPort([]byte("from "+p.from.LocalAddr().String()), netip.AddrPortFrom(p.to, port))
	}
	if got, from, err := recv(target, 300*time.Millisecond); err == nil {
		t.Fatalf("home B's host received %q from %v: something crossed its NAT unsolicited", got, from)
	}
}

// TestKernelNATHolePunch opens a UDP path between two hosts behind their NATs,
// each learning its public mapping from a server as STUN does. The order
// is the unkind one: A's first packet reaches B's router before B has
// sent anything.
func TestKernelNATHolePunch(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		homes []HomeConfig
		want  bool
	}{
		{"masquerade", []HomeConfig{{}, {}}, true},
		// Without the router's firewall, A's early packet leaves a
		// conntrack entry at B's router and B's mapping moves: the
		// setup pitfall the firewall rule is for.
		{"masquerade, open WAN", []HomeConfig{{OpenWAN: true}, {OpenWAN: true}}, false},
		{"random-fully", []HomeConfig{{NAT: RandomFully}, {NAT: RandomFully}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			top := Start(t, Config{Homes: tc.homes})
			a, b := top.Homes[0], top.Homes[1]
			stun := listen(t, top.Internet.NS, top.Internet.Addr)
			ca, cb := listen(t, a.Host, a.HostAddr), listen(t, b.Host, b.HostAddr)
			mapped := func(c *net.UDPConn) netip.AddrPort {
				send(t, c, stun.LocalAddr().(*net.UDPAddr).AddrPort(), "binding")
				_, from, err := recv(stun, 3*time.Second)
				if err != nil {
					t.Fatalf("binding from %s: %v", c.LocalAddr(), err)
				}
				return from
			}
			ma, mb := mapped(ca), mapped(cb)

			// A first, alone; then both, several rounds.
			send(t, ca, mb, "a0")
			time.Sleep(50 * time.Millisecond)
			var gotA, gotB bool
			for i := 0; i < 5 && !(gotA && gotB); i++ {
				send(t, cb, ma, "b")
				send(t, ca, mb, "a")
				if _, _, err := recv(ca, 100*time.Millisecond); err == nil {
					gotA = true
				}
				if _, _, err := recv(cb, 100*time.Millisecond); err == nil {
					gotB = true
				}
			}
			t.Logf("A %v (mapped %v) got B's: %v; B %v (mapped %v) got A's: %v", a.HostAddr, ma, gotA, b.HostAddr, mb, gotB)
			if open := gotA && gotB; open != tc.want {
				t.Errorf("path open both ways: %v, want %v", open, tc.want)
			}
		})
	}
}

// TestKernelNATLifecycle: two topologies at once do not collide, Close removes
// every namespace and the processes inside, and may be called twice.
func TestKernelNATLifecycle(t *testing.T) {
	t.Parallel()
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	tops := make([]*Topology, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range tops {
		wg.Go(func() { tops[i], errs[i] = New(ctx, Config{Homes: []HomeConfig{{}}}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("topology %d: %v", i, err)
		}
		t.Cleanup(func() { tops[i].Close() })
	}
	names := map[string]bool{}
	for _, top := range tops {
		for _, n := range top.Names() {
			if names[n] {
				t.Fatalf("namespace %s in both topologies", n)
			}
			names[n] = true
		}
	}

	top := tops[0]
	sleeper := top.Homes[0].Host.Command(ctx, "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- sleeper.Wait() }()

	if err := top.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := top.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, n := range top.Names() {
		if _, err := os.Stat(filepath.Join(netnsDir, n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s still there after Close: %v", n, err)
		}
	}
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Errorf("a process inside the topology survived Close")
	}
	for _, n := range tops[1].Names() {
		if _, err := os.Stat(filepath.Join(netnsDir, n)); err != nil {
			t.Errorf("the other topology's namespace %s is gone: %v", n, err)
		}
	}
}

func TestKernelNATIsStale(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	name := func(age time.Duration, pid int) string {
		return fmt.Sprintf("%s-%x-%d-abcdef-r0", namePrefix, now.Add(-age).Unix(), pid)
	}
	const dead, alive = 999_999, 4242
	runs := func(pid int) bool { return pid == alive }
	cases := []struct {
		name string
		want bool
	}{
		{name(StaleAfter+time.Second, dead), true},
		{name(StaleAfter-time.Second, dead), false}, // young: its owner may be in another pid namespace
		{name(StaleAfter+time.Second, alive), false},
		{name(AbandonedAfter+time.Second, alive), true},
		{name(time.Hour, os.Getpid()), true},
		{name(StaleAfter+time.Second, os.Getpid()), false}, // this process's own
		{"other-" + name(time.Hour, dead), false},
		{namePrefix + "-zz-1-abcdef-r0", false},
		{namePrefix + "-1", false},
		{"", false},
	}
	for _, tc := range cases {
		if got := isStale(tc.name, namePrefix, now, runs); got != tc.want {
			t.Errorf("isStale(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestKernelNATSweep: a namespace of a process that is gone is removed once it is
// old enough; a young one is not.
func TestKernelNATSweep(t *testing.T) {
	t.Parallel()
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := time.Now()
	gone := deadPID(t)
	// A prefix of its own: a stale-looking namespace under the real one
	// may be swept by another test binary's topology at any moment, even
	// between ip netns add's steps.
	id, err := newID(now)
	if err != nil {
		t.Fatal(err)
	}
	prefix := "bswnetsweeptest" + strings.ReplaceAll(id, "-", "")
	old := fmt.Sprintf("%s-%x-%d-old-r0", prefix, now.Add(-StaleAfter-time.Minute).Unix(), gone)
	young := fmt.Sprintf("%s-%x-%d-young-r0", prefix, now.Unix(), gone)
	for _, n := range []string{old, young} {
		if out, err := exec.CommandContext(ctx, "ip", "netns", "add", n).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", n, err, out)
		}
	}
	t.Cleanup(func() { _ = remove(context.Background(), []string{old, young}) })

	sweepPrefix(ctx, now, prefix)
	if _, err := os.Stat(filepath.Join(netnsDir, old)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale namespace %s survived the sweep: %v", old, err)
	}
	if _, err := os.Stat(filepath.Join(netnsDir, young)); err != nil {
		t.Errorf("young namespace %s was swept: %v", young, err)
	}
}

// deadPID returns a pid no process has.
func deadPID(t *testing.T) int {
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	var max int
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &max); err != nil {
		t.Fatal(err)
	}
	return max + 1 // above pid_max: never a process
}
