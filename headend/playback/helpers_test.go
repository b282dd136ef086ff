package playback_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/headend/customers/boltstore"
	"github.com/boxswarm/boxswarm/headend/customers/custtest"
	"github.com/boxswarm/boxswarm/headend/pass"
	"github.com/boxswarm/boxswarm/headend/playback"
	"github.com/boxswarm/boxswarm/headend/vault"
	"github.com/boxswarm/boxswarm/media"
)

var (
	ctx   = context.Background()
	quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
	// fastPW keeps sign-ups quick; the default costs about 0.1 s a hash.
	fastPW = customers.PasswordParams{Memory: 64, Time: 1, Threads: 1}
	// start is a whole second: passes keep whole seconds.
	start   = time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
	passKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x50}, 32))

	eur = func(cents int64) customers.Money { return customers.Money{Amount: cents, Currency: "EUR"} }
)

// Titles of the catalog fixture.
var (
	tRent = media.ID{0xAB, 1} // rent 3.99, buy 12.99, 24 h window, DE and AT
	tUS   = media.ID{0xAB, 2} // rent 2.99, US only
	tBuy  = media.ID{0xAB, 3} // buy 9.99 only, everywhere
)

// env is a playback Service on fresh bbolt stores, with every part sharing
// one clock that moves only when told.
type env struct {
	t     *testing.T
	dir   string
	clock *custtest.Clock
	store customers.Store
	pay   *custtest.Payments
	cust  *customers.Service
	vault *vault.Vault
	svc   *playback.Service
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clock: custtest.NewClock(start), pay: custtest.NewPayments()}
	st, err := boltstore.Open(filepath.Join(e.dir, "customers.db"), boltstore.WithLogger(quiet))
	must(t, err)
	t.Cleanup(func() { st.Close() })
	e.store = st
	e.cust, err = customers.New(customers.Config{Store: st, Payments: e.pay, Activator: custtest.NewActivator(),
		Log: quiet, Now: e.clock.Now, Password: fastPW})
	must(t, err)

	mk, err := vault.LoadOrCreateMasterKey(filepath.Join(e.dir, "master.key"))
	must(t, err)
	t.Cleanup(func() { mk.Close() })
	e.vault, err = vault.Open(ctx, vault.Config{Path: filepath.Join(e.dir, "vault.db"), MasterKey: mk,
		PassKeys: []ed25519.PublicKey{passKey.Public().(ed25519.PublicKey)}, Now: e.clock.Now, Logger: quiet})
	must(t, err)
	t.Cleanup(func() { e.vault.Close() })
	issuer, err := pass.NewIssuer(passKey, e.clock.Now, 0)
	must(t, err)

	e.svc, err = playback.New(playback.Config{Customers: e.cust, Issuer: issuer, Vault: e.vault,
		PassWindow: 4 * time.Hour, Now: e.clock.Now, Log: quiet})
	must(t, err)
	return e
}

// catalog adds the fixture's catalog and titles; titles with a media ID in
// extra are added as rentable like tRent.
func (e *env) catalog(extra ...media.ID) {
	e.t.Helper()
	must(e.t, e.cust.PutCatalog(ctx, customers.Catalog{ID: "studio", Vendor: "Big Studio", Name: "Classics"}))
	past := start.Add(-time.Hour)
	titles := []customers.Title{
		{Media: tRent, Catalog: "studio", Name: "The Matrix", Year: 1999, Genre: "Sci-Fi",
			Rent: eur(399), Buy: eur(1299), Regions: []string{"DE", "AT"}, PublishAt: past},
		{Media: tUS, Catalog: "studio", Name: "American Only", Year: 2001, Genre: "Drama",
			Rent: eur(299), Regions: []string{"US"}, PublishAt: past},
		{Media: tBuy, Catalog: "studio", Name: "Keeper", Year: 2010, Genre: "Drama",
			Buy: eur(999), Regions: []string{"*"}, PublishAt: past},
	}
	for i, id := range extra {
		titles = append(titles, customers.Title{Media: id, Catalog: "studio", Name: "Imported " + string(rune('A'+i)),
			Year: 2024, Genre: "Test", Rent: eur(399), Buy: eur(1299), Regions: []string{"DE"}, PublishAt: past})
	}
	for _, ti := range titles {
		must(e.t, e.cust.PutTitle(ctx, ti))
	}
}

// viewer is an account with one activated box.
type viewer struct {
	account customers.AccountID
	box     api.BoxID
	key     ed25519.PrivateKey
	pub     ed25519.PublicKey
}

// signUp creates an account in Germany subscribed to the studio catalog,
// and activates its box as a new device with a new identity key.
func (e *env) signUp(name string) viewer {
	e.t.Helper()
	a, b, err := e.cust.SignUp(ctx, customers.SignUp{
		Name: name, Email: name + "@example.com", Password: "correct horse " + name,
		Address:      customers.Address{Street: "1 Hauptstraße", City: "Berlin", Postcode: "10115", Region: "DE"},
		PaymentToken: custtest.TokenOK + "_" + name, Catalogs: []customers.CatalogID{"studio"}, Supplier: "Retailer",
	})
	must(e.t, err)
	v := viewer{account: a.ID}
	_, _ = rand.Read(v.box[:])
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	must(e.t, err)
	v.key, v.pub = priv, pub
	_, err = e.cust.BoxActivated(ctx, b.Code, v.box)
	must(e.t, err)
	return v
}

// passFor asks for a pass as v's box. Confirming works as a box does: it
// asks, and if it is shown a price, confirms that price.
func (e *env) passFor(v viewer, title media.ID, confirm bool) (api.PassResponse, error) {
	resp, err := e.svc.Pass(ctx, v.box, v.pub, api.PassRequest{Title: title})
	if !confirm || !errors.Is(err, customers.ErrNotConfirmed) {
		return resp, err
	}
	return e.svc.Pass(ctx, v.box, v.pub, api.PassRequest{Title: title, Confirm: true, Price: resp.Price})
}

// mustPass gets a pass for v, confirming if need be.
func (e *env) mustPass(v viewer, title media.ID) []byte {
	e.t.Helper()
	resp, err := e.passFor(v, title, true)
	if err != nil || len(resp.Pass) == 0 {
		e.t.Fatalf("pass for %s: %+v, %v", title, resp, err)
	}
	return resp.Pass
}

// keyFor presents a pass as v's box.
func (e *env) keyFor(v viewer, raw []byte) (api.KeyResponse, error) {
	return e.svc.Key(ctx, v.box, v.pub, api.KeyRequest{Pass: raw})
}

// charges returns the charge entries on an account's ledger, after
// checking that the ledger verifies.
func (e *env) charges(id customers.AccountID) []customers.Entry {
	e.t.Helper()
	_, err := e.cust.VerifyLedger(ctx, id)
	must(e.t, err)
	es, err := e.cust.Ledger(ctx, id, 0, 1000)
	must(e.t, err)
	var out []customers.Entry
	for _, en := range es {
		if en.Kind == customers.EntryCharge {
			out = append(out, en)
		}
	}
	return out
}

// putKey gives the vault a random content key for a title, for tests that
// need no real package.
func (e *env) putKey(id media.ID) {
	e.t.Helper()
	k := make([]byte, media.ContentKeySize)
	_, _ = rand.Read(k)
	must(e.t, e.vault.Put(ctx, id, k))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// isAny reports which of targets err is.
func isAny(err error, targets []error) []error {
	var out []error
	for _, t := range targets {
		if errors.Is(err, t) {
			out = append(out, t)
		}
	}
	return out
}
