package rtc

import (
	"context"
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the TURN REST API convention the head-end uses
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/turnserver"
	"github.com/pion/transport/v2/vnet"
	"github.com/pion/turn/v2"
)

// natKind is one kind of home NAT, as RFC 4787 describes it: how the
// mapping depends on the destination, and which senders it lets in.
type natKind struct {
	name string
	typ  vnet.NATType
}

var natKinds = []natKind{
	// Endpoint-independent mapping and filtering.
	{"full-cone", vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointIndependent}},
	// Lets in any port of an address it sent to.
	{"restricted", vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrDependent}},
	// Lets in only the address and port it sent to.
	{"port-restricted", vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrPortDependent}},
	// A new mapping per destination address and port, and port-restricted
	// filtering: what STUN sees is no use to a peer.
	{"symmetric", vnet.NATType{MappingBehavior: vnet.EndpointAddrPortDependent, FilteringBehavior: vnet.EndpointAddrPortDependent}},
}

// needsRelay says which pairings hole punching cannot open: a symmetric
// NAT's new mapping toward the peer is unknown to the peer, so the peer's
// NAT must let in a port it never sent to, which only full-cone and
// (address-)restricted filtering do.
func needsRelay(a, b string) bool {
	sym := func(k string) bool { return k == "symmetric" }
	portRestrictive := func(k string) bool { return k == "symmetric" || k == "port-restricted" }
	return sym(a) && portRestrictive(b) || sym(b) && portRestrictive(a)
}

const (
	natSTUNIP  = "1.2.3.4"
	natSTUNAt  = natSTUNIP + ":3478"
	natRealm   = "boxswarm"
	natPayload = 1 << 20
)

// natWorld is one pairing's network: a WAN router with the head-end's
// STUN/TURN server, and two homes, each a NAT router with one box.
type natWorld struct {
	wan    *vnet.Router
	server *turn.Server
	boxes  [2]*vnet.Net
}

// vnetBuild serialises building worlds: vnet numbers MAC addresses and
// router names with unguarded package counters.
var vnetBuild sync.Mutex

