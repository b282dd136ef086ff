package firmware

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParseManifest checks that no input makes the parser panic, that every
// refusal names a reason, and that whatever it accepts re-encodes to the
// same bytes (the encoding is canonical).
func FuzzParseManifest(f *testing.F) {
	_, m, err := BuildImage(testSpec(), testSigner(testRoot, 2, 1))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(m.Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedVersion) && !errors.Is(err, ErrComponentBounds) {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if again := m.Encode(); !bytes.Equal(again, b) {
			t.Fatalf("accepted a non-canonical encoding:\n in  %x\n out %x", b, again)
		}
	})
}

// FuzzLoadSlot feeds arbitrary slot contents to the whole verifier.
func FuzzLoadSlot(f *testing.F) {
	img, _, err := BuildImage(testSpec(), testSigner(testRoot, 2, 1))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(img[:ReservedSize])
	f.Fuzz(func(t *testing.T, b []byte) {
		slot := make([]byte, 2*ReservedSize)
		copy(slot, b)
		if _, err := LoadSlot(bytes.NewReader(slot), int64(len(slot)), testPolicy()); err == nil {
			t.Fatal("a fuzzed slot verified")
		}
	})
}

// FuzzParseCertificate checks the certificate parser the same way.
func FuzzParseCertificate(f *testing.F) {
	f.Add(testSigner(testRoot, 2, 1).Certificate.Raw)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCertificate(b)
		if err != nil {
			return
		}
		if again := c.Encode(); !bytes.Equal(again, b) {
			t.Fatalf("accepted a non-canonical encoding: %x", b)
		}
	})
}
