// Command mediaimport is the operator's import tool: it reads a movie
// (MPEG-TS or MP4, H.264/H.265 and AAC), seals every frame under its own key,
// and writes a signed media package, handing the title's content key to a
// key sink: the head-end's key vault, or a 0600 key file per title.
//
//	mediaimport -new-media-key keys/media     # once: the operator's media signing key pair
//	mediaimport -in movie.mp4 -media-key keys/media.key -headend http://127.0.0.1:7480 \
//	    -token-file /var/lib/boxswarm-headend/admin.token -meta movie.json [-publish 2027-01-01T20:00:00Z] [-out packages/]
//	mediaimport -package packages/<id> -headend URL -token-file FILE -meta movie.json   # finish an import cut short
//	mediaimport -in movie.mp4 -out packages/ -media-key keys/media.key -keys keys/content/   # no head-end
//
// With -headend an import is three steps, each said on standard output:
// the content key goes to the key vault, wrapped to the vault's own key so
// that it is never in the clear on the wire or on disk (no key file is
// written); the package goes to the head-end's media server; then the
// title and its metadata (-meta, see admin.TitleMeta) are published to
// customer management and the scheduler at the -publish time (default:
// now). A failed step says which, and leaves the head-end consistent: the
// title is never published before its key and its package are in place,
// and the package stays on disk so that -package finishes the import.
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
	// With the head-end.
	headend, tokenFile, meta, publish, pkg string
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
	fs.StringVar(&o.headend, "headend", "", "the head-end's admin API, such as http://127.0.0.1:7480: register the key, place the package and publish the title there")
	fs.StringVar(&o.tokenFile, "token-file", "", "the admin API's token file (DATA/admin.token), with -headend")
	fs.StringVar(&o.meta, "meta", "", "the title's metadata, a JSON file (catalog, name, year, genre, actors, directors, producers, language, rating, rent, buy, window, regions), with -headend")
	fs.StringVar(&o.publish, "publish", "", "when the title is published, RFC 3339 (default: now), with -headend")
	fs.StringVar(&o.pkg, "package", "", "with -headend: place and publish this existing package folder instead of importing (finishes an import whose key is registered)")
	newKey := fs.String("new-media-key", "", "generate a media signing key pair PREFIX.key/PREFIX.pub and exit")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: mediaimport -in FILE -media-key KEY -headend URL -token-file FILE -meta FILE [-publish TIME] [-out DIR] [-id HEX] [-piece-size N]
       mediaimport -package DIR -headend URL -token-file FILE -meta FILE [-publish TIME]
       mediaimport -in FILE -out DIR -media-key KEY -keys DIR [-id HEX] [-piece-size N]
       mediaimport -new-media-key PREFIX`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mediaimport: unexpected arguments %q\n", fs.Args())
		return 2
	}
	var err error
	switch {
	case *newKey != "":
		err = newMediaKey(*newKey, stdout)
	case o.headend != "":
		if msg := o.checkHeadEnd(); msg != "" {
			fmt.Fprintln(stderr, "mediaimport: "+msg)
			fs.Usage()
			return 2
		}
		err = importToHeadEnd(ctx, o, stdout, stderr)
	case o.tokenFile != "" || o.meta != "" || o.publish != "" || o.pkg != "":
		fmt.Fprintln(stderr, "mediaimport: -token-file, -meta, -publish and -package go with -headend")
		fs.Usage()
		return 2
	case o.in == "" || o.out == "" || o.mediaKey == "" || o.keyDir == "":
		fmt.Fprintln(stderr, "mediaimport: -in, -out, -media-key and -keys are required (or -headend instead of -keys)")
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
	m, err := runImport(ctx, o, o.out, keys.Dir(o.keyDir), stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %s as %s: %s\n", filepath.Base(o.in), m.ID, describe(m))
	return nil
}

// runImport imports o.in into out, handing the key to sink.
func runImport(ctx context.Context, o options, out string, sink keys.Sink, stderr io.Writer) (*media.Manifest, error) {
	signer, err := keyfile.ReadPrivateKey(o.mediaKey)
	if err != nil {
		return nil, err
	}
	var id media.ID
	if o.id != "" {
		if id, err = media.ParseID(o.id); err != nil {
			return nil, err
		}
	}
	var bar *progress
	if st, err := os.Stat(o.in); err == nil {
		bar = newProgress(stderr, st.Size(), o.quiet)
	}
	m, err := importer.ImportFile(ctx, o.in, importer.Options{
		Out: out, ID: id, PieceSize: uint32(o.pieceSize), MediaKey: signer, Keys: sink,
	}, func(read, _ int64) { bar.update(read) })
	if bar != nil {
		bar.done(err == nil)
	}
	return m, err
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
