package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/firmware/keyfile"
	"github.com/boxswarm/boxswarm/headend/admin"
	"github.com/boxswarm/boxswarm/headend/deviceca"
	"github.com/boxswarm/boxswarm/headend/gateway"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/headend/schedstore/boltstore"
	"github.com/boxswarm/boxswarm/headend/schedstore/pgstore"
	"github.com/boxswarm/boxswarm/headend/scheduler"
	"github.com/boxswarm/boxswarm/headend/turnserver"
	"github.com/boxswarm/boxswarm/p2p/daemon"
)

// Files in the data folder.
const (
	schedulerKeyPrefix = "scheduler" // scheduler.key (0600) and scheduler.pub
	adminTokenFile     = "admin.token"
	turnSecretFile     = "turn.secret"
	boltFile           = "scheduler.db"
	caDir              = "ca"
	mediaDir           = "media"
)

// services runs the head-end's services until ctx ends or one fails; then
// it stops the others and returns the first failure.
type services struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
	log    *slog.Logger
	out    io.Writer
	outMu  sync.Mutex
}

func (s *services) run(name string, fn func(context.Context) error) {
	s.wg.Go(func() {
		err := fn(s.ctx)
		if err != nil && s.ctx.Err() == nil {
			s.cancel(fmt.Errorf("%s: %w", name, err))
		}
	})
}

// ready prints one line per service once it serves, for operators and for
// tests that start the head-end as a process.
func (s *services) ready(format string, args ...any) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	fmt.Fprintf(s.out, "headend: "+format+"\n", args...)
}

func serve(ctx context.Context, cfg Config, stdout io.Writer, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s := &services{ctx: ctx, cancel: cancel, log: log, out: stdout}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var (
		turnAddr string
		secret   []byte
		err      error
	)
	if cfg.runs(svcScheduler) || cfg.runs(svcTURN) {
		if secret, err = loadOrCreateSecret(filepath.Join(cfg.Data, turnSecretFile)); err != nil {
			return err
		}
		if turnAddr, err = cfg.turnAddr(); err != nil {
			return err
		}
	}
	if cfg.runs(svcTURN) {
		if turnAddr, err = startTURN(s, cfg, turnAddr, secret, reg); err != nil {
			return err
		}
	}
	// A media server in this process takes the operator's uploads.
	var ingester *daemon.Ingester
	if cfg.runs(svcMedia) {
		ingester = &daemon.Ingester{}
	}
	var sched *scheduler.Scheduler
	var gatewayAddr string
	if cfg.runs(svcScheduler) {
		if sched, gatewayAddr, err = startScheduler(s, cfg, turnAddr, secret, reg, ingester); err != nil {
			cancel(err)
			s.wg.Wait()
			return err
		}
	}
	if cfg.runs(svcMedia) {
		if err := startMedia(s, cfg, sched, gatewayAddr, ingester); err != nil {
			cancel(err)
			s.wg.Wait()
			return err
		}
	}
	<-ctx.Done()
	s.wg.Wait()
	if err := context.Cause(ctx); !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func startTURN(s *services, cfg Config, addr string, secret []byte, reg *prometheus.Registry) (string, error) {
	lo, hi, _ := cfg.relayPorts()
	tc := turnserver.Config{Addr: addr, Realm: cfg.TURN.Realm, Secret: secret, RelayPortMin: lo, RelayPortMax: hi,
		Log: s.log.With("service", "turn")}
	if cfg.TURN.AllowPrivatePeers {
		tc.AllowPeer = func(ip net.IP) bool { return !ip.IsUnspecified() && !ip.IsMulticast() }
	}
	srv, err := turnserver.Listen(s.ctx, tc)
	if err != nil {
		return "", fmt.Errorf("turn: %w", err)
	}
	for name, get := range map[string]func(turnserver.Stats) float64{
		"allocations_active":  func(st turnserver.Stats) float64 { return float64(st.ActiveAllocations) },
		"allocations_total":   func(st turnserver.Stats) float64 { return float64(st.Allocations) },
		"auth_refusals_total": func(st turnserver.Stats) float64 { return float64(st.AuthRefusals) },
		"bytes_to_peers":      func(st turnserver.Stats) float64 { return float64(st.BytesToPeers) },
		"bytes_from_peers":    func(st turnserver.Stats) float64 { return float64(st.BytesFromPeers) },
	} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "boxswarm", Subsystem: "turn", Name: name,
			Help: "TURN server " + strings.ReplaceAll(name, "_", " ") + "."}, func() float64 { return get(srv.Stats()) }))
	}
	s.run("turn", func(ctx context.Context) error {
		<-ctx.Done()
		return srv.Close()
	})
	bound := srv.Addr().String()
	s.ready("turn %s", bound)
	return bound, nil
}

