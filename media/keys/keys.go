// Package keys moves content keys: from the import tool to wherever keys
// are kept (a Sink), and from there to the player (a Source), which holds
// each one in a Secret — memory that is locked against swapping, left out of
// core dumps, and zeroed when playback ends.
//
// Dir is the simple Sink and Source: one file per title, mode 0600, in a
// folder of the operator's choosing. It is for development and tests; the
// key vault is the real one. A box never has a Dir: its keys come from the
// vault, wrapped to the box, and live only in Secrets.
package keys

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/boxswarm/boxswarm/media"
)

// Sink stores a title's content key when it is imported.
type Sink interface {
	Put(ctx context.Context, id media.ID, key []byte) error
}

// Source provides a title's content key for playback. The caller owns the
// returned Secret and must Destroy it.
type Source interface {
	ContentKey(ctx context.Context, id media.ID) (*Secret, error)
}

// ErrNoKey is returned when a source has no key for a title.
var ErrNoKey = errors.New("no content key")

// Dir keeps keys as files named <media ID>.key.
type Dir string

const fileHeader = "boxswarm content key v1\n"

func (d Dir) path(id media.ID) string { return filepath.Join(string(d), id.String()+".key") }

// Put writes the key file with mode 0600; an existing key is never replaced.
func (d Dir) Put(_ context.Context, id media.ID, key []byte) error {
	if len(key) != media.ContentKeySize {
		return fmt.Errorf("content key for %s has %d bytes, want %d", id, len(key), media.ContentKeySize)
	}
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(d.path(id), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("key file for %s: %w", id, err)
	}
	text := make([]byte, 0, len(fileHeader)+2*len(key)+1)
	text = append(text, fileHeader...)
	text = hex.AppendEncode(text, key)
	text = append(text, '\n')
	_, err = f.Write(text)
	clear(text)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(d.path(id))
		return fmt.Errorf("key file for %s: %w", id, err)
	}
	return nil
}

// ContentKey reads the key file into a Secret.
func (d Dir) ContentKey(_ context.Context, id media.ID) (*Secret, error) {
	text, err := os.ReadFile(d.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("title %s: %w", id, ErrNoKey)
	}
	if err != nil {
		return nil, err
	}
	defer clear(text)
	body, ok := strings.CutPrefix(string(text), fileHeader)
	if !ok || len(body) != 2*media.ContentKeySize+1 || body[len(body)-1] != '\n' {
		return nil, fmt.Errorf("key file for %s is not a %s", id, strings.TrimSpace(fileHeader))
	}
	s, err := NewSecret(media.ContentKeySize)
	if err != nil {
		return nil, err
	}
	if _, err := hex.Decode(s.Bytes(), text[len(fileHeader):len(text)-1]); err != nil {
		s.Destroy()
		return nil, fmt.Errorf("key file for %s: %w", id, err)
	}
	return s, nil
}
