package daemon_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/board/identity"
	"github.com/boxswarm/boxswarm/headend/deviceca"
	"github.com/boxswarm/boxswarm/headend/gateway"
	"github.com/boxswarm/boxswarm/headend/gateway/gatewaytest"
	"github.com/boxswarm/boxswarm/p2p/daemon"
	"github.com/boxswarm/boxswarm/p2p/local"
	"github.com/boxswarm/boxswarm/p2p/piece/piecetest"
)

// fakeHeadEnd is the gateway with gatewaytest's in-memory side: enough to
// activate and connect.
func fakeHeadEnd(t *testing.T, codes ...string) (addr, caFile string) {
	t.Helper()
	dir := t.TempDir()
	ca, err := deviceca.LoadOrCreate(filepath.Join(dir, "ca"))
	must(t, err)
	srv, err := ca.IssueServer([]string{"127.0.0.1"})
	must(t, err)
	g, err := gateway.New(gateway.Config{TLS: &tls.Config{Certificates: []tls.Certificate{srv}}, CA: ca,
		Handler: gatewaytest.New(codes...), Log: piecetest.Logger(t).With("end", "gateway"), RetryBase: 200 * time.Millisecond})
	must(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done })
	caFile = filepath.Join(dir, "ca.pem")
	must(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate()}), 0o600))
	return l.Addr().String(), caFile
}

// logBuffer keeps a daemon's log, to check what it says.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// simTPM is the reference TPM simulator, kept for a whole test so that
// the daemon's opens and closes reach the same TPM; it counts them.
type simTPM struct {
	transport.TPM
	mu          sync.Mutex
	open, opens int
}

func newSimTPM(t *testing.T) *simTPM {
	t.Helper()
	sim, err := simulator.Get()
	if err != nil {
		t.Fatalf("starting the TPM simulator (needs cgo): %v", err)
	}
	t.Cleanup(func() { sim.Close() })
	return &simTPM{TPM: transport.FromReadWriter(sim)}
}

func (s *simTPM) opener() (transport.TPMCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open++
	s.opens++
	return simHandle{s}, nil
}

// counts says how many times the TPM was opened, and how many of those
// are not closed.
func (s *simTPM) counts() (opens, open int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opens, s.open
}

type simHandle struct{ *simTPM }

func (h simHandle) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.open--
	return nil
}

// idBox is one box's files and options against the fake head-end.
type idBox struct {
	dir string
	o   daemon.Options
	log *logBuffer
}

func newIDBox(t *testing.T, addr, caFile string) *idBox {
	dir, err := os.MkdirTemp("", "box") // short: the sockets' paths are limited
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return &idBox{dir: dir, log: &logBuffer{}, o: daemon.Options{
		HeadEnd: addr, CA: caFile, Store: filepath.Join(dir, "data", "store"), Cert: filepath.Join(dir, "data", "box.crt"),
		MediaKeys: []string{writePub(t, dir, "media.pub", piecetest.MediaPub)}, SchedulerKey: writePub(t, dir, "sched.pub", piecetest.SchedulerPub),
		Transport: daemon.TransportTCP, Heartbeat: time.Second,
	}}
}

// run starts the daemon; ready receives its box once it is up, done its
// end. stop ends it.
func (b *idBox) run(t *testing.T) (ready chan api.BoxID, done chan error, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ready, done = make(chan api.BoxID, 1), make(chan error, 1)
	o := b.o
	o.Ready = func(box api.BoxID, _ string) { ready <- box }
	log := slog.New(slog.NewTextHandler(b.log, nil))
	go func() { done <- daemon.Run(ctx, o, log) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	}
	t.Cleanup(stop)
	return ready, done, stop
}

func waitReady(t *testing.T, ready chan api.BoxID, done chan error, log *logBuffer) api.BoxID {
	t.Helper()
	select {
	case box := <-ready:
		return box
	case err := <-done:
		t.Fatalf("daemon stopped: %v\n%s", err, log)
	case <-time.After(15 * time.Second):
		t.Fatalf("daemon not ready\n%s", log)
	}
	return api.BoxID{}
}

