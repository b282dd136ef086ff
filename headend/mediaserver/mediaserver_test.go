package mediaserver

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/p2p/agent"
	"github.com/boxswarm/boxswarm/p2p/piece/piecetest"
)

type recorder struct {
	mu   sync.Mutex
	msgs []api.Body
}

func (r *recorder) send(_ context.Context, b api.Body) error {
	if err := b.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, b)
	return nil
}

func (r *recorder) all() []api.Body {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]api.Body(nil), r.msgs...)
}

// wait returns the first message that satisfies ok.
func (r *recorder) wait(t *testing.T, ok func(api.Body) bool) api.Body {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, b := range r.all() {
			if ok(b) {
				return b
			}
		}
	}
	t.Fatalf("no such message in %+v", r.all())
	return nil
}

func listen(t *testing.T) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func run(t *testing.T, f func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func TestServeIngested(t *testing.T) {
	pkgs := t.TempDir()
	titles := []*piecetest.Title{
		piecetest.MakeTitle(t, pkgs, 20*(64<<10), 64<<10),
		piecetest.MakeTitle(t, pkgs, 5*(64<<10), 64<<10),
	}
	serverID, boxID := piecetest.BoxID(0x5e), piecetest.BoxID(0xb0)
	rec := &recorder{}
	l := listen(t)
	srv, err := New(Config{
		Cluster: "noc-1",
		Agent: agent.Config{
			Self: serverID, Store: piecetest.OpenStore(t, t.TempDir()),
			MediaKeys: []ed25519.PublicKey{piecetest.MediaPub}, SchedulerKey: piecetest.SchedulerPub,
			Send: rec.send, Listen: l, Log: piecetest.Logger(t).With("end", "server"),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, srv.Run)
	for _, ti := range titles {
		id, err := srv.Ingest(t.Context(), ti.Dir)
		if err != nil || id != ti.ID() {
			t.Fatalf("ingest: %s, %v", id, err)
		}
		// Again: nothing to do, announced again.
		if _, err := srv.Ingest(t.Context(), ti.Dir); err != nil {
			t.Fatal(err)
		}
	}
	for i, b := range rec.all() {
		inv, ok := b.(api.Inventory)
		if !ok || inv.Full || len(inv.Titles) != 1 || !inv.Titles[0].Complete || inv.Titles[0].Title != titles[i/2].ID() {
			t.Errorf("announcement %d: %+v", i, b)
		}
	}
	inv, err := srv.Inventory()
	if err != nil || len(inv.Titles) != 2 || !inv.Titles[0].Complete || !inv.Titles[1].Complete {
		t.Errorf("inventory %+v, %v", inv, err)
	}
	if err := srv.Announce(t.Context()); err != nil {
		t.Fatal(err)
	}
	msgs := rec.all()
	reg, ok := msgs[len(msgs)-2].(api.Register)
	if !ok || !reg.Server || reg.Cluster != "noc-1" || reg.PieceAddr != l.Addr().String() || reg.NAT != api.NATOpen {
		t.Errorf("registration %+v", msgs[len(msgs)-2])
	}
	if inv, ok := msgs[len(msgs)-1].(api.Inventory); !ok || !inv.Full || len(inv.Titles) != 2 {
		t.Errorf("inventory on announce %+v", msgs[len(msgs)-1])
	}

	// A box fetches the first title. The server is not told: the token
	// is enough for it.
	boxRec := &recorder{}
	box, err := agent.New(agent.Config{
		Self: boxID, Store: piecetest.OpenStore(t, t.TempDir()),
		MediaKeys: []ed25519.PublicKey{piecetest.MediaPub}, SchedulerKey: piecetest.SchedulerPub,
		Send: boxRec.send, ProgressEvery: 20 * time.Millisecond, Log: piecetest.Logger(t).With("end", "box"),
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, box.Run)
	ti := titles[0]
	g, tok := piecetest.Grant(1, serverID, boxID, ti)
	start := api.TransferStart{
		Transfer: 1, Title: ti.ID(), Role: api.RoleReceive, Peer: api.Peer{Box: serverID, Server: true, Addr: reg.PieceAddr},
		Initiate: true, Portions: g.Portions, Token: tok, Expires: g.Expires,
	}
	if err := box.Handle(t.Context(), start); err != nil {
		t.Fatal(err)
	}
	done := boxRec.wait(t, func(b api.Body) bool {
		_, ok1 := b.(api.TransferSucceeded)
		_, ok2 := b.(api.TransferFailed)
		return ok1 || ok2
	})
	hash := ti.PayloadHash()
	if s, ok := done.(api.TransferSucceeded); !ok || !bytes.Equal(s.PayloadHash, hash[:]) {
		t.Fatalf("box reported %+v", done)
	}
	// The server reported the transfer it served.
	rec.wait(t, func(b api.Body) bool { s, ok := b.(api.TransferSucceeded); return ok && s.Transfer == 1 })
}

func TestNewChecks(t *testing.T) {
	base := agent.Config{
		Store: piecetest.OpenStore(t, t.TempDir()), MediaKeys: []ed25519.PublicKey{piecetest.MediaPub},
		SchedulerKey: piecetest.SchedulerPub, Send: (&recorder{}).send,
	}
	if _, err := New(Config{Cluster: "x", Agent: base}); err == nil {
		t.Error("server without a listener accepted")
	}
	base.Listen = listen(t)
	defer base.Listen.Close()
	if _, err := New(Config{Agent: base}); err == nil {
		t.Error("server without a cluster accepted")
	}
}
