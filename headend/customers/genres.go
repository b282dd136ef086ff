package customers

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// GenreSet collects the genres of titles as a genre menu lists them, and
// as Store.Genres answers: genres that fold alike (FoldText) are one,
// spelled as the least (byte-wise) of its spellings with runs of white
// space made one space, so that the answer does not depend on the order
// titles are read in or on the backend; genres that fold to "" are none.
// The zero GenreSet is empty.
type GenreSet struct {
	spelling map[string]string // fold → least spelling added
}

// Add adds a title's genre.
func (g *GenreSet) Add(genre string) {
	fold := FoldText(genre)
	if fold == "" {
		return
	}
	spelled := strings.Join(strings.Fields(genre), " ")
	if old, ok := g.spelling[fold]; ok && old <= spelled {
		return
	}
	if g.spelling == nil {
		g.spelling = map[string]string{}
	}
	g.spelling[fold] = spelled
}

// List returns the genres added, ordered by their folds; never nil.
func (g *GenreSet) List() []string {
	folds := make([]string, 0, len(g.spelling))
	for f := range g.spelling {
		folds = append(folds, f)
	}
	slices.Sort(folds)
	genres := make([]string, len(folds))
	for i, f := range folds {
		genres[i] = g.spelling[f]
	}
	return genres
}

// Genres returns the genres of the titles an account may see (the same
// titles Search finds: subscribed catalogs, published, allowed in the
// account's region), for a genre menu, as GenreSet lists them.
//
// The store answers with one scan or query (Store.Genres): with 15,000
// visible titles a call takes about 8 ms on PostgreSQL and 0.4 ms on
// bbolt (its title index in memory; two cores), where paging through
// SearchTitles took 3 s and 37 s.
// The account is read in one snapshot and the titles in another, so a
// subscription changed in between may show in the next call only.
func (s *Service) Genres(ctx context.Context, account AccountID) ([]string, error) {
	var a Account
	err := s.store.View(ctx, func(tx ReadTx) error {
		var err error
		a, err = readAccount(tx, account)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("customers: genres for %s: %w", account, err)
	}
	genres, err := s.store.Genres(ctx, TitleQuery{Catalogs: a.Catalogs, Region: a.Address.Region, Now: s.clock()})
	if err != nil {
		return nil, fmt.Errorf("customers: genres for %s: %w", account, err)
	}
	return genres, nil
}
