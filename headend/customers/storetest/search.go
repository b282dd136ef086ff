package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/headend/customers"
)

// titleSpec is a search test's title.
type titleSpec struct {
	name      string
	year      int
	genre     string
	actors    []string
	directors []string
	producers []string
	regions   []string
	publish   time.Duration // from base
	catalog   customers.CatalogID
}

var searchTitles = []titleSpec{
	{"The Matrix", 1999, "Sci-Fi", []string{"Keanu Reeves", "Carrie-Anne Moss"}, []string{"Lana Wachowski"}, []string{"Joel Silver"}, []string{"DE"}, -48 * time.Hour, "studio"},
	{"matrix reloaded", 2003, "sci-fi", []string{"Keanu Reeves"}, []string{"Lilly Wachowski"}, nil, []string{"*"}, -24 * time.Hour, "studio"},
	{"Über den Wolken", 2010, "Drama", []string{"Jürgen Prochnow"}, nil, nil, []string{"DE", "AT"}, -time.Hour, "indie"},
	{"50% Off", 2020, "Comedy", []string{"Ann_Smith"}, nil, nil, []string{"DE"}, -2 * time.Hour, "indie"},
	{"500 Days", 2009, "Comedy", []string{"AnnXSmith"}, nil, nil, []string{"DE"}, -3 * time.Hour, "indie"},
	{"Spaced   Out\tFilm", 2015, "Drama", nil, nil, nil, []string{"DE"}, -3 * time.Hour, "indie"},
	{`Back\slash`, 2015, "Documentary", []string{`C:\Path`}, nil, nil, []string{"DE"}, 0, "indie"}, // published exactly now
	{"Blocked", 2001, "Drama", nil, nil, nil, []string{"US"}, -time.Hour, "studio"},
	{"Premiere", 2024, "Drama", nil, nil, nil, []string{"DE"}, time.Microsecond, "studio"},
	{"Other Catalog Film", 2005, "Drama", nil, nil, nil, []string{"*"}, -time.Hour, "other"},
}

func putSearchTitles(t *testing.T, s customers.Store) {
	update(t, s, func(tx customers.Tx) error {
		for i, sp := range searchTitles {
			ti := customers.Title{
				Media: mediaID(uint64(i + 1)), Catalog: sp.catalog, Name: sp.name, Year: sp.year, Genre: sp.genre,
				Actors: sp.actors, Directors: sp.directors, Producers: sp.producers, Regions: sp.regions,
				PublishAt: base.Add(sp.publish), Rent: customers.Money{Amount: 100, Currency: "EUR"},
			}
			must(t, tx.PutTitle(ti))
		}
		return nil
	})
}

func names(p customers.Page) []string {
	var ns []string
	for _, ti := range p.Titles {
		ns = append(ns, ti.Name)
	}
	return ns
}

