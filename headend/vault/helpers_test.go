package vault

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/pass"
	"github.com/boxswarm/boxswarm/media"
)

var (
	passKey     = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x50}, 32))
	passPub     = passKey.Public().(ed25519.PublicKey)
	rogueKey    = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x66}, 32))
	boxKey      = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0xb0}, 32))
	boxPub      = boxKey.Public().(ed25519.PublicKey)
	otherBoxKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0xb1}, 32))
	otherBoxPub = otherBoxKey.Public().(ed25519.PublicKey)
	box         = api.BoxID{0xb0}
	otherBox    = api.BoxID{0xb1}
	start       = time.Date(2031, 3, 4, 20, 0, 0, 0, time.UTC)
)

// clock is a settable clock shared by the vault and the issuer.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer collects log output from concurrent goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is a vault in a temporary folder with its master key, clock, pass
// issuer and captured log.
type env struct {
	dir    string
	mk     *MasterKeyFile
	v      *Vault
	clock  *clock
	issuer *pass.Issuer
	logs   *syncBuffer
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{dir: t.TempDir(), clock: &clock{t: start}, logs: &syncBuffer{}}
	var err error
	if e.mk, err = LoadOrCreateMasterKey(filepath.Join(e.dir, "master.key")); err != nil {
		t.Fatal(err)
	}
	if e.issuer, err = pass.NewIssuer(passKey, e.clock.Now, 0); err != nil {
		t.Fatal(err)
	}
	e.open(t)
	t.Cleanup(func() {
		if e.v != nil {
			e.v.Close()
		}
		e.mk.Close()
	})
	return e
}

func (e *env) config() Config {
	return Config{
		Path:      filepath.Join(e.dir, "vault.db"),
		MasterKey: e.mk,
		PassKeys:  []ed25519.PublicKey{passPub},
		Now:       e.clock.Now,
		Logger:    slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func (e *env) open(t testing.TB) {
	t.Helper()
	v, err := Open(context.Background(), e.config())
	if err != nil {
		t.Fatal(err)
	}
	e.v = v
}

// reopen closes the vault and opens the same file again, as a restart.
func (e *env) reopen(t testing.TB) {
	t.Helper()
	if err := e.v.Close(); err != nil {
		t.Fatal(err)
	}
	e.v = nil
	e.open(t)
}

// put registers a random content key for a new title.
func (e *env) put(t testing.TB) (media.ID, []byte) {
	t.Helper()
	id, err := media.NewID()
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, media.ContentKeySize)
	rand.Read(key)
	if err := e.v.Put(context.Background(), id, key); err != nil {
		t.Fatal(err)
	}
	return id, key
}

// grant is a pass for the test box, playable for two hours from now.
func (e *env) grant(title media.ID) pass.Grant {
	return pass.Grant{Box: box, BoxKey: boxPub, Title: title, NotAfter: e.clock.Now().Add(2 * time.Hour), Account: "acct-17"}
}

func (e *env) issue(t testing.TB, g pass.Grant) []byte {
	t.Helper()
	b, _, err := e.issuer.Issue(g)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// lastLog returns the newest entry of the release log.
func (e *env) lastLog(t testing.TB) LogEntry {
	t.Helper()
	all, err := e.v.ReleaseLog(context.Background(), 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) == 0 {
		t.Fatal("release log is empty")
	}
	return all[len(all)-1]
}
