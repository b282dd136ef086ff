package boltstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/media"
)

// The title index keeps every title decoded in memory, with its search
// keys folded once, and each of the three search orders sorted, so that a
// search is one pass over an order with no decoding and no sorting.
//
// It is correct because this process is the file's only writer
// (boltfile's lock) and every title write goes through Store.Update,
// which applies the transaction's titles to a built index only after
// bbolt committed them, under Store.wmu, so changes arrive in commit
// order. It is built at the first search from one read transaction while
// holding mu, so an Update that committed before that snapshot is in it
// and one that commits after it waits for mu and applies on top.

// indexed is one title as the index keeps it. It is never changed once
// made; a new version of the title replaces it.
type indexed struct {
	t     customers.Title
	key   string // customers.SearchKey(t)
	name  string // customers.FoldText(t.Name), the sort key
	genre string // customers.FoldText(t.Genre)
}

func newIndexed(t customers.Title) *indexed {
	return &indexed{t: t, key: customers.SearchKey(t), name: customers.FoldText(t.Name), genre: customers.FoldText(t.Genre)}
}

// sorts are the orders the index keeps; every other Sort value compares
// as SortTitle does (customers.Sort.Compare).
var sorts = [...]customers.Sort{customers.SortTitle, customers.SortYear, customers.SortNewest}

// compare orders two titles as customers.Sort.Compare does, with the names
// folded beforehand.
func compare(s customers.Sort, a, b *indexed) int {
	var c int
	switch s {
	case customers.SortYear:
		c = cmp.Compare(b.t.Year, a.t.Year)
	case customers.SortNewest:
		c = b.t.PublishAt.Compare(a.t.PublishAt)
	}
	if c != 0 {
		return c
	}
	if c = strings.Compare(a.name, b.name); c != 0 {
		return c
	}
	return slices.Compare(a.t.Media[:], b.t.Media[:])
}

// rebuildBelow is how many changed titles an apply inserts one by one;
// more than that and it sorts each order again.
const rebuildBelow = 64

type titleIndex struct {
	mu     sync.RWMutex
	built  bool
	closed bool
	byID   map[media.ID]*indexed
	orders [len(sorts)][]*indexed
}

// load builds the index from the file if it is not built: a title that
// does not decode leaves it unbuilt and fails the search, as every search
// before it would have.
func (x *titleIndex) load(ctx context.Context, db *bolt.DB) error {
	x.mu.RLock()
	built, closed := x.built, x.closed
	x.mu.RUnlock()
	if closed {
		return berrors.ErrDatabaseNotOpen
	}
	if built {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return berrors.ErrDatabaseNotOpen
	}
	if x.built {
		return nil
	}
	byID := map[media.ID]*indexed{}
	err := db.View(func(btx *bolt.Tx) error {
		c := btx.Bucket(bTitles).Cursor()
		n := 0
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if n++; n%256 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			var t customers.Title
			if err := decode(v, &t); err != nil {
				return fmt.Errorf("boltstore: title %x: %w", k, err)
			}
			byID[t.Media] = newIndexed(t)
		}
		return nil
	})
	if err != nil {
		return err
	}
	x.byID = byID
	for i := range sorts {
		x.sortOrder(i)
	}
	x.built = true
	return nil
}

func (x *titleIndex) sortOrder(i int) {
	o := x.orders[i][:0]
	for _, e := range x.byID {
		o = append(o, e)
	}
	slices.SortFunc(o, func(a, b *indexed) int { return compare(sorts[i], a, b) })
	x.orders[i] = o
}

// apply puts titles a committed transaction wrote into a built index; an
// unbuilt one reads them from the file when it is built.
func (x *titleIndex) apply(titles map[media.ID]customers.Title) {
	if len(titles) == 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.built {
		return
	}
	for id, t := range titles {
		e := newIndexed(t)
		old := x.byID[id]
		x.byID[id] = e
		if len(titles) < rebuildBelow {
			for i, s := range sorts {
				o := x.orders[i]
				if old != nil {
					j, found := slices.BinarySearchFunc(o, old, func(a, b *indexed) int { return compare(s, a, b) })
					if found {
						o = slices.Delete(o, j, j+1)
					}
				}
				j, _ := slices.BinarySearchFunc(o, e, func(a, b *indexed) int { return compare(s, a, b) })
				x.orders[i] = slices.Insert(o, j, e)
			}
		}
	}
	if len(titles) >= rebuildBelow {
		for i := range sorts {
			x.sortOrder(i)
		}
	}
}

// close drops the index: the store answers nothing once closed.
func (x *titleIndex) close() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.closed, x.built, x.byID, x.orders = true, false, nil, [len(sorts)][]*indexed{}
}

// search answers q as customers.Search does over every title.
func (x *titleIndex) search(q customers.TitleQuery) (customers.Page, error) {
	q.Query = q.Query.Normalized()
	text, genre := customers.FoldText(q.Text), customers.FoldText(q.Genre)
	order := 0 // customers.Sort.Compare treats an unknown order as by title
	for i, s := range sorts {
		if s == q.Sort {
			order = i
		}
	}
	p := customers.Page{Offset: q.Offset, Limit: q.Limit}
	x.mu.RLock()
	defer x.mu.RUnlock()
	if !x.built { // closed since load
		return customers.Page{}, berrors.ErrDatabaseNotOpen
	}
	for _, e := range x.orders[order] {
		if genre != "" && e.genre != genre || text != "" && !strings.Contains(e.key, text) || !q.Visible(e.t) {
			continue
		}
		if p.Total >= q.Offset && p.Total-q.Offset < q.Limit {
			p.Titles = append(p.Titles, cloneTitle(e.t))
		}
		p.Total++
	}
	return p, nil
}

// genres answers Store.Genres: each distinct spelling of a visible title's
// genre goes into a customers.GenreSet once.
func (x *titleIndex) genres(q customers.TitleQuery) ([]string, error) {
	var g customers.GenreSet
	seen := map[string]bool{}
	x.mu.RLock()
	defer x.mu.RUnlock()
	if !x.built { // closed since load
		return nil, berrors.ErrDatabaseNotOpen
	}
	for _, e := range x.orders[0] {
		if !seen[e.t.Genre] && q.Visible(e.t) {
			seen[e.t.Genre] = true
			g.Add(e.t.Genre)
		}
	}
	return g.List(), nil
}

// cloneTitle copies t's slices, so that a caller changing a result cannot
// change the index.
func cloneTitle(t customers.Title) customers.Title {
	t.Actors, t.Directors, t.Producers, t.Regions = slices.Clone(t.Actors), slices.Clone(t.Directors), slices.Clone(t.Producers), slices.Clone(t.Regions)
	return t
}
