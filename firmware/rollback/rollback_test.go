package rollback

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

func TestCoreSequenceSimulator(t *testing.T) {
	coreSequence(t, newSim(t))
}

func TestEnsureDefinesOnce(t *testing.T) {
	ctx := testContext(t)
	sim := newSim(t)
	rec := &recorder{TPM: sim}
	s := New(rec, WithLogger(quietLogger()))

	for boot := range 3 {
		if err := s.Ensure(ctx); err != nil {
			t.Fatalf("boot %d: Ensure: %v", boot, err)
		}
		if err := s.Ensure(ctx); err != nil {
			t.Fatalf("boot %d: second Ensure: %v", boot, err)
		}
		if err := s.Lock(ctx); err != nil {
			t.Fatalf("boot %d: Lock: %v", boot, err)
		}
		sim.Reboot(t)
	}
	if n := rec.count(tpm2.TPMCCNVDefineSpace); n != 1 {
		t.Errorf("NV_DefineSpace sent %d times over 3 boots, want 1", n)
	}
	if n := rec.count(tpm2.TPMCCNVWrite); n != 1 {
		t.Errorf("NV_Write sent %d times over 3 boots, want 1 (the zero record)", n)
	}
	pub := nvPublic(t, sim, DefaultIndex)
	if got, want := attrBits(pub.Attributes)&^stateAttrMask, attrBits(Attributes()); got != want {
		t.Errorf("defined attributes %#08x, want %#08x", got, want)
	}
	if !pub.Attributes.Written || pub.DataSize != RecordSize || pub.NameAlg != tpm2.TPMAlgSHA256 {
		t.Errorf("defined public area %+v", pub)
	}
}

func TestRaise(t *testing.T) {
	tests := []struct {
		name      string
		start, to Floors
		want      Floors
		wantWrite bool
	}{
		{"both grow", Floors{1, 1}, Floors{2, 3}, Floors{2, 3}, true},
		{"image grows only", Floors{1, 1}, Floors{2, 1}, Floors{2, 1}, true},
		{"key grows only", Floors{1, 1}, Floors{1, 9}, Floors{1, 9}, true},
		{"image grows, key lower", Floors{4, 4}, Floors{5, 1}, Floors{5, 4}, true},
		{"image lower, key grows", Floors{4, 4}, Floors{1, 5}, Floors{4, 5}, true},
		{"equal", Floors{4, 4}, Floors{4, 4}, Floors{4, 4}, false},
		{"both lower", Floors{4, 4}, Floors{3, 3}, Floors{4, 4}, false},
		{"zero request", Floors{4, 4}, Floors{}, Floors{4, 4}, false},
		{"maximum values", Floors{}, Floors{^uint64(0), ^uint32(0)}, Floors{^uint64(0), ^uint32(0)}, true},
	}
	sim := newSim(t)
	ctx := testContext(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A separate index per case gives each one a fresh start without
			// a new simulator.
			rec := &recorder{TPM: sim}
			s := New(rec, WithIndex(DefaultIndex+tpm2.TPMHandle(i)+1), WithLogger(quietLogger()))
			if err := s.Ensure(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Raise(ctx, tt.start); err != nil {
				t.Fatal(err)
			}
			before := rec.count(tpm2.TPMCCNVWrite)
			got, err := s.Raise(ctx, tt.to)
			if err != nil {
				t.Fatalf("Raise(%v): %v", tt.to, err)
			}
			if got != tt.want {
				t.Errorf("Raise(%v) from %v = %v, want %v", tt.to, tt.start, got, tt.want)
			}
			if wrote := rec.count(tpm2.TPMCCNVWrite) > before; wrote != tt.wantWrite {
				t.Errorf("Raise wrote = %v, want %v", wrote, tt.wantWrite)
			}
			if stored, err := s.Read(ctx); err != nil || stored != tt.want {
				t.Errorf("Read = %v, %v; want %v", stored, err, tt.want)
			}
		})
	}
}

