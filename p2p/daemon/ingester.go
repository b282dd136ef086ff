package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/boxswarm/boxswarm/headend/mediaserver"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/store"
)

// ErrNotRunning is returned by an Ingester whose media server is not
// running: not started yet, or stopped.
var ErrNotRunning = errors.New("media server is not running")

// Ingester hands packages to a media server while it runs, for a process
// that runs the daemon as a server in-process (the head-end's admin API).
// Pass the same Ingester in Options.Ingester; Run attaches its server once
// the store is open and the start-up ingest is done, and detaches it
// before the store closes. Its zero value is ready to use.
type Ingester struct {
	mu      sync.RWMutex // held for reading while a call uses srv
	srv     *mediaserver.Server
	running context.Context // ends when srv is detached
}

func (g *Ingester) attach(s *mediaserver.Server) (detach func()) {
	running, stop := context.WithCancel(context.Background())
	g.mu.Lock()
	g.srv, g.running = s, running
	g.mu.Unlock()
	return func() {
		// Cuts short the imports in progress and waits for them: the
		// store closes after this.
		stop()
		g.mu.Lock()
		g.srv = nil
		g.mu.Unlock()
	}
}

// Place imports the package folder dir, which must hold title id, into the
// server's store (the pieces it lacks) and tells the scheduler the server
// holds it. It returns once every piece is stored; the caller may then
// remove dir. ErrNotRunning if the server is not running; a server that
// stops meanwhile cuts the import short (it resumes where it stopped when
// placed again).
func (g *Ingester) Place(ctx context.Context, id media.ID, dir string) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.srv == nil {
		return fmt.Errorf("place title %s: %w", id, ErrNotRunning)
	}
	pkg, err := media.OpenPackage(dir, g.srv.MediaKeys()...)
	if err != nil {
		return fmt.Errorf("place title %s: %w", id, err)
	}
	got := pkg.Manifest.ID
	pkg.Close()
	if got != id {
		return fmt.Errorf("place title %s: the package in %s is title %s", id, dir, got)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(g.running, cancel)()
	if _, err := g.srv.Ingest(ctx, dir); err != nil {
		return fmt.Errorf("place title %s: %w", id, err)
	}
	return nil
}

// Holds reports whether the server's store holds every piece of title id.
func (g *Ingester) Holds(_ context.Context, id media.ID) (bool, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.srv == nil {
		return false, fmt.Errorf("title %s: %w", id, ErrNotRunning)
	}
	have, err := g.srv.Store.Have(id)
	if errors.Is(err, store.ErrUnknownTitle) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return have.Complete(), nil
}