// certKey returns the public key the box's certificate is for.
func certKey(t *testing.T, path string) ed25519.PublicKey {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	must(t, err)
	return cert.PublicKey.(ed25519.PublicKey)
}

// noPrivateKey fails if any file under dir holds a PEM private key.
func noPrivateKey(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".sock") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil // sockets and the like
		}
		if bytes.Contains(b, []byte("PRIVATE KEY-----")) {
			t.Errorf("%s holds a PEM private key", p)
		}
		return nil
	})
	must(t, err)
}

// TestSealedIdentity: a box's default identity is sealed by
// board/identity (with the TPM, or in the clear without one), created at
// the first start, certified at activation, and the same after a restart;
// no PEM key is written, and the TPM is open only while the identity is
// loaded.
func TestSealedIdentity(t *testing.T) {
	for _, tc := range []struct {
		name string
		tpm  bool
		want identity.Protection
	}{
		{"TPM", true, identity.ProtectionTPM},
		{"no TPM", false, identity.ProtectionNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, caFile := fakeHeadEnd(t, "code-1")
			b := newIDBox(t, addr, caFile)
			var sim *simTPM
			if tc.tpm {
				sim = newSimTPM(t)
				b.o.TPM = sim.opener
			}
			b.o.Activate = "code-1"
			ready, done, stop := b.run(t)
			first := waitReady(t, ready, done, b.log)
			if sim != nil {
				if opens, open := sim.counts(); opens != 1 || open != 0 {
					t.Errorf("the TPM was opened %d times and is still open %d times while the daemon runs; want 1 and 0", opens, open)
				}
			}
			stop()

			// The default place: next to the box state.
			path := filepath.Join(b.dir, "data", "identity")
			fi, err := os.Stat(path)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("identity file: %v, %v", fi, err)
			}
			o := identity.Options{Path: path, Log: piecetest.Logger(t)}
			if sim != nil {
				o.TPM = sim
			}
			id, err := identity.LoadOrCreate(t.Context(), o)
			must(t, err)
			defer id.Close()
			if id.Protection() != tc.want {
				t.Errorf("protection %s, want %s", id.Protection(), tc.want)
			}
			if !id.PublicKey().Equal(certKey(t, b.o.Cert)) {
				t.Error("the certificate is not for the sealed identity")
			}
			noPrivateKey(t, b.dir)
			if strings.Contains(b.log.String(), "NOT SEALED") {
				t.Errorf("the sealed identity is logged as not sealed:\n%s", b.log)
			}

			// Again: the code is spent, so only the same identity and
			// certificate bring the box up, as the same box.
			ready, done, _ = b.run(t)
			if again := waitReady(t, ready, done, b.log); again != first {
				t.Errorf("box %s after a restart, was %s", again, first)
			}
		})
	}
}

// TestPEMIdentity: -key on a box is the development identity: a PEM file,
// made at activation, and logged as not sealed; no sealed identity is
// made.
func TestPEMIdentity(t *testing.T) {
	addr, caFile := fakeHeadEnd(t, "code-1")
	b := newIDBox(t, addr, caFile)
	b.o.Key, b.o.Activate = filepath.Join(b.dir, "data", "box.key"), "code-1"
	ready, done, stop := b.run(t)
	waitReady(t, ready, done, b.log)
	stop()
	fi, err := os.Stat(b.o.Key)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("PEM key: %v, %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(b.dir, "data", "identity")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a sealed identity next to a PEM key: %v", err)
	}
	if !strings.Contains(b.log.String(), "NOT SEALED") {
		t.Errorf("the log does not say the key is not sealed:\n%s", b.log)
	}
}

// TestIdentityOptions: a sealed identity and a PEM key exclude each
// other, and a media server's identity is a PEM key.
func TestIdentityOptions(t *testing.T) {
	b := newIDBox(t, "127.0.0.1:1", "ca.pem")
	for _, tc := range []struct {
		name string
		edit func(*daemon.Options)
		want string
	}{
		{"both", func(o *daemon.Options) { o.Key, o.Identity = "k", "i" }, "give one"},
		{"server without a key", func(o *daemon.Options) { o.Server, o.Cluster = true, "c" }, "key (for a server)"},
		{"server with a sealed identity", func(o *daemon.Options) { o.Server, o.Cluster, o.Identity = true, "c", "i" }, "key (for a server)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := b.o
			tc.edit(&o)
			err := daemon.Run(t.Context(), o, piecetest.Logger(t))
			if !errors.Is(err, daemon.ErrOptions) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want ErrOptions with %q", err, tc.want)
			}
		})
	}
}

