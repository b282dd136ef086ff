package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/headend/customers"
)

// fakeGenres is a loader that counts its calls, answers what it is set
// to, and can be held until released.
type fakeGenres struct {
	calls   atomic.Int32
	mu      sync.Mutex
	answer  []string
	err     error
	hold    chan struct{} // if not nil, each load waits for it to close
	started chan struct{} // receives when a load starts
}

func (f *fakeGenres) load(ctx context.Context, _ customers.AccountID) ([]string, error) {
	f.calls.Add(1)
	f.mu.Lock()
	answer, err, hold := f.answer, f.err, f.hold
	f.mu.Unlock()
	if f.started != nil {
		f.started <- struct{}{}
	}
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return answer, err
}

func (f *fakeGenres) set(answer []string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answer, f.err = answer, err
}

func account(id, region string, catalogs ...customers.CatalogID) customers.Account {
	return customers.Account{ID: customers.AccountID(id), Address: customers.Address{Region: region}, Catalogs: catalogs}
}

func TestGenreCache(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	get := func(t *testing.T, c *genreCache, a customers.Account, want ...string) {
		t.Helper()
		got, err := c.get(ctx, a)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("genres for %s: %q, %v; want %q", a.ID, got, err, want) // not Fatal: called from goroutines too
		}
	}

	t.Run("one load for every viewer of a selection", func(t *testing.T) {
		f := &fakeGenres{answer: []string{"Drama"}, hold: make(chan struct{}), started: make(chan struct{}, 10)}
		c := newGenreCache(f.load, quiet)
		c.now = clock
		var wg sync.WaitGroup
		for i := range 5 {
			wg.Go(func() { get(t, c, account(fmt.Sprint("a", i), "DE", "x", "y"), "Drama") })
		}
		<-f.started
		time.Sleep(50 * time.Millisecond) // the others are waiting, not loading
		close(f.hold)
		wg.Wait()
		// The same catalogs in another order, and another account: the same menu.
		get(t, c, account("b", "DE", "y", "x", "y"), "Drama")
		if n := f.calls.Load(); n != 1 {
			t.Fatalf("%d loads, want 1", n)
		}
		// Another region or other catalogs: another menu.
		get(t, c, account("c", "US", "x", "y"), "Drama")
		get(t, c, account("d", "DE", "x"), "Drama")
		if n := f.calls.Load(); n != 3 {
			t.Fatalf("%d loads, want 3", n)
		}
	})

	t.Run("expired menus are shown while one load replaces them", func(t *testing.T) {
		f := &fakeGenres{answer: []string{"Drama"}, started: make(chan struct{}, 10)}
		c := newGenreCache(f.load, quiet)
		at := now
		c.now = func() time.Time { return at }
		a := account("a", "DE", "x")
		get(t, c, a, "Drama")
		<-f.started
		at = at.Add(genreTTL - time.Second)
		get(t, c, a, "Drama")
		if n := f.calls.Load(); n != 1 {
			t.Fatalf("%d loads before the menu expired, want 1", n)
		}
		f.mu.Lock()
		f.hold = make(chan struct{})
		f.mu.Unlock()
		f.set([]string{"Comedy", "Drama"}, nil)
		at = at.Add(time.Second)
		get(t, c, a, "Drama") // the old menu, at once: the new one is held
		<-f.started           // the refresh
		get(t, c, a, "Drama")
		if n := f.calls.Load(); n != 2 {
			t.Fatalf("%d loads after the menu expired, want 2: one refresh", n)
		}
		close(f.hold)
		deadline := time.Now().Add(5 * time.Second)
		for {
			got, _ := c.get(ctx, a)
			if slices.Equal(got, []string{"Comedy", "Drama"}) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the refreshed menu never came: %q", got)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if n := f.calls.Load(); n != 2 {
			t.Fatalf("%d loads, want 2", n)
		}
	})

	t.Run("a failed load is not kept", func(t *testing.T) {
		f := &fakeGenres{err: errors.New("store down")}
		c := newGenreCache(f.load, quiet)
		c.now = clock
		a := account("a", "DE", "x")
		if _, err := c.get(ctx, a); err == nil {
			t.Fatal("no error from a failed load")
		}
		f.set([]string{"Drama"}, nil)
		get(t, c, a, "Drama")
		if n := f.calls.Load(); n != 2 {
			t.Fatalf("%d loads, want 2", n)
		}
	})

	t.Run("a viewer who leaves does not end the load", func(t *testing.T) {
		f := &fakeGenres{answer: []string{"Drama"}, hold: make(chan struct{}), started: make(chan struct{}, 10)}
		c := newGenreCache(f.load, quiet)
		c.now = clock
		a := account("a", "DE", "x")
		gone, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() { _, err := c.get(gone, a); errc <- err }()
		<-f.started
		wctx, wcancel := context.WithCancel(ctx)
		werr := make(chan error, 1)
		go func() { _, err := c.get(wctx, a); werr <- err }()
		time.Sleep(20 * time.Millisecond)
		wcancel() // a waiting viewer leaves: it gets its context's error
		if err := <-werr; !errors.Is(err, context.Canceled) {
			t.Fatalf("waiting viewer that left: %v", err)
		}
		cancel() // the loading viewer leaves: its load goes on for the others
		close(f.hold)
		if err := <-errc; err != nil {
			t.Fatalf("loading viewer: %v", err)
		}
		get(t, c, a, "Drama")
		if n := f.calls.Load(); n != 1 {
			t.Fatalf("%d loads, want 1", n)
		}
	})

	t.Run("bounded", func(t *testing.T) {
		f := &fakeGenres{answer: []string{"Drama"}}
		c := newGenreCache(f.load, quiet)
		c.now = clock
		for i := range 3 * maxGenreMenus {
			get(t, c, account("a", fmt.Sprint("R", i), "x"), "Drama")
			if len(c.m) > maxGenreMenus {
				t.Fatalf("%d menus kept, at most %d", len(c.m), maxGenreMenus)
			}
		}
	})
}
