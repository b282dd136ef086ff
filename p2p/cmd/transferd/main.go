// Command transferd is a box's transfer daemon (package p2p/daemon): it
// owns the box's media store, keeps the box's session with the head-end,
// and moves pieces with other boxes and media servers as the scheduler
// says. With -server it is a media server instead: the same engine,
// registered as a server of a cluster, that can ingest packages.
//
//	transferd -headend HOST:PORT -ca headend-ca.pem -store DIR \
//	    [-identity FILE] [-tpm auto|none|PATH] -cert box.crt [-activate CODE] \
//	    -media-key media.pub -scheduler-key scheduler.pub \
//	    [-local /run/boxswarm/transferd.sock] [-store-socket /run/boxswarm/store.sock] \
//	    [-transport webrtc|tcp] [-listen 127.0.0.1:0] [-up-kbps N] [-down-kbps N]
//	transferd -server -cluster noc-1 -key server.key -ingest pkgs/<id> ... (same flags)
//	transferd -config /etc/boxswarm/box.json -store /data/... (on a box)
//
// On a box, -config reads the head-end's address, CA and keys from the
// configuration baked into the signed image (images/boxconfig); flags
// given as well win. transferd reports ready to the second stage's
// supervisor (boot/supervisor) once its local API listens, before the
// activation it may wait for, so a box's first boot counts as healthy.
//
// Pieces travel over WebRTC data channels by default, through home NATs,
// with the head-end's STUN/TURN service and the scheduler relaying the
// signalling. -transport tcp uses direct TCP connections to the piece
// addresses registered with -listen instead (a media server on a public
// address can serve both ways).
//
// Identity: a box's Ed25519 key is sealed by board/identity in the file
// -identity (default: "identity" next to -box-state), with the TPM -tpm
// names (auto: /dev/tpmrm0, else /dev/tpm0, else none; see
// identity.TPMOpener); transferd creates it at its first start and holds
// it in locked memory while it runs. -cert is its device certificate
// (PEM). -key PATH, a PKCS #8 PEM key created (0600) at activation if
// missing, is the identity instead: a media server's, and a box's only
// for development (logged as not sealed). With -activate CODE and no
// certificate yet, transferd trades the code for a certificate at the
// head-end, writes it, and carries on; an existing certificate makes
// -activate a no-op, so the same command line works on every start. An
// identity board/identity reports lost for good is replaced at start and
// the box asks for a code again (see p2p/daemon). Without -activate and without a certificate, a box started
// with -local waits for the code the viewer types on the TV, which the
// player daemon passes on through the local API.
//
// The player daemon talks to a box's transferd through the local API on
// the Unix socket -local (package p2p/local: status and activation,
// catalog, priority list, progress, media passes and keys) and reads the
// media store through -store-socket (package media/store). Both sockets
// are made 0600 in a folder transferd creates 0700. The catalog and the
// priority list the head-end replicates are kept in -box-state (box.db
// next to the store folder by default).
//
// Each time the session with the head-end comes up, transferd sends
// Register (with the piece address, the caps and the store's capacity)
// and the full inventory. Once the piece service listens (and the box is
// activated, when the code comes from the TV), transferd prints one line
// on standard output:
//
//	transferd: box <id> pieces <addr>
//
// so a test harness can tell it is up and where. Keys are never written
// over; the store is closed cleanly on SIGINT or SIGTERM.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/board/identity"
	"github.com/boxswarm/boxswarm/boot/supervisor"
	"github.com/boxswarm/boxswarm/images/boxconfig"
	"github.com/boxswarm/boxswarm/p2p/agent"
	"github.com/boxswarm/boxswarm/p2p/daemon"
)

