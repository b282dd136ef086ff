package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/headend/customers"
)

// refGenres is the genre menu of the titles q admits, worked out from
// TitleQuery.Visible without customers.GenreSet: one genre per fold, the
// least of its spellings with white space runs made one space, in the
// order of the folds.
func refGenres(q customers.TitleQuery, all []customers.Title) []string {
	least := map[string]string{}
	for _, t := range all {
		fold := customers.FoldText(t.Genre)
		if !q.Visible(t) || fold == "" {
			continue
		}
		spelled := strings.Join(strings.Fields(t.Genre), " ")
		if old, ok := least[fold]; !ok || spelled < old {
			least[fold] = spelled
		}
	}
	genres := slices.Collect(maps.Values(least))
	slices.SortFunc(genres, func(a, b string) int { return strings.Compare(customers.FoldText(a), customers.FoldText(b)) })
	return genres
}

func putTitles(t *testing.T, s customers.Store, titles []customers.Title) {
	t.Helper()
	update(t, s, func(tx customers.Tx) error {
		for _, ti := range titles {
			must(t, tx.PutTitle(ti))
		}
		return nil
	})
}

// testGenresSemantics pins the menu on a small catalog: spellings that
// fold alike, white space, and every filter of Visible.
func testGenresSemantics(t *testing.T, s customers.Store, _ *harness) {
	genres := []struct {
		genre   string
		catalog customers.CatalogID
		regions []string
		publish time.Duration // from base
	}{
		{"drama", "indie", []string{"*"}, -time.Hour},
		{"Drama", "studio", []string{"DE"}, -time.Hour},
		{"  Sci-Fi\t", "studio", []string{"DE", "AT"}, -time.Hour},
		{"sci-fi", "indie", []string{"*"}, -time.Hour},
		// The least spelling is chosen after white space is made one
		// space: "Noir", though " noir" is the least as stored.
		{" noir", "indie", []string{"DE"}, -time.Hour},
		{"Noir", "indie", []string{"DE"}, -time.Hour},
		{"üNÏCODE", "indie", []string{"DE"}, -time.Hour},
		{"Ünïcode", "indie", []string{"DE"}, -time.Hour},
		{"Road \u00a0 Movie", "indie", []string{"DE"}, 0}, // published exactly now; a no-break space is white space
		{`<b>Noir</b> & "Pulp"`, "indie", []string{"DE"}, -time.Hour},
		{"", "indie", []string{"DE"}, -time.Hour},
		{" \t\n", "indie", []string{"DE"}, -time.Hour},
		{"Western", "other", []string{"*"}, -time.Hour},          // not subscribed
		{"Horror", "indie", []string{"*"}, time.Microsecond},     // not yet published
		{"Musical", "studio", []string{"FR", "US"}, -time.Hour},  // not allowed in DE
		{"Jazz", "studio", []string{"AT", "*"}, -24 * time.Hour}, // allowed everywhere
		{"DRAMA  ", "other", []string{"*"}, -time.Hour},          // would be the least spelling, but not subscribed
		{"Sci-fi", "studio", []string{"US"}, -time.Hour},         // the same, not allowed in DE
		{"Comedy", "indie", []string{"de"}, -time.Hour},          // regions match exactly
		{"Documentary", "Indie", []string{"*"}, -time.Hour},      // so do catalogs
		{"Thriller", "studio", []string{"DE"}, 1000 * time.Hour}, // far future
	}
	var all []customers.Title
	for i, g := range genres {
		all = append(all, stored(customers.Title{
			Media: mediaID(uint64(i + 1)), Catalog: g.catalog, Name: fmt.Sprintf("Title %d", i), Genre: g.genre,
			Regions: g.regions, PublishAt: base.Add(g.publish),
		}))
	}
	putTitles(t, s, all)
	subscribed := []customers.CatalogID{"studio", "indie"}
	cases := []struct {
		name string
		q    customers.TitleQuery
		want []string
	}{
		{"DE", customers.TitleQuery{Catalogs: subscribed, Region: "DE", Now: base},
			[]string{`<b>Noir</b> & "Pulp"`, "Drama", "Jazz", "Noir", "Road Movie", "Sci-Fi", "Ünïcode"}},
		{"the Query is ignored", customers.TitleQuery{Query: customers.Query{Text: "nothing at all", Genre: "Drama", Limit: 1},
			Catalogs: subscribed, Region: "DE", Now: base},
			[]string{`<b>Noir</b> & "Pulp"`, "Drama", "Jazz", "Noir", "Road Movie", "Sci-Fi", "Ünïcode"}},
		// "Sci-fi" is the least of the spellings seen from the US.
		{"US", customers.TitleQuery{Catalogs: subscribed, Region: "US", Now: base},
			[]string{"drama", "Jazz", "Musical", "Sci-fi"}},
		{"a microsecond earlier", customers.TitleQuery{Catalogs: []customers.CatalogID{"indie"}, Region: "DE", Now: base.Add(-time.Microsecond)},
			[]string{`<b>Noir</b> & "Pulp"`, "drama", "Noir", "sci-fi", "Ünïcode"}},
		{"one catalog", customers.TitleQuery{Catalogs: []customers.CatalogID{"studio"}, Region: "AT", Now: base},
			[]string{"Jazz", "Sci-Fi"}},
		{"no catalogs", customers.TitleQuery{Catalogs: []customers.CatalogID{}, Region: "DE", Now: base}, nil},
		{"nil catalogs", customers.TitleQuery{Region: "DE", Now: base}, nil},
		{"everything, later", customers.TitleQuery{Catalogs: []customers.CatalogID{"studio", "indie", "other", "Indie"}, Region: "DE",
			Now: base.Add(2000 * time.Hour)},
			[]string{`<b>Noir</b> & "Pulp"`, "Documentary", "DRAMA", "Horror", "Jazz", "Noir", "Road Movie", "Sci-Fi", "Thriller",
				"Western", "Ünïcode"}},
	}
	for _, tc := range cases {
		got, err := s.Genres(context.Background(), tc.q)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
		// The reference agrees, or the test is wrong.
		if ref := refGenres(tc.q, all); !slices.Equal(ref, tc.want) {
			t.Errorf("%s: the reference says %q", tc.name, ref)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Genres(ctx, cases[0].q); !errors.Is(err, context.Canceled) {
		t.Errorf("genres with a done context: %v", err)
	}
}

// testGenresModel compares the genres of random catalogs with the
// reference, hostile strings among the genres.
func testGenresModel(t *testing.T, s customers.Store, _ *harness) {
	rng := rand.New(rand.NewPCG(3, 4))
	genres := []string{"Drama", "drama", " DRAMA", "Sci-Fi", "sci-fi\t", "Sci  Fi", "Comedy", "", "  ", "Ünïcode", "ünïcode",
		"Straße", "STRASSE", "İstanbul", "istanbul"}
	for _, h := range HostileStrings {
		genres = append(genres, h[:min(len(h), 4096)], strings.ToUpper(h[:min(len(h), 100)]))
	}
	regions := [][]string{{"DE"}, {"AT"}, {"*"}, {"DE", "AT"}, {"US"}}
	cats := []customers.CatalogID{"one", "two", "three", "four"}
	var all []customers.Title
	for i := range 400 {
		all = append(all, stored(customers.Title{
			Media: mediaID(uint64(i + 1)), Catalog: cats[rng.IntN(len(cats))], Name: fmt.Sprintf("T%d", i),
			Genre: genres[rng.IntN(len(genres))], Regions: regions[rng.IntN(len(regions))],
			PublishAt: base.Add(time.Duration(rng.IntN(20)-15) * time.Hour),
		}))
	}
	putTitles(t, s, all)
	for i := range 60 {
		var qc []customers.CatalogID
		for _, c := range cats {
			if rng.IntN(2) == 0 {
				qc = append(qc, c)
			}
		}
		q := customers.TitleQuery{
			Catalogs: qc, Region: []string{"DE", "AT", "US", "*", ""}[rng.IntN(5)],
			Now: base.Add(time.Duration(rng.IntN(24)-18) * time.Hour),
		}
		got, err := s.Genres(context.Background(), q)
		if err != nil {
			t.Fatalf("query %d %+v: %v", i, q, err)
		}
		if want := refGenres(q, all); !slices.Equal(got, want) {
			t.Errorf("query %d (catalogs %q, region %q, now %s):\ngot  %.500q\nwant %.500q", i, q.Catalogs, q.Region, q.Now, got, want)
		}
	}
}

// BenchGenres measures Store.Genres over n titles, all visible (the
// documentation quotes 15,000), and for comparison paging through them
// with SearchTitles, which is how genres were collected before
// Store.Genres.
func BenchGenres(b *testing.B, backend Backend, n int) {
	h := &harness{open: backend(b)}
	s := h.store(b)
	cats := []customers.CatalogID{"studio", "indie", "arthouse", "kids", "other"}
	genres := []string{"Drama", "Comedy", "Sci-Fi", "Documentary", "Horror", "Thriller", "Romance", "Animation",
		"Western", "Musical", "Crime", "War", "Family", "Sport", "History", "Music", "Mystery", "Fantasy", "Adventure", "Action"}
	regions := [][]string{{"*"}, {"DE", "AT"}, {"DE"}, {"AT", "DE", "CH"}}
	rng := rand.New(rand.NewPCG(5, 6))
	for start := 0; start < n; start += 1000 {
		update(b, s, func(tx customers.Tx) error {
			for i := start; i < min(n, start+1000); i++ {
				g := genres[rng.IntN(len(genres))]
				if rng.IntN(10) == 0 {
					g = strings.ToLower(g) + " "
				}
				ti := SampleTitle(uint64(i+1), cats[rng.IntN(len(cats))])
				ti.Genre, ti.Regions = g, regions[rng.IntN(len(regions))]
				ti.PublishAt = base.Add(-time.Duration(rng.IntN(1000)) * time.Hour)
				if err := tx.PutTitle(ti); err != nil {
					return err
				}
			}
			return nil
		})
	}
	q := customers.TitleQuery{Catalogs: cats, Region: "DE", Now: base}
	visible, err := s.SearchTitles(context.Background(), q)
	if err != nil {
		b.Fatal(err)
	}
	if visible.Total != n {
		b.Fatalf("%d titles visible, want %d", visible.Total, n)
	}
	var want []string
	b.Run("Genres", func(b *testing.B) {
		for b.Loop() {
			got, err := s.Genres(context.Background(), q)
			if err != nil {
				b.Fatal(err)
			}
			want = got
		}
	})
	b.Run("SearchPages", func(b *testing.B) {
		for b.Loop() {
			var g customers.GenreSet
			pq := q
			pq.Limit = customers.MaxPageSize
			for {
				p, err := s.SearchTitles(context.Background(), pq)
				if err != nil {
					b.Fatal(err)
				}
				for _, ti := range p.Titles {
					g.Add(ti.Genre)
				}
				pq.Offset += len(p.Titles)
				if len(p.Titles) == 0 || pq.Offset >= p.Total {
					break
				}
			}
			if got := g.List(); want != nil && !slices.Equal(got, want) {
				b.Fatalf("pages give %q, Genres %q", got, want)
			}
		}
	})
}
