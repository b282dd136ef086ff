package boxlink_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/boxlink"
	"github.com/boxswarm/boxswarm/headend/customers"
	custbolt "github.com/boxswarm/boxswarm/headend/customers/boltstore"
	"github.com/boxswarm/boxswarm/headend/customers/custtest"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	schedbolt "github.com/boxswarm/boxswarm/headend/schedstore/boltstore"
	"github.com/boxswarm/boxswarm/headend/scheduler"
	"github.com/boxswarm/boxswarm/headend/web"
	"github.com/boxswarm/boxswarm/media"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// env is a real scheduler and a real customer service on bbolt, joined by
// a Link as the gateway would use them.
type env struct {
	t     *testing.T
	ctx   context.Context
	sched *scheduler.Scheduler
	cust  *customers.Service
	link  *boxlink.Link
}

func newEnv(t *testing.T) *env {
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	ss, err := schedbolt.Open(filepath.Join(dir, "scheduler.db"), schedbolt.WithLogger(quiet))
	must(t, err)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	sched, err := scheduler.New(ctx, scheduler.Config{Store: ss, Key: key, Log: quiet})
	must(t, err)
	done := make(chan struct{})
	go func() { defer close(done); sched.Run(ctx) }()
	cs, err := custbolt.Open(filepath.Join(dir, "customers.db"), custbolt.WithLogger(quiet))
	must(t, err)
	t.Cleanup(func() { cancel(); <-done; ss.Close(); cs.Close() })
	cust, err := customers.New(customers.Config{Store: cs, Payments: custtest.NewPayments(), Activator: sched, Lists: sched,
		Log: quiet, Password: customers.PasswordParams{Memory: 64, Time: 1, Threads: 1}})
	must(t, err)
	return &env{t: t, ctx: ctx, sched: sched, cust: cust, link: boxlink.New(sched, cust, sched, quiet)}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// title adds a title to the scheduler and, through the link, to the
// catalog.
func (e *env) title(n byte, name string, regions []string, publish time.Time) media.ID {
	id := media.ID{0xCC, n}
	must(e.t, e.sched.AddTitle(e.ctx, schedstore.Title{ID: id, Pieces: 10, PieceSize: 1 << 20, PayloadSize: 10 << 20, PublishAt: publish}))
	must(e.t, e.link.PutTitle(e.ctx, customers.Title{Media: id, Catalog: "films", Name: name, Year: 2000 + int(n), Genre: "Drama",
		Rent: customers.Money{Amount: 199, Currency: "EUR"}, Regions: regions, PublishAt: publish}))
	return id
}

func (e *env) signUp(name, region string) (customers.Account, customers.Box) {
	a, b, err := e.cust.SignUp(e.ctx, customers.SignUp{Name: name, Email: name + "@example.com", Password: "correct horse " + name,
		Address:      customers.Address{Street: "1 Main Street", City: "Town", Region: region},
		PaymentToken: custtest.TokenOK, Catalogs: []customers.CatalogID{"films"}, Supplier: "test"})
	must(e.t, err)
	return a, b
}

func (e *env) activate(code string) api.BoxID {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	id, _, err := e.link.Activate(e.ctx, code, pub, func(api.BoxID) ([]byte, error) { return []byte("certificate"), nil })
	must(e.t, err)
	return id
}

// outbox decodes what the head-end owes the box.
func (e *env) outbox(box api.BoxID) []api.Body {
	out, err := e.sched.Pending(e.ctx, box, 0)
	must(e.t, err)
	var bodies []api.Body
	for _, o := range out {
		m, err := api.ReadMessage(bytes.NewReader(o.Frame))
		must(e.t, err)
		bodies = append(bodies, m.Body)
	}
	return bodies
}

func catalogOf(bodies []api.Body) (items []media.ID, full int) {
	for _, b := range bodies {
		if u, ok := b.(api.CatalogUpdate); ok {
			if u.Full {
				full++
			}
			for _, it := range u.Items {
				items = append(items, it.Title)
			}
		}
	}
	return items, full
}

func lastList(bodies []api.Body) (api.PriorityList, bool) {
	for i := len(bodies) - 1; i >= 0; i-- {
		if pl, ok := bodies[i].(api.PriorityList); ok {
			return pl, true
		}
	}
	return api.PriorityList{}, false
}

func TestActivationReplicatesCatalogAndList(t *testing.T) {
	e := newEnv(t)
	must(t, e.cust.PutCatalog(e.ctx, customers.Catalog{ID: "films", Vendor: "Vendor", Name: "Films"}))
	past, future := time.Now().Add(-time.Hour), time.Now().Add(48*time.Hour)
	drama := e.title(1, "A Drama", []string{"*"}, past)
	later := e.title(2, "Coming Soon", []string{"*"}, future)
	e.title(3, "Stars and Stripes", []string{"US"}, past)
	other := e.title(5, "Other Drama", []string{"*"}, past)

	a, b := e.signUp("alice", "DE")
	// Alice fills her list on the web before the box arrives.
	_, err := e.cust.ListAdd(e.ctx, a.ID, b.Ref, drama)
	must(t, err)
	_, err = e.cust.ListAdd(e.ctx, a.ID, b.Ref, other)
	must(t, err)

	box := e.activate(b.Code)
	if got, err := e.cust.DeviceBox(e.ctx, box); err != nil || got.Ref != b.Ref {
		t.Fatalf("customer record of the activated box: %+v, %v", got, err)
	}
	bodies := e.outbox(box)
	items, full := catalogOf(bodies)
	if full != 1 || !slices.Equal(items, []media.ID{drama, later, other}) {
		t.Errorf("catalog sent at activation: %v (%d full), want the drama and the one coming soon, not the US title", items, full)
	}
	pl, ok := lastList(bodies)
	if !ok || !slices.Equal(pl.Titles, []media.ID{drama, other}) {
		t.Errorf("list sent at activation: %+v, want the one made on the web", pl)
	}

	// A title published later goes to the boxes that may show it, item by
	// item, with its publish time.
	_, bobBox := e.signUp("bob", "US")
	bob := e.activate(bobBox.Code)
	before := len(e.outbox(bob))
	fresh := e.title(4, "Fresh", []string{"DE"}, future)
	items, _ = catalogOf(e.outbox(box))
	if items[len(items)-1] != fresh {
		t.Errorf("alice's box was not sent the new title: %v", items)
	}
	if n := len(e.outbox(bob)); n != before {
		t.Errorf("bob's box (US) was sent a DE-only title: %d messages, was %d", n, before)
	}
	for _, body := range e.outbox(box) {
		if u, ok := body.(api.CatalogUpdate); ok && !u.Full && u.Items[0].Title == fresh && !u.Items[0].PublishAt.Equal(future.Truncate(time.Microsecond)) {
			t.Errorf("publish time %v, want %v", u.Items[0].PublishAt, future)
		}
	}
}

func TestListsSyncBothWays(t *testing.T) {
	e := newEnv(t)
	must(t, e.cust.PutCatalog(e.ctx, customers.Catalog{ID: "films", Vendor: "Vendor", Name: "Films"}))
	past := time.Now().Add(-time.Hour)
	t1, t2, t3 := e.title(1, "One", []string{"*"}, past), e.title(2, "Two", []string{"*"}, past), e.title(3, "Three", []string{"*"}, past)
	a, b := e.signUp("alice", "DE")
	box := e.activate(b.Code)

	// The web adds two titles: the box is told (through the scheduler).
	_, err := e.cust.ListAdd(e.ctx, a.ID, b.Ref, t1)
	must(t, err)
	web, err := e.cust.ListAdd(e.ctx, a.ID, b.Ref, t2)
	must(t, err)
	pl, _ := lastList(e.outbox(box))
	if !slices.Equal(pl.Titles, []media.ID{t1, t2}) {
		t.Fatalf("box told %+v after web edits", pl)
	}

	// The TV reorders with a newer version: customer management and the
	// scheduler both take it.
	tv := api.PriorityList{Titles: []media.ID{t2, t1, t3}, Version: pl.Version + 1}
	must(t, e.link.Deliver(e.ctx, box, 1, tv))
	got, err := e.cust.List(e.ctx, a.ID, b.Ref)
	must(t, err)
	if !slices.Equal(got.Titles, tv.Titles) {
		t.Errorf("web list after the TV's edit: %v, want %v", got.Titles, tv.Titles)
	}
	st, err := e.sched.Box(e.ctx, box)
	must(t, err)
	if !slices.Equal(st.List, tv.Titles) {
		t.Errorf("scheduler's list after the TV's edit: %v", st.List)
	}

	// A stale edit from the TV (made offline, before the web's latest):
	// the box is sent the newer list and nothing changes.
	web, err = e.cust.ListRemove(e.ctx, a.ID, b.Ref, t3)
	must(t, err)
	stale := api.PriorityList{Titles: []media.ID{t3}, Version: tv.Version}
	must(t, e.link.Deliver(e.ctx, box, 2, stale))
	pl, _ = lastList(e.outbox(box))
	if !slices.Equal(pl.Titles, web.Titles) || pl.Version != web.Version {
		t.Errorf("box told %+v after its stale edit, want the web's %v (version %d)", pl, web.Titles, web.Version)
	}
	got, err = e.cust.List(e.ctx, a.ID, b.Ref)
	must(t, err)
	if !slices.Equal(got.Titles, web.Titles) {
		t.Errorf("a stale TV edit changed the list to %v", got.Titles)
	}

	// A list naming a title nobody knows is refused.
	if err := e.link.Deliver(e.ctx, box, 3, api.PriorityList{Titles: []media.ID{{0xEE}}, Version: web.Version + 5}); err == nil {
		t.Error("a list naming an unknown title was accepted")
	}
}

func TestProgressForMyList(t *testing.T) {
	e := newEnv(t)
	must(t, e.cust.PutCatalog(e.ctx, customers.Catalog{ID: "films", Vendor: "Vendor", Name: "Films"}))
	past := time.Now().Add(-time.Hour)
	done, half, none := e.title(1, "Done", []string{"*"}, past), e.title(2, "Half", []string{"*"}, past), e.title(3, "None", []string{"*"}, past)
	_, b := e.signUp("alice", "DE")

	// Before activation, nothing is known.
	if p, err := e.link.Progress(e.ctx, b, []media.ID{done}); err != nil || len(p) != 0 {
		t.Fatalf("progress of a box not activated: %v, %v", p, err)
	}
	b.Device = e.activate(b.Code)
	must(t, e.link.Deliver(e.ctx, b.Device, 1, api.Inventory{Full: true, Titles: []api.TitleState{
		{Title: done, Complete: true},
		{Title: half, Have: []byte{0xF8, 0}}, // 5 of 10 pieces
	}}))
	p, err := e.link.Progress(e.ctx, b, []media.ID{done, half, none})
	must(t, err)
	want := map[media.ID]web.TitleProgress{done: {State: web.Downloaded, Percent: 100}, half: {State: web.Downloading, Percent: 50}}
	if len(p) != len(want) || p[done] != want[done] || p[half] != want[half] {
		t.Errorf("progress %v, want %v", p, want)
	}
}

func TestOperatorCodeHasNoAccount(t *testing.T) {
	e := newEnv(t)
	must(t, e.sched.AddActivationCode(e.ctx, "OPERATOR-CODE-1", "lab"))
	box := e.activate("OPERATOR-CODE-1")
	if _, err := e.cust.DeviceBox(e.ctx, box); !errors.Is(err, customers.ErrNotYourBox) {
		t.Errorf("a box activated with an operator's code: %v, want no customer record", err)
	}
	if items, full := catalogOf(e.outbox(box)); full != 0 || len(items) != 0 {
		t.Errorf("an operator's box was sent a catalog: %v", items)
	}
	// Its lists go to the scheduler alone.
	must(t, e.link.Deliver(e.ctx, box, 1, api.PriorityList{Version: 1}))
}
