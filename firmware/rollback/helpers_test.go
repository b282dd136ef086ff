package rollback

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// rebootableTPM is a TPM under test whose host can be rebooted: Reboot
// brings it through a TPM reset (the next boot's TPM2_Startup(CLEAR)).
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
}

// newSim returns a freshly manufactured simulator (simulator.Get wipes NV
// and reseeds), started with TPM2_Startup(CLEAR).
func newSim(t *testing.T) *simTPM {
	t.Helper()
	sim, err := simulator.Get()
	if err != nil {
		t.Fatalf("starting the TPM simulator (needs cgo and libssl-dev): %v", err)
	}
	t.Cleanup(func() {
		if err := sim.Close(); err != nil {
			t.Errorf("closing simulator: %v", err)
		}
	})
	return &simTPM{sim: sim, TPM: transport.FromReadWriter(sim)}
}

// Reboot is an orderly TPM reset: TPM2_Shutdown(CLEAR), power cycle,
// TPM2_Startup(CLEAR). NV survives; PCRs, locks and hierarchy enables do not.
func (s *simTPM) Reboot(t *testing.T) {
	t.Helper()
	if err := s.sim.Reset(); err != nil {
		t.Fatalf("resetting simulator: %v", err)
	}
}

// recorder passes commands through and remembers their command codes, to
// check what was (not) sent.
type recorder struct {
	transport.TPM
	mu  sync.Mutex
	ccs []tpm2.TPMCC
}

func (r *recorder) Send(cmd []byte) ([]byte, error) {
	if len(cmd) >= 10 {
		r.mu.Lock()
		r.ccs = append(r.ccs, tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:10])))
		r.mu.Unlock()
	}
	return r.TPM.Send(cmd)
}

func (r *recorder) count(cc tpm2.TPMCC) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.ccs {
		if c == cc {
			n++
		}
	}
	return n
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ccs)
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testLogger logs through t.Log, so a failing test shows what the store did.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// nvName reads an index's current name, which go-tpm needs for any command
// naming the index.
func nvName(t *testing.T, tpm transport.TPM, index tpm2.TPMHandle) tpm2.NamedHandle {
	t.Helper()
	rsp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(tpm)
	if err != nil {
		t.Fatalf("NV_ReadPublic %#08x: %v", uint32(index), err)
	}
	return tpm2.NamedHandle{Handle: index, Name: rsp.NVName}
}

func nvPublic(t *testing.T, tpm transport.TPM, index tpm2.TPMHandle) *tpm2.TPMSNVPublic {
	t.Helper()
	rsp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(tpm)
	if err != nil {
		t.Fatalf("NV_ReadPublic %#08x: %v", uint32(index), err)
	}
	pub, err := rsp.NVPublic.Contents()
	if err != nil {
		t.Fatalf("NV_ReadPublic %#08x: %v", uint32(index), err)
	}
	return pub
}

func ownerAuth() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
}

func wantTPMRC(t *testing.T, what string, err error, rc tpm2.TPMRC) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %v", what, rc)
	}
	if !errors.Is(err, rc) {
		t.Fatalf("%s: %v, want %v", what, err, rc)
	}
}

func digest(s string) [32]byte {
	var d [32]byte
	copy(d[:], s)
	return d
}

