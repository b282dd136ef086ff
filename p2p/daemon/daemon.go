// Package daemon is the transfer daemon a box runs, and a media server
// too: it owns the media store, keeps the session with the head-end
// (scheduler-client), and moves pieces with other boxes and media servers
// as the scheduler says (p2p/agent over the piece protocol). As a server
// (Options.Server) it is headend/mediaserver instead: the same engine,
// registered as a server of a cluster, that can ingest packages.
//
// Identity: a box's Ed25519 identity key is the file Options.Identity
// (default: "identity" next to the box state), sealed by board/identity
// with the TPM Options.TPM opens, and Options.Cert is its device
// certificate (PEM). Run loads the identity, or creates it, at start and
// holds it, in locked memory, until it returns; the TPM is open only
// while the identity is loaded or created. The TLS handshakes sign with
// the *identity.Identity itself (a crypto.Signer), never with its raw
// private key: crypto/ed25519 caches keys by a weak pointer, which cannot
// point outside the Go heap.
//
// Options.Key, a PKCS #8 PEM file, is the identity instead: for a media
// server (a head-end machine), and on a box as a development option,
// which Run logs as not sealed. That key is created (0600) at activation
// if it is missing.
//
// With Options.Activate and no certificate yet, Run trades the code for a
// certificate at the head-end, writes it, and carries on; an existing
// certificate makes Activate a no-op, so the same options work on every
// start. Keys are never written over, with one exception: a sealed
// identity that board/identity reports gone for good (an error wrapping
// identity.ErrNeedsReactivation: a damaged file, another TPM, a cleared
// TPM) is replaced by a new key at start (identity.Reset), logged at
// error level. The certificate and session state of the old key are then
// useless; they are renamed with a ".stale" suffix (kept for diagnosis),
// and the box carries on as one that was never activated: it waits for a
// code from the TV (Status.NeedsCode, with the reason in Status.Error) or
// uses Options.Activate. The same happens when the certificate is for
// another key than the identity's. Every other identity error (no TPM
// where the file needs one, a newer file version, I/O) stops Run: fixing
// the cause brings the old identity back, and a reset would lose it.
//
// Each time the session with the head-end comes up, the daemon sends
// Register (with the piece address, the caps and the store's capacity)
// and the full inventory.
//
// A box (not a server) also keeps what the head-end replicates to it in
// Options.BoxState (box.db next to the store, package boxstate): the
// catalog (CatalogUpdate) and the priority list (PriorityList, the higher
// version wins). With Options.Local it serves the player daemon the local
// API (package p2p/local) on that socket: status, activation, catalog,
// list edits (sent to the head-end with the version after the one held),
// progress from the store, and media pass and key requests relayed to the
// head-end with their answers. Options.StoreSocket serves the media store
// for the player's reads (media/store.Serve). Without a certificate and
// without Options.Activate, a box with Options.Local waits for the code
// from the TV (Status.NeedsCode; a refused code leaves it waiting, with
// the head-end's reason in Status.Error) and then carries on as with
// Options.Activate.
package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/firmware/keyfile"
	"github.com/boxswarm/boxswarm/headend/mediaserver"
	"github.com/boxswarm/boxswarm/media/store"
	"github.com/boxswarm/boxswarm/p2p/agent"
	"github.com/boxswarm/boxswarm/p2p/local"
	"github.com/boxswarm/boxswarm/p2p/rtc"
	schedclient "github.com/boxswarm/boxswarm/scheduler-client"
)

