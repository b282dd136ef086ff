package chaintest

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/board/qemu-arm64/vm/nbd"
	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/firmware/bootctl"
	"github.com/boxswarm/boxswarm/firmware/rollback"
	"github.com/boxswarm/boxswarm/images/bake"
)

// proven is a boot-control record where the given slots hold images that
// have booted healthy, the first preferred.
func proven(slots ...bootctl.Slot) bootctl.State {
	var st bootctl.State
	for i, s := range slots {
		st.Slots[s] = bootctl.SlotState{Priority: uint8(len(slots) - i), Successful: true}
	}
	return st
}

// offsets locates the parts of a signed image, to tamper with them.
type offsets struct {
	cert, certSig, manifest, manifestSig int
	manifestLen                          int
	build                                string // the manifest's last field
	comp                                 map[firmware.Kind]firmware.Component
}

func locate(t *testing.T, img []byte) offsets {
	t.Helper()
	env, err := firmware.ParseEnvelope(img)
	if err != nil {
		t.Fatal(err)
	}
	m, err := firmware.ParseManifest(env.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	o := offsets{
		cert: bytes.Index(img, env.Certificate), certSig: bytes.Index(img, env.CertificateSignature),
		manifest: bytes.Index(img, env.Manifest), manifestSig: bytes.Index(img, env.ManifestSignature),
		manifestLen: len(env.Manifest), build: m.Build,
		comp: map[firmware.Kind]firmware.Component{},
	}
	for _, c := range m.Components {
		o.comp[c.Kind] = c
	}
	return o
}

func flipAt(off int) func([]byte) []byte {
	return func(b []byte) []byte { b[off] ^= 0x01; return b }
}

// expectRefused checks a refused boot: the reason on the console, the
// service state on the panel, and that no second-stage code ran.
func expectRefused(t *testing.T, r result, reasons ...string) {
	t.Helper()
	if r.refused == "" || r.unhealthy {
		t.Fatalf("box was not refused:\n%s", r.console)
	}
	for _, want := range reasons {
		if !strings.Contains(r.refused, want) {
			t.Errorf("BOOT REFUSED: %s\nlacks the reason %q", r.refused, want)
		}
	}
	if !strings.Contains(r.panel, "PANEL SERVICE NEEDED") {
		t.Errorf("front panel does not ask for service:\n%s", r.panel)
	}
	if n := countOf(r.console, linuxBanner); n != 1 {
		t.Errorf("%d kernels started, want only the ROM's:\n%s", n, r.console)
	}
	if strings.Contains(r.console, "stage2:") {
		t.Errorf("second-stage code ran on a refused box:\n%s", r.console)
	}
}

func expectOK(t *testing.T, r result, slot string, version int) {
	t.Helper()
	if !r.ok {
		t.Fatalf("box did not boot (want slot %s version %d): %s\n%s", slot, version, r.refused, r.console)
	}
	if r.slot != slot || r.version != version {
		t.Errorf("booted slot %s version %d, want slot %s version %d", r.slot, r.version, slot, version)
	}
	if !r.pcrMatches {
		t.Errorf("PCR %d does not hold the measurement of the manifest handed over:\n%s", rollback.ManifestPCR, r.console)
	}
	if !strings.Contains(r.panel, "PANEL RUNNING") {
		t.Errorf("front panel does not show the box running:\n%s", r.panel)
	}
}

// TestTamperMatrix boots one box per way of damaging or replacing the
// firmware, each with a fresh TPM, and checks each ends as it must.
func TestTamperMatrix(t *testing.T) {
	f := load(t)
	good := f.build(t, image{version: 1})
	o := locate(t, good)
	kernel, initramfs, cmdline := o.comp[firmware.Kernel], o.comp[firmware.Initramfs], o.comp[firmware.Cmdline]
	slotA := proven(bootctl.SlotA)

	for _, tc := range []struct {
		name    string
		slotA   func([]byte) []byte // changes a copy of the good image
		want    []string            // reasons in BOOT REFUSED
		okSlot  string              // or the slot that must boot
		another func(t *testing.T) []byte
		screen  bool // check the TV's service screen too
	}{
		{name: "good image", slotA: func(b []byte) []byte { return b }, okSlot: "A"},
		{name: "manifest byte", slotA: flipAt(o.manifest + 30), want: []string{"slot A", "bad manifest signature"}, screen: true},
		{name: "manifest last byte", slotA: flipAt(o.manifest + o.manifestLen - 1), want: []string{"bad manifest signature"}},
		{name: "manifest signature byte", slotA: flipAt(o.manifestSig + 10), want: []string{"bad manifest signature"}},
		{name: "certificate byte", slotA: flipAt(o.cert + 40), want: []string{"untrusted signing key"}},
		{name: "certificate signature byte", slotA: flipAt(o.certSig), want: []string{"untrusted signing key"}},
		{name: "header magic", slotA: flipAt(0), want: []string{"no image"}},
		{name: "envelope format", slotA: flipAt(11), want: []string{"unsupported format version"}},
		{name: "envelope length beyond limit", slotA: func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[12:], 1<<31)
			return b
		}, want: []string{"exceeds the limit", "malformed"}},
		{name: "bytes appended to the envelope", slotA: func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[12:], binary.BigEndian.Uint32(b[12:])+7)
			return b
		}, want: []string{"malformed"}},
		{name: "kernel first byte", slotA: flipAt(int(kernel.Offset)), want: []string{"component kernel", "hash mismatch"}},
		{name: "kernel middle byte", slotA: flipAt(int(kernel.Offset + kernel.Size/2)), want: []string{"component kernel", "hash mismatch"}},
		{name: "kernel last byte", slotA: flipAt(int(kernel.Offset + kernel.Size - 1)), want: []string{"component kernel", "hash mismatch"}},
		{name: "initramfs byte", slotA: flipAt(int(initramfs.Offset + initramfs.Size/3)), want: []string{"component initramfs", "hash mismatch"}},
		{name: "cmdline byte", slotA: flipAt(int(cmdline.Offset + 2)), want: []string{"component cmdline", "hash mismatch"}},
		{name: "truncated in the initramfs", slotA: func(b []byte) []byte { return b[:initramfs.Offset+initramfs.Size/2] },
			want: []string{"component initramfs", "hash mismatch"}},
		{name: "truncated in the envelope", slotA: func(b []byte) []byte { return b[:o.manifest+20] }, want: []string{"malformed"}},
		{name: "bytes inserted before the kernel", slotA: func(b []byte) []byte {
			return append(append(append([]byte(nil), b[:kernel.Offset]...), 0, 0, 0, 0), b[kernel.Offset:]...)
		}, want: []string{"component kernel", "hash mismatch"}},
		{name: "signed by another root key", another: func(t *testing.T) []byte {
			s := signerV(newRoot(t), 1)
			return f.build(t, image{version: 1, signer: &s})
		}, want: []string{"untrusted signing key"}},
		{name: "signed for another board", another: func(t *testing.T) []byte {
			return f.build(t, image{version: 1, board: "other-board"})
		}, want: []string{"wrong board", `"other-board"`}},
		{name: "key version below the ROM's minimum", another: func(t *testing.T) []byte {
			s := signerV(f.root, 0)
			return f.build(t, image{version: 1, signer: &s})
		}, want: []string{"revoked signing key", "version 0"}},
		{name: "signed manifest with an unknown format version", another: func(t *testing.T) []byte {
			return resealed(t, f, good, func(m []byte) []byte { m[6+3] = 2; return m })
		}, want: []string{"unsupported format version"}},
		{name: "signed manifest with a repeated field", another: func(t *testing.T) []byte {
			// The last field is the build description; add it again.
			return resealed(t, f, good, func(m []byte) []byte { return append(m, m[len(m)-6-len(o.build):]...) })
		}, want: []string{"malformed", "repeated"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			img := append([]byte(nil), good...)
			if tc.another != nil {
				img = tc.another(t)
			} else {
				img = tc.slotA(img)
			}
			var o bootOptions
			if tc.screen {
				o.serviceShot = serviceShotPath(t)
			}
			r := f.bootWith(t, f.disk(t, img, nil, slotA), t.TempDir(), o)
			if tc.okSlot != "" {
				expectOK(t, r, tc.okSlot, 1)
				return
			}
			expectRefused(t, r, append([]string{"slot A"}, tc.want...)...)
			if tc.screen {
				expectServiceScreen(t, r, o.serviceShot)
			}
			if !strings.Contains(r.refused, "slot B: slot is empty") {
				t.Errorf("refusal does not say slot B is empty: %s", r.refused)
			}
		})
	}
}