func testSearchSemantics(t *testing.T, s customers.Store, _ *harness) {
	putSearchTitles(t, s)
	var (
		matrix   = "The Matrix"
		reloaded = "matrix reloaded"
		uber     = "Über den Wolken"
		off      = "50% Off"
		days     = "500 Days"
		spaced   = "Spaced   Out\tFilm"
		back     = `Back\slash`
	)
	byTitle := []string{off, days, back, reloaded, spaced, matrix, uber}
	subscribed := []customers.CatalogID{"studio", "indie"}
	cases := []struct {
		name  string
		q     customers.Query
		cats  []customers.CatalogID
		reg   string
		want  []string
		total int // if not len(want)
	}{
		{"everything visible, by title", customers.Query{}, nil, "", byTitle, 0},
		{"case-insensitive", customers.Query{Text: "MATRIX"}, nil, "", []string{reloaded, matrix}, 0},
		{"actors", customers.Query{Text: "keanu"}, nil, "", []string{reloaded, matrix}, 0},
		{"directors", customers.Query{Text: "wachowski"}, nil, "", []string{reloaded, matrix}, 0},
		{"not producers", customers.Query{Text: "joel silver"}, nil, "", nil, 0},
		{"percent is literal", customers.Query{Text: "50%"}, nil, "", []string{off}, 0},
		{"lone percent", customers.Query{Text: "%"}, nil, "", []string{off}, 0},
		{"underscore is literal", customers.Query{Text: "_"}, nil, "", []string{off}, 0},
		{"underscore in a word", customers.Query{Text: "ann_smith"}, nil, "", []string{off}, 0},
		{"backslash is literal", customers.Query{Text: `\`}, nil, "", []string{back}, 0},
		{"backslash in an actor", customers.Query{Text: `c:\path`}, nil, "", []string{back}, 0},
		{"backslash before a wildcard", customers.Query{Text: `\%`}, nil, "", nil, 0},
		{"quote", customers.Query{Text: "'"}, nil, "", nil, 0},
		{"unicode folding", customers.Query{Text: "ÜBER"}, nil, "", []string{uber}, 0},
		{"unicode in an actor", customers.Query{Text: "JÜRGEN"}, nil, "", []string{uber}, 0},
		{"white space folds", customers.Query{Text: "  spaced   OUT film "}, nil, "", []string{spaced}, 0},
		{"no match across fields", customers.Query{Text: "reeves\ncarrie"}, nil, "", nil, 0},
		{"within one field", customers.Query{Text: "reeves"}, nil, "", []string{reloaded, matrix}, 0},
		{"genre", customers.Query{Genre: "SCI-FI"}, nil, "", []string{reloaded, matrix}, 0},
		{"genre and text", customers.Query{Text: "0", Genre: "comedy"}, nil, "", []string{off, days}, 0},
		{"genre is exact", customers.Query{Genre: "Com"}, nil, "", nil, 0},
		{"by year, ties by title", customers.Query{Sort: customers.SortYear}, nil, "",
			[]string{off, back, spaced, uber, days, reloaded, matrix}, 0},
		{"newest, ties by title", customers.Query{Sort: customers.SortNewest}, nil, "",
			[]string{back, uber, off, days, spaced, reloaded, matrix}, 0},
		{"first page", customers.Query{Limit: 3}, nil, "", byTitle[:3], 7},
		{"second page", customers.Query{Limit: 3, Offset: 3}, nil, "", byTitle[3:6], 7},
		{"last page", customers.Query{Limit: 3, Offset: 6}, nil, "", byTitle[6:], 7},
		{"past the end", customers.Query{Limit: 3, Offset: 10}, nil, "", nil, 7},
		{"negative offset", customers.Query{Limit: 2, Offset: -5}, nil, "", byTitle[:2], 7},
		{"another region", customers.Query{}, nil, "AT", []string{reloaded, uber}, 0},
		{"one catalog", customers.Query{}, []customers.CatalogID{"studio"}, "", []string{reloaded, matrix}, 0},
		{"no catalogs", customers.Query{}, []customers.CatalogID{}, "", nil, 0},
	}
	for _, tc := range cases {
		q := customers.TitleQuery{Query: tc.q, Catalogs: subscribed, Region: "DE", Now: base}
		if tc.cats != nil {
			q.Catalogs = tc.cats
		}
		if tc.reg != "" {
			q.Region = tc.reg
		}
		p, err := s.SearchTitles(context.Background(), q)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		total := tc.total
		if total == 0 {
			total = len(tc.want)
		}
		if got := names(p); !slices.Equal(got, tc.want) || p.Total != total {
			t.Errorf("%s: %q (total %d), want %q (total %d)", tc.name, got, p.Total, tc.want, total)
		}
		// The reference agrees, or the test is wrong.
		var all []customers.Title
		view(t, s, func(tx customers.ReadTx) error {
			for i := range searchTitles {
				ti, err := tx.Title(mediaID(uint64(i + 1)))
				must(t, err)
				all = append(all, ti)
			}
			return nil
		})
		if ref := customers.Search(q, all); !slices.Equal(names(ref), tc.want) || ref.Total != total {
			t.Errorf("%s: the reference says %q (total %d)", tc.name, names(ref), ref.Total)
		}
	}
}

// testSearchHostile stores titles made of hostile strings and searches for
// each: the store must answer as the reference does, matching only
// literal substrings.
func testSearchHostile(t *testing.T, s customers.Store, _ *harness) {
	var all []customers.Title
	var cats []customers.CatalogID
	for i, h := range HostileStrings {
		// The longest strings are cut, to keep each search quick; their
		// whole length is stored by testHostileStrings, and searched for
		// below.
		h = h[:min(len(h), 4096)]
		cat := customers.CatalogID(fmt.Sprintf("c%d%.1000s", i, h))
		cats = append(cats, cat)
		ti := customers.Title{
			Media: mediaID(uint64(i + 1)), Catalog: cat, Name: h, Genre: h, Actors: []string{h, "x" + h},
			Directors: []string{h + "y"}, Producers: []string{h}, Language: h, Rating: h, Regions: []string{"*", h},
			Rent: customers.Money{Amount: 1, Currency: h}, PublishAt: base.Add(-time.Hour),
		}
		all = append(all, stored(ti))
	}
	update(t, s, func(tx customers.Tx) error {
		for _, ti := range all {
			must(t, tx.PutTitle(ti))
		}
		return nil
	})
	view(t, s, func(tx customers.ReadTx) error {
		for _, want := range all {
			got, err := tx.Title(want.Media)
			must(t, err)
			same(t, fmt.Sprintf("title %.30q", want.Name), got, want)
		}
		return nil
	})
	for i, h := range HostileStrings {
		for _, q := range []customers.Query{{Text: h}, {Genre: h}, {Text: h, Genre: h, Sort: customers.SortNewest}} {
			tq := customers.TitleQuery{Query: q, Catalogs: cats, Region: "DE", Now: base}
			got, err := s.SearchTitles(context.Background(), tq)
			if err != nil {
				t.Errorf("search %d %.30q: %v", i, h, err)
				continue
			}
			want := customers.Search(tq, all)
			if !slices.Equal(names(got), names(want)) || got.Total != want.Total {
				t.Errorf("search %d (text %.30q, genre %.30q): %d titles %.200q, want %d %.200q",
					i, q.Text, q.Genre, got.Total, names(got), want.Total, names(want))
			}
			if customers.FoldText(h) != "" && len(h) <= 4096 && want.Total == 0 {
				t.Errorf("search %d %.30q: the reference found not even the title itself", i, h)
			}
		}
		// The region is a parameter too.
		tq := customers.TitleQuery{Catalogs: cats, Region: h, Now: base}
		got, err := s.SearchTitles(context.Background(), tq)
		if want := customers.Search(tq, all); err != nil || got.Total != want.Total {
			t.Errorf("search in region %.30q: %d titles, %v; want %d", h, got.Total, err, want.Total)
		}
	}
}

// testSearchModel compares random searches over random titles with the
// reference.
func testSearchModel(t *testing.T, s customers.Store, _ *harness) {
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"Alpha", "beta", "GAMMA", "delta", "Ünïcode", "50%", "a_b", `c\d`, "e'f", "  ", "ab", "A"}
	pick := func(n int) string {
		var parts []string
		for range n {
			parts = append(parts, words[rng.IntN(len(words))])
		}
		return strings.Join(parts, " ")
	}
	genres := []string{"Drama", "drama", "Comedy", "Sci-Fi", ""}
	regions := [][]string{{"DE"}, {"AT"}, {"*"}, {"DE", "AT"}, {"US"}}
	cats := []customers.CatalogID{"one", "two", "three"}
	var all []customers.Title
	for i := range 300 {
		ti := customers.Title{
			Media: mediaID(uint64(rng.Uint32())<<16 | uint64(i)), Catalog: cats[rng.IntN(len(cats))],
			Name: pick(1 + rng.IntN(3)), Year: 1950 + rng.IntN(8), Genre: genres[rng.IntN(len(genres))],
			Actors: []string{pick(2)}, Directors: []string{pick(1)}, Producers: []string{pick(1)},
			Regions:   regions[rng.IntN(len(regions))],
			PublishAt: base.Add(time.Duration(rng.IntN(20)-15) * time.Hour),
		}
		all = append(all, stored(ti))
	}
	update(t, s, func(tx customers.Tx) error {
		for _, ti := range all {
			must(t, tx.PutTitle(ti))
		}
		return nil
	})
	sorts := []customers.Sort{"", customers.SortTitle, customers.SortYear, customers.SortNewest}
	for i := range 150 {
		q := customers.TitleQuery{
			Query: customers.Query{
				Sort: sorts[rng.IntN(len(sorts))], Offset: rng.IntN(40), Limit: rng.IntN(30),
			},
			Catalogs: cats[:1+rng.IntN(len(cats))], Region: []string{"DE", "AT", "US"}[rng.IntN(3)], Now: base,
		}
		if rng.IntN(4) > 0 {
			w := words[rng.IntN(len(words))]
			if f := customers.FoldText(w); len(f) > 2 && rng.IntN(2) == 0 {
				w = f[1 : len(f)-1] // part of a word
			}
			q.Text = w
		}
		if rng.IntN(3) == 0 {
			q.Genre = genres[rng.IntN(len(genres))]
		}
		got, err := s.SearchTitles(context.Background(), q)
		must(t, err)
		want := customers.Search(q, all)
		if got.Total != want.Total || got.Offset != want.Offset || got.Limit != want.Limit || len(got.Titles) != len(want.Titles) {
			t.Fatalf("query %d %+v: total %d, %d titles (offset %d, limit %d); want %d, %d (%d, %d)", i, q,
				got.Total, len(got.Titles), got.Offset, got.Limit, want.Total, len(want.Titles), want.Offset, want.Limit)
		}
		for j := range got.Titles {
			same(t, fmt.Sprintf("query %d %+v: result %d", i, q.Query, j), got.Titles[j], want.Titles[j])
		}
	}
}
