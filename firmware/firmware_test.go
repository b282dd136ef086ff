package firmware

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/boxswarm/boxswarm/internal/tlv"
)

func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

var (
	testRoot   = testKey(1)
	testRootPK = testRoot.Public().(ed25519.PublicKey)
)

func testSigner(root ed25519.PrivateKey, keySeed byte, version uint32) Signer {
	k := testKey(keySeed)
	return Signer{Key: k, Certificate: Certify(root, Certificate{KeyVersion: version, PublicKey: k.Public().(ed25519.PublicKey), Name: "test"})}
}

func testSpec() ImageSpec {
	return ImageSpec{
		BoardID:      "test-board",
		ImageVersion: 7,
		Build:        "unit test",
		BOM:          []byte("bom"),
		Kernel:       bytes.Repeat([]byte("K"), 10000),
		Initramfs:    bytes.Repeat([]byte("I"), 5000),
		DTB:          []byte("dtb"),
		Cmdline:      "console=ttyAMA0",
		RootFS:       bytes.Repeat([]byte("R"), 3*BlockSize+1),
		VeritySalt:   []byte("salt"),
	}
}

func testPolicy() Policy {
	return Policy{RootKey: testRootPK, BoardID: "test-board", MinKeyVersion: 1, MinImageVersion: 1}
}

// slotOf returns the image padded to a slot of 1 MiB, as on disk.
func slotOf(img []byte) []byte {
	s := make([]byte, 1<<20)
	copy(s, img)
	return s
}

func mustBuild(t *testing.T, spec ImageSpec, s Signer) ([]byte, *Manifest) {
	t.Helper()
	img, m, err := BuildImage(spec, s)
	if err != nil {
		t.Fatal(err)
	}
	return img, m
}

func TestRoundTrip(t *testing.T) {
	s := testSigner(testRoot, 2, 3)
	img, m := mustBuild(t, testSpec(), s)
	again, _ := mustBuild(t, testSpec(), s)
	if !bytes.Equal(img, again) {
		t.Fatal("the same spec and key gave different images")
	}
	slot := slotOf(img)
	v, err := LoadSlot(bytes.NewReader(slot), int64(len(slot)), testPolicy())
	if err != nil {
		t.Fatalf("LoadSlot: %v", err)
	}
	spec := testSpec()
	if !bytes.Equal(v.Kernel, spec.Kernel) || !bytes.Equal(v.Initramfs, spec.Initramfs) || !bytes.Equal(v.DTB, spec.DTB) || v.Cmdline != spec.Cmdline {
		t.Error("verified components differ from what was signed")
	}
	if v.Digest != m.Digest() {
		t.Error("digest differs from the manifest's")
	}
	if v.Manifest.ImageVersion != 7 || v.Manifest.KeyVersion != 3 || v.Certificate.KeyVersion != 3 {
		t.Errorf("versions: image %d key %d", v.Manifest.ImageVersion, v.Manifest.KeyVersion)
	}
	rc, ok := v.Manifest.Component(RootFS)
	if !ok || rc.Verity == nil || rc.Size != 4*BlockSize {
		t.Errorf("rootfs component %+v", rc)
	}
	if !strings.Contains(m.String(), "component kernel") {
		t.Errorf("String() lacks components:\n%s", m)
	}
}

