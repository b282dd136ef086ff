package daemon_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/headend/boxlink"
	"github.com/boxswarm/boxswarm/headend/customers"
	custbolt "github.com/boxswarm/boxswarm/headend/customers/boltstore"
	"github.com/boxswarm/boxswarm/headend/customers/custtest"
	"github.com/boxswarm/boxswarm/headend/deviceca"
	"github.com/boxswarm/boxswarm/headend/gateway"
	"github.com/boxswarm/boxswarm/headend/pass"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	schedbolt "github.com/boxswarm/boxswarm/headend/schedstore/boltstore"
	"github.com/boxswarm/boxswarm/headend/scheduler"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/store"
	"github.com/boxswarm/boxswarm/p2p/daemon"
	"github.com/boxswarm/boxswarm/p2p/local"
	"github.com/boxswarm/boxswarm/p2p/piece/piecetest"
)

// headEnd is the real thing in-process as far as boxes see it: the
// gateway, boxlink, customer management and the scheduler on bbolt. Media
// passes and keys are answered by passKeys, a stand-in for the playback
// service that issues real passes.
type headEnd struct {
	t        *testing.T
	ctx      context.Context
	sched    *scheduler.Scheduler
	cust     *customers.Service
	link     *boxlink.Link
	pk       *passKeys
	addr     string
	caFile   string
	schedPub string
}

func startHeadEnd(t *testing.T) *headEnd {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	log := piecetest.Logger(t)
	ca, err := deviceca.LoadOrCreate(filepath.Join(dir, "ca"))
	must(t, err)
	cert, err := ca.IssueServer([]string{"127.0.0.1"})
	must(t, err)
	ss, err := schedbolt.Open(filepath.Join(dir, "scheduler.db"), schedbolt.WithLogger(log))
	must(t, err)
	schedPub, schedKey, _ := ed25519.GenerateKey(rand.Reader)
	var gw *gateway.Gateway
	sched, err := scheduler.New(ctx, scheduler.Config{Store: ss, Key: schedKey, Log: log.With("end", "scheduler"),
		Notify: func(b api.BoxID) { gw.Notify(b) }, Tick: 20 * time.Millisecond})
	must(t, err)
	loopDone := make(chan struct{})
	go func() { defer close(loopDone); sched.Run(ctx) }()
	cs, err := custbolt.Open(filepath.Join(dir, "customers.db"), custbolt.WithLogger(log))
	must(t, err)
	cust, err := customers.New(customers.Config{Store: cs, Payments: custtest.NewPayments(), Activator: sched, Lists: sched,
		Log: log, Password: customers.PasswordParams{Memory: 64, Time: 1, Threads: 1}})
	must(t, err)
	_, passKey, _ := ed25519.GenerateKey(rand.Reader)
	issuer, err := pass.NewIssuer(passKey, nil, 0)
	must(t, err)
	pk := &passKeys{Handler: sched, tell: sched.Tell, issuer: issuer, passPub: passKey.Public().(ed25519.PublicKey)}
	link := boxlink.New(pk, cust, sched, log.With("end", "boxlink"))
	gw, err = gateway.New(gateway.Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, CA: ca, Handler: link,
		Log: log.With("end", "gateway"), RetryBase: 100 * time.Millisecond})
	must(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	served := make(chan error, 1)
	go func() { served <- gw.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		<-served
		pk.wg.Wait()
		<-loopDone
		ss.Close()
		cs.Close()
	})
	he := &headEnd{t: t, ctx: ctx, sched: sched, cust: cust, link: link, pk: pk, addr: l.Addr().String()}
	he.caFile = filepath.Join(dir, "headend-ca.pem")
	must(t, os.WriteFile(he.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate()}), 0o600))
	he.schedPub = writePub(t, dir, "scheduler.pub", schedPub)
	return he
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writePub(t *testing.T, dir, name string, k ed25519.PublicKey) string {
	t.Helper()
	b, err := firmware.MarshalPublicKeyPEM(k)
	must(t, err)
	p := filepath.Join(dir, name)
	must(t, os.WriteFile(p, b, 0o600))
	return p
}

