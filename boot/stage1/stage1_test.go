package stage1

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/boxswarm/boxswarm/boot/handoff"
	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/firmware/bootctl"
	"github.com/boxswarm/boxswarm/firmware/rollback"
	"github.com/boxswarm/boxswarm/firmware/slotdisk"
	"github.com/boxswarm/boxswarm/images"
	"github.com/boxswarm/boxswarm/images/bake"
)

// memDisk is a disk in memory.
type memDisk struct{ b []byte }

func (d *memDisk) ReadAt(p []byte, off int64) (int, error)  { return copy(p, d.b[off:]), nil }
func (d *memDisk) WriteAt(p []byte, off int64) (int, error) { return copy(d.b[off:], p), nil }
func (d *memDisk) Sync() error                              { return nil }
func (d *memDisk) Size() int64                              { return int64(len(d.b)) }

func key(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

var root = key(1)

func signer(version uint32) firmware.Signer {
	k := key(byte(10 + version))
	return firmware.Signer{Key: k, Certificate: firmware.Certify(root, firmware.Certificate{KeyVersion: version, PublicKey: k.Public().(ed25519.PublicKey)})}
}

func image(t *testing.T, version uint64, keyVersion uint32, kernel string) []byte {
	t.Helper()
	img, _, err := firmware.BuildImage(firmware.ImageSpec{
		BoardID: "test", ImageVersion: version, Kernel: []byte(kernel), Initramfs: []byte("initramfs " + kernel),
		Cmdline: "console=ttyAMA0",
	}, signer(keyVersion))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

var diskSpec = images.Disk{SizeMiB: 8, SlotMiB: 2, BootctlMiB: 1}

// newDisk lays out a disk with the given slot contents and state.
func newDisk(t *testing.T, a, b []byte, st bootctl.State) *memDisk {
	t.Helper()
	path := t.TempDir() + "/disk.img"
	if err := bake.WriteDisk(path, diskSpec, a, b, st); err != nil {
		t.Fatal(err)
	}
	f, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return &memDisk{b: f}
}

type box struct {
	log       *slog.Logger
	disk      *memDisk
	sim       *simulator.Simulator
	tpm       transport.TPM
	handovers []Handover
}

func newBox(t *testing.T, d *memDisk) *box {
	sim, err := simulator.Get()
	if err != nil {
		t.Fatalf("TPM simulator (cgo): %v", err)
	}
	t.Cleanup(func() { sim.Close() })
	return &box{disk: d, sim: sim, tpm: transport.FromReadWriter(sim)}
}

func (b *box) boot(t *testing.T, minKey uint32) error {
	t.Helper()
	return Run(context.Background(), Config{
		RootKey: root.Public().(ed25519.PublicKey), BoardID: "test", MinKeyVersion: minKey,
		Disk: b.disk, DiskDevice: "/dev/vda", TPM: b.tpm, Log: b.log,
		Execute: func(_ context.Context, h Handover) error {
			b.handovers = append(b.handovers, h)
			return errors.New("test: no kexec")
		},
	})
}

// reboot resets the TPM, as a power cycle does.
func (b *box) reboot(t *testing.T) {
	if err := b.sim.Reset(); err != nil {
		t.Fatal(err)
	}
}

func (b *box) state(t *testing.T) bootctl.State {
	l, err := slotdisk.ReadLayout(b.disk, b.disk.Size())
	if err != nil {
		t.Fatal(err)
	}
	st, err := l.LoadState(b.disk)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (b *box) floors(t *testing.T) rollback.Floors {
	f, err := rollback.New(b.tpm).Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// handedOver returns the parameters of the last hand-over.
func (b *box) handedOver(t *testing.T) (Handover, handoff.Params) {
	t.Helper()
	if len(b.handovers) == 0 {
		t.Fatal("nothing was handed over")
	}
	h := b.handovers[len(b.handovers)-1]
	p, err := handoff.Parse(h.Cmdline)
	if err != nil {
		t.Fatalf("hand-over command line %q: %v", h.Cmdline, err)
	}
	return h, p
}

func proven(slots ...bootctl.Slot) bootctl.State {
	var st bootctl.State
	for i, s := range slots {
		st.Slots[s] = bootctl.SlotState{Priority: uint8(len(slots) - i), Successful: true}
	}
	return st
}

func TestGoodImage(t *testing.T) {
	b := newBox(t, newDisk(t, image(t, 3, 1, "kernel A"), nil, proven(bootctl.SlotA)))
	if err := b.boot(t, 1); err == nil || !strings.Contains(err.Error(), "no kexec") {
		t.Fatalf("Run = %v, want the test's hand-over error", err)
	}
	h, p := b.handedOver(t)
	if string(h.Kernel) != "kernel A" || string(h.Initramfs) != "initramfs kernel A" {
		t.Errorf("handed over %q / %q", h.Kernel, h.Initramfs)
	}
	if p.Slot != bootctl.SlotA || p.Version != 3 || p.Trial || !strings.HasPrefix(h.Cmdline, "console=ttyAMA0 ") {
		t.Errorf("hand-over %+v, cmdline %q", p, h.Cmdline)
	}
	if f := b.floors(t); f.ImageVersion != 3 || f.KeyVersion != 1 {
		t.Errorf("floors after a proven image = %+v, want image 3 key 1", f)
	}
	pcr, err := rollback.ReadPCR(context.Background(), b.tpm, rollback.ManifestPCR)
	if err != nil {
		t.Fatal(err)
	}
	if pcr != rollback.ExpectedPCR([32]byte{}, p.Manifest) {
		t.Errorf("PCR %d = %x, not the manifest's measurement", rollback.ManifestPCR, pcr)
	}
	// Stage one locked the floors: nothing after it may write them.
	if _, err := rollback.New(b.tpm).Raise(context.Background(), rollback.Floors{ImageVersion: 9}); err == nil {
		t.Error("floors writable after hand-over")
	}
}

func TestFallbackToOtherSlot(t *testing.T) {
	bad := image(t, 3, 1, "kernel A")
	bad[len(bad)-4096] ^= 1 // inside the last component
	b := newBox(t, newDisk(t, bad, image(t, 2, 1, "kernel B"), proven(bootctl.SlotA, bootctl.SlotB)))
	b.boot(t, 1)
	if _, p := b.handedOver(t); p.Slot != bootctl.SlotB {
		t.Fatalf("booted slot %s, want B", p.Slot)
	}
	if st := b.state(t); st.Slots[bootctl.SlotA].Priority != 0 {
		t.Errorf("bad slot A not marked unbootable: %v", st)
	}
}

func TestBothBad(t *testing.T) {
	a := image(t, 3, 1, "kernel A")
	a[100] ^= 1 // the certificate
	b := newBox(t, newDisk(t, a, nil, proven(bootctl.SlotA, bootctl.SlotB)))
	err := b.boot(t, 1)
	var r *Refusal
	if !errors.As(err, &r) || len(r.Slots) != 2 {
		t.Fatalf("Run = %v, want a refusal naming both slots", err)
	}
	if !errors.Is(err, firmware.ErrCertificateSignature) || !errors.Is(err, firmware.ErrNoImage) {
		t.Errorf("refusal %q lacks a reason", err)
	}
	if len(b.handovers) != 0 {
		t.Error("something was handed over")
	}
}

func TestTrialThatNeverReportsHealthy(t *testing.T) {
	st := proven(bootctl.SlotA)
	st.SetTrial(bootctl.SlotB, 1)
	b := newBox(t, newDisk(t, image(t, 1, 1, "old"), image(t, 2, 1, "new"), st))
	b.boot(t, 1)
	if _, p := b.handedOver(t); p.Slot != bootctl.SlotB || !p.Trial {
		t.Fatalf("first boot: %+v, want slot B on trial", p)
	}
	if f := b.floors(t); f.ImageVersion != 0 {
		t.Errorf("floors moved to %d for an unproven trial", f.ImageVersion)
	}
	b.reboot(t) // the trial never marked itself good
	b.boot(t, 1)
	if _, p := b.handedOver(t); p.Slot != bootctl.SlotA || p.Version != 1 {
		t.Fatalf("second boot: %+v, want the old image in slot A", p)
	}
}

func TestTrialThatReportsHealthy(t *testing.T) {
	st := proven(bootctl.SlotA)
	st.SetTrial(bootctl.SlotB, 1)
	b := newBox(t, newDisk(t, image(t, 1, 1, "old"), image(t, 2, 1, "new"), st))
	b.boot(t, 1)
	// What stage two's supervisor does after a healthy boot.
	l, _ := slotdisk.ReadLayout(b.disk, b.disk.Size())
	st = b.state(t)
	st.MarkGood(bootctl.SlotB)
	if err := l.SaveState(b.disk, st); err != nil {
		t.Fatal(err)
	}
	b.reboot(t)
	b.boot(t, 1)
	if f := b.floors(t); f.ImageVersion != 2 {
		t.Fatalf("floors = %+v after the update proved itself, want image 2", f)
	}
	// The old image can no longer boot, even when the record prefers it:
	// stage one refuses it and falls back to the new one.
	st = b.state(t)
	st.Slots[bootctl.SlotA] = bootctl.SlotState{Priority: 3, Successful: true}
	l.SaveState(b.disk, st)
	b.reboot(t)
	var logs bytes.Buffer
	b.log = slog.New(slog.NewTextHandler(&logs, nil))
	b.boot(t, 1)
	if _, p := b.handedOver(t); p.Slot != bootctl.SlotB {
		t.Errorf("booted slot %s, want B", p.Slot)
	}
	if !strings.Contains(logs.String(), "slot rejected") || !strings.Contains(logs.String(), "rollback") {
		t.Errorf("slot A was not refused for rollback:\n%s", logs.String())
	}
}

func TestKeyRevocation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		romMin uint32
		tpmKey uint32
	}{
		{"by the TPM floor", 1, 2},
		{"by the ROM", 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBox(t, newDisk(t, image(t, 5, 1, "signed with v1"), nil, proven(bootctl.SlotA)))
			s := rollback.New(b.tpm)
			if err := s.Ensure(context.Background()); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Raise(context.Background(), rollback.Floors{KeyVersion: tc.tpmKey}); err != nil {
				t.Fatal(err)
			}
			if err := b.boot(t, tc.romMin); !errors.Is(err, firmware.ErrKeyRevoked) {
				t.Fatalf("Run = %v, want a revoked-key refusal", err)
			}
		})
	}
}

func TestNoTPM(t *testing.T) {
	b := &box{disk: newDisk(t, image(t, 1, 1, "k"), nil, proven(bootctl.SlotA))}
	err := Run(context.Background(), Config{RootKey: root.Public().(ed25519.PublicKey), BoardID: "test", Disk: b.disk,
		Execute: func(context.Context, Handover) error { t.Fatal("handed over without a TPM"); return nil }})
	if err == nil || !strings.Contains(err.Error(), "TPM") {
		t.Fatalf("Run without a TPM = %v", err)
	}
}

func TestCmdlineRootFS(t *testing.T) {
	img, m, err := firmware.BuildImage(firmware.ImageSpec{
		BoardID: "test", ImageVersion: 1, Kernel: []byte("k"), Initramfs: []byte("i"),
		RootFS: make([]byte, 130*4096), VeritySalt: []byte{0xab},
	}, signer(1))
	if err != nil {
		t.Fatal(err)
	}
	v, err := firmware.LoadSlot(bytes.NewReader(append(img, make([]byte, 1<<20)...)), int64(len(img)+1<<20),
		firmware.Policy{RootKey: root.Public().(ed25519.PublicKey), BoardID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := m.Component(firmware.RootFS)
	got := Cmdline(v, bootctl.SlotB, false, "/dev/vda", 1<<20)
	want := []string{
		`dm-mod.create="vdata,,,ro,0 1040 linear /dev/vda ` + strconv.FormatInt((1<<20+int64(c.Offset))/512, 10),
		`;vroot,,,ro,0 1040 verity 1 /dev/dm-0 /dev/vda 4096 4096 130 ` + strconv.FormatInt((1<<20+int64(c.Verity.HashOffset))/4096, 10),
		` sha256 `, ` ab"`, "boxswarm.rootfs=vroot", "boxswarm.slot=B",
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("cmdline %q lacks %q", got, w)
		}
	}
}
