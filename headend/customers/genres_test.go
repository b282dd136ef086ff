package customers_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/media"
)

func TestGenres(t *testing.T) {
	for _, b := range []struct {
		name  string
		store func(*testing.T) customers.Store
	}{{"bolt", boltStore}, {"postgres", pgStore}} {
		t.Run(b.name, func(t *testing.T) {
			e := newEnvOn(t, b.store(t))
			e.catalog()
			past := start.Add(-time.Hour)
			// Spellings that fold alike, titles without a genre, and genres
			// only titles the account may not see have.
			for i, ti := range []customers.Title{
				{Catalog: "indie", Name: "Lower Case", Genre: "drama"},
				{Catalog: "indie", Name: "Spaced", Genre: "  Sci-Fi  "},
				{Catalog: "indie", Name: "Untitled Genre", Genre: ""},
				{Catalog: "indie", Name: "Markup", Genre: `<b>Noir</b> & "Pulp"`},
				{Catalog: "indie", Name: "Two  Words", Genre: "Road   Movie"},
				{Catalog: "other", Name: "Not Subscribed", Genre: "Western"},
				{Catalog: "indie", Name: "Tomorrow", Genre: "Horror", PublishAt: start.Add(time.Hour)},
				{Catalog: "studio", Name: "Elsewhere Only", Genre: "Musical", Regions: []string{"FR"}},
			} {
				ti.Media = media.ID{0xC0, byte(i)}
				if ti.PublishAt.IsZero() {
					ti.PublishAt = past
				}
				if ti.Regions == nil {
					ti.Regions = []string{"*"}
				}
				must(t, e.svc.PutTitle(ctx, ti))
			}
			de, _ := e.signUp("alice", "DE")
			us, _ := e.signUp("bob", "US")
			for _, tc := range []struct {
				name    string
				account customers.AccountID
				want    []string
			}{
				{"DE", de.ID, []string{`<b>Noir</b> & "Pulp"`, "Drama", "Road Movie", "Sci-Fi", "Short"}},
				// The Matrix (the one Sci-Fi title but "Spaced") is DE and AT only.
				{"US", us.ID, []string{`<b>Noir</b> & "Pulp"`, "Drama", "Road Movie", "Sci-Fi", "Short"}},
			} {
				got, err := e.svc.Genres(ctx, tc.account)
				if err != nil || !slices.Equal(got, tc.want) {
					t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
				}
			}

			// Publication and subscriptions change the menu. With studio
			// only, DE sees The Matrix alone: Premiere is tomorrow.
			e.clock.Advance(2 * time.Hour)
			must(t, e.svc.Unsubscribe(ctx, de.ID, "indie"))
			if got, err := e.svc.Genres(ctx, de.ID); err != nil || !slices.Equal(got, []string{"Sci-Fi"}) {
				t.Errorf("DE with studio only: %q, %v", got, err)
			}
			must(t, e.svc.Unsubscribe(ctx, de.ID, "studio"))
			if got, err := e.svc.Genres(ctx, de.ID); err != nil || len(got) != 0 {
				t.Errorf("DE with no catalogs: %q, %v", got, err)
			}
			if got, err := e.svc.Genres(ctx, us.ID); err != nil || !slices.Contains(got, "Horror") {
				t.Errorf("US after the publication of Horror: %q, %v", got, err)
			}

			_, err := e.svc.Genres(ctx, "no-such-account")
			wantErr(t, "unknown account", err, customers.ErrUnknownAccount)
		})
	}
}

// TestGenresPages checks a catalog larger than the largest search page
// (Genres once paged through SearchTitles): every title counts.
func TestGenresPages(t *testing.T) {
	for _, b := range []struct {
		name  string
		store func(*testing.T) customers.Store
	}{{"bolt", boltStore}, {"postgres", pgStore}} {
		t.Run(b.name, func(t *testing.T) {
			e := newEnvOn(t, b.store(t))
			e.catalog()
			want := []string{"Drama", "Sci-Fi", "Short"}
			n := 2*customers.MaxPageSize + 17
			for i := range n {
				g := fmt.Sprintf("Genre %03d", i)
				want = append(want, g)
				must(t, e.svc.PutTitle(ctx, customers.Title{
					Media: media.ID{0xD0, byte(i >> 8), byte(i)}, Catalog: "indie", Name: fmt.Sprintf("Title %03d", i),
					Genre: g, Regions: []string{"*"}, PublishAt: start.Add(-time.Hour),
				}))
			}
			slices.SortFunc(want, func(a, b string) int { return strings.Compare(customers.FoldText(a), customers.FoldText(b)) })
			de, _ := e.signUp("alice", "DE")
			got, err := e.svc.Genres(ctx, de.ID)
			if err != nil || !slices.Equal(got, want) {
				t.Fatalf("%d genres, %v; want %d:\ngot  %q\nwant %q", len(got), err, len(want), got, want)
			}
		})
	}
}
