package vault

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/demux"
	"github.com/boxswarm/boxswarm/media/importer"
	"github.com/boxswarm/boxswarm/media/keywrap"
	"github.com/boxswarm/boxswarm/media/mediatest"
)

// TestEndToEnd imports a real clip with the vault as the key sink, issues a
// pass, releases the key, unwraps it on the box's side and decrypts frames
// of the package with it; then restarts the vault and checks that the used
// pass stays used and the key still works.
func TestEndToEnd(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	clip := mediatest.Make(t, e.dir, mediatest.TSH265)
	mediaKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x4d}, 32))
	mediaPub := mediaKey.Public().(ed25519.PublicKey)
	out := filepath.Join(e.dir, "packages")
	m, err := importer.ImportFile(ctx, clip, importer.Options{Out: out, MediaKey: mediaKey, Keys: e.v}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := e.v.Has(ctx, m.ID); !ok || err != nil {
		t.Fatalf("the import did not register its key: %v, %v", ok, err)
	}
	want := sourceFrames(t, clip, 3)

	// playFrames is the box: unwrap, open the package, decrypt the first
	// frames and compare them with the source.
	playFrames := func(t *testing.T, resp api.KeyResponse) {
		t.Helper()
		if resp.Title != m.ID || resp.Validate() != nil {
			t.Fatalf("response %+v", resp)
		}
		key, _, err := keywrap.Unwrap(boxKey, box, m.ID, resp.WrappedKey, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		defer key.Destroy()
		pkg, err := media.OpenPackage(filepath.Join(out, m.ID.String()), mediaPub)
		if err != nil {
			t.Fatal(err)
		}
		defer pkg.Close()
		fc, err := media.NewFrameCipher(key.Bytes(), m.ID)
		if err != nil {
			t.Fatal(err)
		}
		wrong := bytes.Clone(key.Bytes())
		wrong[0] ^= 1
		wc, _ := media.NewFrameCipher(wrong, m.ID)
		for i, w := range want {
			fe := pkg.Manifest.Frame(i)
			sealed := make([]byte, fe.Size)
			if _, err := pkg.Payload.ReadAt(sealed, int64(fe.Offset)); err != nil {
				t.Fatal(err)
			}
			got, err := fc.Open(nil, uint64(i), fe.FrameMeta, sealed)
			if err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			if !bytes.Equal(got, w) {
				t.Fatalf("frame %d decrypts to %d bytes unlike the source's %d", i, len(got), len(w))
			}
			if _, err := wc.Open(nil, uint64(i), fe.FrameMeta, sealed); !errors.Is(err, media.ErrFrameAuth) {
				t.Fatalf("frame %d opened with a wrong key: %v", i, err)
			}
		}
	}

	first := e.issue(t, e.grant(m.ID))
	resp, err := e.v.Release(ctx, box, boxPub, first)
	if err != nil {
		t.Fatal(err)
	}
	playFrames(t, resp)

	e.clock.Add(30 * time.Second)
	e.reopen(t)
	if _, err := e.v.Release(ctx, box, boxPub, first); !errors.Is(err, ErrReplayed) {
		t.Fatalf("the used pass after a restart: %v, want ErrReplayed", err)
	}
	resp, err = e.v.Release(ctx, box, boxPub, e.issue(t, e.grant(m.ID)))
	if err != nil {
		t.Fatal(err)
	}
	playFrames(t, resp)

	// The log holds both releases and the refusal, across the restart.
	log, err := e.v.ReleaseLog(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var outcomes []string
	for _, l := range log {
		outcomes = append(outcomes, string(l.Outcome))
		if l.Title != m.ID || l.Box != box {
			t.Errorf("log entry %+v", l)
		}
	}
	if got := strings.Join(outcomes, ","); got != "released,replayed,released" {
		t.Errorf("release log outcomes %s", got)
	}
	assertNoKeyInLogs(t, e, m.ID)
}

// sourceFrames demuxes the first n frames of the clip, what the package's
// frames must decrypt to.
func sourceFrames(t *testing.T, path string, n int) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	src, err := demux.Open(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for range n {
		fr, err := src.Next()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(fr.Data))
	}
	return out
}

// assertNoKeyInLogs checks the slog output for the title's content key, in
// hex and in raw bytes. The key is read back through the vault's own
// unsealing, as the test cannot see the importer's.
func assertNoKeyInLogs(t *testing.T, e *env, id media.ID) {
	t.Helper()
	var sealed []byte
	e.v.db.View(func(tx *bolt.Tx) error {
		sealed = clone(tx.Bucket(bucketKeys).Get(id[:]))
		return nil
	})
	s, err := e.v.open(id, sealed)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	logs := e.logs.String()
	if strings.Count(logs, "\n") < 4 {
		t.Fatalf("only %d log lines", strings.Count(logs, "\n"))
	}
	if strings.Contains(logs, hex.EncodeToString(s.Bytes())) || strings.Contains(logs, string(s.Bytes())) ||
		strings.Contains(strings.ToLower(logs), hex.EncodeToString(s.Bytes()[:8])) {
		t.Fatal("the content key is in the log")
	}
}