func TestReservedBytesPreserved(t *testing.T) {
	ctx := testContext(t)
	sim := newSim(t)
	s := New(sim, WithLogger(quietLogger()))
	if err := s.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	// A newer stage one put something in the reserved bytes.
	newer := record{Floors: Floors{3, 3}, reserved: [4]byte{1, 2, 3, 4}}
	_, err := tpm2.NVWrite{AuthHandle: platformAuth(), NVIndex: nvName(t, sim, DefaultIndex),
		Data: tpm2.TPM2BMaxNVBuffer{Buffer: newer.marshal()}}.Execute(sim)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Raise(ctx, Floors{4, 3}); err != nil {
		t.Fatal(err)
	}
	_, r, err := s.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (record{Floors: Floors{4, 3}, reserved: [4]byte{1, 2, 3, 4}}); r != want {
		t.Errorf("record after Raise = %+v, want %+v", r, want)
	}
}

func TestLockedTPMRefuses(t *testing.T) {
	ctx := testContext(t)
	sim := newSim(t)
	s := New(sim, WithLogger(quietLogger()))
	if err := s.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Raise(ctx, Floors{7, 7}); err != nil {
		t.Fatal(err)
	}
	if err := s.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	record16 := func() tpm2.TPM2BMaxNVBuffer { return tpm2.TPM2BMaxNVBuffer{Buffer: make([]byte, RecordSize)} }
	tests := []struct {
		name   string
		run    func() error
		wantRC tpm2.TPMRC
		want   error
	}{
		{"Raise", func() error { _, err := s.Raise(ctx, Floors{8, 7}); return err }, 0, ErrLocked},
		{"NV_Write platform", func() error {
			_, err := tpm2.NVWrite{AuthHandle: platformAuth(), NVIndex: nvName(t, sim, DefaultIndex), Data: record16()}.Execute(sim)
			return err
		}, tpm2.TPMRCHierarchy, nil},
		{"NV_Write owner", func() error {
			_, err := tpm2.NVWrite{AuthHandle: ownerAuth(), NVIndex: nvName(t, sim, DefaultIndex), Data: record16()}.Execute(sim)
			return err
		}, tpm2.TPMRCNVLocked, nil},
		{"NV_Write index auth", func() error {
			h := nvName(t, sim, DefaultIndex)
			_, err := tpm2.NVWrite{AuthHandle: tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: tpm2.PasswordAuth(nil)}, NVIndex: h, Data: record16()}.Execute(sim)
			return err
		}, tpm2.TPMRCAuthUnavailable, nil},
		{"NV_UndefineSpace platform", func() error {
			_, err := tpm2.NVUndefineSpace{AuthHandle: platformAuth(), NVIndex: nvName(t, sim, DefaultIndex)}.Execute(sim)
			return err
		}, tpm2.TPMRCHierarchy, nil},
		{"NV_UndefineSpace owner", func() error {
			_, err := tpm2.NVUndefineSpace{AuthHandle: ownerAuth(), NVIndex: nvName(t, sim, DefaultIndex)}.Execute(sim)
			return err
		}, tpm2.TPMRCNVAuthorization, nil},
		{"NV_DefineSpace platform", func() error {
			_, err := tpm2.NVDefineSpace{AuthHandle: platformAuth(), PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
				NVIndex: DefaultIndex + 0x100, NameAlg: tpm2.TPMAlgSHA256, Attributes: Attributes(), DataSize: RecordSize,
			})}.Execute(sim)
			return err
		}, tpm2.TPMRCHierarchy, nil},
		{"re-enable platform hierarchy", func() error {
			return send(sim, hierarchyControlCommand(tpm2.TPMRHPlatform, tpm2.TPMRHPlatform, true))
		}, tpm2.TPMRCHierarchy, nil},
		{"TPM2_Clear keeps the index", func() error {
			_, err := tpm2.Clear{AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHLockout, Auth: tpm2.PasswordAuth(nil)}}.Execute(sim)
			if err != nil {
				return err
			}
			_, err = s.Read(ctx)
			return err
		}, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			switch {
			case tt.wantRC != 0:
				wantTPMRC(t, tt.name, err, tt.wantRC)
			case tt.want != nil:
				if !errors.Is(err, tt.want) {
					t.Fatalf("%s: %v, want %v", tt.name, err, tt.want)
				}
			case err != nil:
				t.Fatalf("%s: %v", tt.name, err)
			}
			if got, err := s.Read(ctx); err != nil || got != (Floors{7, 7}) {
				t.Fatalf("Read = %v, %v; want {7 7}", got, err)
			}
		})
	}
}