// resealed re-signs an image whose manifest bytes were changed, to check
// what the parser refuses even behind a valid signature.
func resealed(t *testing.T, f *fixture, img []byte, change func([]byte) []byte) []byte {
	t.Helper()
	env, err := firmware.ParseEnvelope(img)
	if err != nil {
		t.Fatal(err)
	}
	sealed := f.signer.Seal(change(append([]byte(nil), env.Manifest...)))
	hdr := sealed.Encode()
	out := append([]byte(nil), img...)
	copy(out, make([]byte, firmware.ReservedSize))
	copy(out, hdr)
	return out
}

func TestSlotFallback(t *testing.T) {
	f := load(t)
	good := f.build(t, image{version: 1})
	o := locate(t, good)
	badKernel := flipAt(int(o.comp[firmware.Kernel].Offset + 100))(append([]byte(nil), good...))
	badManifest := flipAt(o.manifest + 30)(append([]byte(nil), good...))
	t.Run("slot A bad, slot B good", func(t *testing.T) {
		t.Parallel()
		r := f.boot(t, f.disk(t, badKernel, good, proven(bootctl.SlotA, bootctl.SlotB)), t.TempDir())
		expectOK(t, r, "B", 1)
		if !strings.Contains(r.console, "slot rejected") || !strings.Contains(r.console, "component kernel") {
			t.Errorf("console does not say why slot A was skipped:\n%s", r.console)
		}
	})
	t.Run("both slots bad", func(t *testing.T) {
		t.Parallel()
		r := f.boot(t, f.disk(t, badKernel, badManifest, proven(bootctl.SlotA, bootctl.SlotB)), t.TempDir())
		expectRefused(t, r, "slot A: component kernel", "hash mismatch", "slot B: ", "bad manifest signature")
	})
	t.Run("no slots on the disk", func(t *testing.T) {
		t.Parallel()
		empty := f.disk(t, nil, nil, proven())
		d, _ := openDisk(t, empty)
		blank := make([]byte, 1024)
		d.WriteAt(blank, 0)             // the protective MBR and the primary GPT header
		d.WriteAt(blank, d.Size()-1024) // the backup header
		r := f.boot(t, empty, t.TempDir())
		expectRefused(t, r, "no disk with firmware slots")
	})
}

