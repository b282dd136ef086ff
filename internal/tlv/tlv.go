// Package tlv is the deterministic tag-length-value encoding of every signed
// record in the system: firmware manifests and certificates, and media
// package manifests.
//
// A record is a sequence of fields. Each field is a 2-byte tag, a 4-byte
// length and the value, all big-endian. A record has exactly one valid
// encoding: tags must appear in strictly increasing order (so a field can
// neither repeat nor move), integers have a fixed width, and the decoder is
// given a schema, so an unknown tag, a missing required field, a value longer
// than its limit or a byte left over is an error. Values returned by the
// decoder are sub-slices of the input: decoding never allocates in proportion
// to a length read from the input.
package tlv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// HeaderSize is the size of a field's tag and length.
const HeaderSize = 6

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed record")

// Encoder builds one record. Fields must be added in increasing tag order;
// doing otherwise is a programming error and panics, because it would produce
// bytes no decoder accepts.
type Encoder struct {
	buf  []byte
	last int
}

func (e *Encoder) header(tag uint16, n int) {
	if int(tag) <= e.last {
		panic(fmt.Sprintf("tlv: tag %d added after tag %d", tag, e.last))
	}
	if uint64(n) > 0xFFFFFFFF {
		panic(fmt.Sprintf("tlv: tag %d: value of %d bytes too long", tag, n))
	}
	e.last = int(tag)
	e.buf = binary.BigEndian.AppendUint16(e.buf, tag)
	e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(n))
}

// Bytes adds a field holding b.
func (e *Encoder) Bytes(tag uint16, b []byte) {
	e.header(tag, len(b))
	e.buf = append(e.buf, b...)
}

// String adds a field holding s.
func (e *Encoder) String(tag uint16, s string) {
	e.header(tag, len(s))
	e.buf = append(e.buf, s...)
}

// Uint32 adds a 4-byte unsigned integer field.
func (e *Encoder) Uint32(tag uint16, v uint32) {
	e.header(tag, 4)
	e.buf = binary.BigEndian.AppendUint32(e.buf, v)
}

// Uint64 adds an 8-byte unsigned integer field.
func (e *Encoder) Uint64(tag uint16, v uint64) {
	e.header(tag, 8)
	e.buf = binary.BigEndian.AppendUint64(e.buf, v)
}

// Record adds a field holding the nested record built by fill.
func (e *Encoder) Record(tag uint16, fill func(*Encoder)) {
	var inner Encoder
	fill(&inner)
	e.Bytes(tag, inner.buf)
}

// Encoded returns the record's bytes.
func (e *Encoder) Encoded() []byte { return e.buf }

// Kind says how a field's value is checked before it is returned.
type Kind uint8

const (
	KindBytes  Kind = iota // any bytes up to Max
	KindString             // valid UTF-8 without NUL, up to Max bytes
	KindUint32             // exactly 4 bytes
	KindUint64             // exactly 8 bytes
	KindFixed              // exactly Max bytes
	KindRecord             // a nested record up to Max bytes, decoded by the caller
)

// Field describes one tag a record may hold.
type Field struct {
	Tag      uint16
	Name     string
	Kind     Kind
	Max      int // maximum (or, for KindFixed, exact) value length
	Required bool
}

// Fields are the values of one decoded record, indexed by tag. A missing
// optional field has a nil value.
type Fields struct {
	values map[uint16][]byte
}

// Decode splits b into the fields allowed by schema. what names the record
// in error messages ("manifest").
func Decode(what string, b []byte, schema []Field) (Fields, error) {
	f := Fields{values: make(map[uint16][]byte, len(schema))}
	last := -1
	for off := 0; off < len(b); {
		if len(b)-off < HeaderSize {
			return Fields{}, fmt.Errorf("%s: %d trailing bytes after the last field: %w", what, len(b)-off, ErrMalformed)
		}
		tag := binary.BigEndian.Uint16(b[off:])
		n := binary.BigEndian.Uint32(b[off+2:])
		off += HeaderSize
		if int(tag) <= last {
			return Fields{}, fmt.Errorf("%s: tag %d repeated or out of order (after tag %d): %w", what, tag, last, ErrMalformed)
		}
		last = int(tag)
		fd, ok := lookup(schema, tag)
		if !ok {
			return Fields{}, fmt.Errorf("%s: unknown tag %d: %w", what, tag, ErrMalformed)
		}
		if uint64(n) > uint64(len(b)-off) {
			return Fields{}, fmt.Errorf("%s: field %q: length %d runs past the end of the record (%d bytes left): %w", what, fd.Name, n, len(b)-off, ErrMalformed)
		}
		v := b[off : off+int(n)]
		off += int(n)
		if err := check(fd, v); err != nil {
			return Fields{}, fmt.Errorf("%s: field %q: %w", what, fd.Name, err)
		}
		f.values[tag] = v
	}
	for _, fd := range schema {
		if _, ok := f.values[fd.Tag]; fd.Required && !ok {
			return Fields{}, fmt.Errorf("%s: required field %q missing: %w", what, fd.Name, ErrMalformed)
		}
	}
	return f, nil
}

func lookup(schema []Field, tag uint16) (Field, bool) {
	for _, fd := range schema {
		if fd.Tag == tag {
			return fd, true
		}
	}
	return Field{}, false
}

func check(fd Field, v []byte) error {
	switch fd.Kind {
	case KindUint32:
		if len(v) != 4 {
			return fmt.Errorf("length %d, want 4: %w", len(v), ErrMalformed)
		}
	case KindUint64:
		if len(v) != 8 {
			return fmt.Errorf("length %d, want 8: %w", len(v), ErrMalformed)
		}
	case KindFixed:
		if len(v) != fd.Max {
			return fmt.Errorf("length %d, want %d: %w", len(v), fd.Max, ErrMalformed)
		}
	case KindString:
		if len(v) > fd.Max {
			return fmt.Errorf("length %d exceeds the limit of %d: %w", len(v), fd.Max, ErrMalformed)
		}
		if !utf8.Valid(v) {
			return fmt.Errorf("not valid UTF-8: %w", ErrMalformed)
		}
		for _, c := range v {
			if c == 0 {
				return fmt.Errorf("contains a NUL byte: %w", ErrMalformed)
			}
		}
	default:
		if len(v) > fd.Max {
			return fmt.Errorf("length %d exceeds the limit of %d: %w", len(v), fd.Max, ErrMalformed)
		}
	}
	return nil
}

// Has reports whether the field with tag was present.
func (f Fields) Has(tag uint16) bool { _, ok := f.values[tag]; return ok }

// Bytes returns the raw value of tag, nil if absent.
func (f Fields) Bytes(tag uint16) []byte { return f.values[tag] }

// String returns the value of a KindString field, "" if absent.
func (f Fields) String(tag uint16) string { return string(f.values[tag]) }

// Uint32 returns the value of a KindUint32 field, 0 if absent.
func (f Fields) Uint32(tag uint16) uint32 {
	if v := f.values[tag]; len(v) == 4 {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

// Uint64 returns the value of a KindUint64 field, 0 if absent.
func (f Fields) Uint64(tag uint16) uint64 {
	if v := f.values[tag]; len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}
