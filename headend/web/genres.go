package web

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/boxswarm/boxswarm/headend/customers"
)

// Genre menu caching. customers.Genres reads every title a viewer may see
// (for 15,000 titles, about 8 ms on PostgreSQL, 0.4 ms on bbolt),
// and the menu is on every catalog page.
// So each menu is kept for genreTTL, keyed by what it depends on: the
// account's catalogs and region. The first viewer of a selection waits for
// it (viewers asking meanwhile wait for the same load); after genreTTL the
// old menu is still shown while one load in the background replaces it,
// so only the first viewer ever waits. A failed load is not kept. A genre
// new in the catalog reaches the menu within genreTTL and one load.
const (
	genreTTL         = 5 * time.Minute
	genreLoadTimeout = 2 * time.Minute
	maxGenreMenus    = 1024 // selections kept; past it, the idle ones are dropped
)

type genreLoader func(ctx context.Context, account customers.AccountID) ([]string, error)

type genreCache struct {
	load genreLoader
	now  func() time.Time
	log  *slog.Logger

	mu sync.Mutex
	m  map[string]*genreMenu
}

// genreMenu is one selection's menu. Its fields other than ready are
// guarded by the cache's mutex.
type genreMenu struct {
	ready      chan struct{} // closed when the first load has ended
	done       bool          // ready is closed
	genres     []string
	err        error
	loaded     time.Time
	refreshing bool
}

func newGenreCache(load genreLoader, log *slog.Logger) *genreCache {
	return &genreCache{load: load, now: time.Now, log: log, m: map[string]*genreMenu{}}
}

// genreKey names what an account's menu depends on: its catalogs (in any
// order) and its region.
func genreKey(a customers.Account) string {
	cats := make([]string, len(a.Catalogs))
	for i, c := range a.Catalogs {
		cats[i] = strconv.Quote(string(c))
	}
	slices.Sort(cats)
	return strconv.Quote(a.Address.Region) + " " + strings.Join(slices.Compact(cats), " ")
}

// get returns the genre menu for the account.
func (c *genreCache) get(ctx context.Context, a customers.Account) ([]string, error) {
	key := genreKey(a)
	now := c.now()
	c.mu.Lock()
	m := c.m[key]
	first := m == nil || m.done && m.err != nil
	switch {
	case first:
		c.makeRoom(now)
		m = &genreMenu{ready: make(chan struct{})}
		c.m[key] = m
	case m.done && !m.refreshing && now.Sub(m.loaded) >= genreTTL:
		m.refreshing = true
		go c.refresh(context.WithoutCancel(ctx), m, a.ID)
	}
	c.mu.Unlock()

	if first {
		// Loaded for every viewer waiting, so not ended by this one leaving.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), genreLoadTimeout)
		genres, err := c.load(lctx, a.ID)
		cancel()
		c.mu.Lock()
		m.genres, m.err, m.loaded, m.done = genres, err, c.now(), true
		c.mu.Unlock()
		close(m.ready)
	}
	if !first {
		select {
		case <-m.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return m.genres, m.err
}

// refresh replaces a menu that has expired. Until it is done, the old
// one is shown; if it fails, the old one stays and the next viewer after
// the failure tries again.
func (c *genreCache) refresh(ctx context.Context, m *genreMenu, account customers.AccountID) {
	lctx, cancel := context.WithTimeout(ctx, genreLoadTimeout)
	defer cancel()
	genres, err := c.load(lctx, account)
	c.mu.Lock()
	defer c.mu.Unlock()
	m.refreshing = false
	if err != nil {
		c.log.Warn("genre menu not refreshed; the old one is shown", "account", account, "err", err)
		return
	}
	m.genres, m.loaded = genres, c.now()
}

// makeRoom drops menus when the cache is full: those expired, and if
// that is not enough, every one that has loaded. Called with the mutex
// held.
func (c *genreCache) makeRoom(now time.Time) {
	if len(c.m) < maxGenreMenus {
		return
	}
	for k, m := range c.m {
		if m.done && !m.refreshing && now.Sub(m.loaded) >= genreTTL {
			delete(c.m, k)
		}
	}
	if len(c.m) < maxGenreMenus {
		return
	}
	for k, m := range c.m {
		if m.done {
			delete(c.m, k)
		}
	}
}
