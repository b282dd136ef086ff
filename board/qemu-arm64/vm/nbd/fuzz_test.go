package nbd

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"testing"
)

// FuzzRequest checks the request decoder and the bounds check: no panic,
// and whatever passes the check fits the export and MaxRequest.
func FuzzRequest(f *testing.F) {
	f.Add(reqBytes(cmdRead, 0, 0, 512), int64(1<<20))
	f.Fuzz(func(t *testing.T, b []byte, size int64) {
		rq, err := decodeRequest(b)
		if err != nil {
			return
		}
		if rq.off != binary.BigEndian.Uint64(b[16:]) || rq.length != binary.BigEndian.Uint32(b[24:]) {
			t.Fatal("fields decoded from the wrong place")
		}
		if size < 0 {
			size = -size
		}
		if size < 0 { // math.MinInt64
			return
		}
		if rq.check(size) == 0 {
			end := rq.off + uint64(rq.length)
			if end < rq.off || end > uint64(size) || rq.length > MaxRequest {
				t.Fatalf("accepted %d bytes at %d on a %d-byte export", rq.length, rq.off, size)
			}
		}
	})
}

// FuzzSession feeds arbitrary client bytes to a whole connection, handshake
// and transmission, and checks that the server neither panics nor hangs.
func FuzzSession(f *testing.F) {
	f.Add(sessionGo())
	f.Fuzz(func(t *testing.T, stream []byte) {
		base := bytes.Repeat([]byte{0x5a}, 64<<10)
		hook, err := FlipAfterFirstRead([]Region{{1000, 5000}}, bytes.NewReader(make([]byte, 64<<10)))
		if err != nil {
			t.Fatal(err)
		}
		srv := &Server{Backing: NewOverlay(bytes.NewReader(base), int64(len(base))), ReadHook: hook}
		srv.serveConn(bytes.NewReader(stream), io.Discard, slog.New(slog.DiscardHandler))
	})
}

func reqBytes(typ uint16, flags uint16, off uint64, length uint32) []byte {
	b := be32(requestMagic)
	b = append(b, be16(flags)...)
	b = append(b, be16(typ)...)
	b = append(b, be64(42)...)
	b = append(b, be64(off)...)
	return append(b, be32(length)...)
}

func optBytes(opt uint32, data []byte) []byte {
	b := append(be64(optMagic), be32(opt)...)
	b = append(b, be32(uint32(len(data)))...)
	return append(b, data...)
}

// sessionGo is a well-behaved client's side of a whole session.
func sessionGo() []byte {
	s := be32(flagFixedNewstyle | flagNoZeroes)
	s = append(s, optBytes(8, nil)...) // structured replies: refused
	s = append(s, optBytes(optGo, goData("", infoBlockSize))...)
	s = append(s, reqBytes(cmdRead, 0, 0, 4096)...)
	s = append(s, reqBytes(cmdWrite, 0, 512, 16)...)
	s = append(s, bytes.Repeat([]byte{1}, 16)...)
	s = append(s, reqBytes(cmdRead, 0, 0, 8192)...)
	s = append(s, reqBytes(cmdFlush, 0, 0, 0)...)
	return append(s, reqBytes(cmdDisc, 0, 0, 0)...)
}
