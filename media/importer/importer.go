// Package importer turns a movie file into a media package: it demuxes the
// input, seals every frame under its own key, writes the signed package,
// and hands the title's content key to a key sink.
//
// An import either completes or leaves nothing behind: no package folder,
// no key. The content key lives in locked memory for the duration of the
// import and is zeroed afterwards.
package importer

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/demux"
	"github.com/boxswarm/boxswarm/media/keys"
)

// Options say where a package goes.
type Options struct {
	// Out is the folder the package is written into, as <media ID>/.
	Out string
	// ID is the title's media ID; a random one if zero.
	ID media.ID
	// PieceSize is a power of two from media.MinPieceSize to
	// media.MaxPieceSize; 1 MiB if zero.
	PieceSize uint32
	// MediaKey signs the manifest.
	MediaKey ed25519.PrivateKey
	// Keys receives the content key once the package is complete.
	Keys keys.Sink
}

// Import reads a container (MPEG-TS or MP4) of size bytes and writes its
// package.
func Import(ctx context.Context, in io.ReadSeeker, size int64, o Options) (*media.Manifest, error) {
	if o.Keys == nil || o.MediaKey == nil || o.Out == "" {
		return nil, errors.New("import: Out, MediaKey and Keys are required")
	}
	src, err := demux.Open(in, size)
	if err != nil {
		return nil, err
	}
	id := o.ID
	if id == (media.ID{}) {
		if id, err = media.NewID(); err != nil {
			return nil, err
		}
	}
	key, err := keys.NewSecret(media.ContentKeySize)
	if err != nil {
		return nil, err
	}
	defer key.Destroy()
	if _, err := rand.Read(key.Bytes()); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	w, err := media.NewWriter(o.Out, id, src.Tracks(), key.Bytes(), o.PieceSize)
	if err != nil {
		return nil, err
	}
	for n := 0; ; n++ {
		if n%256 == 0 && ctx.Err() != nil {
			w.Abort()
			return nil, ctx.Err()
		}
		f, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil {
			err = w.WriteFrame(f)
		}
		if err != nil {
			w.Abort()
			return nil, fmt.Errorf("frame %d: %w", n, err)
		}
	}
	m, err := w.Finish(o.MediaKey)
	if err != nil {
		return nil, err
	}
	if err := o.Keys.Put(ctx, id, key.Bytes()); err != nil {
		os.RemoveAll(filepath.Join(o.Out, id.String()))
		return nil, fmt.Errorf("store the content key (package removed): %w", err)
	}
	return m, nil
}

// ImportFile imports a file, reporting progress (bytes read of the total)
// to progress if it is not nil.
func ImportFile(ctx context.Context, path string, o Options, progress func(read, total int64)) (*media.Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var in io.ReadSeeker = f
	if progress != nil {
		in = &countingReader{r: f, total: st.Size(), report: progress}
	}
	m, err := Import(ctx, in, st.Size(), o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// countingReader reports how far into the input the demuxer has read.
type countingReader struct {
	r      io.ReadSeeker
	pos    int64
	total  int64
	report func(read, total int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.pos += int64(n)
	c.report(c.pos, c.total)
	return n, err
}

func (c *countingReader) Seek(off int64, whence int) (int64, error) {
	pos, err := c.r.Seek(off, whence)
	if err == nil {
		c.pos = pos
		c.report(pos, c.total)
	}
	return pos, err
}