// title puts a title into the scheduler and the films catalog, which
// replicates it to the boxes that may show it.
func (he *headEnd) title(n byte, name string, publish time.Time) media.ID {
	id := media.ID{0xCC, n}
	must(he.t, he.sched.AddTitle(he.ctx, schedstore.Title{ID: id, Pieces: 10, PieceSize: 1 << 20, PayloadSize: 10 << 20, PublishAt: publish}))
	must(he.t, he.link.PutTitle(he.ctx, customers.Title{Media: id, Catalog: "films", Name: name, Year: 2000 + int(n), Genre: "Drama",
		Rent: customers.Money{Amount: 199, Currency: "EUR"}, Regions: []string{"*"}, PublishAt: publish}))
	return id
}

// passKeys answers media pass and key requests as the playback service
// does, off the session's goroutine and through the scheduler's outbox:
// a price first, a real pass once confirmed, and a "key" for a pass it
// issued. A pass it did not sign gets an answer without a title, as the
// vault gives.
type passKeys struct {
	gateway.Handler
	tell    func(context.Context, api.BoxID, api.Body) error
	issuer  *pass.Issuer
	passPub ed25519.PublicKey
	wg      sync.WaitGroup
	mu      sync.Mutex
	asked   []api.Body
	delay   time.Duration
}

func (p *passKeys) Deliver(ctx context.Context, box api.BoxID, seq uint64, body api.Body) error {
	switch body.(type) {
	case api.PassRequest, api.KeyRequest:
	default:
		return p.Handler.Deliver(ctx, box, seq, body)
	}
	key, _ := gateway.DeviceKey(ctx)
	p.mu.Lock()
	p.asked = append(p.asked, body)
	delay := p.delay
	p.mu.Unlock()
	p.wg.Go(func() {
		time.Sleep(delay)
		var answer api.Body
		switch m := body.(type) {
		case api.PassRequest:
			r := api.PassResponse{Title: m.Title, Price: "1.99 EUR"}
			if !m.Confirm || m.Price != r.Price {
				r.Reason = "Rent for 1.99 EUR?"
			} else {
				raw, _, err := p.issuer.Issue(pass.Grant{Box: box, BoxKey: key, Title: m.Title, NotAfter: time.Now().Add(48 * time.Hour), Account: "alice"})
				if err != nil {
					r.Reason = err.Error()
				}
				r.Pass = raw
			}
			answer = r
		case api.KeyRequest:
			pp, err := pass.Verify(m.Pass, []ed25519.PublicKey{p.passPub}, time.Now())
			if err != nil {
				answer = api.KeyResponse{Reason: "bad_signature"}
			} else {
				answer = api.KeyResponse{Title: pp.Title, WrappedKey: []byte("key of " + pp.Title.String())}
			}
		}
		if err := p.tell(context.Background(), box, answer); err != nil {
			panic(fmt.Sprintf("tell %s: %v", answer.Type(), err))
		}
	})
	return nil
}

func (p *passKeys) setDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// runDaemon is a transfer daemon run in this process.
type runDaemon struct {
	t     *testing.T
	o     daemon.Options
	stop  context.CancelFunc
	done  chan error
	ready chan api.BoxID
	c     *local.Client
}