func newNATWorld(t testing.TB, a, b natKind, secret []byte, log *slog.Logger) *natWorld {
	t.Helper()
	vnetBuild.Lock()
	defer vnetBuild.Unlock()
	lf := pionLogs(log)
	wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "0.0.0.0/0", LoggerFactory: lf})
	if err != nil {
		t.Fatal(err)
	}
	wanNet, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{natSTUNIP}})
	if err != nil {
		t.Fatal(err)
	}
	if err := wan.AddNet(wanNet); err != nil {
		t.Fatal(err)
	}
	w := &natWorld{wan: wan}
	homes := []struct {
		kind          natKind
		public, local string
		cidr          string
	}{
		{a, "27.1.1.1", "192.168.0.2", "192.168.0.0/24"},
		{b, "28.1.1.1", "10.2.0.2", "10.2.0.0/24"},
	}
	for i, h := range homes {
		typ := h.kind.typ
		lan, err := vnet.NewRouter(&vnet.RouterConfig{
			StaticIPs:     []string{h.public},
			CIDR:          h.cidr,
			NATType:       &typ,
			LoggerFactory: lf,
		})
		if err != nil {
			t.Fatal(err)
		}
		n, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{h.local}})
		if err != nil {
			t.Fatal(err)
		}
		if err := lan.AddNet(n); err != nil {
			t.Fatal(err)
		}
		if err := wan.AddRouter(lan); err != nil {
			t.Fatal(err)
		}
		w.boxes[i] = n
	}
	if err := wan.Start(); err != nil {
		t.Fatal(err)
	}

	pc, err := wanNet.ListenPacket("udp4", natSTUNAt)
	if err != nil {
		t.Fatal(err)
	}
	w.server, err = turn.NewServer(turn.ServerConfig{
		Realm:         natRealm,
		AuthHandler:   restAuth(secret),
		LoggerFactory: lf,
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: pc,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{
				RelayAddress: net.ParseIP(natSTUNIP),
				Address:      "0.0.0.0",
				Net:          wanNet,
			},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *natWorld) close(t testing.TB) {
	if err := w.server.Close(); err != nil {
		t.Errorf("closing the TURN server: %v", err)
	}
	if err := w.wan.Stop(); err != nil {
		t.Errorf("stopping the WAN router: %v", err)
	}
}

// restAuth checks long-term credentials minted by turnserver.Mint (the
// TURN REST API convention: "<expiry>:<user>", HMAC-SHA1 of it with the
// shared secret), as headend/turnserver does.
func restAuth(secret []byte) turn.AuthHandler {
	return func(username, realm string, _ net.Addr) ([]byte, bool) {
		exp, user, ok := strings.Cut(username, ":")
		if !ok || user == "" || realm != natRealm {
			return nil, false
		}
		secs, err := strconv.ParseInt(exp, 10, 64)
		if err != nil || time.Now().Unix() > secs {
			return nil, false
		}
		mac := hmac.New(sha1.New, secret)
		mac.Write([]byte(username))
		return turn.GenerateAuthKey(username, realm, base64.StdEncoding.EncodeToString(mac.Sum(nil))), true
	}
}

// TestNATMatrix connects two boxes behind every ordered pairing of NAT
// kinds (the first offers) through a vnet internet with the head-end's
// STUN/TURN server, moves 1 MiB and checks the path: direct wherever hole
// punching can work, relayed exactly where it cannot.
func TestNATMatrix(t *testing.T) {
	base := goroutineBase()
	start := time.Now()
	secret := []byte("vnet turn secret")
	t.Run("pairs", func(t *testing.T) {
		for _, ka := range natKinds {
			for _, kb := range natKinds {
				t.Run(ka.name+"/"+kb.name, func(t *testing.T) {
					t.Parallel()
					natPair(t, ka, kb, secret)
				})
			}
		}
	})
	t.Logf("%d pairings in %v", len(natKinds)*len(natKinds), time.Since(start).Round(time.Millisecond))
	checkNoLeaks(t, base)
}

func natPair(t *testing.T, ka, kb natKind, secret []byte) {
	log := testLog(t, ka.name+"-"+kb.name)
	w := newNATWorld(t, ka, kb, secret, log)
	defer w.close(t)

	r := newRelay(t)
	defer r.close()
	ids := [2]api.BoxID{box(0xa), box(0xb)}
	var trs [2]*Transport
	for i, id := range ids {
		creds := turnserver.Mint(secret, id.String(), time.Hour, time.Now(), natSTUNAt)
		trs[i] = r.add(id, Config{
			Net:            w.boxes[i],
			ICE:            func() api.ICECredentials { return creds },
			ConnectTimeout: 20 * time.Second,
			Log:            log.With("box", i),
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	begin := time.Now()
	ca, cb := connectPair(t, ctx, trs[0], trs[1], 100, true)
	defer ca.Close()
	defer cb.Close()
	connected := time.Since(begin)

	var wg sync.WaitGroup
	var sent [32]byte
	var serr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		sent, serr = sendPayload(ca, natPayload, 3)
	}()
	got, n, rerr := receivePayload(cb)
	wg.Wait()
	if serr != nil || rerr != nil {
		t.Fatalf("send: %v; receive: %v", serr, rerr)
	}
	if n != natPayload || got != sent {
		t.Fatalf("received %d bytes (hash match %v), want %d", n, got == sent, natPayload)
	}
	// b answers, so that each end both reads and writes.
	if _, err := cb.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	cb.CloseWrite()
	if b, err := io.ReadAll(ca); err != nil || string(b) != "ok" {
		t.Fatalf("reply %q, %v", b, err)
	}

	want := needsRelay(ka.name, kb.name)
	pa, pb := ca.Path(), cb.Path()
	t.Logf("%s <-> %s: connected in %v, moved %d KiB in %v; paths %v / %v", ka.name, kb.name,
		connected.Round(time.Millisecond), natPayload>>10, time.Since(begin.Add(connected)).Round(time.Millisecond), pa, pb)
	for i, p := range []Path{pa, pb} {
		if p.Relayed != want || p.Local == "" {
			t.Errorf("box %d path %v, want relayed=%v", i, p, want)
		}
		if !want && (p.Local == "relay" || p.Remote == "relay") {
			t.Errorf("box %d path %v has a relay end", i, p)
		}
	}
	if want {
		return
	}
	// Both ends see the same pair from their own side.
	if fmt.Sprint(pa.Relayed) != fmt.Sprint(pb.Relayed) {
		t.Errorf("ends disagree: %v / %v", pa, pb)
	}
}

// TestRelayOnly checks that RelayOnly relays even between two boxes that
// could reach each other directly.
func TestRelayOnly(t *testing.T) {
	base := goroutineBase()
	secret := []byte("vnet turn secret")
	full := natKinds[0]
	log := testLog(t, "relay-only")
	w := newNATWorld(t, full, full, secret, log)
	r := newRelay(t)
	ids := [2]api.BoxID{box(0xa), box(0xb)}
	var trs [2]*Transport
	for i, id := range ids {
		creds := turnserver.Mint(secret, id.String(), time.Hour, time.Now(), natSTUNAt)
		trs[i] = r.add(id, Config{
			Net:       w.boxes[i],
			ICE:       func() api.ICECredentials { return creds },
			RelayOnly: true,
			Log:       log.With("box", i),
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ca, cb := connectPair(t, ctx, trs[0], trs[1], 1, true)
	for i, c := range []*Conn{ca, cb} {
		if p := c.Path(); p.Local != "relay" || !p.Relayed {
			t.Errorf("box %d path %v, want a local relay", i, p)
		}
	}
	exchange(t, ca, cb, 256<<10)
	ca.Close()
	cb.Close()
	r.close()
	w.close(t)
	checkNoLeaks(t, base)
}
