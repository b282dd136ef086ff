// Command mediaimport is the operator's import tool: it reads a movie
// (MPEG-TS or MP4, H.264/H.265 and AAC), seals every frame under its own key,
// and writes a signed media package, handing the title's content key to a
// key sink (a 0600 key file per title by default; the key vault later).
//
//	mediaimport -in movie.mp4 -out packages/ -media-key keys/media.key -keys keys/content/
//	mediaimport -new-media-key keys/media     # once: the operator's media signing key pair
//
// A failed import leaves no package and no key behind.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/boxswarm/boxswarm/firmware/keyfile"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/importer"
	"github.com/boxswarm/boxswarm/media/keys"
)

type options struct {
	in, out, mediaKey, keyDir, id string
	pieceSize                     uint
	quiet                         bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mediaimport", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.in, "in", "", "input file: MPEG-TS, MP4 or fragmented MP4")
	fs.StringVar(&o.out, "out", "", "folder the package is written into (as <media ID>/)")
	fs.StringVar(&o.mediaKey, "media-key", "", "the operator's media signing key (PKCS #8 PEM Ed25519)")
	fs.StringVar(&o.keyDir, "keys", "", "folder for content key files (0600, one per title)")
	fs.StringVar(&o.id, "id", "", "media ID to use (32 hex digits; default: random)")
	fs.UintVar(&o.pieceSize, "piece-size", 1<<media.DefaultPieceLog, "piece size in bytes: a power of two from 64 KiB to 16 MiB")
	fs.BoolVar(&o.quiet, "q", false, "no progress bar")
	newKey := fs.String("new-media-key", "", "generate a media signing key pair PREFIX.key/PREFIX.pub and exit")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: mediaimport -in FILE -out DIR -media-key KEY -keys DIR [-id HEX] [-piece-size N]\n       mediaimport -new-media-key PREFIX")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	switch {
	case *newKey != "":
		err = newMediaKey(*newKey, stdout)
	case o.in == "" || o.out == "" || o.mediaKey == "" || o.keyDir == "":
		fmt.Fprintln(stderr, "mediaimport: -in, -out, -media-key and -keys are required")
		fs.Usage()
		return 2
	default:
		err = importFile(ctx, o, stdout, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "mediaimport: %v\n", err)
		return 1
	}
	return 0
}

func newMediaKey(prefix string, stdout io.Writer) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	if err := keyfile.WritePair(prefix, priv, pub); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "media signing key %x written to %s.key and %s.pub\n", media.KeyID(pub), prefix, prefix)
	return nil
}

func importFile(ctx context.Context, o options, stdout, stderr io.Writer) error {
	signer, err := keyfile.ReadPrivateKey(o.mediaKey)
	if err != nil {
		return err
	}
	var id media.ID
	if o.id != "" {
		if id, err = media.ParseID(o.id); err != nil {
			return err
		}
	}
	var bar *progress
	if st, err := os.Stat(o.in); err == nil {
		bar = newProgress(stderr, st.Size(), o.quiet)
	}
	m, err := importer.ImportFile(ctx, o.in, importer.Options{
		Out: o.out, ID: id, PieceSize: uint32(o.pieceSize), MediaKey: signer, Keys: keys.Dir(o.keyDir),
	}, func(read, _ int64) { bar.update(read) })
	if bar != nil {
		bar.done(err == nil)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %s as %s: %s\n", filepath.Base(o.in), m.ID, describe(m))
	return nil
}

func describe(m *media.Manifest) string {
	s := ""
	for i, t := range m.Tracks {
		if t.Codec.IsVideo() {
			s += fmt.Sprintf("track %d %v %dx%d, ", i, t.Codec, t.Width, t.Height)
		} else {
			s += fmt.Sprintf("track %d %v %d Hz %d ch, ", i, t.Codec, t.SampleRate, t.Channels)
		}
	}
	var dur time.Duration
	for i, t := range m.Tracks {
		if d := time.Duration(m.Duration(uint8(i))) * time.Second / time.Duration(t.Timescale); d > dur {
			dur = d
		}
	}
	return fmt.Sprintf("%s%d frames, %s, %d bytes in %d pieces", s, m.NumFrames(), dur.Round(time.Millisecond), m.PayloadSize, m.NumPieces())
}