// TestReactivationAfterLostIdentity: a damaged identity file is replaced
// by a new key at start, the old certificate and session state are moved
// aside, and the box asks the TV for a code again, saying why; the new
// code certifies the new key. An identity that is not lost for good (a
// TPM-sealed file with no TPM given) stops the daemon instead, and is
// kept.
func TestReactivationAfterLostIdentity(t *testing.T) {
	addr, caFile := fakeHeadEnd(t, "code-1", "code-2")
	b := newIDBox(t, addr, caFile)
	b.o.Local = filepath.Join(b.dir, "run", "transferd.sock")
	b.o.Activate = "code-1"
	ready, done, stop := b.run(t)
	first := waitReady(t, ready, done, b.log)
	stop()
	path := filepath.Join(b.dir, "data", "identity")
	oldKey := certKey(t, b.o.Cert)

	// Damaged: half the file.
	data, err := os.ReadFile(path)
	must(t, err)
	must(t, os.WriteFile(path, data[:len(data)/2], 0o600))
	b.o.Activate = ""
	*b.log = logBuffer{}
	ready, done, stop = b.run(t)
	c := local.Dial(b.o.Local)
	defer c.Close()
	var st local.Status
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st, err = c.Status(t.Context())
		if (err == nil && st.NeedsCode) || time.Now().After(deadline) {
			break
		}
	}
	if !st.NeedsCode || st.Activated || !strings.Contains(st.Error, "identity was lost") {
		t.Fatalf("status after the identity was lost: %+v, %v\n%s", st, err, b.log)
	}
	if !strings.Contains(b.log.String(), "BOX IDENTITY LOST") {
		t.Errorf("the log does not say the identity was lost:\n%s", b.log)
	}
	if _, err := os.Stat(b.o.Cert + ".stale"); err != nil {
		t.Errorf("the old certificate was not moved aside: %v", err)
	}
	if _, err := os.Stat(b.o.Cert); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old certificate is still in place: %v", err)
	}
	if err := c.Activate(t.Context(), "code-1"); !errors.Is(err, local.ErrRefused) {
		t.Errorf("the old code, spent by the old key: %v", err)
	}
	must(t, c.Activate(t.Context(), "code-2"))
	second := waitReady(t, ready, done, b.log)
	stop()
	newKey := certKey(t, b.o.Cert)
	if second == first || newKey.Equal(oldKey) {
		t.Errorf("after re-activation: box %s (was %s), same key: %v", second, first, newKey.Equal(oldKey))
	}
	id, err := identity.LoadOrCreate(t.Context(), identity.Options{Path: path, Log: piecetest.Logger(t)})
	must(t, err)
	defer id.Close()
	if !id.PublicKey().Equal(newKey) {
		t.Error("the new certificate is not for the new identity")
	}

	t.Run("not lost for good", func(t *testing.T) {
		sim := newSimTPM(t)
		sealed := filepath.Join(b.dir, "sealed")
		id, err := identity.LoadOrCreate(t.Context(), identity.Options{Path: sealed, TPM: sim, Log: piecetest.Logger(t)})
		must(t, err)
		id.Close()
		before, err := os.ReadFile(sealed)
		must(t, err)
		o := b.o
		o.Identity, o.Local = sealed, ""
		err = daemon.Run(t.Context(), o, piecetest.Logger(t))
		if !errors.Is(err, identity.ErrNoTPM) || errors.Is(err, identity.ErrNeedsReactivation) {
			t.Errorf("a TPM-sealed identity without the TPM: %v", err)
		}
		if after, _ := os.ReadFile(sealed); !bytes.Equal(after, before) {
			t.Error("the identity file was changed")
		}
	})
}
