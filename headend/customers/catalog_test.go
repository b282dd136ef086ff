package customers_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/media"
)

func titleNames(p customers.Page) []string {
	var ns []string
	for _, ti := range p.Titles {
		ns = append(ns, ti.Name)
	}
	return ns
}

func TestSearchAsAccount(t *testing.T) {
	e := newEnv(t)
	e.catalog()
	de, _ := e.signUp("alice", "DE")
	us, _ := e.signUp("bob", "US")
	cases := []struct {
		name    string
		account customers.AccountID
		q       customers.Query
		want    []string
	}{
		// Not "Premiere" (tomorrow), "American Only" (US), "Elsewhere" (not subscribed).
		{"all, DE", de.ID, customers.Query{}, []string{"Free Short", "Indie Drama", "Long Weekend", "The Matrix"}},
		{"all, US", us.ID, customers.Query{}, []string{"American Only", "Free Short", "Indie Drama", "Long Weekend"}},
		{"text", de.ID, customers.Query{Text: "KEANU"}, []string{"The Matrix"}},
		{"genre", de.ID, customers.Query{Genre: "drama"}, []string{"Indie Drama", "Long Weekend"}},
		{"newest by year", de.ID, customers.Query{Sort: customers.SortYear, Limit: 2}, []string{"Long Weekend", "Free Short"}},
		{"wildcard is literal", de.ID, customers.Query{Text: "%"}, nil},
	}
	for _, tc := range cases {
		p, err := e.svc.Search(ctx, tc.account, tc.q)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := titleNames(p); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	// Publication is a moment: tomorrow, the premiere shows.
	e.clock.Advance(24 * time.Hour)
	p, err := e.svc.Search(ctx, de.ID, customers.Query{Text: "premiere"})
	if err != nil || p.Total != 1 {
		t.Errorf("premiere after publication: %d, %v", p.Total, err)
	}

	for name, q := range map[string]customers.Query{
		"bad sort":       {Sort: "popularity"},
		"NUL":            {Text: "a\x00"},
		"too long":       {Text: strings.Repeat("x", 2000)},
		"invalid UTF-8 ": {Genre: "\xff"},
	} {
		_, err := e.svc.Search(ctx, de.ID, q)
		wantErr(t, name, err, customers.ErrInvalid)
	}
	_, err = e.svc.Search(ctx, "nobody", customers.Query{})
	wantErr(t, "unknown account", err, customers.ErrUnknownAccount)
}

func TestTitleVisibility(t *testing.T) {
	e := newEnv(t)
	e.catalog()
	a, _ := e.signUp("alice", "DE")
	cases := []struct {
		title media.ID
		want  error
	}{
		{tMatrix, nil},
		{tPremiere, customers.ErrNotPublished},
		{tUS, customers.ErrRegionBlocked},
		{tOther, customers.ErrNotSubscribed},
		{mid(99), customers.ErrUnknownTitle},
	}
	for _, tc := range cases {
		ti, err := e.svc.Title(ctx, a.ID, tc.title)
		if !errors.Is(err, tc.want) || tc.want == nil && ti.Media != tc.title {
			t.Errorf("title %s: %v, want %v", tc.title, err, tc.want)
		}
	}
	must(t, e.svc.Subscribe(ctx, a.ID, "other"))
	must(t, e.svc.Subscribe(ctx, a.ID, "other")) // twice changes nothing
	if _, err := e.svc.Title(ctx, a.ID, tOther); err != nil {
		t.Errorf("after subscribing: %v", err)
	}
	acct, _ := e.svc.Account(ctx, a.ID)
	if !slices.Equal(acct.Catalogs, []customers.CatalogID{"studio", "indie", "other"}) {
		t.Errorf("subscriptions %v", acct.Catalogs)
	}
	must(t, e.svc.Unsubscribe(ctx, a.ID, "studio"))
	_, err := e.svc.Title(ctx, a.ID, tMatrix)
	wantErr(t, "after unsubscribing", err, customers.ErrNotSubscribed)
	wantErr(t, "unknown catalog", e.svc.Subscribe(ctx, a.ID, "nope"), customers.ErrUnknownCatalog)
}

func TestPutTitleRefused(t *testing.T) {
	e := newEnv(t)
	e.catalog()
	ok := customers.Title{Media: mid(50), Catalog: "indie", Name: "Fine", Regions: []string{"DE"}, Rent: eur(100)}
	must(t, e.svc.PutTitle(ctx, ok))
	cases := []struct {
		name string
		edit func(*customers.Title)
		want error
	}{
		{"zero media ID", func(ti *customers.Title) { ti.Media = media.ID{} }, customers.ErrInvalid},
		{"no name", func(ti *customers.Title) { ti.Name = "" }, customers.ErrInvalid},
		{"no regions", func(ti *customers.Title) { ti.Regions = nil }, customers.ErrInvalid},
		{"bad region", func(ti *customers.Title) { ti.Regions = []string{"de"} }, customers.ErrInvalid},
		{"bad currency", func(ti *customers.Title) { ti.Rent = customers.Money{Amount: 1, Currency: "euro"} }, customers.ErrInvalid},
		{"negative price", func(ti *customers.Title) { ti.Buy = eur(-1) }, customers.ErrInvalid},
		{"negative window", func(ti *customers.Title) { ti.Window = -time.Hour }, customers.ErrInvalid},
		{"NUL in an actor", func(ti *customers.Title) { ti.Actors = []string{"a\x00"} }, customers.ErrInvalid},
		{"unknown catalog", func(ti *customers.Title) { ti.Catalog = "nope" }, customers.ErrUnknownCatalog},
		{"moved to another catalog", func(ti *customers.Title) { ti.Catalog = "studio" }, customers.ErrInvalid},
	}
	for _, tc := range cases {
		ti := ok
		tc.edit(&ti)
		wantErr(t, tc.name, e.svc.PutTitle(ctx, ti), tc.want)
	}
	wantErr(t, "catalog without a name", e.svc.PutCatalog(ctx, customers.Catalog{ID: "x", Vendor: "v"}), customers.ErrInvalid)
}
