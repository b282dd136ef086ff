package identity

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// authorityPCR stands for the PCR stage one should extend with a value
// that is stable across signed updates (see the package comment); the
// tests extend it themselves.
const authorityPCR = 9

const manifestPCR = 8

// bootStory is the life of a box with a TPM: first boot, a signed update,
// then boots of other software, which must not get the key, and a good
// boot again. It runs against the simulator and against swtpm.
func bootStory(t *testing.T, tpm rebootableTPM) {
	ctx := testContext(t)
	bound := Options{Path: idPath(t), TPM: tpm, PCRs: []uint32{authorityPCR}, Log: quietLogger()}
	tpmOnly := Options{Path: idPath(t), TPM: tpm, Log: quietLogger()}
	goodBoot := func(manifest string) {
		measure(t, tpm, authorityPCR, "root key R, board qemu-arm64, verification on")
		measure(t, tpm, manifestPCR, manifest)
	}

	// Boot 1: first boot of image 1.
	goodBoot("manifest of image 1")
	id := mustLoad(t, bound)
	if id.Protection() != ProtectionTPM || len(id.PCRs()) != 1 || id.PCRs()[0] != authorityPCR {
		t.Fatalf("new identity: protection %v, PCRs %v", id.Protection(), id.PCRs())
	}
	pub := id.PublicKey()
	seed := seedOf(id)
	file, err := os.ReadFile(bound.Path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(file, seed) {
		t.Fatal("the seed is in the identity file in the clear")
	}
	other := mustLoad(t, tpmOnly)
	otherPub := other.PublicKey()
	if otherPub.Equal(pub) {
		t.Fatal("two identities with the same key")
	}
	again := mustLoad(t, bound)
	if !again.PublicKey().Equal(pub) {
		t.Fatal("second LoadOrCreate in the same boot made another key")
	}

	load := func(o Options) (*Identity, error) {
		id, err := LoadOrCreate(ctx, o)
		if err == nil {
			t.Cleanup(func() { id.Close() })
		}
		return id, err
	}

	// Boot 2: a signed update changed the manifest, not the authority.
	tpm.Reboot(t)
	goodBoot("manifest of image 2")
	if id, err := load(bound); err != nil || !id.PublicKey().Equal(pub) {
		t.Fatalf("after a signed update: %v", err)
	}

	// Boot 3: software under another authority (another root key, or a
	// build without verification).
	tpm.Reboot(t)
	measure(t, tpm, authorityPCR, "root key EVIL, board qemu-arm64, verification on")
	measure(t, tpm, manifestPCR, "manifest of image 2")
	_, err = load(bound)
	wantErr(t, "other software", err, ErrSoftwareChanged, ErrNeedsReactivation)
	if !contains(err.Error(), "PCR 9 = ") || !contains(err.Error(), "identity sealed to other software") {
		t.Errorf("error does not say which PCR differs: %v", err)
	}
	if id, err := load(tpmOnly); err != nil || !id.PublicKey().Equal(otherPub) {
		t.Fatalf("identity bound to the TPM only, other software: %v", err)
	}

	// Boot 4: stage one did not run at all; the PCR is at its reset value.
	tpm.Reboot(t)
	_, err = load(bound)
	wantErr(t, "unmeasured boot", err, ErrSoftwareChanged)

	// Boot 5: good again; the refusals changed nothing on disk.
	tpm.Reboot(t)
	goodBoot("manifest of image 2")
	if id, err := load(bound); err != nil || !id.PublicKey().Equal(pub) {
		t.Fatalf("good boot after refusals: %v", err)
	}
	after, err := os.ReadFile(bound.Path)
	if err != nil || !bytes.Equal(after, file) {
		t.Fatalf("identity file changed by loading: %v", err)
	}
}

func TestBootStorySimulator(t *testing.T) {
	bootStory(t, newSim(t))
}

// TestSealRefusesUnmeasuredPCR: sealing to a PCR nothing extended would
// bind to "any software", so it is refused and nothing is written.
func TestSealRefusesUnmeasuredPCR(t *testing.T) {
	tpm := newSim(t)
	o := Options{Path: idPath(t), TPM: tpm, PCRs: []uint32{authorityPCR}, Log: quietLogger()}
	_, err := LoadOrCreate(testContext(t), o)
	wantErr(t, "seal to PCR 9 at reset value", err, ErrPCRNotMeasured)
	if _, serr := os.Stat(o.Path); !os.IsNotExist(serr) {
		t.Fatalf("identity file left behind: %v", serr)
	}
}

// TestOtherTPM: a file sealed by one TPM opens on no other, nor on the same
// TPM after its owner hierarchy was cleared.
func TestOtherTPM(t *testing.T) {
	ctx := testContext(t)
	path := idPath(t)
	first := newSim(t)
	mustLoad(t, Options{Path: path, TPM: first, Log: quietLogger()})
	first.Close(t)

	second := newSim(t)
	_, err := LoadOrCreate(ctx, Options{Path: path, TPM: second, Log: quietLogger()})
	wantErr(t, "file from another TPM", err, ErrOtherTPM, ErrNeedsReactivation)

	// On the second TPM: seal, clear the TPM (new owner seed), refuse.
	path2 := idPath(t)
	mustLoad(t, Options{Path: path2, TPM: second, Log: quietLogger()})
	if _, err := (tpm2.Clear{AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHLockout, Auth: tpm2.PasswordAuth(nil)}}).Execute(second); err != nil {
		t.Fatalf("TPM2_Clear: %v", err)
	}
	_, err = LoadOrCreate(ctx, Options{Path: path2, TPM: second, Log: quietLogger()})
	wantErr(t, "file sealed before TPM2_Clear", err, ErrOtherTPM)
}