func startScheduler(s *services, cfg Config, turnAddr string, secret []byte, reg *prometheus.Registry, ingester *daemon.Ingester) (_ *scheduler.Scheduler, _ string, err error) {
	log := s.log.With("service", "scheduler")
	var undo []func() error // closes what was opened, if a later step fails
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	key, err := loadOrCreateSigningKey(filepath.Join(cfg.Data, schedulerKeyPrefix), "scheduler")
	if err != nil {
		return nil, "", err
	}
	mediaKeys, err := readKeys(cfg.MediaKeys)
	if err != nil {
		return nil, "", err
	}
	token, err := loadOrCreateToken(filepath.Join(cfg.Data, adminTokenFile))
	if err != nil {
		return nil, "", err
	}
	ca, err := deviceca.LoadOrCreate(filepath.Join(cfg.Data, caDir))
	if err != nil {
		return nil, "", err
	}
	store, err := openStore(s.ctx, cfg, log)
	if err != nil {
		return nil, "", err
	}
	undo = append(undo, store.Close)
	var gw *gateway.Gateway
	ttl := time.Duration(cfg.TURN.CredentialTTL)
	sc := scheduler.Config{
		Store: store, Key: key, Log: log, Metrics: scheduler.NewMetrics(reg),
		Notify: func(b api.BoxID) { gw.Notify(b) },
		ICE: func(b api.BoxID, now time.Time) api.ICECredentials {
			return turnserver.Mint(secret, b.String(), ttl, now, turnAddr)
		},
		Tick:            time.Duration(cfg.Timing.Tick),
		OfflineAfter:    time.Duration(cfg.Timing.OfflineAfter),
		StartTimeout:    time.Duration(cfg.Timing.StartTimeout),
		ProgressTimeout: time.Duration(cfg.Timing.ProgressTimeout),
		ShadowEvery:     time.Duration(cfg.Timing.ShadowEvery),
		ClustersNeeded:  cfg.ClustersNeeded,
	}
	if cfg.Policy == "prefer-servers" {
		sc.Policy = scheduler.PreferServers
	}
	sched, err := scheduler.New(s.ctx, sc)
	if err != nil {
		return nil, "", err
	}
	var closers []func() error // the viewers' stores, closed after the loop
	undo = append(undo, func() error { return closeAll(closers) })
	v, err := openViewers(s.ctx, cfg, sched, s.log, &closers)
	if err != nil {
		return nil, "", err
	}
	gl, err := net.Listen("tcp", cfg.Gateway)
	if err != nil {
		return nil, "", fmt.Errorf("gateway: %w", err)
	}
	undo = append(undo, gl.Close)
	names := cfg.Names
	if host, _, _ := net.SplitHostPort(gl.Addr().String()); !net.ParseIP(host).IsUnspecified() {
		names = append(names, host)
	}
	cert, err := ca.IssueServer(names)
	if err != nil {
		return nil, "", err
	}
	gw, err = gateway.New(gateway.Config{
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, CA: ca, Handler: v.handler(), Log: s.log.With("service", "gateway"),
		IdleTimeout: time.Duration(cfg.Timing.IdleTimeout), RetryBase: time.Duration(cfg.Timing.RetryBase),
	})
	if err != nil {
		return nil, "", err
	}
	ac := admin.Config{Scheduler: sched, Token: token, MediaKeys: mediaKeys,
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), Log: s.log.With("service", "admin"),
		Vault: v.vault, Catalog: v.link, Staging: filepath.Join(cfg.Data, mediaDir, "staging")}
	if ingester != nil {
		ac.Packages = ingester
	}
	h, err := admin.Handler(ac)
	if err != nil {
		return nil, "", err
	}
	al, err := net.Listen("tcp", cfg.Admin)
	if err != nil {
		return nil, "", fmt.Errorf("admin API: %w", err)
	}
	undo = append(undo, al.Close)
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	wl, err := v.listen(cfg)
	if err != nil {
		return nil, "", err
	}

	// The loop stops last: the gateway and the API hand it work until
	// they are down.
	loopCtx, stopLoop := context.WithCancel(context.WithoutCancel(s.ctx))
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		sched.Run(loopCtx)
	}()
	var front sync.WaitGroup
	front.Add(2)
	s.run("gateway", func(ctx context.Context) error {
		defer front.Done()
		return gw.Serve(ctx, gl)
	})
	s.run("admin API", func(ctx context.Context) error {
		defer front.Done()
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			hs.Shutdown(sctx)
		}()
		if err := hs.Serve(al); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	v.run(s, wl, &front)
	s.run("scheduler", func(ctx context.Context) error {
		<-ctx.Done()
		front.Wait()
		v.sessions.Wait() // their answers go out through the loop
		stopLoop()
		<-loopDone
		return errors.Join(closeAll(closers), store.Close())
	})
	s.ready("scheduler gateway %s admin %s store %s", gl.Addr(), al.Addr(), storeName(cfg))
	return sched, gl.Addr().String(), nil
}

