// Command playerd is the box's player daemon (package player/daemon): it
// runs the TV interface on the box's display with the remote control,
// and plays titles from the media store with the content keys the key
// vault wraps to the box, asking the transfer daemon (transferd -local)
// for everything that needs the network.
//
//	playerd -local /run/boxswarm/transferd.sock -media-key media.pub \
//	    [-identity /data/identity] [-tpm auto|none|PATH] [-identity-pem box.key] \
//	    [-video-out "-pix_fmt bgra -f fbdev /dev/fb0"] [-audio-out ARGS] [-report-framemd5 PATH] \
//	    [-card /dev/dri/card0] [-fb /dev/fb0] [-size 1280x720] [-no-display] \
//	    [-input /dev/input/event0] [-no-input] [-signup-url URL] [-config /etc/boxswarm/box.json]
//
// -config takes the media keys from the box configuration baked into the
// signed image (images/boxconfig) when no -media-key is given.
//
// The identity key: -identity (default /data/identity) is the box
// identity the transfer daemon creates and board/identity seals, with the
// TPM -tpm names (auto: /dev/tpmrm0, else /dev/tpm0, if the kernel has
// one; see identity.TPMOpener). -identity-pem reads a PKCS #8 PEM key
// instead (the transfer daemon's -key), for development only: that key
// is not sealed. The key is loaded only to open a content key, and closed
// right after; the TPM is open only meanwhile.
//
// The decoder is ffmpeg (-decoder), reading the stream on a pipe: the
// video goes where -video-out says (ffmpeg output arguments, by default
// the frame buffer), the audio where -audio-out says (nothing by
// default), and with -report-framemd5 the framemd5 of the decoded video
// goes to that file or device as well, for tests that compare the box's
// decode with the source.
//
// Without a display (or with -no-display) playerd runs headless; without
// a remote it runs without input; both are logged. It reports ready to
// the second stage's supervisor (boot/supervisor) once the display and
// remote are open, or given up on after -device-wait, and the transfer
// daemon has answered. Logs are slog text on standard error.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"image"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/boxswarm/boxswarm/board/display"
	"github.com/boxswarm/boxswarm/board/identity"
	"github.com/boxswarm/boxswarm/board/remote"
	"github.com/boxswarm/boxswarm/boot/supervisor"
	"github.com/boxswarm/boxswarm/firmware/keyfile"
	"github.com/boxswarm/boxswarm/images/boxconfig"
	"github.com/boxswarm/boxswarm/player/daemon"
)

// defaultIdentity is where the box's sealed identity lives: on the data
// partition, where the transfer daemon creates it.
const defaultIdentity = "/data/identity"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// config is what the flags say.
type config struct {
	local                 string
	mediaKeys             listFlag
	identityPEM, sealed   string
	sealedSet             bool // -identity given, not its default
	tpm                   string
	ff                    daemon.FFmpeg
	videoOut, audioOut    string
	card, fb, size        string
	noDisplay, noInput    bool
	input                 string
	signupURL, contact    string
	serviceAfter, devWait time.Duration
	verbose               bool
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("playerd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.local, "local", "/run/boxswarm/transferd.sock", "the transfer daemon's local API socket")
	fs.Var(&c.mediaKeys, "media-key", "trusted media signing key, PKIX PEM (repeatable)")
	fs.StringVar(&c.identityPEM, "identity-pem", "", "development only: the box's identity key as a PKCS #8 PEM file (the transfer daemon's -key), instead of -identity")
	fs.StringVar(&c.sealed, "identity", defaultIdentity, "the box's identity file, sealed by board/identity (the transfer daemon's -identity)")
	fs.StringVar(&c.tpm, "tpm", "auto", "with -identity: the TPM that seals it: auto (the kernel's, if any), none, or a device path")
	fs.StringVar(&c.ff.Path, "decoder", "ffmpeg", "the decoder program (ffmpeg)")
	fs.StringVar(&c.videoOut, "video-out", strings.Join(daemon.DefaultVideoOut, " "), "ffmpeg output arguments for the video (space-separated; empty: none)")
	fs.StringVar(&c.audioOut, "audio-out", "", "ffmpeg output arguments for the audio (space-separated; empty: no audio)")
	fs.StringVar(&c.ff.Report, "report-framemd5", "", "also write the framemd5 of the decoded video to this file or device (tests)")
	fs.StringVar(&c.card, "card", "", "DRM device (default: the first /dev/dri/cardN that opens)")
	fs.StringVar(&c.fb, "fb", "", "fbdev device tried when DRM fails (default /dev/fb0)")
	fs.StringVar(&c.size, "size", "1280x720", "screen mode wanted, WxH")
	fs.BoolVar(&c.noDisplay, "no-display", false, "run headless")
	fs.StringVar(&c.input, "input", "", "the remote's input event device (default: the best one found)")
	fs.BoolVar(&c.noInput, "no-input", false, "run without a remote")
	fs.StringVar(&c.signupURL, "signup-url", "", "where viewers sign up, shown on the activation screen")
	fs.StringVar(&c.contact, "contact", "", "who to call, shown on the service screen")
	fs.DurationVar(&c.serviceAfter, "service-after", time.Minute, "how long the transfer daemon may stay unreachable before the service screen shows")
	fs.DurationVar(&c.devWait, "device-wait", 10*time.Second, "how long the start waits for the display and remote")
	fs.BoolVar(&c.verbose, "v", false, "debug logging")
	config := fs.String("config", "", "the box configuration baked into the image ("+boxconfig.Path+"): -media-key, unless given as a flag")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fs.Visit(func(f *flag.Flag) { c.sealedSet = c.sealedSet || f.Name == "identity" })
	if *config != "" {
		if err := boxconfig.ApplyFlags(fs, *config); err != nil {
			fmt.Fprintf(stderr, "playerd: %v\n", err)
			return 2
		}
	}
	level := slog.LevelInfo
	if c.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	o, err := c.options(log)
	if err != nil {
		fmt.Fprintf(stderr, "playerd: %v\n", err)
		fs.Usage()
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "playerd: unexpected arguments %q\n", fs.Args())
		return 2
	}
	d, err := daemon.New(o)
	if err != nil {
		log.Error("playerd", "err", err)
		return 2
	}
	if err := d.Run(ctx); err != nil {
		log.Error("playerd stopped", "err", err)
		return 1
	}
	return 0
}