// TestTPMFileWithoutTPM: a TPM-sealed file with no TPM given is a board
// problem, not a lost identity: it must not ask for re-activation.
func TestTPMFileWithoutTPM(t *testing.T) {
	tpm := newSim(t)
	path := idPath(t)
	mustLoad(t, Options{Path: path, TPM: tpm, Log: quietLogger()})
	for _, ds := range []fakeBoard{noSecretBoard(), secretBoard("s")} {
		_, err := LoadOrCreate(testContext(t), Options{Path: path, DeviceSecret: ds, Log: quietLogger()})
		wantErr(t, "TPM file, no TPM", err, ErrNoTPM)
		if errors.Is(err, ErrNeedsReactivation) {
			t.Fatalf("missing TPM reported as needing re-activation: %v", err)
		}
	}
}

// TestWeakerFileOnTPMBox: on a box with a TPM, a file the TPM did not seal
// could have been planted by someone who knows its key: refused.
func TestWeakerFileOnTPMBox(t *testing.T) {
	tpm := newSim(t)
	for _, o := range []Options{
		{DeviceSecret: noSecretBoard()},
		{DeviceSecret: secretBoard("s")},
	} {
		o.Path, o.Log = idPath(t), quietLogger()
		planted := mustLoad(t, o)
		o.TPM, o.DeviceSecret = tpm, nil
		_, err := LoadOrCreate(testContext(t), o)
		wantErr(t, planted.Protection().String()+" file on a TPM box", err, ErrWeakerProtection, ErrNeedsReactivation)
	}
}

// TestReseal: a file sealed to one binding is re-sealed to the configured
// one once it opened, both ways (a new image that binds to PCR 9, and a
// fallback to the old image that binds to none).
func TestReseal(t *testing.T) {
	tpm := newSim(t)
	logs, log := newLogs(t)
	tpmOnly := Options{Path: idPath(t), TPM: tpm, Log: log}
	bound := tpmOnly
	bound.PCRs = []uint32{authorityPCR}

	pub := mustLoad(t, tpmOnly).PublicKey()
	measure(t, tpm, authorityPCR, "authority")
	id := mustLoad(t, bound)
	if !id.PublicKey().Equal(pub) || len(id.PCRs()) != 1 {
		t.Fatalf("after re-seal: key changed or PCRs %v", id.PCRs())
	}
	if b := readBlob(t, bound.Path); b.PCRMask != 1<<authorityPCR {
		t.Fatalf("file bound to %s after re-seal", describeMask(b.PCRMask))
	}
	if !contains(logs.String(), "identity re-sealed") {
		t.Error("re-seal not logged")
	}

	tpm.Reboot(t)
	measure(t, tpm, authorityPCR, "another authority")
	_, err := LoadOrCreate(testContext(t), bound)
	wantErr(t, "re-sealed file, other software", err, ErrSoftwareChanged)

	tpm.Reboot(t)
	measure(t, tpm, authorityPCR, "authority")
	if id := mustLoad(t, tpmOnly); !id.PublicKey().Equal(pub) || id.PCRs() != nil {
		t.Fatalf("re-seal back to the TPM only: PCRs %v", id.PCRs())
	}
	if b := readBlob(t, bound.Path); b.PCRMask != 0 {
		t.Fatalf("file bound to %s after re-sealing to the TPM only", describeMask(b.PCRMask))
	}

	// A re-seal that cannot happen (PCR never measured) keeps the old file
	// and the identity.
	tpm.Reboot(t)
	if id := mustLoad(t, bound); !id.PublicKey().Equal(pub) || id.PCRs() != nil {
		t.Fatalf("failed re-seal: PCRs %v", id.PCRs())
	}
	if !contains(logs.String(), "NOT re-sealed") {
		t.Error("failed re-seal not logged")
	}
}

