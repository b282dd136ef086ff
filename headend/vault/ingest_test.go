package vault

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/keywrap"
)

// wrapForVault wraps key as the import tool does, with header h filled in
// where it is zero.
func (e *env) wrapForVault(t *testing.T, id media.ID, key []byte, h keywrap.Header) []byte {
	t.Helper()
	pub := e.v.IngestKey()
	if h.Title == (media.ID{}) {
		h.Title = id
	}
	if h.Box == (api.BoxID{}) {
		h.Box = IngestBox(pub)
	}
	if h.Expires.IsZero() {
		h.Expires = e.clock.Now().Add(10 * time.Minute)
	}
	w, err := keywrap.Wrap(pub, h, key)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestPutWrapped(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id, _ := media.NewID()
	key := make([]byte, media.ContentKeySize)
	rand.Read(key)
	good := e.wrapForVault(t, id, key, keywrap.Header{})

	other := bytes.Clone(key)
	other[0] ^= 1
	otherID, _ := media.NewID()
	strangerPub, _, _ := ed25519.GenerateKey(nil)
	flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 1; return b }
	for _, tc := range []struct {
		name    string
		id      media.ID
		wrapped func() []byte
		want    error
	}{
		{"not a wrapped key", id, func() []byte { return []byte("hello") }, keywrap.ErrMalformed},
		{"empty", id, func() []byte { return nil }, keywrap.ErrMalformed},
		{"for another title", otherID, func() []byte { return good }, keywrap.ErrWrongTitle},
		{"for a box", id, func() []byte { return e.wrapForVault(t, id, key, keywrap.Header{Box: box}) }, keywrap.ErrWrongBox},
		{"expired", id, func() []byte {
			return e.wrapForVault(t, id, key, keywrap.Header{Expires: e.clock.Now().Add(-time.Second)})
		}, keywrap.ErrExpired},
		{"living too long", id, func() []byte {
			return e.wrapForVault(t, id, key, keywrap.Header{Expires: e.clock.Now().Add(time.Hour)})
		}, ErrIngestLifetime},
		{"sealed part changed", id, func() []byte { return flip(good, len(good)-1) }, keywrap.ErrAuth},
		// The expiry is the last 8 bytes before the sealed field's header.
		{"expiry changed", id, func() []byte { return flip(good, keywrap.Size-keywrap.SealedSize-6-1) }, keywrap.ErrAuth},
		{"wrapped to another key", id, func() []byte {
			w, err := keywrap.Wrap(strangerPub, keywrap.Header{Title: id, Box: IngestBox(e.v.IngestKey()), Expires: e.clock.Now().Add(time.Minute)}, key)
			if err != nil {
				t.Fatal(err)
			}
			return w
		}, keywrap.ErrAuth},
	} {
		if err := e.v.PutWrapped(ctx, tc.id, tc.wrapped()); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	for _, t0 := range []media.ID{id, otherID} {
		if ok, _ := e.v.Has(ctx, t0); ok {
			t.Fatalf("a refused wrapped key registered title %s", t0)
		}
	}

	if err := e.v.PutWrapped(ctx, id, good); err != nil {
		t.Fatal(err)
	}
	// Sending it again, or the same key wrapped afresh, is a retry.
	if err := e.v.PutWrapped(ctx, id, good); err != nil {
		t.Errorf("the same wrapped key again: %v", err)
	}
	e.clock.Add(time.Minute)
	if err := e.v.PutWrapped(ctx, id, e.wrapForVault(t, id, key, keywrap.Header{})); err != nil {
		t.Errorf("the same key wrapped again: %v", err)
	}
	if err := e.v.PutWrapped(ctx, id, e.wrapForVault(t, id, other, keywrap.Header{})); !errors.Is(err, ErrKeyExists) {
		t.Errorf("a different key for the title: %v, want ErrKeyExists", err)
	}

	// The key a box gets is the one that was wrapped to the vault.
	resp, err := e.v.Release(ctx, box, boxPub, e.issue(t, e.grant(id)))
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := keywrap.Unwrap(boxKey, box, id, resp.WrappedKey, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	if !bytes.Equal(s.Bytes(), key) {
		t.Fatal("the released key is not the one registered")
	}
	assertNoKeyInLogs(t, e, id)
}

// TestIngestKeyKept checks that the ingest key survives a restart (a key
// wrapped before it still opens after), is sealed in the file, and that a
// closed vault refuses rather than touching freed memory.
func TestIngestKeyKept(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pub := e.v.IngestKey()
	if len(pub) != ed25519.PublicKeySize {
		t.Fatalf("ingest key of %d bytes", len(pub))
	}
	if _, err := keywrap.X25519PublicKey(pub); err != nil {
		t.Fatalf("the ingest key cannot receive wrapped keys: %v", err)
	}
	id, _ := media.NewID()
	key := make([]byte, media.ContentKeySize)
	rand.Read(key)
	w := e.wrapForVault(t, id, key, keywrap.Header{})
	e.reopen(t)
	if !bytes.Equal(e.v.IngestKey(), pub) {
		t.Fatal("the ingest key changed across a restart")
	}
	if err := e.v.PutWrapped(ctx, id, w); err != nil {
		t.Fatalf("a key wrapped before the restart: %v", err)
	}

	// Neither the seed nor the private key's X25519 scalar are in the file.
	e.v.ingestMu.RLock()
	seed := bytes.Clone(e.v.ingest.Bytes()[:ed25519.SeedSize])
	e.v.ingestMu.RUnlock()
	v := e.v
	e.v = nil
	v.Close()
	file, err := os.ReadFile(filepath.Join(e.dir, "vault.db"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(file, seed) {
		t.Fatal("the vault file holds the ingest key's seed in the clear")
	}
	if err := v.PutWrapped(ctx, id, w); err == nil {
		t.Fatal("a closed vault accepted a key")
	}
	if IngestBox(pub) != IngestBox(bytes.Clone(pub)) || IngestBox(pub) == IngestBox(boxPub) {
		t.Error("IngestBox is not a function of the key")
	}
}
