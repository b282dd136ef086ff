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
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/pass"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/keywrap"
)

// refusals are every error Release may refuse with; each case must match
// exactly one.
var refusals = []error{
	ErrNoPass, pass.ErrMalformed, pass.ErrUnsupportedVersion, pass.ErrUnknownIssuer, pass.ErrBadSignature,
	pass.ErrExpired, pass.ErrNotYetValid, ErrWrongBox, ErrReplayed, ErrUnknownTitle, keywrap.ErrBadPublicKey,
}

func TestReleaseRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	title, _ := e.put(t)
	unknown := media.ID{0xee}

	issueWith := func(key ed25519.PrivateKey, now func() time.Time, g pass.Grant) []byte {
		i, err := pass.NewIssuer(key, now, 0)
		if err != nil {
			t.Fatal(err)
		}
		b, _, err := i.Issue(g)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := e.issue(t, e.grant(title))
	p, err := pass.Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	retitled := *p
	retitled.Title = unknown
	tampered := retitled.Encode() // the old signature
	flipped := bytes.Clone(good)
	flipped[len(flipped)-10] ^= 1
	past := func() time.Time { return e.clock.Now().Add(-10 * time.Minute) }
	used := e.issue(t, e.grant(title))
	if _, err := e.v.Release(ctx, box, boxPub, used); err != nil {
		t.Fatal(err)
	}
	early := e.grant(title)
	early.NotBefore = e.clock.Now().Add(time.Hour)
	lowOrder := make([]byte, 32) // y = 0: a point of order 4
	badKeyGrant := e.grant(title)
	badKeyGrant.BoxKey = lowOrder

	for _, tc := range []struct {
		name    string
		box     api.BoxID
		key     ed25519.PublicKey
		pass    []byte
		want    error
		outcome Outcome
		titled  bool // the log names the title: the pass was genuine
	}{
		{"no pass", box, boxPub, nil, ErrNoPass, RefusedNoPass, false},
		{"empty pass", box, boxPub, []byte{}, ErrNoPass, RefusedNoPass, false},
		{"truncated", box, boxPub, good[:len(good)-1], pass.ErrMalformed, RefusedMalformed, false},
		{"garbage", box, boxPub, []byte("let me in"), pass.ErrMalformed, RefusedMalformed, false},
		{"tampered title", box, boxPub, tampered, pass.ErrBadSignature, RefusedSignature, false},
		{"tampered signature", box, boxPub, flipped, pass.ErrBadSignature, RefusedSignature, false},
		{"unknown issuer", box, boxPub, issueWith(rogueKey, e.clock.Now, e.grant(title)), pass.ErrUnknownIssuer, RefusedIssuer, false},
		{"expired", box, boxPub, issueWith(passKey, past, e.grant(title)), pass.ErrExpired, RefusedExpired, true},
		{"window not open", box, boxPub, e.issue(t, early), pass.ErrNotYetValid, RefusedEarly, true},
		{"another box ID", otherBox, boxPub, good, ErrWrongBox, RefusedWrongBox, true},
		{"another box key", box, otherBoxPub, good, ErrWrongBox, RefusedWrongBox, true},
		{"another box entirely", otherBox, otherBoxPub, good, ErrWrongBox, RefusedWrongBox, true},
		{"replayed", box, boxPub, used, ErrReplayed, RefusedReplayed, true},
		{"unknown title", box, boxPub, e.issue(t, e.grant(unknown)), ErrUnknownTitle, RefusedTitle, true},
		{"unusable box key", box, lowOrder, e.issue(t, badKeyGrant), keywrap.ErrBadPublicKey, RefusedBoxKey, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.v.Release(ctx, tc.box, tc.key, tc.pass)
			if err == nil {
				t.Fatal("released")
			}
			for _, r := range refusals {
				if errors.Is(err, r) != (r == tc.want) {
					t.Fatalf("Release = %v, want %v", err, tc.want)
				}
			}
			if resp.WrappedKey != nil || resp.Reason != string(tc.outcome) || resp.Validate() != nil {
				t.Errorf("response %+v, want reason %q", resp, tc.outcome)
			}
			l := e.lastLog(t)
			if l.Outcome != tc.outcome || l.Box != tc.box || !l.Time.Equal(e.clock.Now()) || !l.KeyExpires.IsZero() {
				t.Errorf("log entry %+v, want outcome %s for box %s", l, tc.outcome, tc.box)
			}
			if named := l.Title != (media.ID{}) && l.Pass != (pass.ID{}); named != tc.titled {
				t.Errorf("log entry names title %s and pass %s; want named=%v", l.Title, l.Pass, tc.titled)
			}
		})
	}
	// None of the refusals used up the good pass: a thief presenting it
	// does not deny the rightful box.
	resp, err := e.v.Release(ctx, box, boxPub, good)
	if err != nil || resp.Title != title || len(resp.WrappedKey) != keywrap.Size {
		t.Fatalf("the rightful box after the refusals: %+v, %v", resp, err)
	}
}

