package tlv

import (
	"bytes"
	"errors"
	"testing"
)

var schema = []Field{
	{Tag: 1, Name: "version", Kind: KindUint32, Required: true},
	{Tag: 2, Name: "name", Kind: KindString, Max: 8},
	{Tag: 3, Name: "id", Kind: KindFixed, Max: 4, Required: true},
	{Tag: 5, Name: "blob", Kind: KindBytes, Max: 16},
}

func good() []byte {
	var e Encoder
	e.Uint32(1, 7)
	e.String(2, "box")
	e.Bytes(3, []byte{1, 2, 3, 4})
	return e.Encoded()
}

func TestDecode(t *testing.T) {
	f, err := Decode("rec", good(), schema)
	if err != nil {
		t.Fatal(err)
	}
	if f.Uint32(1) != 7 || f.String(2) != "box" || !bytes.Equal(f.Bytes(3), []byte{1, 2, 3, 4}) || f.Has(5) {
		t.Fatalf("decoded %v", f)
	}
	enc := func(fill func(*Encoder)) []byte { var e Encoder; fill(&e); return e.Encoded() }
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"missing required", enc(func(e *Encoder) { e.Uint32(1, 7) })},
		{"unknown tag", append(good(), 0, 9, 0, 0, 0, 0)},
		{"repeated tag", append(good(), enc(func(e *Encoder) { e.Bytes(3, []byte{1, 2, 3, 4}) })...)},
		{"out of order", enc(func(e *Encoder) { e.Bytes(3, []byte{1, 2, 3, 4}); e.last = 0; e.Uint32(1, 7) })},
		{"trailing bytes", append(good(), 1, 2)},
		{"length past end", good()[:len(good())-1]},
		{"wrong integer width", enc(func(e *Encoder) { e.Bytes(1, []byte{0, 7}); e.Bytes(3, []byte{1, 2, 3, 4}) })},
		{"fixed length", enc(func(e *Encoder) { e.Uint32(1, 7); e.Bytes(3, []byte{1, 2, 3}) })},
		{"too long", enc(func(e *Encoder) { e.Uint32(1, 7); e.String(2, "too long a name"); e.Bytes(3, []byte{1, 2, 3, 4}) })},
		{"NUL in string", enc(func(e *Encoder) { e.Uint32(1, 7); e.String(2, "a\x00b"); e.Bytes(3, []byte{1, 2, 3, 4}) })},
		{"invalid UTF-8", enc(func(e *Encoder) { e.Uint32(1, 7); e.Bytes(2, []byte{0xff}); e.Bytes(3, []byte{1, 2, 3, 4}) })},
	} {
		if _, err := Decode("rec", tc.b, schema); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Decode = %v, want ErrMalformed", tc.name, err)
		}
	}
}

func TestEncoderPanicsOnDisorder(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("adding tag 1 after tag 2 did not panic")
		}
	}()
	var e Encoder
	e.Uint32(2, 0)
	e.Uint32(1, 0)
}

// FuzzDecode checks that decoding never panics and that what it accepts is
// re-encoded to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add(good())
	f.Fuzz(func(t *testing.T, b []byte) {
		fs, err := Decode("rec", b, schema)
		if err != nil {
			return
		}
		var e Encoder
		for _, fd := range schema {
			if fs.Has(fd.Tag) {
				e.Bytes(fd.Tag, fs.Bytes(fd.Tag))
			}
		}
		if !bytes.Equal(e.Encoded(), b) {
			t.Fatalf("accepted a non-canonical encoding %x", b)
		}
	})
}
