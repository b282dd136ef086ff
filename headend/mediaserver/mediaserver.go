// Package mediaserver is the head-end's media server: a peer that never
// plays. It keeps many titles on big disks (a store fed by Ingest from
// package folders), serves pieces to many boxes at once through the same
// transfer agent a box runs, and follows the scheduler's instructions like
// any box, registering as a server of its cluster with the address its
// piece service listens on.
//
// Guarantees:
//   - It serves only receivers holding a token the scheduler signed for
//     this server; unlike a box it does not also wait for the scheduler's
//     TransferStart (agent.Config.AcceptTokenOnly), and it reports every
//     transfer it serves all the same.
//   - Ingest is idempotent and resumable: importing a package again
//     stores only the pieces missing, and the title is announced to the
//     scheduler only once every piece is stored.
//   - It fetches, as a receiver like any box, the titles the scheduler
//     places in its cluster (package placement: any m of the n clusters
//     hold the whole catalog).
package mediaserver

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/store"
	"github.com/boxswarm/boxswarm/p2p/agent"
)

// Config configures a Server.
type Config struct {
	// Agent configures the transfer agent; Store, MediaKeys,
	// SchedulerKey, Send and Listen are required. AcceptTokenOnly is
	// set by New.
	Agent agent.Config
	// Cluster names the server cluster this server belongs to.
	Cluster string
	// PieceAddr is the address boxes dial, if the listener's own
	// address is not it (a wildcard listen address, or NAT in front).
	PieceAddr string
	// Location places the server in the network.
	Location api.Location
}

// Server is a media server: a store and the agent serving it.
type Server struct {
	Agent *agent.Agent
	Store *store.Store
	cfg   Config
	log   *slog.Logger
}

// New returns a Server; Run starts it.
func New(cfg Config) (*Server, error) {
	if cfg.Cluster == "" || len(cfg.Cluster) > 64 {
		return nil, fmt.Errorf("media server: cluster name %q", cfg.Cluster)
	}
	if cfg.Agent.Listen == nil {
		return nil, errors.New("media server: no piece listener")
	}
	cfg.Agent.AcceptTokenOnly = true
	if cfg.Agent.MaxConns == 0 {
		cfg.Agent.MaxConns = 1024
	}
	if cfg.Agent.Log == nil {
		cfg.Agent.Log = slog.New(slog.DiscardHandler)
	}
	cfg.Agent.Log = cfg.Agent.Log.With("cluster", cfg.Cluster)
	a, err := agent.New(cfg.Agent)
	if err != nil {
		return nil, fmt.Errorf("media server: %w", err)
	}
	return &Server{Agent: a, Store: cfg.Agent.Store, cfg: cfg, log: cfg.Agent.Log}, nil
}

// Run serves boxes until ctx ends.
func (s *Server) Run(ctx context.Context) error { return s.Agent.Run(ctx) }

// Handle acts on a message from the scheduler.
func (s *Server) Handle(ctx context.Context, b api.Body) error { return s.Agent.Handle(ctx, b) }

// Ingest imports the package in folder dir into the store (the pieces
// not there yet), then tells the scheduler the server holds the title.
func (s *Server) Ingest(ctx context.Context, dir string) (media.ID, error) {
	pkg, err := media.OpenPackage(dir, s.cfg.Agent.MediaKeys...)
	if err != nil {
		return media.ID{}, fmt.Errorf("ingest %s: %w", dir, err)
	}
	id := pkg.Manifest.ID
	pkg.Close()
	if err := s.Store.ImportPackage(ctx, dir); err != nil {
		return id, fmt.Errorf("ingest: %w", err)
	}
	s.log.Info("title ingested", "title", id, "dir", dir)
	inv := api.Inventory{Titles: []api.TitleState{{Title: id, Complete: true}}}
	if err := s.cfg.Agent.Send(ctx, inv); err != nil {
		return id, fmt.Errorf("ingest %s: announce title %s: %w", dir, id, err)
	}
	return id, nil
}

// MediaKeys returns the media keys the server trusts.
func (s *Server) MediaKeys() []ed25519.PublicKey { return s.cfg.Agent.MediaKeys }

// Inventory lists the titles the server holds.
func (s *Server) Inventory() (api.Inventory, error) { return s.Agent.Inventory() }

// Register returns the server's registration: a server of its cluster,
// open to connections at its piece address, with its store's capacity.
func (s *Server) Register() (api.Register, error) {
	return s.Agent.Register(api.Register{
		Server: true, Cluster: s.cfg.Cluster, PieceAddr: s.cfg.PieceAddr,
		NAT: api.NATOpen, Location: s.cfg.Location,
	})
}

// Announce sends the registration and the full inventory: what the
// scheduler needs after each connection.
func (s *Server) Announce(ctx context.Context) error {
	r, err := s.Register()
	if err != nil {
		return err
	}
	if err := s.cfg.Agent.Send(ctx, r); err != nil {
		return fmt.Errorf("media server: send registration: %w", err)
	}
	return s.Agent.SendInventory(ctx)
}