// Options configure the daemon. HeadEnd, CA, Store, Key, Cert,
// SchedulerKey and at least one of MediaKeys are required; a server also
// needs Cluster and Listen.
type Options struct {
	HeadEnd    string // head-end gateway address, host:port
	CA         string // the head-end's CA certificate(s), PEM file
	ServerName string // the name in the head-end's certificate (default: the host of HeadEnd)
	Store      string // media store folder
	State      string // session state file (default: sched-state.json next to Key, or Cert)
	// Identity is a box's identity file, sealed by board/identity
	// (default: "identity" next to BoxState). Not with Key.
	Identity string
	// TPM opens the TPM that seals Identity (identity.TPMOpener); nil:
	// the board has none. It is opened only while the identity is loaded
	// or created, and closed right after.
	TPM func() (transport.TPMCloser, error)
	// Key is the identity key as a PKCS #8 PEM file, unsealed: required
	// for a server; for a box, a development option instead of Identity.
	Key      string
	Cert     string // device certificate file
	Activate string // activation code, used if Cert does not exist
	// Local is the Unix socket of the local API for the player daemon
	// (package p2p/local); empty: none. Boxes only.
	Local string
	// StoreSocket is the Unix socket where the media store is served for
	// the player's reads (media/store.Serve); empty: not served. Boxes
	// only. Status.StoreSocket tells the player.
	StoreSocket string
	// BoxState is the box's state file: the replicated catalog and the
	// priority list (default: box.db next to the store folder). Boxes
	// only.
	BoxState string
	// Transport carries the transfers: TransportWebRTC (the default), or
	// TransportTCP (media servers and test agents with piece addresses).
	Transport    string
	Listen       string // TCP piece service address (empty: none)
	Advertise    string // TCP piece address registered (default: the listening address)
	UpKbps       int    // upload cap, kbit/s (0: none)
	DownKbps     int    // download cap, kbit/s (0: none)
	Capacity     int64  // bytes the store may hold (0: the file system's free space)
	MediaKeys    []string
	SchedulerKey string // the scheduler's transfer token key, PKIX PEM file
	// ProgressEvery is how often transfer progress is reported
	// (default agent.DefaultProgressEvery).
	ProgressEvery time.Duration
	// Heartbeat is how often the session is kept alive when quiet
	// (default: scheduler-client's); it must be well under the gateway's
	// idle timeout.
	Heartbeat   time.Duration
	Region, ISP string
	Server      bool
	Cluster     string   // media server cluster
	Ingest      []string // package folders a server ingests at start
	// Ingester, for a server, takes packages while it runs (see
	// Ingester); nil: none.
	Ingester *Ingester
	// Ready is called once the daemon is up, with the box's ID and its
	// piece address ("none" without a piece service).
	Ready func(box api.BoxID, pieceAddr string)
	// Listening, if set, is called once, as soon as the local API and the
	// store socket listen (boxes with Local or StoreSocket): before the
	// activation a box without a certificate waits for, so that a box on
	// its first boot counts as healthy while the viewer types the code.
	// A daemon without local services calls it just before Ready.
	Listening func()
}

// ErrOptions is returned by Run for options that are missing or wrong.
var ErrOptions = errors.New("daemon: bad options")

// Transports.
const (
	TransportWebRTC = "webrtc"
	TransportTCP    = "tcp"
)

func (o *Options) check() error {
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"head-end address", o.HeadEnd}, {"head-end CA", o.CA}, {"store", o.Store}, {"certificate", o.Cert}, {"scheduler key", o.SchedulerKey},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(o.MediaKeys) == 0 {
		missing = append(missing, "media key")
	}
	if o.Server && o.Cluster == "" {
		missing = append(missing, "cluster (for a server)")
	}
	if o.Server && o.Key == "" {
		missing = append(missing, "key (for a server)")
	}
	if o.Transport == TransportTCP && o.Server && o.Listen == "" {
		missing = append(missing, "piece listen address (for a server over TCP)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s", ErrOptions, strings.Join(missing, ", "))
	}
	if o.Key != "" && o.Identity != "" {
		return fmt.Errorf("%w: a PEM key and a sealed identity: give one", ErrOptions)
	}
	if o.Server && (o.Local != "" || o.StoreSocket != "") {
		return fmt.Errorf("%w: a media server has no player: no local API or store socket", ErrOptions)
	}
	if o.Transport != TransportWebRTC && o.Transport != TransportTCP {
		return fmt.Errorf("%w: transport %q, want %s or %s", ErrOptions, o.Transport, TransportWebRTC, TransportTCP)
	}
	return nil
}