func TestWriteLockTwiceIsNoError(t *testing.T) {
	ctx := testContext(t)
	sim := newSim(t)
	s := New(sim, WithLogger(quietLogger()))
	if err := s.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	// The TPM answers TPM2_NV_WriteLock on an already write-locked index
	// with success, so a stage one that locks twice before disabling the
	// platform hierarchy is fine too.
	for i := range 2 {
		if err := s.writeLock(ctx); err != nil {
			t.Fatalf("NV_WriteLock #%d: %v", i+1, err)
		}
	}
	if on, err := PlatformHierarchyEnabled(ctx, sim); err != nil || !on {
		t.Fatalf("platform hierarchy enabled = %v, %v; want true (only write-locked)", on, err)
	}
	if _, err := s.Raise(ctx, Floors{1, 0}); !errors.Is(err, ErrLocked) {
		t.Fatalf("Raise when write-locked: %v, want ErrLocked", err)
	}
	_, err := tpm2.NVWrite{AuthHandle: platformAuth(), NVIndex: nvName(t, sim, DefaultIndex),
		Data: tpm2.TPM2BMaxNVBuffer{Buffer: make([]byte, RecordSize)}}.Execute(sim)
	wantTPMRC(t, "NV_Write with platform auth when write-locked", err, tpm2.TPMRCNVLocked)
}

func TestPlatformDisabledWithoutWriteLock(t *testing.T) {
	ctx := testContext(t)
	sim := newSim(t)
	s := New(sim, WithLogger(testLogger(t)))
	if err := s.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	// Something other than Lock disabled the platform hierarchy: the index
	// is not write-locked, but platform authorization, its only write path,
	// is gone.
	if err := DisablePlatformHierarchy(ctx, sim); err != nil {
		t.Fatal(err)
	}
	_, err := s.Raise(ctx, Floors{1, 1})
	if !errors.Is(err, ErrLocked) || !errors.Is(err, tpm2.TPMRCHierarchy) {
		t.Fatalf("Raise: %v, want ErrLocked wrapping TPM_RC_HIERARCHY", err)
	}
	if err := s.Lock(ctx); err != nil {
		t.Fatalf("Lock with the platform hierarchy already disabled: %v", err)
	}
	if nvPublic(t, sim, DefaultIndex).Attributes.WriteLocked {
		t.Error("Lock sent NV_WriteLock without platform authorization")
	}
}