func TestReleaseUnwrap(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	title, key := e.put(t)
	for _, tc := range []struct {
		name   string
		window time.Duration
		want   time.Duration // the wrapped key's life from now
	}{
		{"short window", 2*time.Hour + 500*time.Millisecond, 2 * time.Hour},
		{"long window", 72 * time.Hour, DefaultMaxKeyLifetime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := e.grant(title)
			g.NotAfter = e.clock.Now().Add(tc.window)
			resp, err := e.v.Release(ctx, box, boxPub, e.issue(t, g))
			if err != nil {
				t.Fatal(err)
			}
			if resp.Title != title || resp.Reason != "" || resp.Validate() != nil {
				t.Fatalf("response %+v", resp)
			}
			now := e.clock.Now()
			s, h, err := keywrap.Unwrap(boxKey, box, title, resp.WrappedKey, now)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Destroy()
			if !bytes.Equal(s.Bytes(), key) {
				t.Fatal("unwrapped a different key")
			}
			if want := now.Add(tc.want); !h.Expires.Equal(want) {
				t.Errorf("wrapped key expires %s, want %s", h.Expires, want)
			}
			if l := e.lastLog(t); l.Outcome != Released || l.Title != title || !l.KeyExpires.Equal(h.Expires) || l.Pass == (pass.ID{}) {
				t.Errorf("log entry %+v", l)
			}
			// Another box's private key gets nothing out of it.
			if _, _, err := keywrap.Unwrap(otherBoxKey, box, title, resp.WrappedKey, now); !errors.Is(err, keywrap.ErrAuth) {
				t.Errorf("another box's key: %v", err)
			}
			e.clock.Add(time.Second)
		})
	}
}

// TestConcurrentReplay presents one pass many times at once: exactly one
// release.
func TestConcurrentReplay(t *testing.T) {
	e := newEnv(t)
	title, _ := e.put(t)
	p := e.issue(t, e.grant(title))
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = e.v.Release(context.Background(), box, boxPub, p)
		})
	}
	wg.Wait()
	released := 0
	for _, err := range errs {
		switch {
		case err == nil:
			released++
		case !errors.Is(err, ErrReplayed):
			t.Errorf("Release = %v, want ErrReplayed", err)
		}
	}
	if released != 1 {
		t.Fatalf("%d releases of one pass", released)
	}
}

