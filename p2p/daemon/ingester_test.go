package daemon

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net"
	"sync"
	"testing"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/mediaserver"
	"github.com/boxswarm/boxswarm/p2p/agent"
	"github.com/boxswarm/boxswarm/p2p/piece/piecetest"
)

func TestIngester(t *testing.T) {
	ctx := t.Context()
	pkgs := t.TempDir()
	ti := piecetest.MakeTitle(t, pkgs, 3*(64<<10), 64<<10)
	other := piecetest.MakeTitle(t, pkgs, 64<<10, 64<<10)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var mu sync.Mutex
	var sent []api.Body
	srv, err := mediaserver.New(mediaserver.Config{Cluster: "noc-1", Agent: agent.Config{
		Self: piecetest.BoxID(0x5e), Store: piecetest.OpenStore(t, t.TempDir()),
		MediaKeys: []ed25519.PublicKey{piecetest.MediaPub}, SchedulerKey: piecetest.SchedulerPub,
		Send: func(_ context.Context, b api.Body) error {
			mu.Lock()
			defer mu.Unlock()
			sent = append(sent, b)
			return nil
		},
		Listen: l,
	}})
	if err != nil {
		t.Fatal(err)
	}

	var g Ingester
	if err := g.Place(ctx, ti.ID(), ti.Dir); !errors.Is(err, ErrNotRunning) {
		t.Errorf("before the server runs: %v, want ErrNotRunning", err)
	}
	detach := g.attach(srv)
	if err := g.Place(ctx, ti.ID(), other.Dir); err == nil {
		t.Error("a package of another title was placed")
	}
	if ok, err := g.Holds(ctx, ti.ID()); ok || err != nil {
		t.Errorf("holds before placing: %v, %v", ok, err)
	}
	if err := g.Place(ctx, ti.ID(), ti.Dir); err != nil {
		t.Fatal(err)
	}
	if ok, err := g.Holds(ctx, ti.ID()); !ok || err != nil {
		t.Errorf("holds after placing: %v, %v", ok, err)
	}
	mu.Lock()
	if len(sent) != 1 {
		t.Errorf("sent %+v, want one announcement", sent)
	} else if inv, ok := sent[0].(api.Inventory); !ok || inv.Full || len(inv.Titles) != 1 || inv.Titles[0].Title != ti.ID() || !inv.Titles[0].Complete {
		t.Errorf("announcement %+v", sent[0])
	}
	mu.Unlock()
	detach()
	if _, err := g.Holds(ctx, ti.ID()); !errors.Is(err, ErrNotRunning) {
		t.Errorf("after the server stopped: %v, want ErrNotRunning", err)
	}
}
