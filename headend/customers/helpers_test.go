package customers_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/headend/customers/boltstore"
	"github.com/boxswarm/boxswarm/headend/customers/custtest"
	"github.com/boxswarm/boxswarm/headend/customers/pgstore"
	"github.com/boxswarm/boxswarm/internal/pgtest"
	"github.com/boxswarm/boxswarm/media"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var (
	ctx   = context.Background()
	quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
	// fastPW keeps tests quick; the default costs about 0.1 s a hash.
	fastPW = customers.PasswordParams{Memory: 64, Time: 1, Threads: 1}
	start  = time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
)

// env is a Service on a fresh store with test stand-ins.
type env struct {
	t     *testing.T
	svc   *customers.Service
	store customers.Store
	pay   *custtest.Payments
	act   *custtest.Activator
	sink  *custtest.ListSink
	clock *custtest.Clock
}

func boltStore(t *testing.T) customers.Store {
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "customers.db"), boltstore.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func pgStore(t *testing.T) customers.Store {
	dsn := pgtest.Start(t)
	s, err := pgstore.Open(ctx, dsn, pgstore.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newEnv(t *testing.T, adjust ...func(*customers.Config)) *env {
	return newEnvOn(t, boltStore(t), adjust...)
}

func newEnvOn(t *testing.T, store customers.Store, adjust ...func(*customers.Config)) *env {
	e := &env{t: t, store: store, pay: custtest.NewPayments(), act: custtest.NewActivator(),
		sink: &custtest.ListSink{}, clock: custtest.NewClock(start)}
	cfg := customers.Config{Store: store, Payments: e.pay, Activator: e.act, Lists: e.sink, Log: quiet,
		Now: e.clock.Now, Password: fastPW}
	for _, a := range adjust {
		a(&cfg)
	}
	svc, err := customers.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	return e
}

// Catalog fixture: two subscribed catalogs and one not.
var (
	tMatrix   = mid(1) // studio: rent 3.99, buy 12.99, DE and AT
	tIndie    = mid(2) // indie: rent 1.99, not for sale, everywhere
	tPremiere = mid(3) // studio: published tomorrow
	tUS       = mid(4) // studio: US only
	tOther    = mid(5) // other: not subscribed
	tFree     = mid(6) // indie: free to rent, everywhere
	tLong     = mid(7) // indie: 48-hour window
)

func mid(n byte) media.ID { return media.ID{0xAB, n} }

var eur = func(cents int64) customers.Money { return customers.Money{Amount: cents, Currency: "EUR"} }

func (e *env) catalog() {
	e.t.Helper()
	for _, c := range []customers.Catalog{
		{ID: "studio", Vendor: "Big Studio", Name: "Big Studio Classics"},
		{ID: "indie", Vendor: "Indie House", Name: "Independent Films"},
		{ID: "other", Vendor: "Other", Name: "Other Catalog"},
	} {
		must(e.t, e.svc.PutCatalog(ctx, c))
	}
	past := start.Add(-time.Hour)
	for _, ti := range []customers.Title{
		{Media: tMatrix, Catalog: "studio", Name: "The Matrix", Year: 1999, Genre: "Sci-Fi", Actors: []string{"Keanu Reeves"},
			Directors: []string{"Lana Wachowski"}, Rent: eur(399), Buy: eur(1299), Regions: []string{"DE", "AT"}, PublishAt: past},
		{Media: tIndie, Catalog: "indie", Name: "Indie Drama", Year: 2020, Genre: "Drama", Rent: eur(199),
			Regions: []string{"*"}, PublishAt: past},
		{Media: tPremiere, Catalog: "studio", Name: "Premiere", Year: 2030, Genre: "Drama", Rent: eur(599),
			Regions: []string{"*"}, PublishAt: start.Add(24 * time.Hour)},
		{Media: tUS, Catalog: "studio", Name: "American Only", Year: 2001, Genre: "Drama", Rent: eur(299), Buy: eur(999),
			Regions: []string{"US"}, PublishAt: past},
		{Media: tOther, Catalog: "other", Name: "Elsewhere", Year: 2005, Genre: "Drama", Rent: eur(99),
			Regions: []string{"*"}, PublishAt: past},
		{Media: tFree, Catalog: "indie", Name: "Free Short", Year: 2021, Genre: "Short", Rent: eur(0),
			Regions: []string{"*"}, PublishAt: past},
		{Media: tLong, Catalog: "indie", Name: "Long Weekend", Year: 2022, Genre: "Drama", Rent: eur(299),
			Window: 48 * time.Hour, Regions: []string{"*"}, PublishAt: past},
	} {
		must(e.t, e.svc.PutTitle(ctx, ti))
	}
}

func password(name string) string { return "correct horse " + name }

// signUp creates an account for name in region, subscribed to studio and
// indie, with a box.
func (e *env) signUp(name, region string) (customers.Account, customers.Box) {
	e.t.Helper()
	a, b, err := e.svc.SignUp(ctx, customers.SignUp{
		Name: name, Email: name + "@example.com", Password: password(name),
		Address:      customers.Address{Street: "1 Main Street", City: "Town", Postcode: "12345", Region: region},
		PaymentToken: custtest.TokenOK + "_" + name, Catalogs: []customers.CatalogID{"studio", "indie"},
		Supplier: "Retailer " + name,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return a, b
}

// setToken changes an account's payment token behind the Service's back.
func (e *env) setToken(id customers.AccountID, token string) {
	e.t.Helper()
	must(e.t, e.store.Update(ctx, func(tx customers.Tx) error {
		a, err := tx.Account(id)
		if err != nil {
			return err
		}
		a.PaymentToken = token
		return tx.PutAccount(a)
	}))
}

func (e *env) login(name, addr string) customers.Issued {
	e.t.Helper()
	iss, err := e.svc.Login(ctx, customers.Login{Email: name + "@example.com", Password: password(name), RemoteAddr: addr})
	if err != nil {
		e.t.Fatal(err)
	}
	return iss
}

func (e *env) ledger(id customers.AccountID) []customers.Entry {
	e.t.Helper()
	es, err := e.svc.Ledger(ctx, id, 0, 1000)
	must(e.t, err)
	return es
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: %v, want %v", what, err, target)
	}
}
