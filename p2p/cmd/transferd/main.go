// Command transferd is a box's transfer daemon: it owns the box's media
// store, keeps the box's session with the head-end (scheduler-client), and
// moves pieces with other boxes and media servers as the scheduler says
// (p2p/agent over the piece protocol). With -server it is a media server
// instead (headend/mediaserver): the same engine, registered as a server of
// a cluster, that can ingest packages.
//
//	transferd -headend HOST:PORT -ca headend-ca.pem -store DIR \
//	    -key box.key -cert box.crt [-activate CODE] \
//	    -media-key media.pub -scheduler-key scheduler.pub \
//	    [-listen 127.0.0.1:0] [-up-kbps N] [-down-kbps N]
//	transferd -server -cluster noc-1 -ingest pkgs/<id> ... (same flags)
//
// Identity: -key is the box's Ed25519 key (PKCS #8 PEM) and -cert its
// device certificate (PEM). With -activate CODE and no certificate yet,
// transferd creates the key if it is missing (0600), trades the code for a
// certificate at the head-end, writes it, and carries on; an existing
// certificate makes -activate a no-op, so the same command line works on
// every start.
//
// Each time the session with the head-end comes up, transferd sends
// Register (with the piece address, the caps and the store's capacity)
// and the full inventory. Once the piece service listens, transferd prints
// one line on standard output:
//
//	transferd: box <id> pieces <addr>
//
// so a test harness can tell it is up and where. Keys are never written
// over; the store is closed cleanly on SIGINT or SIGTERM.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/firmware/keyfile"
	"github.com/boxswarm/boxswarm/headend/mediaserver"
	"github.com/boxswarm/boxswarm/media/store"
	"github.com/boxswarm/boxswarm/p2p/agent"
	schedclient "github.com/boxswarm/boxswarm/scheduler-client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type options struct {
	headend, ca, serverName     string
	storeDir, state             string
	keyPath, certPath, activate string
	listen, advertise           string
	upKbps, downKbps            int
	capacity                    int64
	mediaKeys                   listFlag
	schedulerKey                string
	progress                    time.Duration
	region, isp                 string
	server                      bool
	cluster                     string
	ingest                      listFlag
	verbose                     bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("transferd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.headend, "headend", "", "head-end gateway address, host:port")
	fs.StringVar(&o.ca, "ca", "", "the head-end's CA certificate(s), PEM")
	fs.StringVar(&o.serverName, "server-name", "", "the name in the head-end's certificate (default: the host of -headend)")
	fs.StringVar(&o.storeDir, "store", "", "media store folder")
	fs.StringVar(&o.state, "state", "", "file keeping the head-end session's sequence numbers and outbox (default: sched-state.json next to -key)")
	fs.StringVar(&o.keyPath, "key", "", "the box's identity key, PKCS #8 PEM Ed25519")
	fs.StringVar(&o.certPath, "cert", "", "the box's device certificate, PEM")
	fs.StringVar(&o.activate, "activate", "", "activation code: obtain the device certificate (and create the key) if -cert does not exist")
	fs.StringVar(&o.listen, "listen", "", "where the piece service listens, host:port (empty: no piece service; this box cannot send over TCP)")
	fs.StringVar(&o.advertise, "advertise", "", "piece address registered with the scheduler (default: the listening address, unless it is a wildcard)")
	fs.IntVar(&o.upKbps, "up-kbps", 0, "upload cap in kbit/s (0: none)")
	fs.IntVar(&o.downKbps, "down-kbps", 0, "download cap in kbit/s (0: none)")
	fs.Int64Var(&o.capacity, "capacity", 0, "bytes the store may hold (0: the file system's free space)")
	fs.Var(&o.mediaKeys, "media-key", "trusted media signing key, PKIX PEM (repeatable)")
	fs.StringVar(&o.schedulerKey, "scheduler-key", "", "the scheduler's transfer token key, PKIX PEM")
	fs.DurationVar(&o.progress, "progress", agent.DefaultProgressEvery, "how often transfer progress is reported")
	fs.StringVar(&o.region, "region", "", "network region reported at registration")
	fs.StringVar(&o.isp, "isp", "", "ISP reported at registration")
	fs.BoolVar(&o.server, "server", false, "run as a media server")
	fs.StringVar(&o.cluster, "cluster", "", "media server cluster (with -server)")
	fs.Var(&o.ingest, "ingest", "package folder to ingest at start (with -server; repeatable)")
	fs.BoolVar(&o.verbose, "v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "transferd: unexpected arguments %q\n", fs.Args())
		return 2
	}
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"headend", o.headend}, {"ca", o.ca}, {"store", o.storeDir}, {"key", o.keyPath}, {"cert", o.certPath}, {"scheduler-key", o.schedulerKey},
	} {
		if f.v == "" {
			missing = append(missing, "-"+f.name)
		}
	}
	if len(o.mediaKeys) == 0 {
		missing = append(missing, "-media-key")
	}
	if o.server && (o.cluster == "" || o.listen == "") {
		missing = append(missing, "-cluster and -listen (for -server)")
	}
	if len(missing) > 0 {
		fmt.Fprintf(stderr, "transferd: missing %s\n", strings.Join(missing, ", "))
		fs.Usage()
		return 2
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := daemon(ctx, o, stdout, log); err != nil {
		log.Error("transferd stopped", "err", err)
		return 1
	}
	return 0
}