// TestTPMFileEdited: the TPM checks what it sealed; parse checks what it
// cannot.
func TestTPMFileEdited(t *testing.T) {
	tpm := newSim(t)
	measure(t, tpm, authorityPCR, "authority")
	o := Options{Path: idPath(t), TPM: tpm, PCRs: []uint32{authorityPCR}, Log: quietLogger()}
	mustLoad(t, o)
	good, err := os.ReadFile(o.Path)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(name string, f func(b []byte) []byte, want ...error) {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(o.Path, f(bytes.Clone(good)), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOrCreate(testContext(t), o)
			wantErr(t, name, err, want...)
		})
	}
	edit("private area bit flipped", func(b []byte) []byte {
		b[fieldOffset(t, b, tagTPMPrivate)+40] ^= 1
		return b
	}, ErrCorrupt, ErrNeedsReactivation)
	edit("unique value bit flipped", func(b []byte) []byte {
		off := fieldOffset(t, b, tagTPMPublic)
		n := int(b[off])<<8 | int(b[off+1])
		b[off+2+n-1] ^= 1
		return b
	}, ErrCorrupt)
	edit("public key in the header", func(b []byte) []byte {
		b[fieldOffset(t, b, tagPublicKey)] ^= 1
		return b
	}, ErrCorrupt)
	edit("parent name", func(b []byte) []byte {
		b[fieldOffset(t, b, tagParentName)+5] ^= 1
		return b
	}, ErrOtherTPM)
	edit("PCR digest", func(b []byte) []byte {
		// The public area's policy no longer matches the header.
		b[fieldOffset(t, b, tagPCRDigest)] ^= 1
		return b
	}, ErrCorrupt)
	// A file that claims PCR binding but carries an object any software
	// can unseal (UserWithAuth) is refused before the TPM is asked.
	edit("weaker object", func(file []byte) []byte {
		b, err := parse(file)
		if err != nil {
			t.Fatal(err)
		}
		weak := Options{Path: idPath(t), TPM: tpm, Log: quietLogger()}
		mustLoad(t, weak)
		w := readBlob(t, weak.Path)
		b.TPMPublic, b.TPMPrivate = w.TPMPublic, w.TPMPrivate
		return b.encode()
	}, ErrCorrupt)

	// The edits did not spoil the TPM: the good file still opens.
	if err := os.WriteFile(o.Path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	mustLoad(t, o)
}

// TestSeedNeverOnTheBus: the seed crosses the bus only encrypted, when
// sealed and when unsealed, bound to PCRs or not.
func TestSeedNeverOnTheBus(t *testing.T) {
	sim := newSim(t)
	measure(t, sim, authorityPCR, "authority")
	for _, pcrs := range [][]uint32{nil, {authorityPCR}} {
		bus := &tap{TPM: sim}
		o := Options{Path: idPath(t), TPM: bus, PCRs: pcrs, Log: quietLogger()}
		seed := seedOf(mustLoad(t, o))
		if again := seedOf(mustLoad(t, o)); !bytes.Equal(again, seed) {
			t.Fatal("unsealed another seed")
		}
		if len(bus.traffic) < 10 {
			t.Fatalf("only %d messages seen on the bus", len(bus.traffic))
		}
		if bus.contains(seed) {
			t.Fatalf("PCRs %v: the seed crossed the bus in the clear", pcrs)
		}
	}
}
