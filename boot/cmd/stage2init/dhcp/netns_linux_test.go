package dhcp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/internal/netns"
)

// veth makes a namespace holding a veth pair (srv, cli), both up, named
// the way internal/netns names its own, so that its sweep removes it if
// the test is killed.
func veth(t *testing.T) netns.NS {
	t.Helper()
	if err := netns.Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("network namespaces are required in CI: %v", err)
		}
		t.Skipf("network namespaces unavailable: %v", err)
	}
	var r [4]byte
	rand.Read(r[:])
	ns := netns.NS{Name: fmt.Sprintf("bswnet-%x-%d-%s-dhcp", time.Now().Unix(), os.Getpid(), hex.EncodeToString(r[:]))}
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns.Name).Run() })
	if _, err := ns.Run(context.Background(), "ip", "link", "add", "srv", "type", "veth", "peer", "name", "cli"); err != nil {
		t.Fatal(err)
	}
	err := ns.Do(func() error {
		for _, l := range []string{"lo", "srv", "cli"} {
			if err := LinkUp(l); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// TestClientAgainstServer runs the client and the server on the two ends
// of a veth pair: the client gets the pool's first address, configures it
// with the default route and name server, and renews the short lease.
func TestClientAgainstServer(t *testing.T) {
	ns := veth(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var srv *Server
	err := ns.Do(func() error {
		var err error
		srv, err = ListenServer(ServerConfig{
			Interface: "srv", Addr: netip.MustParsePrefix("192.168.77.1/24"),
			First: netip.MustParseAddr("192.168.77.10"), Count: 2,
			Router: netip.MustParseAddr("192.168.77.1"), DNS: []netip.Addr{netip.MustParseAddr("192.168.77.53")},
			Lease: 4 * time.Second,
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go srv.Serve(ctx)

	resolv := t.TempDir() + "/resolv.conf"
	var mu sync.Mutex
	var leases []Lease
	renewed := make(chan struct{})
	c := &Client{Interface: "cli", ResolvConf: resolv, OnLease: func(l Lease) {
		mu.Lock()
		defer mu.Unlock()
		leases = append(leases, l)
		if len(leases) == 2 {
			close(renewed)
		}
	}}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	// Run makes its sockets as it goes, so all of it runs in the namespace.
	go func() { done <- ns.Do(func() error { return c.Run(runCtx) }) }()
	select {
	case <-renewed:
	case err := <-done:
		t.Fatalf("client stopped: %v", err)
	case <-ctx.Done():
		t.Fatalf("no lease renewed within the deadline; leases %v", leases)
	}
	addrs, err := ns.Run(ctx, "ip", "-4", "-o", "addr", "show", "dev", "cli")
	if err != nil {
		t.Fatal(err)
	}
	routes, err := ns.Run(ctx, "ip", "-4", "route", "show", "default")
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if err := <-done; err != context.Canceled {
		t.Errorf("Run ended with %v, want context.Canceled", err)
	}
	mu.Lock()
	first := leases[0]
	mu.Unlock()
	if first.Addr != netip.MustParsePrefix("192.168.77.10/24") || first.Router != netip.MustParseAddr("192.168.77.1") || first.Duration != 4*time.Second {
		t.Errorf("lease %s", first)
	}
	if !strings.Contains(string(addrs), "inet 192.168.77.10/24 brd 192.168.77.255") {
		t.Errorf("address not configured:\n%s", addrs)
	}
	if !strings.Contains(string(routes), "default via 192.168.77.1 dev cli proto dhcp") {
		t.Errorf("default route not configured:\n%s", routes)
	}
	if b, _ := os.ReadFile(resolv); !strings.Contains(string(b), "nameserver 192.168.77.53\n") {
		t.Errorf("resolv.conf:\n%s", b)
	}
	if l := srv.Leases(); len(l) != 1 {
		t.Errorf("server leases %v, want one", l)
	}
}