// TestRollbackAndRevocation boots a newer image, then offers an older one
// (or one signed with an older key) on the same TPM.
func TestRollbackAndRevocation(t *testing.T) {
	f := load(t)
	t.Run("older image after a newer one booted", func(t *testing.T) {
		t.Parallel()
		tpm := t.TempDir()
		r := f.boot(t, f.disk(t, f.build(t, image{version: 3}), nil, proven(bootctl.SlotA)), tpm)
		expectOK(t, r, "A", 3)
		if r.floorsImage != 3 {
			t.Errorf("rollback floor %d after booting proven version 3", r.floorsImage)
		}
		r = f.boot(t, f.disk(t, f.build(t, image{version: 2}), nil, proven(bootctl.SlotA)), tpm)
		expectRefused(t, r, "rollback", "image version 2 is below the floor 3")
	})
	t.Run("signing key revoked by a newer key version", func(t *testing.T) {
		t.Parallel()
		tpm := t.TempDir()
		v2 := signerV(f.root, 2)
		r := f.boot(t, f.disk(t, f.build(t, image{version: 5, signer: &v2}), nil, proven(bootctl.SlotA)), tpm)
		expectOK(t, r, "A", 5)
		if r.floorsKey != 2 {
			t.Errorf("key floor %d after booting an image signed with key version 2", r.floorsKey)
		}
		// A newer image, but signed with the leaked version-1 key.
		r = f.boot(t, f.disk(t, f.build(t, image{version: 6}), nil, proven(bootctl.SlotA)), tpm)
		expectRefused(t, r, "revoked signing key", "version 1 is revoked (minimum 2)")
	})
}