func storeName(cfg Config) string {
	if cfg.Store == "bolt" {
		return filepath.Join(cfg.Data, boltFile)
	}
	return "postgres"
}

func openStore(ctx context.Context, cfg Config, log *slog.Logger) (schedstore.Store, error) {
	if cfg.Store == "bolt" {
		return boltstore.Open(filepath.Join(cfg.Data, boltFile), boltstore.WithLogger(log))
	}
	return pgstore.Open(ctx, cfg.Store, pgstore.WithLogger(log))
}

// startMedia runs the media server: the transfer daemon as a server. Run
// with the scheduler it enrolls itself with a server code it mints; run
// apart it needs the gateway's address, its CA and a code.
func startMedia(s *services, cfg Config, sched *scheduler.Scheduler, gatewayAddr string, ingester *daemon.Ingester) error {
	dir := filepath.Join(cfg.Data, mediaDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("media: %w", err)
	}
	o := daemon.Options{
		HeadEnd: cfg.Media.HeadEnd, CA: cfg.Media.CA, Activate: cfg.Media.Code,
		Store: filepath.Join(dir, "store"), Key: filepath.Join(dir, "server.key"), Cert: filepath.Join(dir, "server.crt"),
		Listen: cfg.Media.Listen, Advertise: cfg.Media.Advertise, Capacity: cfg.Media.Capacity, UpKbps: cfg.Media.UpKbps,
		MediaKeys: cfg.MediaKeys, SchedulerKey: cfg.SchedulerKey,
		Server: true, Cluster: cfg.Media.Cluster, Ingest: cfg.Media.Ingest, Heartbeat: time.Duration(cfg.Timing.Heartbeat),
		Ready:    func(box api.BoxID, addr string) { s.ready("media box %s pieces %s", box, addr) },
		Ingester: ingester,
	}
	if sched != nil {
		host, port, _ := net.SplitHostPort(gatewayAddr)
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
			host = "127.0.0.1"
		}
		if o.HeadEnd == "" {
			o.HeadEnd = net.JoinHostPort(host, port)
		}
		if o.CA == "" {
			o.CA = filepath.Join(cfg.Data, caDir, deviceca.CertFile)
		}
		if _, err := os.Stat(o.Cert); errors.Is(err, fs.ErrNotExist) && o.Activate == "" {
			o.Activate = admin.NewCode()
			if err := sched.AddServerCode(s.ctx, o.Activate); err != nil {
				return fmt.Errorf("media: enroll: %w", err)
			}
		}
	}
	if o.Advertise == "" {
		host, port, err := net.SplitHostPort(o.Listen)
		if err == nil && (host == "" || net.ParseIP(host).IsUnspecified()) {
			o.Advertise = net.JoinHostPort(cfg.Names[0], port)
		}
	}
	s.run("media", func(ctx context.Context) error { return daemon.Run(ctx, o, s.log.With("service", "media")) })
	return nil
}

// loadOrCreateSigningKey returns the Ed25519 key in PREFIX.key, made with
// PREFIX.pub on first use.
func loadOrCreateSigningKey(prefix, what string) (ed25519.PrivateKey, error) {
	key, err := keyfile.ReadPrivateKey(prefix + ".key")
	if err == nil {
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s key: %w", what, err)
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := keyfile.WritePair(prefix, key, pub); err != nil {
		return nil, fmt.Errorf("%s key: %w", what, err)
	}
	return key, nil
}

// loadOrCreateSecret returns the 32-byte secret in path, made on first use.
func loadOrCreateSecret(path string) ([]byte, error) {
	s, err := loadOrCreateToken(path)
	if err != nil {
		return nil, err
	}
	return hex.DecodeString(s)
}

// loadOrCreateToken returns the hex token in path, made on first use and
// readable by its owner only.
func loadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		var raw [32]byte
		rand.Read(raw[:])
		tok := hex.EncodeToString(raw[:])
		if err := keyfile.WriteNew(path, []byte(tok+"\n"), 0o600); err != nil {
			return "", err
		}
		return tok, nil
	}
	if err != nil {
		return "", err
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s: readable by others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	tok := strings.TrimSpace(string(b))
	if _, err := hex.DecodeString(tok); err != nil || len(tok) < 32 {
		return "", fmt.Errorf("%s: not a hex secret of 16 bytes or more", path)
	}
	return tok, nil
}

func readKeys(paths []string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, p := range paths {
		k, err := keyfile.ReadPublicKey(p)
		if err != nil {
			return nil, fmt.Errorf("media key: %w", err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// closeAll closes in reverse order of opening.
func closeAll(closers []func() error) error {
	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		errs = append(errs, closers[i]())
	}
	return errors.Join(errs...)
}
