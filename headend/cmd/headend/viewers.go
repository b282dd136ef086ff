package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/boxswarm/boxswarm/headend/boxlink"
	"github.com/boxswarm/boxswarm/headend/customers"
	custbolt "github.com/boxswarm/boxswarm/headend/customers/boltstore"
	"github.com/boxswarm/boxswarm/headend/customers/custtest"
	custpg "github.com/boxswarm/boxswarm/headend/customers/pgstore"
	"github.com/boxswarm/boxswarm/headend/gateway"
	"github.com/boxswarm/boxswarm/headend/pass"
	"github.com/boxswarm/boxswarm/headend/playback"
	"github.com/boxswarm/boxswarm/headend/scheduler"
	"github.com/boxswarm/boxswarm/headend/vault"
	"github.com/boxswarm/boxswarm/headend/web"
)

// Files in the data folder, for the viewers' services.
const (
	customersFile = "customers.db"
	vaultFile     = "vault.db"
	passKeyPrefix = "pass" // pass.key (0600) and pass.pub: media passes are signed with it
)

// sweepEvery is how often expired sessions and log-in throttles are
// deleted.
const sweepEvery = 10 * time.Minute

// viewers is customer management, media passes, the key vault and the
// web pages, joined to the scheduler.
type viewers struct {
	cust     *customers.Service
	vault    *vault.Vault
	link     *boxlink.Link
	sessions *playback.Sessions
	web      http.Handler
}

// handler is the gateway's handler: catalogs, lists and activations
// through the link, passes and keys through the sessions, the rest to the
// scheduler.
func (v *viewers) handler() gateway.Handler { return v.link }

// openViewers opens the viewers' services. undo receives what closes
// them, in order.
func openViewers(ctx context.Context, cfg Config, sched *scheduler.Scheduler, log *slog.Logger, undo *[]func() error) (*viewers, error) {
	var store customers.Store
	var err error
	if cfg.Store == "bolt" {
		store, err = custbolt.Open(filepath.Join(cfg.Data, customersFile), custbolt.WithLogger(log))
	} else {
		store, err = custpg.Open(ctx, cfg.Store, custpg.WithLogger(log))
	}
	if err != nil {
		return nil, fmt.Errorf("customers: %w", err)
	}
	*undo = append(*undo, store.Close)
	log.Warn("payments go to the test provider: no real money is taken")
	cust, err := customers.New(customers.Config{Store: store, Payments: custtest.NewPayments(), Activator: sched, Lists: sched,
		Log: log.With("service", "customers")})
	if err != nil {
		return nil, err
	}
	var catalogs []customers.CatalogID
	for _, c := range cfg.Viewers.Catalogs {
		if err := cust.PutCatalog(ctx, customers.Catalog{ID: customers.CatalogID(c.ID), Vendor: c.Vendor, Name: c.Name}); err != nil {
			return nil, fmt.Errorf("catalog %q: %w", c.ID, err)
		}
		catalogs = append(catalogs, customers.CatalogID(c.ID))
	}

	passKey, err := loadOrCreateSigningKey(filepath.Join(cfg.Data, passKeyPrefix), "pass")
	if err != nil {
		return nil, err
	}
	master, err := vault.LoadOrCreateMasterKey(cfg.Viewers.MasterKey)
	if err != nil {
		return nil, err
	}
	*undo = append(*undo, func() error { master.Close(); return nil })
	vlt, err := vault.Open(ctx, vault.Config{Path: filepath.Join(cfg.Data, vaultFile), MasterKey: master,
		PassKeys: []ed25519.PublicKey{passKey.Public().(ed25519.PublicKey)}, Logger: log.With("service", "vault")})
	if err != nil {
		return nil, err
	}
	*undo = append(*undo, vlt.Close)
	issuer, err := pass.NewIssuer(passKey, nil, 0)
	if err != nil {
		return nil, err
	}
	pb, err := playback.New(playback.Config{Customers: cust, Issuer: issuer, Vault: vlt,
		PassWindow: time.Duration(cfg.Viewers.PassWindow), Log: log.With("service", "playback")})
	if err != nil {
		return nil, err
	}
	v := &viewers{cust: cust, vault: vlt}
	v.sessions = playback.NewSessions(sched, pb, sched.Tell, log.With("service", "playback"))
	v.link = boxlink.New(v.sessions, cust, sched, log.With("service", "boxlink"))
	v.web, err = web.New(web.Config{Customers: cust, Progress: v.link, Secure: cfg.Viewers.SecureCookies,
		Log: log.With("service", "web"), Catalogs: catalogs})
	if err != nil {
		return nil, err
	}
	return v, nil
}

// listen opens the web pages' listener: nil if they are off.
func (v *viewers) listen(cfg Config) (net.Listener, error) {
	if cfg.Viewers.Web == "off" {
		return nil, nil
	}
	l, err := net.Listen("tcp", cfg.Viewers.Web)
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	return l, nil
}

// run serves the web pages on l (if any) and sweeps expired sessions
// until the services stop. front counts the web server among the
// services the scheduler's loop outlives.
func (v *viewers) run(s *services, l net.Listener, front *sync.WaitGroup) {
	s.run("customers sweep", func(ctx context.Context) error {
		t := time.NewTicker(sweepEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				if n, m, err := v.cust.Sweep(ctx); err != nil {
					s.log.Warn("sweeping sessions", "err", err)
				} else if n+m > 0 {
					s.log.Info("swept", "sessions", n, "throttles", m)
				}
			}
		}
	})
	if l == nil {
		return
	}
	hs := &http.Server{Handler: v.web, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: time.Minute,
		MaxHeaderBytes: 64 << 10}
	front.Add(1)
	s.run("web", func(ctx context.Context) error {
		defer front.Done()
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			hs.Shutdown(sctx)
		}()
		if err := hs.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	s.ready("web http://%s", l.Addr())
}