// TestUpdate puts a newer image into the inactive slot on trial, the way
// the box and fwtool write-slot do.
func TestUpdate(t *testing.T) {
	f := load(t)
	v1 := f.build(t, image{version: 1})
	t.Run("trial never reports healthy", func(t *testing.T) {
		t.Parallel()
		tpm := t.TempDir()
		disk := f.disk(t, v1, nil, proven(bootctl.SlotA))
		f.install(t, disk, f.build(t, image{version: 2, stage2: f.unhealthyStage2(t)}))
		r := f.boot(t, disk, tpm)
		if !r.unhealthy || !strings.Contains(r.console, "boxswarm.trial=1") {
			t.Fatalf("trial boot: want BOOT UNHEALTHY from slot B on trial:\n%s", r.console)
		}
		r = f.boot(t, disk, tpm)
		expectOK(t, r, "A", 1)
		if r.floorsImage != 1 {
			t.Errorf("rollback floor %d: the failed trial must not move it", r.floorsImage)
		}
	})
	t.Run("trial reports healthy", func(t *testing.T) {
		t.Parallel()
		tpm := t.TempDir()
		disk := f.disk(t, v1, nil, proven(bootctl.SlotA))
		f.install(t, disk, f.build(t, image{version: 2}))
		r := f.boot(t, disk, tpm)
		expectOK(t, r, "B", 2)
		if r.floorsImage != 0 {
			// A fresh TPM: nothing proven has booted yet.
			t.Errorf("rollback floor %d during the trial, want it unmoved (0)", r.floorsImage)
		}
		r = f.boot(t, disk, tpm)
		expectOK(t, r, "B", 2)
		if r.floorsImage != 2 {
			t.Fatalf("rollback floor %d after the update proved itself, want 2", r.floorsImage)
		}
		// Prefer the old slot again: stage one must refuse it and fall
		// back to the new image.
		setState(t, disk, proven(bootctl.SlotA, bootctl.SlotB))
		r = f.boot(t, disk, tpm)
		expectOK(t, r, "B", 2)
		if !strings.Contains(r.console, `msg="slot rejected" slot=A`) || !strings.Contains(r.console, "image version 1 is below the floor 2") {
			t.Errorf("the old image was not refused for rollback:\n%s", r.console)
		}
	})
}

// TestDiskThatChangesItsAnswer serves the box a disk that returns other
// bytes when the same sectors are read a second time (or the first time),
// over NBD. Stage one reads each byte once, with the page cache bypassed,
// and runs what it verified.
func TestDiskThatChangesItsAnswer(t *testing.T) {
	f := load(t)
	good := f.build(t, image{version: 1, cmdline: "console=ttyAMA0 panic=-1 loglevel=6 GOODCMDLINE"})
	o := locate(t, good)
	// The evil image is the good one with an unsigned change: another
	// command line of the same length.
	evil := append([]byte(nil), good...)
	c := o.comp[firmware.Cmdline]
	copy(evil[c.Offset:], strings.Replace(string(good[c.Offset:c.Offset+c.Size]), "GOOD", "EVIL", 1))
	diskPath := f.disk(t, good, nil, proven(bootctl.SlotA))
	evilPath := f.disk(t, evil, nil, proven(bootctl.SlotA))
	_, l := openDisk(t, diskPath)
	base := l.Slots[bootctl.SlotA].Offset()
	var regions []nbd.Region
	for _, c := range o.comp {
		regions = append(regions, nbd.Region{Off: base + int64(c.Offset), Len: int64(c.Size)})
	}
	regions = append(regions, nbd.Region{Off: base, Len: firmware.ReservedSize})
	evilFile, _ := openDisk(t, evilPath)

	t.Run("good first, evil after", func(t *testing.T) {
		hook, err := nbd.FlipAfterFirstRead(regions, evilFile)
		if err != nil {
			t.Fatal(err)
		}
		addr, srv := serveNBD(t, diskPath, hook)
		r := f.boot(t, addr, t.TempDir())
		expectOK(t, r, "A", 1)
		if strings.Contains(r.console, "EVILCMDLINE") || !strings.Contains(r.console, "GOODCMDLINE") {
			t.Errorf("the second stage did not get the verified command line:\n%s", r.console)
		}
		for _, reg := range regions {
			for b := reg.Off / nbd.BlockSize; b < (reg.Off+reg.Len+nbd.BlockSize-1)/nbd.BlockSize; b++ {
				if n := srv.ReadCount(b); n != 1 {
					t.Fatalf("block %d of the signed image was read %d times from the disk, want exactly once", b, n)
				}
			}
		}
	})
	t.Run("evil first, good after", func(t *testing.T) {
		hook, err := nbd.FlipOnFirstRead(regions, evilFile)
		if err != nil {
			t.Fatal(err)
		}
		addr, _ := serveNBD(t, diskPath, hook)
		r := f.boot(t, addr, t.TempDir())
		expectRefused(t, r, "component cmdline", "hash mismatch")
	})
}