// coreSequence is the boot story every TPM implementation must get right:
// provisioning, raising, measuring, locking, and what a reboot keeps and
// forgets. It runs against the simulator and against swtpm.
func coreSequence(t *testing.T, tpm rebootableTPM) {
	ctx := testContext(t)
	s := New(tpm, WithLogger(testLogger(t)))

	// Boot 1: a factory-fresh TPM.
	if _, err := s.Read(ctx); !errors.Is(err, ErrNotProvisioned) {
		t.Fatalf("Read before Ensure: %v, want ErrNotProvisioned", err)
	}
	for i := range 2 {
		if err := s.Ensure(ctx); err != nil {
			t.Fatalf("Ensure #%d: %v", i+1, err)
		}
	}
	if got, err := s.Read(ctx); err != nil || got != (Floors{}) {
		t.Fatalf("Read after Ensure = %v, %v; want zero floors", got, err)
	}
	for _, step := range []struct{ to, want Floors }{
		{Floors{5, 2}, Floors{5, 2}},
		{Floors{3, 7}, Floors{5, 7}},
		{Floors{4, 1}, Floors{5, 7}},
	} {
		if got, err := s.Raise(ctx, step.to); err != nil || got != step.want {
			t.Fatalf("Raise(%v) = %v, %v; want %v", step.to, got, err, step.want)
		}
	}
	d1, d2 := digest("manifest one"), digest("manifest two")
	for _, d := range [][32]byte{d1, d2} {
		if err := Extend(ctx, tpm, ManifestPCR, d); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := ReadPCR(ctx, tpm, ManifestPCR); err != nil || got != ExpectedPCR([32]byte{}, d1, d2) {
		t.Fatalf("PCR %d = %x, %v; want %x", ManifestPCR, got, err, ExpectedPCR([32]byte{}, d1, d2))
	}

	if err := s.Lock(ctx); err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if on, err := PlatformHierarchyEnabled(ctx, tpm); err != nil || on {
		t.Fatalf("platform hierarchy enabled after Lock = %v, %v", on, err)
	}
	if err := s.Lock(ctx); err != nil {
		t.Fatalf("second Lock: %v", err)
	}
	if !nvPublic(t, tpm, s.Index()).Attributes.WriteLocked {
		t.Fatal("index not WRITELOCKED after Lock")
	}
	if _, err := s.Raise(ctx, Floors{6, 7}); !errors.Is(err, ErrLocked) {
		t.Fatalf("Raise after Lock: %v, want ErrLocked", err)
	}
	if got, err := s.Raise(ctx, Floors{5, 7}); err != nil || got != (Floors{5, 7}) {
		t.Fatalf("no-op Raise after Lock = %v, %v; want {5 7}, nil", got, err)
	}
	if got, err := s.Read(ctx); err != nil || got != (Floors{5, 7}) {
		t.Fatalf("Read after Lock = %v, %v; want {5 7}", got, err)
	}
	if err := s.Ensure(ctx); err != nil {
		t.Fatalf("Ensure after Lock (index exists): %v", err)
	}
	_, err := tpm2.NVUndefineSpace{AuthHandle: platformAuth(), NVIndex: nvName(t, tpm, s.Index())}.Execute(tpm)
	wantTPMRC(t, "NV_UndefineSpace with platform auth after Lock", err, tpm2.TPMRCHierarchy)
	_, err = tpm2.NVDefineSpace{AuthHandle: platformAuth(), PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
		NVIndex: s.Index() + 1, NameAlg: tpm2.TPMAlgSHA256, Attributes: Attributes(), DataSize: RecordSize,
	})}.Execute(tpm)
	wantTPMRC(t, "NV_DefineSpace with platform auth after Lock", err, tpm2.TPMRCHierarchy)

	// Boot 2.
	tpm.Reboot(t)
	if got, err := ReadPCR(ctx, tpm, ManifestPCR); err != nil || got != ([32]byte{}) {
		t.Fatalf("PCR %d after reboot = %x, %v; want zeros", ManifestPCR, got, err)
	}
	if on, err := PlatformHierarchyEnabled(ctx, tpm); err != nil || !on {
		t.Fatalf("platform hierarchy enabled after reboot = %v, %v; want true", on, err)
	}
	if nvPublic(t, tpm, s.Index()).Attributes.WriteLocked {
		t.Fatal("index still WRITELOCKED after reboot")
	}
	if err := s.Ensure(ctx); err != nil {
		t.Fatalf("Ensure after reboot: %v", err)
	}
	if got, err := s.Read(ctx); err != nil || got != (Floors{5, 7}) {
		t.Fatalf("Read after reboot = %v, %v; want {5 7}", got, err)
	}
	if got, err := s.Raise(ctx, Floors{9, 8}); err != nil || got != (Floors{9, 8}) {
		t.Fatalf("Raise after reboot = %v, %v; want {9 8}", got, err)
	}

	// Boot 3: the raise of boot 2 persisted.
	tpm.Reboot(t)
	if got, err := s.Read(ctx); err != nil || got != (Floors{9, 8}) {
		t.Fatalf("Read after second reboot = %v, %v; want {9 8}", got, err)
	}
}