func TestPut(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	title, key := e.put(t)
	if err := e.v.Put(ctx, title, key); err != nil {
		t.Errorf("the same key again: %v", err)
	}
	other := bytes.Clone(key)
	other[0] ^= 1
	if err := e.v.Put(ctx, title, other); !errors.Is(err, ErrKeyExists) {
		t.Errorf("a different key: %v, want ErrKeyExists", err)
	}
	if err := e.v.Put(ctx, media.ID{1}, key[:16]); err == nil {
		t.Error("a 16-byte key was accepted")
	}
	for id, want := range map[media.ID]bool{title: true, {1}: false} {
		if ok, err := e.v.Has(ctx, id); err != nil || ok != want {
			t.Errorf("Has(%s) = %v, %v; want %v", id, ok, err, want)
		}
	}
	// The key released is still the first one.
	resp, err := e.v.Release(ctx, box, boxPub, e.issue(t, e.grant(title)))
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := keywrap.Unwrap(boxKey, box, title, resp.WrappedKey, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	if !bytes.Equal(s.Bytes(), key) {
		t.Fatal("the key was replaced")
	}
}

// TestAtRest looks at the vault file: no content key in it, and a sealed
// key moved to another title does not open.
func TestAtRest(t *testing.T) {
	e := newEnv(t)
	a, keyA := e.put(t)
	b, _ := e.put(t)
	e.v.Close()
	e.v = nil
	file, err := os.ReadFile(filepath.Join(e.dir, "vault.db"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(file, keyA) || bytes.Contains(file, []byte(hex.EncodeToString(keyA))) {
		t.Fatal("the vault file holds a content key in the clear")
	}
	if st, _ := os.Stat(filepath.Join(e.dir, "vault.db")); st.Mode().Perm() != 0o600 {
		t.Errorf("vault file mode %04o", st.Mode().Perm())
	}
	// Copy A's sealed key over B's.
	db, err := bolt.Open(filepath.Join(e.dir, "vault.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		k := tx.Bucket(bucketKeys)
		return k.Put(b[:], clone(k.Get(a[:])))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	e.open(t)
	_, err = e.v.Release(context.Background(), box, boxPub, e.issue(t, e.grant(b)))
	if err == nil || !strings.Contains(err.Error(), "does not open") {
		t.Fatalf("release of a transplanted key: %v", err)
	}
	if l := e.lastLog(t); l.Outcome != Failed || l.Title != b {
		t.Errorf("log entry %+v", l)
	}
}

func TestPrune(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	title, _ := e.put(t)
	count := func() (n int) {
		e.v.db.View(func(tx *bolt.Tx) error {
			n = tx.Bucket(bucketNonces).Stats().KeyN
			if m := tx.Bucket(bucketExpiries).Stats().KeyN; m != n {
				t.Errorf("%d used passes, %d in the expiry index", n, m)
			}
			return nil
		})
		return n
	}
	old := e.issue(t, e.grant(title))
	for range 3 {
		if _, err := e.v.Release(ctx, box, boxPub, e.issue(t, e.grant(title))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.v.Release(ctx, box, boxPub, old); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 4 {
		t.Fatalf("%d used passes remembered, want 4", n)
	}
	// Expired, but within the grace: still remembered across a restart.
	e.clock.Add(pass.DefaultTTL + time.Minute)
	e.reopen(t)
	if n := count(); n != 4 {
		t.Fatalf("%d used passes remembered after their expiry, want 4 until the grace is over", n)
	}
	// A restart after the grace forgets them; the old pass is refused as
	// expired all the same.
	e.clock.Add(pruneGrace)
	e.reopen(t)
	if n := count(); n != 0 {
		t.Fatalf("%d used passes remembered after the grace, want 0", n)
	}
	if _, err := e.v.Release(ctx, box, boxPub, old); !errors.Is(err, pass.ErrExpired) {
		t.Fatalf("an old pass after pruning: %v, want ErrExpired", err)
	}
	// A release prunes too.
	if _, err := e.v.Release(ctx, box, boxPub, e.issue(t, e.grant(title))); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(pass.DefaultTTL + pruneGrace + time.Second)
	if _, err := e.v.Release(ctx, box, boxPub, e.issue(t, e.grant(title))); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d used passes after a pruning release, want 1", n)
	}
}

func TestMasterKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "master.key")
	mk, err := LoadOrCreateMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	mk.Close()
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() != MasterKeySize {
		t.Fatalf("created master key: %v, %v", st, err)
	}
	first, _ := os.ReadFile(path)
	mk, err = LoadOrCreateMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	mk.Close()
	if again, _ := os.ReadFile(path); !bytes.Equal(first, again) {
		t.Fatal("loading the master key changed it")
	}
	write := func(name string, b []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	link := filepath.Join(dir, "link.key")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]string{
		"group-readable": write("group.key", first, 0o640),
		"world-readable": write("world.key", first, 0o644),
		"short":          write("short.key", first[:31], 0o600),
		"long":           write("long.key", append(first, 0), 0o600),
		"empty":          write("empty.key", nil, 0o600),
		"a folder":       dir,
		"a symlink":      link,
	} {
		if mk, err := LoadOrCreateMasterKey(p); err == nil {
			mk.Close()
			t.Errorf("%s: accepted", name)
		}
	}
	// Read-only for its owner is fine.
	if mk, err := LoadOrCreateMasterKey(write("ro.key", first, 0o400)); err != nil {
		t.Errorf("a 0400 master key: %v", err)
	} else {
		mk.Close()
	}
}

func TestWrongMasterKey(t *testing.T) {
	e := newEnv(t)
	title, _ := e.put(t)
	e.v.Close()
	e.v = nil
	other, err := LoadOrCreateMasterKey(filepath.Join(e.dir, "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	cfg := e.config()
	cfg.MasterKey = other
	if v, err := Open(context.Background(), cfg); !errors.Is(err, ErrWrongMasterKey) {
		if v != nil {
			v.Close()
		}
		t.Fatalf("Open with another master key: %v, want ErrWrongMasterKey", err)
	}
	// The right key still opens it, with the key intact.
	e.open(t)
	if ok, err := e.v.Has(context.Background(), title); !ok || err != nil {
		t.Fatalf("Has after reopening: %v, %v", ok, err)
	}
}

func TestOpenRefuses(t *testing.T) {
	e := newEnv(t)
	for name, f := range map[string]func(*Config){
		"no pass keys":   func(c *Config) { c.PassKeys = nil },
		"short pass key": func(c *Config) { c.PassKeys = []ed25519.PublicKey{passPub[:16]} },
		"no master key":  func(c *Config) { c.MasterKey = nil },
		"no path":        func(c *Config) { c.Path = "" },
	} {
		cfg := e.config()
		f(&cfg)
		if v, err := Open(context.Background(), cfg); err == nil {
			v.Close()
			t.Errorf("%s: opened", name)
		}
	}
}