func TestOnlyPlatformAuthWrites(t *testing.T) {
	ctx := testContext(t)
	sim := newSim(t)
	s := New(sim, WithLogger(quietLogger()))
	if err := s.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		auth   func(tpm2.NamedHandle) tpm2.AuthHandle
		wantRC tpm2.TPMRC // 0: the write succeeds
	}{
		{"owner", func(tpm2.NamedHandle) tpm2.AuthHandle { return ownerAuth() }, tpm2.TPMRCNVAuthorization},
		{"index auth value", func(h tpm2.NamedHandle) tpm2.AuthHandle {
			return tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: tpm2.PasswordAuth(nil)}
		}, tpm2.TPMRCAuthUnavailable},
		{"platform", func(tpm2.NamedHandle) tpm2.AuthHandle { return platformAuth() }, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := nvName(t, sim, DefaultIndex)
			data := record{Floors: Floors{uint64(i) + 1, 0}}.marshal()
			_, err := tpm2.NVWrite{AuthHandle: tt.auth(h), NVIndex: h, Data: tpm2.TPM2BMaxNVBuffer{Buffer: data}}.Execute(sim)
			if tt.wantRC != 0 {
				wantTPMRC(t, "NV_Write", err, tt.wantRC)
				return
			}
			if err != nil {
				t.Fatalf("NV_Write: %v", err)
			}
			if got, err := s.Read(ctx); err != nil || got.ImageVersion != uint64(i)+1 {
				t.Fatalf("Read = %v, %v; want image floor %d", got, err, i+1)
			}
		})
	}
	// WRITEALL: a partial write is refused.
	h := nvName(t, sim, DefaultIndex)
	_, err := tpm2.NVWrite{AuthHandle: platformAuth(), NVIndex: h, Data: tpm2.TPM2BMaxNVBuffer{Buffer: []byte{9}}, Offset: 8}.Execute(sim)
	wantTPMRC(t, "partial NV_Write", err, tpm2.TPMRCNVRange)
}

func TestEnsureRejectsForeignIndex(t *testing.T) {
	ours := Attributes()
	with := func(f func(*tpm2.TPMANV)) tpm2.TPMANV {
		a := ours
		f(&a)
		return a
	}
	tests := []struct {
		name    string
		auth    tpm2.AuthHandle
		pub     tpm2.TPMSNVPublic
		wantMsg []string
	}{
		{
			name: "owner index with OWNERWRITE",
			auth: ownerAuth(),
			pub: tpm2.TPMSNVPublic{NameAlg: tpm2.TPMAlgSHA256, DataSize: RecordSize, Attributes: tpm2.TPMANV{
				OwnerWrite: true, OwnerRead: true, AuthRead: true, NoDA: true, WriteSTClear: true, WriteAll: true,
			}},
			wantMsg: []string{"unexpected OWNERWRITE", "missing PPWRITE", "PLATFORMCREATE"},
		},
		{
			name:    "owner index with our attributes bar PLATFORMCREATE",
			auth:    ownerAuth(),
			pub:     tpm2.TPMSNVPublic{NameAlg: tpm2.TPMAlgSHA256, DataSize: RecordSize, Attributes: with(func(a *tpm2.TPMANV) { a.PlatformCreate = false; a.PPWrite = false; a.OwnerWrite = true })},
			wantMsg: []string{"missing PPWRITE|PLATFORMCREATE"},
		},
		{
			name:    "platform index also writable by owner",
			auth:    platformAuth(),
			pub:     tpm2.TPMSNVPublic{NameAlg: tpm2.TPMAlgSHA256, DataSize: RecordSize, Attributes: with(func(a *tpm2.TPMANV) { a.OwnerWrite = true })},
			wantMsg: []string{"unexpected OWNERWRITE"},
		},
		{
			name:    "platform index with WRITEDEFINE",
			auth:    platformAuth(),
			pub:     tpm2.TPMSNVPublic{NameAlg: tpm2.TPMAlgSHA256, DataSize: RecordSize, Attributes: with(func(a *tpm2.TPMANV) { a.WriteDefine = true; a.WriteSTClear = false })},
			wantMsg: []string{"unexpected WRITEDEFINE", "missing WRITE_STCLEAR"},
		},
		{
			name:    "platform index ORDERLY",
			auth:    platformAuth(),
			pub:     tpm2.TPMSNVPublic{NameAlg: tpm2.TPMAlgSHA256, DataSize: RecordSize, Attributes: with(func(a *tpm2.TPMANV) { a.Orderly = true })},
			wantMsg: []string{"unexpected ORDERLY"},
		},
		{
			name: "platform index deletable by policy",
			auth: platformAuth(),
			pub: tpm2.TPMSNVPublic{NameAlg: tpm2.TPMAlgSHA256, DataSize: RecordSize,
				AuthPolicy: tpm2.TPM2BDigest{Buffer: make([]byte, 32)},
				Attributes: with(func(a *tpm2.TPMANV) { a.PolicyDelete = true })},
			wantMsg: []string{"unexpected POLICY_DELETE", "auth policy of 32 bytes"},
		},
		{
			name:    "wrong size",
			auth:    platformAuth(),
			pub:     tpm2.TPMSNVPublic{NameAlg: tpm2.TPMAlgSHA256, DataSize: 8, Attributes: ours},
			wantMsg: []string{"size 8 bytes, want 16"},
		},
		{
			name:    "SHA-1 name",
			auth:    platformAuth(),
			pub:     tpm2.TPMSNVPublic{NameAlg: tpm2.TPMAlgSHA1, DataSize: RecordSize, Attributes: ours},
			wantMsg: []string{"name algorithm 0x0004"},
		},
		{
			name:    "counter",
			auth:    platformAuth(),
			pub:     tpm2.TPMSNVPublic{NameAlg: tpm2.TPMAlgSHA256, DataSize: 8, Attributes: with(func(a *tpm2.TPMANV) { a.NT = tpm2.TPMNTCounter; a.WriteAll = false })},
			wantMsg: []string{"type 1, want ordinary"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			sim := newSim(t)
			tt.pub.NVIndex = DefaultIndex
			if _, err := (tpm2.NVDefineSpace{AuthHandle: tt.auth, PublicInfo: tpm2.New2B(tt.pub)}).Execute(sim); err != nil {
				t.Fatalf("planting index: %v", err)
			}
			rec := &recorder{TPM: sim}
			s := New(rec, WithLogger(quietLogger()))
			for _, op := range []struct {
				name string
				run  func() error
			}{
				{"Ensure", func() error { return s.Ensure(ctx) }},
				{"Read", func() error { _, err := s.Read(ctx); return err }},
				{"Raise", func() error { _, err := s.Raise(ctx, Floors{1, 1}); return err }},
			} {
				err := op.run()
				if !errors.Is(err, ErrUnexpectedIndex) {
					t.Fatalf("%s: %v, want ErrUnexpectedIndex", op.name, err)
				}
				for _, m := range tt.wantMsg {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("%s error %q does not mention %q", op.name, err, m)
					}
				}
			}
			for _, cc := range []tpm2.TPMCC{tpm2.TPMCCNVDefineSpace, tpm2.TPMCCNVWrite, tpm2.TPMCCNVUndefineSpace} {
				if n := rec.count(cc); n != 0 {
					t.Errorf("sent %v %d times to a foreign index", cc, n)
				}
			}
		})
	}
}