// Run runs the daemon until ctx ends or something fails. Once the piece
// service listens and the session is set up, it calls o.Ready, if set.
func Run(ctx context.Context, o Options, log *slog.Logger) error {
	if o.Transport == "" {
		o.Transport = TransportWebRTC
	}
	if err := o.check(); err != nil {
		return err
	}
	if o.ServerName == "" {
		host, _, err := net.SplitHostPort(o.HeadEnd)
		if err != nil {
			return fmt.Errorf("-headend %q: %w", o.HeadEnd, err)
		}
		o.ServerName = host
	}
	if o.State == "" {
		next := o.Key
		if next == "" {
			next = o.Cert
		}
		o.State = filepath.Join(filepath.Dir(next), "sched-state.json")
	}
	roots, err := readRoots(o.CA)
	if err != nil {
		return err
	}
	var mediaKeys []ed25519.PublicKey
	for _, p := range o.MediaKeys {
		k, err := keyfile.ReadPublicKey(p)
		if err != nil {
			return fmt.Errorf("media key: %w", err)
		}
		mediaKeys = append(mediaKeys, k)
	}
	schedKey, err := keyfile.ReadPublicKey(o.SchedulerKey)
	if err != nil {
		return fmt.Errorf("scheduler key: %w", err)
	}
	st, err := store.Open(o.Store, store.Options{MediaKeys: mediaKeys, Capacity: o.Capacity, Log: log})
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var bx *box
	if !o.Server {
		if o.BoxState == "" {
			o.BoxState = filepath.Join(filepath.Dir(filepath.Clean(o.Store)), "box.db")
		}
		if o.Key == "" && o.Identity == "" {
			o.Identity = filepath.Join(filepath.Dir(o.BoxState), "identity")
		}
		if bx, err = openBox(o.BoxState, st, o.StoreSocket, log.With("part", "box")); err != nil {
			return err
		}
		defer bx.close()
		// Deferred after the store's and the box state's Close, so the
		// local services stop before them.
		stop, err := serveLocal(ctx, cancel, o, bx, st, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	listening := sync.OnceFunc(func() {
		if o.Listening != nil {
			o.Listening()
		}
	})
	if o.Local != "" || o.StoreSocket != "" {
		listening()
	}
	key, err := openKey(ctx, o, log)
	if err != nil {
		return err
	}
	defer key.close()
	id, err := activated(ctx, o, roots, key, log, bx)
	if err != nil {
		if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
			return nil // stopped while waiting for activation
		}
		return err
	}
	state, err := schedclient.FileState(o.State)
	if err != nil {
		return err
	}

	// The client hands messages to the engine, which reports through the
	// client: each needs the other.
	var handle func(context.Context, api.Body) error
	var ice iceCredentials
	// announce is set below, before the client runs.
	var announce func(context.Context) error
	clientLog := log
	onConnect := func(ctx context.Context) { announceOnConnect(ctx, announce, log) }
	if bx != nil {
		clientLog = slog.New(sessionTap{log.Handler(), bx.sessionError})
		onConnect = func(ctx context.Context) {
			bx.sessionUp(ctx)
			announceOnConnect(ctx, announce, log)
		}
	}
	client, err := schedclient.New(schedclient.Config{
		Addr: o.HeadEnd, ServerName: o.ServerName, Roots: roots, Identity: id, State: state,
		Handle:    func(ctx context.Context, b api.Body) error { return handle(ctx, ice.note(b)) },
		OnConnect: onConnect,
		Heartbeat: o.Heartbeat,
		Log:       clientLog,
	})
	if err != nil {
		return err
	}
	box := client.Box()
	log = log.With("box", box.String())

	var lis net.Listener
	if o.Listen != "" {
		if lis, err = net.Listen("tcp", o.Listen); err != nil {
			return fmt.Errorf("piece service: %w", err)
		}
		defer lis.Close()
	}
	var tr *rtc.Transport
	if o.Transport == TransportWebRTC {
		tr, err = rtc.New(rtc.Config{
			Self:              box,
			Signal:            func(ctx context.Context, s api.Signal) error { return client.Send(ctx, s) },
			ICE:               ice.get,
			AcceptUnsolicited: o.Server,
			Log:               log.With("part", "webrtc"),
		})
		if err != nil {
			return err
		}
		defer tr.Close()
	}
	send := client.Send
	if bx != nil {
		send = bx.observeSend(send)
	}
	acfg := agent.Config{
		Self: box, Store: st, MediaKeys: mediaKeys, SchedulerKey: schedKey,
		Send: send, RTC: tr, Listen: lis,
		UpLimit: kbpsToBytes(o.UpKbps), DownLimit: kbpsToBytes(o.DownKbps),
		ProgressEvery: o.ProgressEvery, Log: log,
	}
	loc := api.Location{Region: o.Region, ISP: o.ISP}
	var runEngine func(context.Context) error
	if o.Server {
		srv, err := mediaserver.New(mediaserver.Config{Agent: acfg, Cluster: o.Cluster, PieceAddr: o.Advertise, Location: loc})
		if err != nil {
			return err
		}
		handle, runEngine, announce = srv.Handle, srv.Run, srv.Announce
		for _, dir := range o.Ingest {
			// Announced with the full inventory once connected.
			if err := st.ImportPackage(ctx, dir); err != nil {
				return err
			}
		}
		if o.Ingester != nil {
			// Deferred after the store's Close, so it runs before it.
			defer o.Ingester.attach(srv)()
		}
	} else {
		ag, err := agent.New(acfg)
		if err != nil {
			return err
		}
		handle, runEngine = ag.Handle, ag.Run
		announce = func(ctx context.Context) error {
			r, err := ag.Register(api.Register{PieceAddr: o.Advertise, Location: loc})
			if err != nil {
				return err
			}
			if err := client.Send(ctx, r); err != nil {
				return fmt.Errorf("send registration: %w", err)
			}
			return ag.SendInventory(ctx)
		}
	}
	if tr != nil {
		// Signalling goes to the transport, everything else to the engine.
		engine := handle
		handle = func(ctx context.Context, b api.Body) error {
			if s, ok := b.(api.Signal); ok {
				return tr.HandleSignal(ctx, s)
			}
			return engine(ctx, b)
		}
	}
	if bx != nil {
		// The catalog, lists, passes and keys go to the box's side.
		next := handle
		handle = func(ctx context.Context, b api.Body) error { return bx.handle(ctx, b, next) }
		bx.setClient(client)
	}
	addr := "none"
	if lis != nil {
		addr = lis.Addr().String()
	}
	listening() // once: a no-op for a box whose local services listen
	if o.Ready != nil {
		o.Ready(box, addr)
	}
	log.Info("transfer daemon running", "headend", o.HeadEnd, "transport", o.Transport, "tcp pieces", addr, "store", o.Store, "server", o.Server)

	var wg sync.WaitGroup
	stopOnError := func(what string, err error) {
		if err != nil {
			cancel(fmt.Errorf("%s: %w", what, err))
		}
	}
	wg.Go(func() { stopOnError("head-end session", client.Run(ctx)) })
	wg.Go(func() { stopOnError("transfer engine", runEngine(ctx)) })
	<-ctx.Done()
	wg.Wait()
	if err := context.Cause(ctx); !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// announceOnConnect sends the registration and inventory, which the
// scheduler expects on every connection, retrying while the session lasts.
func announceOnConnect(ctx context.Context, announce func(context.Context) error, log *slog.Logger) {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := announce(ctx)
		if err == nil {
			log.Info("registered with the scheduler")
			return
		}
		log.Warn("register with the scheduler", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func kbpsToBytes(kbps int) int { return kbps * 1000 / 8 }

// iceCredentials keeps the newest STUN/TURN credentials the scheduler
// handed out, in Registered and in each TransferStart.
type iceCredentials struct {
	mu  sync.Mutex
	cur api.ICECredentials
}

// note takes the credentials out of a message on its way to the engine.
func (c *iceCredentials) note(b api.Body) api.Body {
	var fresh *api.ICECredentials
	switch m := b.(type) {
	case api.Registered:
		fresh = &m.ICE
	case api.TransferStart:
		fresh = m.ICE
	}
	if fresh != nil && len(fresh.URLs) > 0 {
		c.mu.Lock()
		if !fresh.Expires.Before(c.cur.Expires) {
			c.cur = *fresh
		}
		c.mu.Unlock()
	}
	return b
}

func (c *iceCredentials) get() api.ICECredentials {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

func readRoots(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("head-end CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("head-end CA %s: no PEM certificate", path)
	}
	return pool, nil
}

// serveLocal starts the local API and the store socket the options ask
// for; a service that fails stops the daemon through cancel. stop ends
// them and waits.
func serveLocal(ctx context.Context, cancel context.CancelCauseFunc, o Options, bx *box, st *store.Store, log *slog.Logger) (stop func(), err error) {
	ctx, end := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop = func() {
		end()
		wg.Wait()
	}
	start := func(what, path string, serve func(context.Context, net.Listener) error) error {
		l, err := local.Listen(path)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		wg.Go(func() {
			if err := serve(ctx, l); err != nil && ctx.Err() == nil {
				cancel(fmt.Errorf("%s: %w", what, err))
			}
		})
		log.Info(what+" listening", "socket", path)
		return nil
	}
	if o.StoreSocket != "" {
		err := start("store socket", o.StoreSocket, func(ctx context.Context, l net.Listener) error { return store.Serve(ctx, l, st) })
		if err != nil {
			stop()
			return nil, err
		}
	}
	if o.Local != "" {
		srv := local.NewServer(bx, local.ServerOptions{Log: log.With("part", "local API")})
		if err := start("local API", o.Local, srv.Serve); err != nil {
			stop()
			return nil, err
		}
	}
	return stop, nil
}
