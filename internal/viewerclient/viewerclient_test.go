package viewerclient_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/headend/customers/boltstore"
	"github.com/boxswarm/boxswarm/headend/customers/custtest"
	"github.com/boxswarm/boxswarm/headend/web"
	"github.com/boxswarm/boxswarm/internal/viewerclient"
	"github.com/boxswarm/boxswarm/media"
)

// progress says every title is half downloaded.
type progress struct{}

func (progress) Progress(_ context.Context, b customers.Box, titles []media.ID) (map[media.ID]web.TitleProgress, error) {
	out := map[media.ID]web.TitleProgress{}
	for _, t := range titles {
		out[t] = web.TitleProgress{State: web.Downloading, Percent: 50}
	}
	return out, nil
}

func TestViewerJourney(t *testing.T) {
	ctx := t.Context()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "c.db"), boltstore.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	act := custtest.NewActivator()
	cust, err := customers.New(customers.Config{Store: store, Payments: custtest.NewPayments(), Activator: act, Log: quiet,
		Password: customers.PasswordParams{Memory: 64, Time: 1, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	must(t, cust.PutCatalog(ctx, customers.Catalog{ID: "films", Vendor: "V", Name: "Films"}))
	title := media.ID{0xAA, 1}
	must(t, cust.PutTitle(ctx, customers.Title{Media: title, Catalog: "films", Name: "Night <Train>", Year: 2001, Genre: "Drama",
		Rent: customers.Money{Amount: 199, Currency: "EUR"}, Regions: []string{"*"}, PublishAt: time.Now().Add(-time.Hour)}))
	h, err := web.New(web.Config{Customers: cust, Progress: progress{}, Log: quiet, Catalogs: []customers.CatalogID{"films"}})
	must(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()

	c := viewerclient.New(srv.URL)
	form := viewerclient.SignUp{Name: "Ann", Email: "ann@example.com", Password: "correct horse battery", Street: "1 Main St",
		City: "Town", Postcode: "1000", Region: "DE", PaymentToken: custtest.TokenOK}
	code, err := c.SignUp(ctx, form)
	must(t, err)
	if account, ok := act.Account(code); !ok || account == "" {
		t.Fatalf("code %q from the page was not registered", code)
	}
	if err := viewerclient.New(srv.URL).Login(ctx, form.Email, "wrong password!"); err == nil {
		t.Error("a wrong password logged in")
	}
	c = viewerclient.New(srv.URL)
	must(t, c.Login(ctx, form.Email, form.Password))
	must(t, c.Add(ctx, title))
	l, err := c.List(ctx)
	must(t, err)
	if len(l) != 1 || l[0].Title != title || l[0].State != "Downloading" || l[0].Percent != 50 {
		t.Errorf("My List %+v", l)
	}
	if err := c.Add(ctx, media.ID{0xAA, 9}); err == nil {
		t.Error("adding an unknown title succeeded")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