// TestTamper flips, truncates and extends an image and checks each is
// refused for its own reason.
func TestTamper(t *testing.T) {
	s := testSigner(testRoot, 2, 3)
	img, m := mustBuild(t, testSpec(), s)
	env, err := ParseEnvelope(img)
	if err != nil {
		t.Fatal(err)
	}
	// Offsets of the envelope's values within the image.
	at := func(b []byte) int { return bytes.Index(img, b) }
	comp := func(k Kind) Component { c, _ := m.Component(k); return c }

	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
		policy func(*Policy)
		want   error
	}{
		{"good", func(b []byte) []byte { return b }, nil, nil},
		{"magic", flip(0), nil, ErrNoImage},
		{"empty slot", func(b []byte) []byte { return make([]byte, len(b)) }, nil, ErrNoImage},
		{"envelope version", flip(11), nil, ErrUnsupportedVersion},
		{"envelope length huge", func(b []byte) []byte { binary.BigEndian.PutUint32(b[12:], 1<<30); return b }, nil, ErrMalformed},
		{"envelope length short", func(b []byte) []byte { binary.BigEndian.PutUint32(b[12:], 100); return b }, nil, ErrMalformed},
		{"envelope trailing bytes", func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[12:], binary.BigEndian.Uint32(b[12:])+3)
			return b
		}, nil, ErrMalformed},
		{"certificate byte", flip(at(env.Certificate) + 20), nil, ErrCertificateSignature},
		{"certificate signature byte", flip(at(env.CertificateSignature) + 5), nil, ErrCertificateSignature},
		{"manifest byte", flip(at(env.Manifest) + 12), nil, ErrManifestSignature},
		{"manifest last byte", flip(at(env.Manifest) + len(env.Manifest) - 1), nil, ErrManifestSignature},
		{"manifest signature byte", flip(at(env.ManifestSignature) + 63), nil, ErrManifestSignature},
		{"kernel first byte", flip(int(comp(Kernel).Offset)), nil, ErrComponentHash},
		{"kernel last byte", flip(int(comp(Kernel).Offset + comp(Kernel).Size - 1)), nil, ErrComponentHash},
		{"initramfs byte", flip(int(comp(Initramfs).Offset) + 100), nil, ErrComponentHash},
		{"dtb byte", flip(int(comp(DTB).Offset)), nil, ErrComponentHash},
		{"cmdline byte", flip(int(comp(Cmdline).Offset) + 3), nil, ErrComponentHash},
		{"truncated in initramfs", func(b []byte) []byte { return b[:comp(Initramfs).Offset+10] }, nil, ErrComponentHash},
		{"truncated in envelope", func(b []byte) []byte { return b[:100] }, nil, ErrMalformed},
		{"bytes inserted before kernel", func(b []byte) []byte {
			k := comp(Kernel).Offset
			return append(append(bytes.Clone(b[:k]), 0xEE), b[k:]...)
		}, nil, ErrComponentHash},
		{"revoked key version", nil, func(p *Policy) { p.MinKeyVersion = 4 }, ErrKeyRevoked},
		{"rollback", nil, func(p *Policy) { p.MinImageVersion = 8 }, ErrRollback},
		{"other board", nil, func(p *Policy) { p.BoardID = "other-board" }, ErrWrongBoard},
		{"other root key", nil, func(p *Policy) { p.RootKey = testKey(9).Public().(ed25519.PublicKey) }, ErrCertificateSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(img)
			if tc.mutate != nil {
				b = tc.mutate(b)
			}
			p := testPolicy()
			if tc.policy != nil {
				tc.policy(&p)
			}
			slot := slotOf(b)
			_, err := LoadSlot(bytes.NewReader(slot), int64(len(slot)), p)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("LoadSlot error = %v, want %v", err, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), tc.want.Error()) {
				t.Errorf("message %q does not state the reason %q", err, tc.want)
			}
		})
	}
}

func flip(off int) func([]byte) []byte {
	return func(b []byte) []byte { b[off] ^= 0x40; return b }
}

// resign builds a slot image from a hand-made manifest, to test what the
// parser refuses even when the signature is valid.
func resign(s Signer, manifest []byte) []byte {
	env := s.Seal(manifest)
	return slotOf(env.Encode())
}

