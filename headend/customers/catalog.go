package customers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/boxswarm/boxswarm/media"
)

// Search semantics, shared by every backend so that they answer alike:
// text is folded (FoldText: lower case, runs of white space made one
// space, trimmed) on both sides, a title matches when the folded query is
// a substring of its SearchKey, genres match when their folds are equal,
// and sorting compares folded names byte by byte (PostgreSQL's "C"
// collation), then media IDs.

// FoldText is s as search compares it.
func FoldText(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// SearchKey is the text a query is matched within: the folded name,
// actors and directors, one per line. A folded query holds no line break,
// so it never matches across two of them.
func SearchKey(t Title) string {
	parts := make([]string, 0, 1+len(t.Actors)+len(t.Directors))
	parts = append(parts, FoldText(t.Name))
	for _, a := range t.Actors {
		parts = append(parts, FoldText(a))
	}
	for _, d := range t.Directors {
		parts = append(parts, FoldText(d))
	}
	return strings.Join(parts, "\n")
}

// Visible reports whether a title passes q's filters other than text and
// genre: subscribed catalog, published, allowed in the region.
func (q TitleQuery) Visible(t Title) bool {
	return slices.Contains(q.Catalogs, t.Catalog) && !t.PublishAt.After(q.Now) && t.AllowedIn(q.Region)
}

// Matches reports whether a title is a result of q. It is the reference
// the backends are held to.
func (q TitleQuery) Matches(t Title) bool { return q.matcher()(t) }

// matcher folds q's text and genre once, for matching many titles.
func (q TitleQuery) matcher() func(Title) bool {
	text, genre := FoldText(q.Text), FoldText(q.Genre)
	return func(t Title) bool {
		if !q.Visible(t) || genre != "" && FoldText(t.Genre) != genre {
			return false
		}
		return text == "" || strings.Contains(SearchKey(t), text)
	}
}

// Compare orders two titles as the sort s does.
func (s Sort) Compare(a, b Title) int {
	var c int
	switch s {
	case SortYear:
		c = cmp.Compare(b.Year, a.Year)
	case SortNewest:
		c = b.PublishAt.Compare(a.PublishAt)
	}
	if c != 0 {
		return c
	}
	if c = strings.Compare(FoldText(a.Name), FoldText(b.Name)); c != 0 {
		return c
	}
	return slices.Compare(a.Media[:], b.Media[:])
}

// Valid reports whether s is a known order (empty means SortTitle).
func (s Sort) Valid() bool {
	return s == "" || s == SortTitle || s == SortYear || s == SortNewest
}

// Normalized returns q with defaults filled in and bounds applied.
func (q Query) Normalized() Query {
	if q.Sort == "" {
		q.Sort = SortTitle
	}
	q.Offset = max(q.Offset, 0)
	if q.Limit <= 0 || q.Limit > MaxPageSize {
		q.Limit = MaxPageSize
	}
	return q
}

// Search answers a query from the titles given, as a reference: the bbolt
// backend uses it, and storetest holds PostgreSQL to it.
func Search(q TitleQuery, titles []Title) Page {
	q.Query = q.Query.Normalized()
	var hits []Title
	match := q.matcher()
	for _, t := range titles {
		if match(t) {
			hits = append(hits, t)
		}
	}
	slices.SortFunc(hits, q.Sort.Compare)
	p := Page{Total: len(hits), Offset: q.Offset, Limit: q.Limit}
	if q.Offset < len(hits) {
		p.Titles = hits[q.Offset:min(len(hits), q.Offset+q.Limit)]
	}
	return p
}

// Limits on catalog text.
const (
	maxTitleText = 1000
	maxPeople    = 200
)

// PutCatalog adds or changes a catalog (operators).
func (s *Service) PutCatalog(ctx context.Context, c Catalog) error {
	if err := checkField("catalog ID", string(c.ID), 1, 100); err != nil {
		return err
	}
	if err := errors.Join(checkField("vendor", c.Vendor, 1, maxTitleText), checkField("catalog name", c.Name, 1, maxTitleText)); err != nil {
		return err
	}
	if err := s.store.Update(ctx, func(tx Tx) error { return tx.PutCatalog(c) }); err != nil {
		return fmt.Errorf("customers: store catalog %q: %w", c.ID, err)
	}
	return nil
}

// Catalogs returns every catalog, for sign-up and subscription pages.
func (s *Service) Catalogs(ctx context.Context) ([]Catalog, error) {
	var cs []Catalog
	err := s.store.View(ctx, func(tx ReadTx) error {
		var err error
		cs, err = tx.Catalogs()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("customers: catalogs: %w", err)
	}
	return cs, nil
}

// PutTitle adds or changes a title (operators and import). Its catalog
// must exist, and a media ID stays in the catalog it was first put in.
func (s *Service) PutTitle(ctx context.Context, t Title) error {
	if err := checkTitle(t); err != nil {
		return fmt.Errorf("customers: title %s: %w", t.Media, err)
	}
	t.PublishAt = StoreTime(t.PublishAt)
	err := s.store.Update(ctx, func(tx Tx) error {
		if _, err := tx.Catalog(t.Catalog); err != nil {
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("%w %q", ErrUnknownCatalog, t.Catalog)
			}
			return err
		}
		old, err := tx.Title(t.Media)
		switch {
		case err == nil && old.Catalog != t.Catalog:
			return fmt.Errorf("%w: it is in catalog %q, not %q", ErrInvalid, old.Catalog, t.Catalog)
		case err != nil && !errors.Is(err, ErrNotFound):
			return err
		}
		return tx.PutTitle(t)
	})
	if err != nil {
		return fmt.Errorf("customers: store title %s: %w", t.Media, err)
	}
	return nil
}

func checkTitle(t Title) error {
	if t.Media == (media.ID{}) {
		return fmt.Errorf("%w: zero media ID", ErrInvalid)
	}
	errs := []error{
		checkField("catalog", string(t.Catalog), 1, 100),
		checkField("name", t.Name, 1, maxTitleText),
		checkField("genre", t.Genre, 0, 100),
		checkField("language", t.Language, 0, 100),
		checkField("rating", t.Rating, 0, 100),
		checkPrice("rental price", t.Rent),
		checkPrice("purchase price", t.Buy),
	}
	for name, people := range map[string][]string{"actors": t.Actors, "directors": t.Directors, "producers": t.Producers} {
		if len(people) > maxPeople {
			errs = append(errs, fmt.Errorf("%w: %d %s, at most %d", ErrInvalid, len(people), name, maxPeople))
		}
		for _, p := range people {
			errs = append(errs, checkField(name, p, 1, maxTitleText))
		}
	}
	if len(t.Regions) == 0 {
		errs = append(errs, fmt.Errorf("%w: no regions: the title could be sold nowhere", ErrInvalid))
	}
	for _, r := range t.Regions {
		if r != WildcardRegion {
			errs = append(errs, checkRegion(r))
		}
	}
	if t.Year < 0 || t.Year > 9999 {
		errs = append(errs, fmt.Errorf("%w: year %d", ErrInvalid, t.Year))
	}
	if t.Window < 0 {
		errs = append(errs, fmt.Errorf("%w: rental window %v", ErrInvalid, t.Window))
	}
	errs = append(errs, ValidTime(t.PublishAt))
	return errors.Join(errs...)
}

// Search returns a page of the titles an account may see: in its
// subscribed catalogs, published, and allowed in its region.
func (s *Service) Search(ctx context.Context, account AccountID, q Query) (Page, error) {
	if !q.Sort.Valid() {
		return Page{}, fmt.Errorf("customers: search: %w: sort %q", ErrInvalid, q.Sort)
	}
	if len(q.Text) > maxTitleText || len(q.Genre) > maxTitleText {
		return Page{}, fmt.Errorf("customers: search: %w: query too long", ErrInvalid)
	}
	if err := errors.Join(ValidText(q.Text), ValidText(q.Genre)); err != nil {
		return Page{}, fmt.Errorf("customers: search: %w: %w", ErrInvalid, err)
	}
	var a Account
	err := s.store.View(ctx, func(tx ReadTx) error {
		var err error
		a, err = readAccount(tx, account)
		return err
	})
	if err != nil {
		return Page{}, fmt.Errorf("customers: search: %w", err)
	}
	tq := TitleQuery{Query: q.Normalized(), Catalogs: a.Catalogs, Region: a.Address.Region, Now: s.clock()}
	p, err := s.store.SearchTitles(ctx, tq)
	if err != nil {
		return Page{}, fmt.Errorf("customers: search %q for %s: %w", q.Text, account, err)
	}
	return p, nil
}

// Title returns one title if the account may see it, with the reason if
// not: ErrUnknownTitle, ErrNotSubscribed, ErrNotPublished or
// ErrRegionBlocked (for the account's home region).
func (s *Service) Title(ctx context.Context, account AccountID, id media.ID) (Title, error) {
	var t Title
	err := s.store.View(ctx, func(tx ReadTx) error {
		a, err := readAccount(tx, account)
		if err != nil {
			return err
		}
		t, err = visibleTitle(tx, a, a.Address.Region, id, s.clock())
		return err
	})
	if err != nil {
		return Title{}, fmt.Errorf("customers: title %s for %s: %w", id, account, err)
	}
	return t, nil
}

// visibleTitle reads a title and checks that the account may have it in
// region at now.
func visibleTitle(tx ReadTx, a Account, region string, id media.ID, now time.Time) (Title, error) {
	t, err := tx.Title(id)
	if errors.Is(err, ErrNotFound) {
		return Title{}, fmt.Errorf("%w %s", ErrUnknownTitle, id)
	}
	if err != nil {
		return Title{}, err
	}
	switch {
	case !slices.Contains(a.Catalogs, t.Catalog):
		return Title{}, fmt.Errorf("%s in catalog %q: %w", id, t.Catalog, ErrNotSubscribed)
	case t.PublishAt.After(now):
		return Title{}, fmt.Errorf("%s: published at %s: %w", id, t.PublishAt.Format(time.RFC3339), ErrNotPublished)
	case !t.AllowedIn(region):
		return Title{}, fmt.Errorf("%s in region %q: %w", id, region, ErrRegionBlocked)
	}
	return t, nil
}

// Subscribe adds a catalog to an account's subscriptions; subscribing
// again changes nothing.
func (s *Service) Subscribe(ctx context.Context, account AccountID, catalog CatalogID) error {
	return s.editSubscriptions(ctx, account, catalog, true)
}

// Unsubscribe removes a catalog from an account's subscriptions.
func (s *Service) Unsubscribe(ctx context.Context, account AccountID, catalog CatalogID) error {
	return s.editSubscriptions(ctx, account, catalog, false)
}

func (s *Service) editSubscriptions(ctx context.Context, account AccountID, catalog CatalogID, add bool) error {
	err := s.store.Update(ctx, func(tx Tx) error {
		a, err := readAccount(tx, account)
		if err != nil {
			return err
		}
		has := slices.Contains(a.Catalogs, catalog)
		switch {
		case add && has, !add && !has:
			return nil
		case add:
			if _, err := tx.Catalog(catalog); errors.Is(err, ErrNotFound) {
				return fmt.Errorf("%w %q", ErrUnknownCatalog, catalog)
			} else if err != nil {
				return err
			}
			a.Catalogs = append(slices.Clip(a.Catalogs), catalog)
		default:
			a.Catalogs = slices.DeleteFunc(slices.Clone(a.Catalogs), func(c CatalogID) bool { return c == catalog })
		}
		a.Updated = s.clock()
		return tx.PutAccount(a)
	})
	if err != nil {
		return fmt.Errorf("customers: subscription of %s to %q: %w", account, catalog, err)
	}
	return nil
}