// TestMeasuredBoot checks the PCR value against one computed on the host
// from the image's manifest.
func TestMeasuredBoot(t *testing.T) {
	f := load(t)
	img := f.build(t, image{version: 1})
	env, err := firmware.ParseEnvelope(img)
	if err != nil {
		t.Fatal(err)
	}
	r := f.boot(t, f.disk(t, img, nil, proven(bootctl.SlotA)), t.TempDir())
	expectOK(t, r, "A", 1)
	want := rollback.ExpectedPCR([32]byte{}, sha256Of(env.Manifest))
	if r.pcr != hex.EncodeToString(want[:]) {
		t.Errorf("PCR 8 = %s, want %x", r.pcr, want)
	}
}

// TestVerityRootFS hands the second stage a root filesystem that stage one
// never reads: the kernel checks each block through dm-verity against the
// root hash in the signed manifest, so a changed block reads as an error.
func TestVerityRootFS(t *testing.T) {
	f := load(t)
	nonce := fmt.Sprintf("verified-rootfs-%d", time.Now().UnixNano())
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	os.WriteFile(filepath.Join(src, "etc", "boxswarm-release"), []byte(nonce+"\n"), 0o644)
	sqsh := filepath.Join(t.TempDir(), "rootfs.sqsh")
	// Uncompressed, so the test can find the file's bytes to change them.
	if out, err := exec.Command("mksquashfs", src, sqsh, "-noappend", "-all-root", "-noI", "-noD", "-noF", "-no-xattrs", "-quiet").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs (Debian squashfs-tools): %v\n%s", err, out)
	}
	fs, err := os.ReadFile(sqsh)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := bake.Spec(f.art.Recipe, 1, f.art.Kernel, f.art.Stage2, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec.RootFS, spec.VeritySalt = fs, []byte("test salt")
	img, m, err := firmware.BuildImage(spec, f.signer)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("intact", func(t *testing.T) {
		t.Parallel()
		r := f.boot(t, f.disk(t, img, nil, proven(bootctl.SlotA)), t.TempDir())
		expectOK(t, r, "A", 1)
		if !strings.Contains(r.console, "root filesystem mounted through dm-verity") || !strings.Contains(r.console, nonce) {
			t.Errorf("the verified root filesystem was not readable:\n%s", r.console)
		}
	})
	t.Run("one changed byte", func(t *testing.T) {
		t.Parallel()
		c, _ := m.Component(firmware.RootFS)
		at := bytes.Index(img[c.Offset:c.Offset+c.Size], []byte(nonce))
		if at < 0 {
			t.Fatal("release file not found in the root filesystem image")
		}
		bad := append([]byte(nil), img...)
		bad[int(c.Offset)+at] ^= 0x01
		r := f.boot(t, f.disk(t, bad, nil, proven(bootctl.SlotA)), t.TempDir())
		// Stage one does not read the root filesystem, so the box boots; the
		// kernel refuses the changed block when it is read.
		if strings.Contains(r.console, nonce[1:]) {
			t.Errorf("changed root filesystem data was read:\n%s", r.console)
		}
		if !strings.Contains(r.console, "input/output error") || !strings.Contains(r.console, "is corrupted") {
			t.Errorf("no verity error for the changed block:\n%s", r.console)
		}
	})
}