func TestSignedButInvalid(t *testing.T) {
	s := testSigner(testRoot, 2, 3)
	_, m := mustBuild(t, testSpec(), s)
	good := m.Encode()
	withVersion := func(v uint32) []byte {
		b := bytes.Clone(good)
		binary.BigEndian.PutUint32(b[tlv.HeaderSize:], v)
		return b
	}
	other := *m
	other.KeyVersion = 2
	outside := *m
	outside.Components = append([]Component(nil), m.Components...)
	outside.Components[0].Offset = 1 << 30
	overlap := *m
	overlap.Components = append([]Component(nil), m.Components...)
	overlap.Components[1].Offset = overlap.Components[0].Offset
	unaligned := *m
	unaligned.Components = append([]Component(nil), m.Components...)
	unaligned.Components[0].Offset++
	inHeader := *m
	inHeader.Components = append([]Component(nil), m.Components...)
	inHeader.Components[0].Offset = 4096
	for _, tc := range []struct {
		name     string
		manifest []byte
		want     error
	}{
		{"unknown format version", withVersion(2), ErrUnsupportedVersion},
		{"duplicate field", append(bytes.Clone(good), good[len(good)-len(m.Build)-tlv.HeaderSize:]...), ErrMalformed},
		{"trailing bytes", append(bytes.Clone(good), 0, 0), ErrMalformed},
		{"unknown field", append(bytes.Clone(good), 0, 99, 0, 0, 0, 0), ErrMalformed},
		{"key version differs from certificate", other.Encode(), ErrKeyMismatch},
		{"component outside slot", outside.Encode(), ErrComponentBounds},
		{"components overlap", overlap.Encode(), ErrComponentBounds},
		{"component unaligned", unaligned.Encode(), ErrComponentBounds},
		{"component in header area", inHeader.Encode(), ErrComponentBounds},
	} {
		t.Run(tc.name, func(t *testing.T) {
			slot := resign(s, tc.manifest)
			_, err := LoadSlot(bytes.NewReader(slot), int64(len(slot)), testPolicy())
			if !errors.Is(err, tc.want) {
				t.Fatalf("LoadSlot error = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestCertificateBoardRestriction(t *testing.T) {
	k := testKey(5)
	s := Signer{Key: k, Certificate: Certify(testRoot, Certificate{KeyVersion: 1, PublicKey: k.Public().(ed25519.PublicKey), BoardID: "other-board"})}
	img, _ := mustBuild(t, testSpec(), s)
	slot := slotOf(img)
	if _, err := LoadSlot(bytes.NewReader(slot), int64(len(slot)), testPolicy()); !errors.Is(err, ErrWrongBoard) {
		t.Fatalf("LoadSlot error = %v, want %v", err, ErrWrongBoard)
	}
}

func TestSignerMismatch(t *testing.T) {
	s := testSigner(testRoot, 2, 1)
	s.Key = testKey(3)
	if _, _, err := BuildImage(testSpec(), s); err == nil {
		t.Fatal("BuildImage accepted a key that is not the certified one")
	}
}

func TestKeyFiles(t *testing.T) {
	k := testKey(4)
	pemKey, err := MarshalPrivateKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := ParsePrivateKeyPEM(pemKey); err != nil || !back.Equal(k) {
		t.Fatalf("private key round trip: %v", err)
	}
	pemPub, err := MarshalPublicKeyPEM(k.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if back, err := ParsePublicKeyPEM(pemPub); err != nil || !back.Equal(k.Public()) {
		t.Fatalf("public key round trip: %v", err)
	}
	if _, err := ParsePublicKeyPEM(pemKey); err == nil {
		t.Error("a private key file was accepted as a public key")
	}
	sc := testSigner(testRoot, 4, 2).Certificate
	back, err := ParseCertificatePEM(sc.MarshalPEM())
	if err != nil {
		t.Fatal(err)
	}
	if err := back.Verify(testRootPK); err != nil || back.KeyVersion != 2 {
		t.Fatalf("certificate round trip: %v (version %d)", err, back.KeyVersion)
	}
	if err := back.Verify(testKey(8).Public().(ed25519.PublicKey)); !errors.Is(err, ErrCertificateSignature) {
		t.Errorf("Verify with another root = %v", err)
	}
}
