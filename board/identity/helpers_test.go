package identity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/boxswarm/boxswarm/board"
	"github.com/boxswarm/boxswarm/firmware/rollback"
)

// rebootableTPM is a TPM under test whose host can be rebooted: Reboot
// brings it through a TPM reset, so PCRs go back to zero and transient
// objects are gone, while the hierarchy seeds stay.
type rebootableTPM interface {
	transport.TPM
	Reboot(t *testing.T)
}

// simTPM is the Microsoft reference TPM that go-tpm-tools links in with cgo.
// Only one exists per process; simulator.Get blocks until the previous one
// is closed, so tests using it must not run in parallel.
type simTPM struct {
	sim *simulator.Simulator
	transport.TPM
	closed bool
}

// newSim returns a freshly manufactured simulator: simulator.Get wipes NV
// and draws new hierarchy seeds, so each one is "another TPM".
func newSim(t *testing.T) *simTPM {
	t.Helper()
	sim, err := simulator.Get()
	if err != nil {
		t.Fatalf("starting the TPM simulator (needs cgo and libssl-dev): %v", err)
	}
	s := &simTPM{sim: sim, TPM: transport.FromReadWriter(sim)}
	t.Cleanup(func() { s.Close(t) })
	return s
}

func (s *simTPM) Close(t *testing.T) {
	if s.closed {
		return
	}
	s.closed = true
	if err := s.sim.Close(); err != nil {
		t.Errorf("closing simulator: %v", err)
	}
}

func (s *simTPM) Reboot(t *testing.T) {
	t.Helper()
	if err := s.sim.Reset(); err != nil {
		t.Fatalf("resetting simulator: %v", err)
	}
}

// tap passes commands through and keeps every command and response, to
// check what crossed the "bus".
type tap struct {
	transport.TPM
	mu      sync.Mutex
	traffic [][]byte
}

func (r *tap) Send(cmd []byte) ([]byte, error) {
	// Copied before sending: the simulator decrypts parameters in place, in
	// the very buffer it was given.
	sent := bytes.Clone(cmd)
	rsp, err := r.TPM.Send(cmd)
	r.mu.Lock()
	r.traffic = append(r.traffic, sent, bytes.Clone(rsp))
	r.mu.Unlock()
	return rsp, err
}

func (r *tap) contains(b []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.traffic {
		if bytes.Contains(m, b) {
			return true
		}
	}
	return false
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// logs collects what the package logs, and shows it through t.Log.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
	t   *testing.T
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return l.buf.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newLogs(t *testing.T) (*logs, *slog.Logger) {
	l := &logs{t: t}
	return l, slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeBoard is a board.DeviceSecreter.
type fakeBoard struct {
	secret []byte
	err    error
}

func (b fakeBoard) DeviceSecret(context.Context) ([]byte, error) {
	if b.err != nil {
		return nil, b.err
	}
	return bytes.Clone(b.secret), nil
}

var _ board.DeviceSecreter = fakeBoard{}

func secretBoard(s string) fakeBoard { return fakeBoard{secret: []byte(fmt.Sprintf("%-32s", s))} }

func noSecretBoard() fakeBoard {
	return fakeBoard{err: fmt.Errorf("qemu-arm64: %w", board.ErrNoDeviceSecret)}
}

func idPath(t *testing.T) string { return filepath.Join(t.TempDir(), "identity", "identity.key") }

// measure does what stage one would: PCR extended with SHA-256 of s.
func measure(t *testing.T, tpm transport.TPM, pcr uint32, s string) {
	t.Helper()
	if err := rollback.Extend(context.Background(), tpm, pcr, sha256.Sum256([]byte(s))); err != nil {
		t.Fatal(err)
	}
}

func mustLoad(t *testing.T, o Options) *Identity {
	t.Helper()
	id, err := LoadOrCreate(testContext(t), o)
	if err != nil {
		t.Fatalf("LoadOrCreate: %v", err)
	}
	t.Cleanup(func() { id.Close() })
	return id
}

func wantErr(t *testing.T, what string, err error, want ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %v", what, want)
	}
	for _, w := range want {
		if !errors.Is(err, w) {
			t.Fatalf("%s: %v; want it to wrap %q", what, err, w)
		}
	}
}

func seedOf(id *Identity) []byte { return bytes.Clone(id.PrivateKey()[:seedSize]) }

func readBlob(t *testing.T, path string) *blob {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := parse(data)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return b
}

func writeBlob(t *testing.T, path string, b *blob) {
	t.Helper()
	if err := os.WriteFile(path, b.encode(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fieldOffset returns where the value of tag starts in an encoded file.
func fieldOffset(t *testing.T, file []byte, tag uint16) int {
	t.Helper()
	off := len(Magic) + 4
	for off < len(file) {
		tg := binary.BigEndian.Uint16(file[off:])
		n := int(binary.BigEndian.Uint32(file[off+2:]))
		if tg == tag {
			return off + 6
		}
		off += 6 + n
	}
	t.Fatalf("tag %d not in file", tag)
	return 0
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