// options turns the flags into the daemon's options.
func (c *config) options(log *slog.Logger) (daemon.Options, error) {
	o := daemon.Options{Local: c.local, Contact: c.contact, ServiceAfter: c.serviceAfter, DeviceWait: c.devWait, Log: log}
	o.TV.SignupURL = c.signupURL
	if len(c.mediaKeys) == 0 {
		return o, errors.New("at least one -media-key is required")
	}
	for _, p := range c.mediaKeys {
		k, err := keyfile.ReadPublicKey(p)
		if err != nil {
			return o, fmt.Errorf("media key: %w", err)
		}
		o.MediaKeys = append(o.MediaKeys, k)
	}
	switch {
	case c.identityPEM != "" && c.sealedSet:
		return o, errors.New("give -identity-pem or -identity, not both")
	case c.identityPEM != "":
		log.Warn("development identity: the box's key is a PEM file, not sealed", "identity_pem", c.identityPEM)
		o.Identity = daemon.PEMIdentity(c.identityPEM)
	case c.sealed != "":
		openTPM, dev, err := identity.TPMOpener(c.tpm)
		if err != nil {
			return o, err
		}
		log.Info("box identity", "identity_file", c.sealed, "tpm", cmp.Or(dev, "none"))
		o.Identity = daemon.SealedIdentity(identity.Options{Path: c.sealed, Log: log.With("part", "identity")}, openTPM)
	default:
		return o, errors.New("the identity key is required: -identity or -identity-pem")
	}
	c.ff.Video = strings.Fields(c.videoOut)
	if c.ff.Video == nil {
		c.ff.Video = []string{} // none, rather than the default
	}
	c.ff.Audio = strings.Fields(c.audioOut)
	o.Decoder = c.ff.Decoder(log.With("part", "decoder"))
	var size image.Point
	if _, err := fmt.Sscanf(c.size, "%dx%d", &size.X, &size.Y); err != nil || size.X <= 0 || size.Y <= 0 {
		return o, fmt.Errorf("-size %q: want WxH, such as 1280x720", c.size)
	}
	if !c.noDisplay {
		dopts := display.Options{Card: c.card, FB: c.fb, Size: size, Log: log.With("part", "display")}
		o.OpenDisplay = func(ctx context.Context) (display.Display, error) { return display.Wait(ctx, dopts) }
	}
	if !c.noInput {
		o.OpenRemote = func(ctx context.Context) (remote.Reader, error) { return openRemote(ctx, c.input, log) }
	}
	o.Ready = func() {
		if err := supervisor.NotifyReady(); err != nil {
			log.Error("report ready to the supervisor", "err", err)
		}
	}
	return o, nil
}
