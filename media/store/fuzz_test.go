package store

import (
	"bytes"
	"testing"

	"github.com/boxswarm/boxswarm/media"
)

// FuzzRequest feeds arbitrary bytes to the server's request decoder: it
// must not panic, whatever it accepts must be within the protocol's
// bounds, and it accepts only the one encoding of each request.
func FuzzRequest(f *testing.F) {
	id := media.ID{0xde, 0xad}
	for _, r := range []request{
		{op: opTitles, tag: 1},
		{op: opManifest, tag: 2, id: id},
		{op: opReadAt, tag: 3, id: id, off: 123456, n: 65536},
		{op: opHave, tag: 4, id: id},
		{op: opWait, tag: 5, id: id, n: 9},
		{op: opLock, tag: 6, id: id, reason: "playing"},
		{op: opUnlock, tag: 7, handle: 3},
		{op: opPosition, tag: 8, id: id},
		{op: opSetPosition, tag: 9, id: id, n: 100},
		{op: opCancel, tag: 10, n: 5},
	} {
		f.Add(r.encode())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRequest(b)
		if err != nil {
			return
		}
		if len(b) > maxRequest || r.n > MaxRead && r.op == opReadAt || len(r.reason) > maxReason {
			t.Fatalf("accepted %d bytes: %+v", len(b), r)
		}
		if back := r.encode(); !bytes.Equal(back, b) {
			t.Fatalf("decoded %x as %+v, which encodes as %x", b, r, back)
		}
	})
}

// FuzzResponse feeds arbitrary bytes to the client's response parsers,
// for every op: no panic, and what they accept is within bounds.
func FuzzResponse(f *testing.F) {
	f.Add(finishFrame(appendTitles(newFrame(statusOK, 1, 0), []TitleInfo{{ID: media.ID{1}, Pieces: 3, Present: 1, Size: 1 << 20, PresentBytes: 1 << 16}}))[4:], uint16(10))
	f.Add(append(newFrame(statusOK, 2, 0), 0, 1, 2, 3)[4:], uint16(3))
	f.Add(append(newFrame(statusOK, 3, 0), 0, 0, 0, 9, 0xff, 0x80)[4:], uint16(0))
	f.Add(append(newFrame(statusMissing, 4, 0), "piece 3 missing"...)[4:], uint16(0))
	f.Fuzz(func(t *testing.T, b []byte, asked uint16) {
		r, err := decodeResponse(b)
		if err != nil {
			return
		}
		if err := r.err(); err != nil {
			return
		}
		if ts, err := parseTitles(r.body); err == nil {
			for _, ti := range ts {
				if ti.Present > ti.Pieces || ti.PresentBytes > ti.Size {
					t.Fatalf("accepted %+v", ti)
				}
			}
		}
		if bm, err := parseHave(r.body); err == nil && bm.Count() > bm.Len() {
			t.Fatalf("bitmap with %d of %d", bm.Count(), bm.Len())
		}
		if data, eof, err := parseReadAt(r.body, int(asked)); err == nil && (len(data) > int(asked) || !eof && len(data) != int(asked)) {
			t.Fatalf("read of %d accepted %d bytes (eof %v)", asked, len(data), eof)
		}
		parseHandle(r.body)
		parsePosition(r.body)
	})
}
