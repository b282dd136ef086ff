package keywrap

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
	"time"
)

// FuzzParse checks that no input makes the parser panic, that every
// refusal names a reason, that what it accepts re-encodes to the same
// bytes, and that nothing but the genuine wrap opens under the box's key.
func FuzzParse(f *testing.F) {
	// A fixed wrap: fuzzing workers are separate processes, and a fresh
	// Wrap would differ in each (HPKE's ephemeral key).
	good, err := hex.DecodeString(goodWrap)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, sealed, err := parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if again := encode(h, sealed); !bytes.Equal(again, b) {
			t.Fatalf("accepted a non-canonical encoding:\n in  %x\n out %x", b, again)
		}
		s, _, err := Unwrap(boxKey, h.Box, h.Title, b, h.Expires.Add(-time.Second))
		if err == nil {
			s.Destroy()
			if !bytes.Equal(b, good) {
				t.Fatalf("a fuzzed wrapped key opened: %x", b)
			}
		}
	})
}

// goodWrap is Wrap(boxPub, {title, box, expires}, content), made once.
const goodWrap = "42585357574b45590000000100010000001071020000000000000000000000000000000200000010b00100000000000000000000000000000003000000080000000070dd5525000400000050d291520b1909dde4a05e77f51e9cc9a25cbf60236e18219e2046a33bef9d0b0aa5b336f2f8421025b9240de56dc45be47337043a07b3c8fd1683987370170e4770a8ff6f6ef9a706c5f63892dfe4accb"