func startDaemon(t *testing.T, o daemon.Options) *runDaemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &runDaemon{t: t, o: o, stop: cancel, done: make(chan error, 1), ready: make(chan api.BoxID, 1)}
	o.Ready = func(box api.BoxID, _ string) { d.ready <- box }
	go func() { d.done <- daemon.Run(ctx, o, piecetest.Logger(t).With("end", "box")) }()
	d.c = local.Dial(o.Local)
	// The socket appears once the store and the box state are open.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := d.c.Status(t.Context())
		if err == nil {
			break
		}
		select {
		case err := <-d.done:
			t.Fatalf("daemon stopped: %v", err)
		default:
		}
		if !local.IsUnavailable(err) || time.Now().After(deadline) {
			t.Fatalf("local API: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return d
}

func (d *runDaemon) halt() {
	d.t.Helper()
	d.c.Close()
	d.stop()
	if err := <-d.done; err != nil {
		d.t.Errorf("daemon: %v", err)
	}
}

// until waits for cond, checking it after each change the daemon reports:
// a change that does not wake Changes fails the test by its timeout.
func until(t *testing.T, c *local.Client, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	var n uint64
	for {
		if cond() {
			return
		}
		var err error
		if n, err = c.Changes(ctx, n); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
}

func catalogTitles(t *testing.T, c *local.Client) []media.ID {
	t.Helper()
	items, err := c.Catalog(t.Context())
	must(t, err)
	var out []media.ID
	for _, it := range items {
		out = append(out, it.Title)
	}
	return out
}

func TestBoxAgainstHeadEnd(t *testing.T) {
	he := startHeadEnd(t)
	ctx := t.Context()
	must(t, he.cust.PutCatalog(ctx, customers.Catalog{ID: "films", Vendor: "Vendor", Name: "Films"}))
	past := time.Now().Add(-time.Hour)
	bravo := he.title(2, "Bravo", past)
	alpha := he.title(1, "alpha", past)
	echo := he.title(6, "Echo", past)
	later := he.title(3, "Zulu", time.Now().Add(24*time.Hour))
	acct, bref := func() (customers.Account, customers.Box) {
		a, b, err := he.cust.SignUp(ctx, customers.SignUp{Name: "alice", Email: "alice@example.com", Password: "correct horse alice",
			Address:      customers.Address{Street: "1 Main Street", City: "Town", Region: "DE"},
			PaymentToken: custtest.TokenOK, Catalogs: []customers.CatalogID{"films"}, Supplier: "test"})
		must(t, err)
		return a, b
	}()
	// Alice puts a title on her list on the web before the box arrives.
	_, err := he.cust.ListAdd(ctx, acct.ID, bref.Ref, alpha)
	must(t, err)

	// A box with part of a title already, and no certificate.
	dir, err := os.MkdirTemp("", "box")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	held := piecetest.MakeTitle(t, t.TempDir(), 10*(64<<10), 64<<10)
	st := piecetest.OpenStore(t, filepath.Join(dir, "store"))
	piecetest.Fill(t, st, held, api.PieceRange{First: 0, Last: 3})
	st.Close()
	o := daemon.Options{
		HeadEnd: he.addr, CA: he.caFile, Store: filepath.Join(dir, "store"),
		Cert:      filepath.Join(dir, "box.crt"), // the identity: sealed, the default, without a TPM
		MediaKeys: []string{writePub(t, dir, "media.pub", piecetest.MediaPub)}, SchedulerKey: he.schedPub,
		Transport: daemon.TransportTCP, Heartbeat: time.Second, ProgressEvery: 50 * time.Millisecond,
		Local: filepath.Join(dir, "run", "transferd.sock"), StoreSocket: filepath.Join(dir, "run", "store.sock"),
	}
	d := startDaemon(t, o)
	c := d.c

	// Waiting for the code.
	s, err := c.Status(ctx)
	if err != nil || !s.NeedsCode || s.Activated || s.Connected || s.Box != (api.BoxID{}) || s.StoreSocket != o.StoreSocket {
		t.Fatalf("status before activation: %+v, %v", s, err)
	}
	if _, err := c.SetList(ctx, []media.ID{alpha}); !errors.Is(err, local.ErrNotActivated) {
		t.Errorf("list edit before activation: %v", err)
	}
	if _, err := c.Pass(ctx, api.PassRequest{Title: alpha}); !errors.Is(err, local.ErrNotActivated) {
		t.Errorf("pass before activation: %v", err)
	}
	ps, err := c.Progress(ctx, []media.ID{held.ID(), alpha})
	if err != nil || ps[held.ID()] != (local.Progress{Have: 4, Pieces: held.Manifest.NumPieces()}) || ps[alpha] != (local.Progress{}) {
		t.Errorf("progress before activation: %v, %v", ps, err)
	}

	t.Run("activation", func(t *testing.T) {
		refused := c.Activate(ctx, "WRONG-CODE-0000")
		if !errors.Is(refused, local.ErrRefused) || strings.Contains(refused.Error(), "activate at") || strings.Contains(refused.Error(), he.addr) {
			t.Fatalf("a wrong code: %v", refused)
		}
		s, err := c.Status(ctx)
		if err != nil || !s.NeedsCode || s.Activated || s.Error == "" {
			t.Fatalf("status after a wrong code: %+v, %v", s, err)
		}
		if !strings.Contains(refused.Error(), s.Error) {
			t.Errorf("the TV shows %q, the refusal was %q", s.Error, refused)
		}
		t.Logf("the TV shows: %q", s.Error)
		if err := c.Activate(ctx, bref.Code); err != nil {
			t.Fatalf("the right code: %v", err)
		}
		if err := c.Activate(ctx, bref.Code); !errors.Is(err, local.ErrActivated) {
			t.Errorf("activating again: %v", err)
		}
		box := <-d.ready
		until(t, c, "the session", func() bool {
			s, err = c.Status(ctx)
			return err == nil && s.Connected
		})
		if s.Box != box || !s.Activated || s.NeedsCode || s.Error != "" {
			t.Errorf("status once activated: %+v, box %s", s, box)
		}
		if dev, err := he.cust.DeviceBox(ctx, box); err != nil || dev.Ref != bref.Ref {
			t.Errorf("customer record: %+v, %v", dev, err)
		}
	})
	box := func() api.BoxID { s, _ := c.Status(ctx); return s.Box }()

	t.Run("catalog", func(t *testing.T) {
		// In full at activation, by name, without what is not published.
		until(t, c, "the catalog", func() bool { return len(catalogTitles(t, c)) == 3 })
		if got := catalogTitles(t, c); !slices.Equal(got, []media.ID{alpha, bravo, echo}) {
			t.Errorf("catalog after activation: %v, want alpha, Bravo, Echo", got)
		}
		// Then item by item.
		charlie := he.title(4, "Charlie", past)
		until(t, c, "a new title", func() bool { return slices.Contains(catalogTitles(t, c), charlie) })
		if got := catalogTitles(t, c); !slices.Equal(got, []media.ID{alpha, bravo, charlie, echo}) {
			t.Errorf("catalog after a new title: %v", got)
		}
		// A title sent ahead of its publication appears at its time,
		// without a message.
		publish := time.Now().Add(1500 * time.Millisecond)
		soon := he.title(5, "Delta", publish)
		until(t, c, "the title published", func() bool { return slices.Contains(catalogTitles(t, c), soon) })
		if time.Now().Before(publish) {
			t.Errorf("a title shown %v before its publication", time.Until(publish))
		}
		if slices.Contains(catalogTitles(t, c), later) {
			t.Error("a title published tomorrow is shown")
		}
	})

	t.Run("lists", func(t *testing.T) {
		// The web's list, sent at activation.
		until(t, c, "the web's list", func() bool {
			pl, err := c.List(ctx)
			return err == nil && slices.Equal(pl.Titles, []media.ID{alpha})
		})
		pl, _ := c.List(ctx)
		// Edited on the TV: the next version, to customer management and
		// the scheduler.
		tv, err := c.SetList(ctx, []media.ID{bravo, alpha})
		if err != nil || tv.Version != pl.Version+1 || !slices.Equal(tv.Titles, []media.ID{bravo, alpha}) {
			t.Fatalf("TV edit: %+v, %v (held version %d)", tv, err, pl.Version)
		}
		if got, err := c.List(ctx); err != nil || got.Version != tv.Version || !slices.Equal(got.Titles, tv.Titles) {
			t.Errorf("list after the TV's edit: %+v, %v", got, err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			bs, err := he.sched.Box(ctx, box)
			web, werr := he.cust.List(ctx, acct.ID, bref.Ref)
			if err == nil && werr == nil && slices.Equal(bs.List, tv.Titles) && slices.Equal(web.Titles, tv.Titles) && web.Version == tv.Version {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the TV's list did not reach the head-end: scheduler %v (%v), web %+v (%v)", bs.List, err, web, werr)
			}
			time.Sleep(20 * time.Millisecond)
		}
		// Edited on the web: the box takes it.
		web, err := he.cust.ListAdd(ctx, acct.ID, bref.Ref, echo)
		must(t, err)
		until(t, c, "the web's edit", func() bool {
			got, err := c.List(ctx)
			return err == nil && got.Version == web.Version && slices.Equal(got.Titles, web.Titles)
		})
		if !slices.Equal(web.Titles, []media.ID{bravo, alpha, echo}) {
			t.Errorf("web list %v", web.Titles)
		}
		// And through the scheduler's own call (an operator's edit).
		must(t, he.sched.SetPriorityList(ctx, box, []media.ID{echo, later}, 0))
		until(t, c, "the scheduler's list", func() bool {
			got, err := c.List(ctx)
			return err == nil && got.Version == web.Version+1 && slices.Equal(got.Titles, []media.ID{echo, later})
		})
	})

	t.Run("passes and keys", func(t *testing.T) {
		pr, err := c.Pass(ctx, api.PassRequest{Title: alpha})
		if err != nil || pr.Title != alpha || pr.Price != "1.99 EUR" || pr.Reason == "" || len(pr.Pass) != 0 {
			t.Fatalf("pass without confirmation: %+v, %v", pr, err)
		}
		// Two titles at once, answered out of order.
		he.pk.setDelay(200 * time.Millisecond)
		var wg sync.WaitGroup
		got := make([]api.PassResponse, 2)
		for i, title := range []media.ID{alpha, bravo} {
			wg.Go(func() {
				var err error
				got[i], err = c.Pass(ctx, api.PassRequest{Title: title, Confirm: true, Price: "1.99 EUR"})
				if err != nil {
					t.Errorf("pass for %s: %v", title, err)
				}
			})
		}
		wg.Wait()
		he.pk.setDelay(0)
		for i, title := range []media.ID{alpha, bravo} {
			p, err := pass.Parse(got[i].Pass)
			if err != nil || got[i].Title != title || p.Title != title || p.Box != box {
				t.Fatalf("pass for %s: %+v, %v", title, got[i], err)
			}
		}
		// The same title twice at once: each request gets its own answer.
		wg = sync.WaitGroup{}
		same := make([]api.PassResponse, 2)
		for i, confirm := range []bool{false, true} {
			wg.Go(func() {
				var err error
				same[i], err = c.Pass(ctx, api.PassRequest{Title: bravo, Confirm: confirm, Price: map[bool]string{true: "1.99 EUR"}[confirm]})
				if err != nil {
					t.Errorf("pass %d for the same title: %v", i, err)
				}
			})
		}
		wg.Wait()
		if len(same[0].Pass) != 0 || same[0].Reason == "" || len(same[1].Pass) == 0 {
			t.Errorf("same title: the price query got %+v, the confirmation %+v", same[0], same[1])
		}

		kr, err := c.Key(ctx, got[0].Pass)
		if err != nil || kr.Title != alpha || string(kr.WrappedKey) != "key of "+alpha.String() || kr.Reason != "" {
			t.Errorf("key: %+v, %v", kr, err)
		}
		// A pass signed by someone else: the vault's answer has no title,
		// and still reaches the request.
		_, other, _ := ed25519.GenerateKey(rand.Reader)
		forger, err := pass.NewIssuer(other, nil, 0)
		must(t, err)
		p, _ := pass.Parse(got[1].Pass)
		forged, _, err := forger.Issue(pass.Grant{Box: box, BoxKey: p.BoxKey, Title: bravo, NotAfter: time.Now().Add(time.Hour), Account: "alice"})
		must(t, err)
		if kr, err := c.Key(ctx, forged); err != nil || kr.Reason != "bad_signature" || len(kr.WrappedKey) != 0 {
			t.Errorf("key for a forged pass: %+v, %v", kr, err)
		}
		// Refused on the box: not a pass, or another box's.
		if _, err := c.Key(ctx, []byte("not a pass")); !errors.Is(err, local.ErrBadRequest) {
			t.Errorf("key for bytes that are not a pass: %v", err)
		}
		elsewhere, _, err := he.pk.issuer.Issue(pass.Grant{Box: api.BoxID{9}, BoxKey: p.BoxKey, Title: bravo, NotAfter: time.Now().Add(time.Hour), Account: "bob"})
		must(t, err)
		if _, err := c.Key(ctx, elsewhere); !errors.Is(err, local.ErrBadRequest) {
			t.Errorf("key for another box's pass: %v", err)
		}
		he.pk.mu.Lock()
		asked := len(he.pk.asked)
		he.pk.mu.Unlock()
		if asked != 7 {
			t.Errorf("the head-end was asked %d times, want 5 passes and 2 keys", asked)
		}
	})

	t.Run("store", func(t *testing.T) {
		sc, err := store.Dial(ctx, c.StoreSocket(), piecetest.MediaPub)
		if err != nil {
			t.Fatalf("store socket %q: %v", c.StoreSocket(), err)
		}
		defer sc.Close()
		have, err := sc.Have(held.ID())
		if err != nil || have.Count() != 4 {
			t.Errorf("store through its socket: %v, %v", have, err)
		}
		ps, err := c.Progress(ctx, []media.ID{held.ID(), alpha})
		if err != nil || ps[held.ID()] != (local.Progress{Have: 4, Pieces: held.Manifest.NumPieces()}) || ps[alpha] != (local.Progress{}) {
			t.Errorf("progress: %v, %v", ps, err)
		}
	})

	// A restart, with the head-end out of reach: the catalog and the list
	// are the box's own, and the TV learns why it is offline.
	catalog := catalogTitles(t, c)
	list, err := c.List(ctx)
	must(t, err)
	d.halt()
	o.HeadEnd = closedAddr(t)
	d = startDaemon(t, o)
	c = d.c
	if got := catalogTitles(t, c); !slices.Equal(got, catalog) {
		t.Errorf("catalog after a restart: %v, want %v", got, catalog)
	}
	if got, err := c.List(ctx); err != nil || got.Version != list.Version || !slices.Equal(got.Titles, list.Titles) {
		t.Errorf("list after a restart: %+v, %v, want %+v", got, err, list)
	}
	until(t, c, "the connection error", func() bool {
		s, err := c.Status(ctx)
		return err == nil && s.Activated && !s.NeedsCode && !s.Connected && s.Error != "" && s.Box == box
	})
	s, _ = c.Status(ctx)
	t.Logf("offline, the TV shows: %q", s.Error)
	if _, err := c.Pass(ctx, api.PassRequest{Title: alpha}); !errors.Is(err, local.ErrNotConnected) {
		t.Errorf("pass while offline: %v", err)
	}
	d.halt()
	if _, err := os.Stat(o.Local); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("local socket left behind: %v", err)
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := l.Addr().String()
	l.Close()
	return addr
}