func TestEnsureFinishesInterruptedProvisioning(t *testing.T) {
	ctx := testContext(t)
	sim := newSim(t)
	// Stage one lost power between NV_DefineSpace and the first NV_Write.
	_, err := tpm2.NVDefineSpace{AuthHandle: platformAuth(), PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
		NVIndex: DefaultIndex, NameAlg: tpm2.TPMAlgSHA256, Attributes: Attributes(), DataSize: RecordSize,
	})}.Execute(sim)
	if err != nil {
		t.Fatal(err)
	}
	sim.Reboot(t)
	s := New(sim, WithLogger(quietLogger()))
	if _, err := s.Read(ctx); !errors.Is(err, ErrNotProvisioned) {
		t.Fatalf("Read of unwritten index: %v, want ErrNotProvisioned", err)
	}
	_, err = tpm2.NVRead{AuthHandle: tpm2.AuthHandle{Handle: DefaultIndex, Name: nvName(t, sim, DefaultIndex).Name, Auth: tpm2.PasswordAuth(nil)},
		NVIndex: nvName(t, sim, DefaultIndex), Size: RecordSize}.Execute(sim)
	wantTPMRC(t, "NV_Read of unwritten index", err, tpm2.TPMRCNVUninitialized)
	if err := s.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Read(ctx); err != nil || got != (Floors{}) {
		t.Fatalf("Read = %v, %v; want zero floors", got, err)
	}
}

