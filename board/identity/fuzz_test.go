package identity

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse checks the identity file parser against whatever a damaged or
// hostile data partition holds: no input makes it panic, every refusal
// says why (ErrCorrupt or ErrVersion), and what it accepts re-encodes to
// the same bytes, so one identity has one file. The corpus in testdata
// holds a file of each protection, two of them TPM-sealed.
func FuzzParse(f *testing.F) {
	f.Add([]byte(Magic + "\x00\x00\x00\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := parse(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("refusal without a reason: %v", err)
			}
			return
		}
		if again := b.encode(); !bytes.Equal(again, data) {
			t.Fatalf("accepted a non-canonical file:\n in  %x\n out %x", data, again)
		}
		if len(b.Public) != 32 {
			t.Fatalf("accepted a public key of %d bytes", len(b.Public))
		}
		if b.Protection == ProtectionTPM {
			if err := checkSealedPublic(b.TPMPublic, b.PCRMask, b.PCRDigest); err != nil {
				t.Fatalf("accepted a TPM public area it then refuses: %v", err)
			}
		}
	})
}
