package bootctl

import (
	"bytes"
	"testing"
)

// FuzzDecode checks that decoding never panics and accepts only what
// encoding produces: a decoded record encodes back to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add(mustMarshal(Default()))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s State
		if err := s.UnmarshalBinary(b); err != nil {
			return
		}
		if again := mustMarshal(s); !bytes.Equal(again, b[:RecordSize]) {
			t.Fatalf("decoded %v from %x, which encodes as %x", s, b[:RecordSize], again)
		}
	})
}