func TestEnsureAfterLockNeedsReboot(t *testing.T) {
	ctx := testContext(t)
	sim := newSim(t)
	s := New(sim, WithLogger(quietLogger()))
	// Lock on a TPM without our index still disables the platform
	// hierarchy, and says the write lock failed.
	if err := s.Lock(ctx); !errors.Is(err, ErrNotProvisioned) {
		t.Fatalf("Lock without index: %v, want ErrNotProvisioned", err)
	}
	if on, err := PlatformHierarchyEnabled(ctx, sim); err != nil || on {
		t.Fatalf("platform hierarchy enabled = %v, %v; want false even though the write lock failed", on, err)
	}
	if err := s.Ensure(ctx); !errors.Is(err, ErrPlatformDisabled) || !errors.Is(err, tpm2.TPMRCHierarchy) {
		t.Fatalf("Ensure after Lock: %v, want ErrPlatformDisabled wrapping TPM_RC_HIERARCHY", err)
	}
	sim.Reboot(t)
	if err := s.Ensure(ctx); err != nil {
		t.Fatalf("Ensure after reboot: %v", err)
	}
}

func TestCancelledContextSendsNothing(t *testing.T) {
	sim := newSim(t)
	rec := &recorder{TPM: sim}
	s := New(rec, WithLogger(quietLogger()))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ops := []struct {
		name string
		run  func() error
	}{
		{"Ensure", func() error { return s.Ensure(ctx) }},
		{"Read", func() error { _, err := s.Read(ctx); return err }},
		{"Raise", func() error { _, err := s.Raise(ctx, Floors{1, 1}); return err }},
		{"Lock", func() error { return s.Lock(ctx) }},
		{"Extend", func() error { return Extend(ctx, rec, ManifestPCR, [32]byte{}) }},
		{"ReadPCR", func() error { _, err := ReadPCR(ctx, rec, ManifestPCR); return err }},
		{"PlatformHierarchyEnabled", func() error { _, err := PlatformHierarchyEnabled(ctx, rec); return err }},
		{"DisablePlatformHierarchy", func() error { return DisablePlatformHierarchy(ctx, rec) }},
	}
	for _, op := range ops {
		if err := op.run(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with cancelled context: %v, want context.Canceled", op.name, err)
		}
	}
	if n := rec.total(); n != 0 {
		t.Errorf("%d commands sent with a cancelled context", n)
	}
}

func TestPCRs(t *testing.T) {
	ctx := testContext(t)
	sim := newSim(t)
	tests := []struct {
		name    string
		pcr     uint32
		digests [][32]byte
	}{
		{"manifest PCR, one digest", ManifestPCR, [][32]byte{digest("a")}},
		{"manifest PCR again, accumulates", ManifestPCR, [][32]byte{digest("b"), digest("c")}},
		{"another PCR", 9, [][32]byte{digest("x")}},
		{"highest PCR", 23, [][32]byte{{}, {0xff}}},
	}
	want := map[uint32][32]byte{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, d := range tt.digests {
				if err := Extend(ctx, sim, tt.pcr, d); err != nil {
					t.Fatal(err)
				}
			}
			want[tt.pcr] = ExpectedPCR(want[tt.pcr], tt.digests...)
			if got, err := ReadPCR(ctx, sim, tt.pcr); err != nil || got != want[tt.pcr] {
				t.Fatalf("PCR %d = %x, %v; want %x", tt.pcr, got, err, want[tt.pcr])
			}
		})
	}
	sim.Reboot(t)
	for pcr := range want {
		if got, err := ReadPCR(ctx, sim, pcr); err != nil || got != ([32]byte{}) {
			t.Errorf("PCR %d after reboot = %x, %v; want zeros", pcr, got, err)
		}
	}
	if err := Extend(ctx, sim, 24, [32]byte{}); err == nil {
		t.Error("Extend of PCR 24 succeeded")
	}
}
