package custtest_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/headend/customers/boltstore"
	"github.com/boxswarm/boxswarm/headend/customers/custtest"
	"github.com/boxswarm/boxswarm/headend/customers/pgstore"
	"github.com/boxswarm/boxswarm/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var (
	quiet    = slog.New(slog.NewTextHandler(io.Discard, nil))
	bulkNow  = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	bulkSpec = custtest.Bulk{Titles: 300, Accounts: 700, Password: "correct horse battery", Now: bulkNow, Seed: 7, Batch: 250}
)

func boltBackend(t *testing.T) customers.Store {
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "customers.db"), boltstore.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func pgBackend(t *testing.T) customers.Store {
	dsn := pgtest.Start(t)
	s, err := pgstore.Open(context.Background(), dsn, pgstore.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func bulkService(t *testing.T, store customers.Store) *customers.Service {
	t.Helper()
	svc, err := customers.New(customers.Config{Store: store, Payments: custtest.NewPayments(), Activator: custtest.NewActivator(),
		Log: quiet, Now: custtest.NewClock(bulkNow).Now, Password: customers.PasswordParams{Memory: 64, Time: 1, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// TestLoadBulk loads a small customer base into each backend and uses it
// as a viewer would: log in, open the box's list, search.
func TestLoadBulk(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		store func(*testing.T) customers.Store
	}{{"bolt", boltBackend}, {"postgres", pgBackend}} {
		t.Run(tc.name, func(t *testing.T) {
			store := tc.store(t)
			svc := bulkService(t, store)
			l, err := custtest.LoadBulk(ctx, svc, store, bulkSpec)
			if err != nil {
				t.Fatal(err)
			}
			if l.Accounts() != bulkSpec.Accounts || len(l.Titles) != bulkSpec.Titles || len(l.Catalogs) != 3 {
				t.Fatalf("loaded %d accounts, %d titles, %d catalogs", l.Accounts(), len(l.Titles), len(l.Catalogs))
			}
			err = store.View(ctx, func(tx customers.ReadTx) error {
				if _, err := tx.AccountByEmail(l.Email(bulkSpec.Accounts - 1)); err != nil {
					return err
				}
				if _, err := tx.AccountByEmail(l.Email(bulkSpec.Accounts)); !errors.Is(err, customers.ErrNotFound) {
					t.Errorf("account past the last: %v, want ErrNotFound", err)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}

			seesFewer := false
			for _, i := range []int{0, 1, 249, 250, 251, 699} {
				iss, err := svc.Login(ctx, customers.Login{Email: l.Email(i), Password: l.Password, RemoteAddr: "192.0.2.1:1"})
				if err != nil {
					t.Fatalf("log-in of account %d: %v", i, err)
				}
				if iss.Account != l.Account(i) {
					t.Errorf("log-in of %s gave account %s, want %s", l.Email(i), iss.Account, l.Account(i))
				}
				boxes, err := svc.Boxes(ctx, l.Account(i))
				if err != nil || len(boxes) != 1 || boxes[0].Ref != l.Box(i) || boxes[0].Region != l.Region(i) {
					t.Fatalf("boxes of account %d: %+v, %v; want %s in %s", i, boxes, err, l.Box(i), l.Region(i))
				}
				list, err := svc.List(ctx, l.Account(i), l.Box(i))
				if err != nil || len(list.Titles) < 3 || len(list.Titles) > 8 {
					t.Fatalf("list of account %d: %v, %v; want 3 to 8 titles", i, list.Titles, err)
				}
				for _, id := range list.Titles {
					if _, err := svc.Title(ctx, l.Account(i), id); err != nil {
						t.Errorf("account %d lists a title it may not see: %v", i, err)
					}
				}
				all, err := svc.Search(ctx, l.Account(i), customers.Query{})
				if err != nil || all.Total == 0 {
					t.Fatalf("browse as account %d: %d titles, %v", i, all.Total, err)
				}
				seesFewer = seesFewer || all.Total < len(l.Titles)
				star, err := svc.Search(ctx, l.Account(i), customers.Query{Text: l.Actors[0]})
				if err != nil || star.Total == 0 || star.Total >= all.Total {
					t.Errorf("search for the most cast actor %q as account %d: %d of %d, %v", l.Actors[0], i, star.Total, all.Total, err)
				}
				none, err := svc.Search(ctx, l.Account(i), customers.Query{Text: "no such words anywhere"})
				if err != nil || none.Total != 0 {
					t.Errorf("search for nothing as account %d: %d titles, %v", i, none.Total, err)
				}
			}
			if !seesFewer {
				t.Error("every account sees every title: subscriptions, regions and premieres are not varied")
			}
			if _, err := svc.Login(ctx, customers.Login{Email: l.Email(3), Password: "wrong password!", RemoteAddr: "192.0.2.1:1"}); !errors.Is(err, customers.ErrBadCredentials) {
				t.Errorf("log-in with a wrong password: %v", err)
			}
		})
	}
}

// TestLoadBulkVaried checks that the catalog is one a search can tell
// apart: many names, every genre, spread years, the same from the same
// seed and another from another.
func TestLoadBulkVaried(t *testing.T) {
	ctx := context.Background()
	load := func(seed uint64) *custtest.Loaded {
		store := boltBackend(t)
		spec := bulkSpec
		spec.Seed, spec.Accounts = seed, 10
		l, err := custtest.LoadBulk(ctx, bulkService(t, store), store, spec)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	a, b, c := load(1), load(1), load(2)
	names := map[string]bool{}
	genres := map[string]bool{}
	years := map[int]bool{}
	for i, ti := range a.Titles {
		names[ti.Name], genres[ti.Genre], years[ti.Year] = true, true, true
		if b.Titles[i].Name != ti.Name || b.Titles[i].Media != ti.Media || !slices.Equal(b.Titles[i].Actors, ti.Actors) {
			t.Fatalf("title %d differs between loads with the same seed: %+v, %+v", i, ti, b.Titles[i])
		}
	}
	if len(names) < len(a.Titles)*9/10 || len(genres) != len(a.Genres) || len(years) < 40 {
		t.Errorf("%d titles have %d names, %d of %d genres, %d years", len(a.Titles), len(names), len(genres), len(a.Genres), len(years))
	}
	same := 0
	for i := range a.Titles {
		if a.Titles[i].Name == c.Titles[i].Name {
			same++
		}
	}
	if same > len(a.Titles)/10 {
		t.Errorf("%d of %d names the same with another seed", same, len(a.Titles))
	}
}

// TestLoadBulkRefuses checks the spec is checked before anything is
// written.
func TestLoadBulkRefuses(t *testing.T) {
	for name, spec := range map[string]custtest.Bulk{
		"no titles":    {Accounts: 1, Password: bulkSpec.Password, Now: bulkNow},
		"no accounts":  {Titles: 1, Password: bulkSpec.Password, Now: bulkNow},
		"no time":      {Titles: 1, Accounts: 1, Password: bulkSpec.Password},
		"list too big": {Titles: 1, Accounts: 1, Password: bulkSpec.Password, Now: bulkNow, MinList: 1, MaxList: customers.MaxListTitles + 1},
	} {
		t.Run(name, func(t *testing.T) {
			store := boltBackend(t)
			if _, err := custtest.LoadBulk(context.Background(), bulkService(t, store), store, spec); err == nil {
				t.Fatal("loaded")
			}
			cs, err := bulkService(t, store).Catalogs(context.Background())
			if err != nil || len(cs) != 0 {
				t.Errorf("catalogs after a refused load: %v, %v", cs, err)
			}
		})
	}
}
