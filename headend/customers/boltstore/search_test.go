package boltstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/headend/customers/custtest"
	"github.com/boxswarm/boxswarm/headend/customers/storetest"
)

// BenchmarkSearch measures SearchTitles and Genres over the bulk catalog
// of 15,000 titles the customers bench uses, as one account sees it,
// once the title index is built (the first search, logged).
func BenchmarkSearch(b *testing.B) {
	ctx := context.Background()
	now := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	s, err := Open(filepath.Join(b.TempDir(), "customers.db"), quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	svc, err := customers.New(customers.Config{Store: s, Payments: custtest.NewPayments(), Activator: custtest.NewActivator(),
		Log: quietLog, Now: custtest.NewClock(now).Now, Password: customers.PasswordParams{Memory: 64, Time: 1, Threads: 1}})
	if err != nil {
		b.Fatal(err)
	}
	l, err := custtest.LoadBulk(ctx, svc, s, custtest.Bulk{Titles: 15000, Accounts: 1, Password: "correct horse battery", Now: now, Seed: 2})
	if err != nil {
		b.Fatal(err)
	}
	tq := func(q customers.Query) customers.TitleQuery {
		return customers.TitleQuery{Query: q, Catalogs: l.Catalogs, Region: l.Region(0), Now: now}
	}
	start := time.Now()
	if _, err := s.SearchTitles(ctx, tq(customers.Query{})); err != nil {
		b.Fatal(err)
	}
	b.Logf("first search, building the title index: %v", time.Since(start))
	for _, bc := range []struct {
		name string
		q    customers.Query
	}{
		{"browse", customers.Query{Limit: 20}},
		{"browse-year", customers.Query{Sort: customers.SortYear, Limit: 20}},
		{"deep-page", customers.Query{Sort: customers.SortNewest, Offset: 5000, Limit: 20}},
		{"genre", customers.Query{Genre: l.Genres[0], Limit: 20}},
		{"word", customers.Query{Text: l.Words[0], Limit: 20}},
		{"actor", customers.Query{Text: l.Actors[0], Limit: 20}},
		{"nothing", customers.Query{Text: "no such words anywhere", Limit: 20}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.SearchTitles(ctx, tq(bc.q)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("genres", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Genres(ctx, tq(customers.Query{})); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// fileTitles reads every title from the file, bypassing the index.
func fileTitles(t *testing.T, s *Store) []customers.Title {
	t.Helper()
	var all []customers.Title
	err := s.db.View(func(btx *bolt.Tx) error {
		return btx.Bucket(bTitles).ForEach(func(k, v []byte) error {
			var ti customers.Title
			if err := decode(v, &ti); err != nil {
				return fmt.Errorf("title %x: %w", k, err)
			}
			all = append(all, ti)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// indexQueries are searches over the titles TestIndexInStep writes.
func indexQueries(now time.Time) []customers.TitleQuery {
	cats := []customers.CatalogID{"one", "two", "three"}
	var qs []customers.TitleQuery
	for _, q := range []customers.Query{
		{}, {Sort: customers.SortYear}, {Sort: customers.SortNewest, Offset: 7, Limit: 9}, {Sort: "sideways", Limit: 5},
		{Text: "  ACTOR  1"}, {Text: "title 1", Sort: customers.SortYear, Limit: 3}, {Genre: "drama "}, {Genre: "Comedy", Offset: 2},
		{Text: "nothing at all"}, {Offset: 1 << 62, Limit: 3}, {Text: "\n"},
	} {
		qs = append(qs, customers.TitleQuery{Query: q, Catalogs: cats[:2], Region: "DE", Now: now},
			customers.TitleQuery{Query: q, Catalogs: cats, Region: "AT", Now: now.Add(-30 * time.Hour)})
	}
	return qs
}

// checkIndex compares every query's answer with customers.Search over
// the titles in the file.
func checkIndex(t *testing.T, s *Store, step string, now time.Time) {
	t.Helper()
	ctx := context.Background()
	all := fileTitles(t, s)
	for _, q := range indexQueries(now) {
		got, err := s.SearchTitles(ctx, q)
		if err != nil {
			t.Fatalf("%s: search %+v: %v", step, q.Query, err)
		}
		if want := customers.Search(q, all); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: search %+v in %s:\n got %d %v\nwant %d %v", step, q.Query, q.Region, got.Total, titleNames(got), want.Total, titleNames(want))
		}
		var g customers.GenreSet
		for _, ti := range all {
			if q.Visible(ti) {
				g.Add(ti.Genre)
			}
		}
		got2, err := s.Genres(ctx, q)
		if err != nil || !slices.Equal(got2, g.List()) {
			t.Fatalf("%s: genres in %s: %q, %v; want %q", step, q.Region, got2, err, g.List())
		}
	}
}

func titleNames(p customers.Page) []string {
	var n []string
	for _, ti := range p.Titles {
		n = append(n, ti.Name)
	}
	return n
}

// TestIndexInStep changes titles in committed, failed, spoiled and
// panicking Updates, in batches below and above the size at which the
// index re-sorts, and checks after each that searches answer as the
// reference over the file does.
func TestIndexInStep(t *testing.T) {
	path := filepath.Join(t.TempDir(), "customers.db")
	s, err := Open(path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	now := time.Date(2031, 5, 6, 7, 0, 0, 0, time.UTC)
	cats := []customers.CatalogID{"one", "two", "three"}
	genres := []string{"Drama", "drama", " DRAMA", "Comedy", "Sci-Fi", ""}
	regions := [][]string{{"DE"}, {"AT"}, {"*"}, {"DE", "AT"}, {"US"}}
	title := func() customers.Title {
		n := uint64(rng.IntN(400))
		ti := storetest.SampleTitle(n+1, cats[rng.IntN(len(cats))])
		ti.Name = fmt.Sprintf("Title %d%s", rng.IntN(50), []string{"", " b", "  A"}[rng.IntN(3)])
		ti.Year, ti.Genre, ti.Regions = 1990+rng.IntN(5), genres[rng.IntN(len(genres))], regions[rng.IntN(len(regions))]
		ti.PublishAt = now.Add(time.Duration(rng.IntN(60)-50) * time.Hour)
		return ti
	}
	errNo := errors.New("changed my mind")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for step := range 40 {
		batch := make([]customers.Title, 1+rng.IntN(4))
		if step%5 == 0 {
			batch = make([]customers.Title, rebuildBelow+rng.IntN(100))
		}
		for i := range batch {
			batch[i] = title()
		}
		put := func(tx customers.Tx) error {
			for _, ti := range batch {
				if err := tx.PutTitle(ti); err != nil {
					return err
				}
			}
			return nil
		}
		var name string
		switch kind := rng.IntN(6); {
		case step == 0 || kind < 2:
			name = "committed"
			if err := s.Update(ctx, put); err != nil {
				t.Fatal(err)
			}
		case kind == 2:
			name = "failed"
			if err := s.Update(ctx, func(tx customers.Tx) error { _ = put(tx); return errNo }); !errors.Is(err, errNo) {
				t.Fatalf("failed update: %v", err)
			}
		case kind == 3:
			name = "spoiled"
			err := s.Update(ctx, func(tx customers.Tx) error {
				_ = put(tx)
				_ = tx.PutTitle(customers.Title{Name: "no media ID"}) // refused: spoils the Update
				return nil
			})
			if err == nil {
				t.Fatal("spoiled update committed")
			}
		case kind == 4:
			name = "panicked"
			func() {
				defer func() { _ = recover() }()
				_ = s.Update(ctx, func(tx customers.Tx) error { _ = put(tx); panic("boom") })
			}()
		default:
			name = "cancelled"
			if err := s.Update(cancelled, put); err == nil {
				t.Fatal("cancelled update committed")
			}
			name = "cancelled while writing"
			during, cancel := context.WithCancel(ctx)
			err := s.Update(during, func(tx customers.Tx) error { err := put(tx); cancel(); return err })
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("update cancelled while writing: %v", err)
			}
		}
		checkIndex(t, s, fmt.Sprintf("step %d (%s, %d titles)", step, name, len(batch)), now)
	}
	// A result is the caller's: changing it does not change the index.
	q := customers.TitleQuery{Catalogs: cats, Region: "DE", Now: now.Add(time.Hour)}
	p, err := s.SearchTitles(ctx, q)
	if err != nil || len(p.Titles) == 0 {
		t.Fatalf("search: %d titles, %v", len(p.Titles), err)
	}
	p.Titles[0].Regions[0], p.Titles[0].Actors[0] = "XX", "Changed"
	checkIndex(t, s, "after changing a result", now)
	// Reopened, the index is built from the file alone.
	s.Close()
	if s, err = Open(path, quiet); err != nil {
		t.Fatal(err)
	}
	checkIndex(t, s, "reopened", now)
	s.Close()
	if _, err := s.SearchTitles(ctx, q); err == nil {
		t.Error("search on a closed store answered")
	}
	if _, err := s.Genres(ctx, q); err == nil {
		t.Error("genres on a closed store answered")
	}
}

// TestIndexConcurrent writes titles while other goroutines search, from
// before the index is built: whatever order the build and the commits
// happen in, the index ends as the file is.
func TestIndexConcurrent(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "customers.db"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	now := time.Date(2031, 5, 6, 7, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, q := range indexQueries(now)[:4] {
					if _, err := s.SearchTitles(ctx, q); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	var writers sync.WaitGroup
	for w := range 2 {
		writers.Go(func() {
			for i := range 30 {
				n := 1 + rebuildBelow*(i%3)
				err := s.Update(ctx, func(tx customers.Tx) error {
					for j := range n {
						ti := storetest.SampleTitle(uint64(1+(w*1000+i*7+j)%150), []customers.CatalogID{"one", "two"}[j%2])
						ti.Name = fmt.Sprintf("Title %d by %d", i, w)
						ti.PublishAt = now.Add(-time.Duration(j) * time.Hour)
						if err := tx.PutTitle(ti); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	wg.Wait()
	checkIndex(t, s, "after concurrent writes", now)
}