// daemon runs until ctx ends or something fails.
func daemon(ctx context.Context, o options, stdout io.Writer, log *slog.Logger) error {
	if o.serverName == "" {
		host, _, err := net.SplitHostPort(o.headend)
		if err != nil {
			return fmt.Errorf("-headend %q: %w", o.headend, err)
		}
		o.serverName = host
	}
	if o.state == "" {
		o.state = filepath.Join(filepath.Dir(o.keyPath), "sched-state.json")
	}
	roots, err := readRoots(o.ca)
	if err != nil {
		return err
	}
	var mediaKeys []ed25519.PublicKey
	for _, p := range o.mediaKeys {
		k, err := keyfile.ReadPublicKey(p)
		if err != nil {
			return fmt.Errorf("media key: %w", err)
		}
		mediaKeys = append(mediaKeys, k)
	}
	schedKey, err := keyfile.ReadPublicKey(o.schedulerKey)
	if err != nil {
		return fmt.Errorf("scheduler key: %w", err)
	}
	id, err := identity(ctx, o, roots, log)
	if err != nil {
		return err
	}
	st, err := store.Open(o.storeDir, store.Options{MediaKeys: mediaKeys, Capacity: o.capacity, Log: log})
	if err != nil {
		return err
	}
	defer st.Close()
	state, err := schedclient.FileState(o.state)
	if err != nil {
		return err
	}

	// The client hands messages to the engine, which reports through the
	// client: each needs the other.
	var handle func(context.Context, api.Body) error
	// announce is set below, before the client runs.
	var announce func(context.Context) error
	client, err := schedclient.New(schedclient.Config{
		Addr: o.headend, ServerName: o.serverName, Roots: roots, Identity: id, State: state,
		Handle:    func(ctx context.Context, b api.Body) error { return handle(ctx, b) },
		OnConnect: func(ctx context.Context) { announceOnConnect(ctx, announce, log) },
		Log:       log,
	})
	if err != nil {
		return err
	}
	box := client.Box()
	log = log.With("box", box.String())

	var lis net.Listener
	if o.listen != "" {
		if lis, err = net.Listen("tcp", o.listen); err != nil {
			return fmt.Errorf("piece service: %w", err)
		}
		defer lis.Close()
	}
	acfg := agent.Config{
		Self: box, Store: st, MediaKeys: mediaKeys, SchedulerKey: schedKey,
		Send: client.Send, Listen: lis,
		UpLimit: kbpsToBytes(o.upKbps), DownLimit: kbpsToBytes(o.downKbps),
		ProgressEvery: o.progress, Log: log,
	}
	loc := api.Location{Region: o.region, ISP: o.isp}
	var runEngine func(context.Context) error
	if o.server {
		srv, err := mediaserver.New(mediaserver.Config{Agent: acfg, Cluster: o.cluster, PieceAddr: o.advertise, Location: loc})
		if err != nil {
			return err
		}
		handle, runEngine, announce = srv.Handle, srv.Run, srv.Announce
		for _, dir := range o.ingest {
			// Announced with the full inventory once connected.
			if err := st.ImportPackage(ctx, dir); err != nil {
				return err
			}
		}
	} else {
		ag, err := agent.New(acfg)
		if err != nil {
			return err
		}
		handle, runEngine = ag.Handle, ag.Run
		announce = func(ctx context.Context) error {
			r, err := ag.Register(api.Register{PieceAddr: o.advertise, Location: loc})
			if err != nil {
				return err
			}
			if err := client.Send(ctx, r); err != nil {
				return fmt.Errorf("send registration: %w", err)
			}
			return ag.SendInventory(ctx)
		}
	}
	addr := "none"
	if lis != nil {
		addr = lis.Addr().String()
	}
	fmt.Fprintf(stdout, "transferd: box %s pieces %s\n", box, addr)
	log.Info("transfer daemon running", "headend", o.headend, "pieces", addr, "store", o.storeDir, "server", o.server)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
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

// identity loads the box's key and certificate, activating first if asked
// and there is no certificate yet.
func identity(ctx context.Context, o options, roots *x509.CertPool, log *slog.Logger) (schedclient.Identity, error) {
	_, err := os.Stat(o.certPath)
	switch {
	case err == nil:
		if o.activate != "" {
			log.Info("already activated; -activate ignored", "cert", o.certPath)
		}
	case errors.Is(err, fs.ErrNotExist) && o.activate != "":
		if err := activate(ctx, o, roots, log); err != nil {
			return schedclient.Identity{}, err
		}
	default:
		return schedclient.Identity{}, fmt.Errorf("device certificate: %w (activate with -activate CODE)", err)
	}
	key, err := keyfile.ReadPrivateKey(o.keyPath)
	if err != nil {
		return schedclient.Identity{}, fmt.Errorf("identity key: %w", err)
	}
	b, err := os.ReadFile(o.certPath)
	if err != nil {
		return schedclient.Identity{}, fmt.Errorf("device certificate: %w", err)
	}
	der := b
	if blk, _ := pem.Decode(b); blk != nil && blk.Type == "CERTIFICATE" {
		der = blk.Bytes
	}
	return schedclient.Identity{Key: key, Certificate: der}, nil
}

// activate makes the identity key if there is none, trades the code for a
// device certificate and writes it.
func activate(ctx context.Context, o options, roots *x509.CertPool, log *slog.Logger) error {
	key, err := keyfile.ReadPrivateKey(o.keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		_, key, err = ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		b, err := firmware.MarshalPrivateKeyPEM(key)
		if err != nil {
			return err
		}
		// Stored before it is used, so a lost answer can be asked again
		// with the same key.
		if err := keyfile.WriteNew(o.keyPath, b, 0o600); err != nil {
			return err
		}
		log.Info("identity key created", "key", o.keyPath)
	} else if err != nil {
		return fmt.Errorf("identity key: %w", err)
	}
	box, der, err := schedclient.Activate(ctx, o.headend, o.serverName, roots, o.activate, key)
	if err != nil {
		return err
	}
	if err := keyfile.WriteNew(o.certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	log.Info("box activated", "box", box, "cert", o.certPath)
	return nil
}
