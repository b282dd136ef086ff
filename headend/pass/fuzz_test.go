package pass

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse checks that no input makes the parser panic, that every
// refusal names a reason, that whatever it accepts re-encodes to the same
// bytes, and that nothing accepted verifies unless it was signed.
func FuzzParse(f *testing.F) {
	// A pass with a fixed ID: fuzzing workers are separate processes, and
	// Ed25519 signatures are deterministic, so each one makes these bytes.
	_, p := issue(f)
	p.ID = ID{0x1d}
	good := resign(p, issuerKey)
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if again := p.Encode(); !bytes.Equal(again, b) {
			t.Fatalf("accepted a non-canonical encoding:\n in  %x\n out %x", b, again)
		}
		if p.VerifySignature(trusted) == nil && !bytes.Equal(b, good) {
			t.Fatalf("a fuzzed pass verified: %x", b)
		}
	})
}
