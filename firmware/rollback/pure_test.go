package rollback

import (
	"bytes"
	"encoding/hex"
	"testing"
)

func TestExpectedPCR(t *testing.T) {
	mustHex := func(s string) [32]byte {
		var d [32]byte
		if n, err := hex.Decode(d[:], []byte(s)); err != nil || n != 32 {
			t.Fatalf("bad test vector %q", s)
		}
		return d
	}
	tests := []struct {
		name    string
		initial [32]byte
		digests [][32]byte
		want    [32]byte
	}{
		{"no extend keeps the value", digest("start"), nil, digest("start")},
		{"zero extended with zero is SHA-256 of 64 zero bytes", [32]byte{}, [][32]byte{{}},
			mustHex("f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b")},
		// Cross-checked with tpm2_pcrread against swtpm after one extend.
		{"one digest from a reset PCR", [32]byte{}, [][32]byte{digest("x")},
			mustHex("c8b5072655f7c88616607694a9013e59afc506b5b32a45a064aff66a844e2ac5")},
		{"order matters", [32]byte{}, [][32]byte{digest("b"), digest("a")},
			ExpectedPCR(ExpectedPCR([32]byte{}, digest("b")), digest("a"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ExpectedPCR(tt.initial, tt.digests...); got != tt.want {
				t.Errorf("ExpectedPCR = %x, want %x", got, tt.want)
			}
		})
	}
	if ExpectedPCR([32]byte{}, digest("a"), digest("b")) == ExpectedPCR([32]byte{}, digest("b"), digest("a")) {
		t.Error("ExpectedPCR ignores order")
	}
}

func TestRecordLayout(t *testing.T) {
	tests := []struct {
		name string
		rec  record
		wire string
	}{
		{"zero", record{}, "00000000000000000000000000000000"},
		{"fields big-endian", record{Floors: Floors{0x0102030405060708, 0x0a0b0c0d}}, "01020304050607080a0b0c0d00000000"},
		{"reserved carried", record{Floors: Floors{1, 2}, reserved: [4]byte{0xde, 0xad, 0xbe, 0xef}}, "000000000000000100000002deadbeef"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire, _ := hex.DecodeString(tt.wire)
			if got := tt.rec.marshal(); !bytes.Equal(got, wire) {
				t.Errorf("marshal = %x, want %s", got, tt.wire)
			}
			got, err := parseRecord(wire)
			if err != nil || got != tt.rec {
				t.Errorf("parseRecord = %+v, %v; want %+v", got, err, tt.rec)
			}
		})
	}
	for _, n := range []int{0, 15, 17} {
		if _, err := parseRecord(make([]byte, n)); err == nil {
			t.Errorf("parseRecord accepted %d bytes", n)
		}
	}
}

func TestAttributesValue(t *testing.T) {
	// The value tpm2-tools prints for
	// "ppwrite|writeall|write_stclear|authread|no_da|platformcreate".
	const want = 0x42045001
	if got := attrBits(Attributes()); got != want {
		t.Errorf("Attributes() = %#08x (%s), want %#08x", got, describeBits(got), want)
	}
	if got := describeBits(want); got != "PPWRITE|WRITEALL|WRITE_STCLEAR|AUTHREAD|NO_DA|PLATFORMCREATE" {
		t.Errorf("describeBits = %s", got)
	}
}