func main() {
	if os.Getenv("GOGC") == "" {
		// pion allocates per packet and the daemon's live heap is small,
		// so at the default the collector runs constantly: 400 saves about
		// a quarter of the CPU per GiB moved for some 24 MiB of heap
		// (BENCHMARKS.md, "Peer transfers").
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("transferd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o daemon.Options
	var mediaKeys, ingest listFlag
	var verbose bool
	fs.StringVar(&o.HeadEnd, "headend", "", "head-end gateway address, host:port")
	fs.StringVar(&o.CA, "ca", "", "the head-end's CA certificate(s), PEM")
	fs.StringVar(&o.ServerName, "server-name", "", "the name in the head-end's certificate (default: the host of -headend)")
	fs.StringVar(&o.Store, "store", "", "media store folder")
	fs.StringVar(&o.State, "state", "", "file keeping the head-end session's sequence numbers and outbox (default: sched-state.json next to -key, or -cert)")
	fs.StringVar(&o.Key, "key", "", "identity key, PKCS #8 PEM Ed25519, unsealed: a media server's; on a box for development only, instead of -identity")
	fs.StringVar(&o.Identity, "identity", "", "a box's identity file, sealed by board/identity (default: identity next to -box-state)")
	tpm := fs.String("tpm", "auto", "the TPM that seals -identity: auto (the kernel's, if any), none, or a device path")
	fs.StringVar(&o.Cert, "cert", "", "the box's device certificate, PEM")
	fs.StringVar(&o.Activate, "activate", "", "activation code: obtain the device certificate (and create the key) if -cert does not exist")
	fs.StringVar(&o.Local, "local", "", "Unix socket of the local API for the player daemon (empty: none); without -activate and -cert, the code comes from the TV through it")
	fs.StringVar(&o.StoreSocket, "store-socket", "", "Unix socket where the media store is served for the player's reads (empty: none)")
	fs.StringVar(&o.BoxState, "box-state", "", "file holding the replicated catalog and priority list (default: box.db next to -store)")
	fs.StringVar(&o.Transport, "transport", daemon.TransportWebRTC, "how pieces travel: webrtc (through NAT, signalled by the scheduler) or tcp (to piece addresses)")
	fs.StringVar(&o.Listen, "listen", "", "where the TCP piece service listens, host:port (empty: none)")
	fs.StringVar(&o.Advertise, "advertise", "", "TCP piece address registered with the scheduler (default: the listening address, unless it is a wildcard)")
	fs.IntVar(&o.UpKbps, "up-kbps", 0, "upload cap in kbit/s (0: none)")
	fs.IntVar(&o.DownKbps, "down-kbps", 0, "download cap in kbit/s (0: none)")
	fs.Int64Var(&o.Capacity, "capacity", 0, "bytes the store may hold (0: the file system's free space)")
	fs.Var(&mediaKeys, "media-key", "trusted media signing key, PKIX PEM (repeatable)")
	fs.StringVar(&o.SchedulerKey, "scheduler-key", "", "the scheduler's transfer token key, PKIX PEM")
	fs.DurationVar(&o.ProgressEvery, "progress", agent.DefaultProgressEvery, "how often transfer progress is reported")
	fs.DurationVar(&o.Heartbeat, "heartbeat", 0, "how often a quiet session with the head-end is kept alive (default 15s)")
	fs.StringVar(&o.Region, "region", "", "network region reported at registration")
	fs.StringVar(&o.ISP, "isp", "", "ISP reported at registration")
	fs.BoolVar(&o.Server, "server", false, "run as a media server")
	fs.StringVar(&o.Cluster, "cluster", "", "media server cluster (with -server)")
	fs.Var(&ingest, "ingest", "package folder to ingest at start (with -server; repeatable)")
	fs.BoolVar(&verbose, "v", false, "debug logging")
	config := fs.String("config", "", "the box configuration baked into the image ("+boxconfig.Path+"): -headend, -ca, -media-key and -scheduler-key, unless given as flags")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "transferd: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *config != "" {
		if err := boxconfig.ApplyFlags(fs, *config); err != nil {
			fmt.Fprintf(stderr, "transferd: %v\n", err)
			return 2
		}
	}
	o.MediaKeys, o.Ingest = mediaKeys, ingest
	var tpmDevice string
	if o.Key == "" && !o.Server {
		var err error
		if o.TPM, tpmDevice, err = identity.TPMOpener(*tpm); err != nil {
			fmt.Fprintf(stderr, "transferd: %v\n", err)
			return 2
		}
	}
	o.Ready = func(box api.BoxID, addr string) { fmt.Fprintf(stdout, "transferd: box %s pieces %s\n", box, addr) }
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if o.Key == "" && !o.Server {
		log.Info("box identity", "identity_file", cmp.Or(o.Identity, "default"), "tpm", cmp.Or(tpmDevice, "none"))
	}
	// The second stage's supervisor counts the box healthy once the
	// player can reach transferd, even before activation; outside a
	// supervisor this does nothing.
	o.Listening = func() {
		if err := supervisor.NotifyReady(); err != nil {
			log.Error("report ready to the supervisor", "err", err)
		}
	}
	if err := daemon.Run(ctx, o, log); err != nil {
		log.Error("transferd stopped", "err", err)
		if errors.Is(err, daemon.ErrOptions) {
			fs.Usage()
			return 2
		}
		return 1
	}
	return 0
}
