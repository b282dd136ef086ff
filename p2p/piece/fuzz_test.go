package piece

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
)

// seedMessages are one of each message, for the seed corpus and the
// round-trip test.
func seedMessages() []Message {
	g := api.Grant{
		Transfer: 0x0102030405060708, Sender: api.BoxID{1, 2, 3}, Receiver: api.BoxID{4, 5, 6}, Title: [16]byte{7, 8, 9},
		Portions: []api.PieceRange{{First: 0, Last: 9}, {First: 20, Last: 65535}},
		Expires:  time.Unix(1767225600, 0).UTC(),
	}
	return []Message{
		&Hello{Grant: g, Token: bytes.Repeat([]byte{0xee}, 64), WantManifest: true},
		&Hello{Grant: api.Grant{Portions: []api.PieceRange{{First: 3, Last: 3}}, Expires: time.Unix(0, 0).UTC()}, Token: []byte{1}},
		&Accept{ManifestSize: 123456, Window: 64},
		&Accept{Window: 1},
		&Refuse{Code: RefuseUnauthorized, Reason: unauthorized},
		&Refuse{Code: RefuseVersion},
		&Request{First: 4, Last: 70},
		&Chunk{Piece: 5, Offset: 32 << 10, Data: bytes.Repeat([]byte{0xab}, 100)},
		&Chunk{Piece: 65535, Offset: 0, Data: make([]byte, MaxChunkData)},
		&PieceEnd{Piece: 5},
		&Cancel{Reason: "transfer cancelled"},
		&Cancel{},
		&Error{Code: CodeNotGranted, Reason: "pieces 1 to 4 are not all in the grant"},
		&Manifest{Data: []byte("BXSWMED1...")},
		&Done{},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range seedMessages() {
		b := AppendFrame(nil, m)
		if len(b) > MaxFrame {
			t.Errorf("%v: frame of %d bytes", m.Type(), len(b))
		}
		got, err := DecodeFrame(b)
		if err != nil {
			t.Fatalf("%v: %v", m.Type(), err)
		}
		if back := AppendFrame(nil, got); !bytes.Equal(back, b) {
			t.Errorf("%v: round trip %x, want %x", m.Type(), back, b)
		}
		if got, err := ReadFrame(bytes.NewReader(b), make([]byte, MaxFrame)); err != nil || got.Type() != m.Type() {
			t.Errorf("%v: ReadFrame: %v, %v", m.Type(), got, err)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	hello := AppendFrame(nil, seedMessages()[0])
	for _, tc := range []struct {
		name string
		b    []byte
		err  error
	}{
		{"short header", []byte{1, 4, 0}, ErrMalformed},
		{"version", []byte{2, 10, 0, 0}, ErrVersion},
		{"length mismatch", []byte{1, 10, 0, 1}, ErrMalformed},
		{"trailing", []byte{1, 10, 0, 1, 0}, ErrMalformed},
		{"unknown type", []byte{1, 99, 0, 0}, ErrMalformed},
		{"request backwards", AppendFrame(nil, &Request{First: 5, Last: 4}), ErrMalformed},
		{"request past MaxPieces", AppendFrame(nil, &Request{First: 5, Last: 1 << 16}), ErrMalformed},
		{"empty chunk", []byte{1, 5, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0}, ErrMalformed},
		{"chunk past 16 MiB", AppendFrame(nil, &Chunk{Piece: 1, Offset: 16<<20 - 1, Data: []byte{1, 2}}), ErrMalformed},
		{"accept window 0", AppendFrame(nil, &Accept{}), ErrMalformed},
		{"accept huge manifest", AppendFrame(nil, &Accept{ManifestSize: MaxManifest + 1, Window: 1}), ErrMalformed},
		{"hello flags", func() []byte { b := bytes.Clone(hello); b[4+64] |= 2; return b }(), ErrMalformed},
		{"hello cut", func() []byte { b := bytes.Clone(hello[:len(hello)-1]); b[3]--; return b }(), ErrMalformed},
		{"long reason", AppendFrame(nil, &Cancel{Reason: string(make([]byte, MaxReason+1))}), ErrMalformed},
	} {
		if _, err := DecodeFrame(tc.b); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
	// The length is checked before the body is read.
	big := []byte{1, 5, 0xff, 0xfd}
	if _, err := ReadFrame(bytes.NewReader(big), make([]byte, MaxFrame)); !errors.Is(err, ErrMalformed) {
		t.Errorf("oversized body: %v", err)
	}
}

// FuzzDecodeFrame feeds arbitrary bytes to the frame decoder: whatever it
// accepts fits the limits and encodes back to the same bytes.
func FuzzDecodeFrame(f *testing.F) {
	for _, m := range seedMessages() {
		f.Add(AppendFrame(nil, m))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeFrame(b)
		if err != nil {
			return
		}
		if len(b) > MaxFrame {
			t.Fatalf("accepted a frame of %d bytes", len(b))
		}
		if back := AppendFrame(nil, m); !bytes.Equal(back, b) {
			t.Fatalf("decoded %x as %+v, which encodes as %x", b, m, back)
		}
		switch m := m.(type) {
		case *Hello:
			if len(m.Grant.Portions) == 0 || len(m.Grant.Portions) > api.MaxPortions || len(m.Token) == 0 || len(m.Token) > MaxToken {
				t.Fatalf("accepted %+v", m)
			}
			for _, p := range m.Grant.Portions {
				if p.First > p.Last {
					t.Fatalf("accepted portion %+v", p)
				}
			}
		case *Chunk:
			if len(m.Data) == 0 || m.Offset+len(m.Data) > 16<<20 {
				t.Fatalf("accepted chunk of %d at %d", len(m.Data), m.Offset)
			}
		case *Request:
			if m.First > m.Last {
				t.Fatalf("accepted %+v", m)
			}
		}
		got, err := ReadFrame(bytes.NewReader(b), make([]byte, MaxFrame))
		if err != nil || got.Type() != m.Type() {
			t.Fatalf("ReadFrame disagrees: %v, %v", got, err)
		}
	})
}
