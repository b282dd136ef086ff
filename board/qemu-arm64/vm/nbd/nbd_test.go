package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testLog sends the server's log to the test log.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// sockDir returns a short directory for Unix sockets, whose paths are
// limited to 107 bytes (t.TempDir() can be longer).
func sockDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "nbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// start serves srv on a fresh Unix socket until the test ends and returns
// the socket's path.
func start(t *testing.T, srv *Server) string {
	t.Helper()
	path := filepath.Join(sockDir(t), "nbd.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if srv.Log == nil {
		srv.Log = testLog(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Serve returned %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return path
}

// randomImage returns size reproducible pseudo-random bytes.
func randomImage(size int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// client is a minimal NBD client: just enough protocol to test the server.
type client struct {
	t      *testing.T
	c      net.Conn
	size   uint64
	flags  uint16
	cookie uint64
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func (c *client) send(parts ...[]byte) {
	c.t.Helper()
	c.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.c.Write(bytes.Join(parts, nil)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) recv(n int) []byte {
	c.t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(c.c, b); err != nil {
		c.t.Fatalf("reading %d bytes: %v", n, err)
	}
	return b
}

// dialRaw connects and does the greeting, leaving the client in the
// option phase.
func dialRaw(t *testing.T, path string, clientFlags uint32) *client {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &client{t: t, c: conn}
	hello := c.recv(18)
	if string(hello[:16]) != "NBDMAGICIHAVEOPT" || binary.BigEndian.Uint16(hello[16:]) != flagFixedNewstyle|flagNoZeroes {
		t.Fatalf("greeting % x", hello)
	}
	c.send(be32(clientFlags))
	return c
}

func (c *client) option(opt uint32, data []byte) {
	c.send(be64(optMagic), be32(opt), be32(uint32(len(data))), data)
}

// optReply reads one option reply and returns its type and data.
func (c *client) optReply(wantOpt uint32) (uint32, []byte) {
	c.t.Helper()
	h := c.recv(20)
	if binary.BigEndian.Uint64(h) != repMagic || binary.BigEndian.Uint32(h[8:]) != wantOpt {
		c.t.Fatalf("option reply header % x", h)
	}
	return binary.BigEndian.Uint32(h[12:]), c.recv(int(binary.BigEndian.Uint32(h[16:])))
}

func goData(name string, infos ...uint16) []byte {
	d := append(be32(uint32(len(name))), name...)
	d = append(d, be16(uint16(len(infos)))...)
	for _, i := range infos {
		d = append(d, be16(i)...)
	}
	return d
}

// dial connects and negotiates with NBD_OPT_GO or, if useGo is false, the
// old NBD_OPT_EXPORT_NAME.
func dial(t *testing.T, path string, useGo bool) *client {
	t.Helper()
	if !useGo {
		c := dialRaw(t, path, flagFixedNewstyle)
		c.option(optExportName, []byte("anything"))
		r := c.recv(10 + 124)
		c.size, c.flags = binary.BigEndian.Uint64(r), binary.BigEndian.Uint16(r[8:])
		return c
	}
	c := dialRaw(t, path, flagFixedNewstyle|flagNoZeroes)
	c.option(optGo, goData("", infoBlockSize))
	for {
		typ, data := c.optReply(optGo)
		switch typ {
		case repInfo:
			if binary.BigEndian.Uint16(data) == infoExport {
				c.size, c.flags = binary.BigEndian.Uint64(data[2:]), binary.BigEndian.Uint16(data[10:])
			}
		case repAck:
			return c
		default:
			t.Fatalf("NBD_OPT_GO reply %#x", typ)
		}
	}
}

// do sends a request and returns the reply's error and data.
func (c *client) do(typ, flags uint16, off uint64, length uint32, payload []byte, readLen int) (uint32, []byte) {
	c.t.Helper()
	c.cookie++
	c.send(be32(requestMagic), be16(flags), be16(typ), be64(c.cookie), be64(off), be32(length), payload)
	h := c.recv(16)
	if binary.BigEndian.Uint32(h) != replyMagic || binary.BigEndian.Uint64(h[8:]) != c.cookie {
		c.t.Fatalf("reply header % x for cookie %d", h, c.cookie)
	}
	errno := binary.BigEndian.Uint32(h[4:])
	if errno != 0 || readLen == 0 {
		return errno, nil
	}
	return 0, c.recv(readLen)
}

func (c *client) read(off uint64, n int) []byte {
	c.t.Helper()
	errno, data := c.do(cmdRead, 0, off, uint32(n), nil, n)
	if errno != 0 {
		c.t.Fatalf("read %d at %d: errno %d", n, off, errno)
	}
	return data
}

func TestReadWrite(t *testing.T) {
	const size = 1 << 20
	base := randomImage(size, 1)
	orig := bytes.Clone(base)
	for _, useGo := range []bool{true, false} {
		name := map[bool]string{true: "GO", false: "EXPORT_NAME"}[useGo]
		t.Run(name, func(t *testing.T) {
			srv := &Server{Backing: NewOverlay(bytes.NewReader(base), size)}
			c := dial(t, start(t, srv), useGo)
			if c.size != size || c.flags != transHasFlags|transSendFlush {
				t.Fatalf("size %d flags %#x", c.size, c.flags)
			}
			if got := c.read(4090, 100); !bytes.Equal(got, base[4090:4190]) {
				t.Fatal("read returned wrong bytes")
			}
			payload := bytes.Repeat([]byte{0xAB}, 5000)
			if e, _ := c.do(cmdWrite, 0, 1000, 5000, payload, 0); e != 0 {
				t.Fatalf("write: errno %d", e)
			}
			want := bytes.Clone(base[:8192])
			copy(want[1000:], payload)
			if got := c.read(0, 8192); !bytes.Equal(got, want) {
				t.Fatal("read after write returned wrong bytes")
			}
			if e, _ := c.do(cmdWrite, cmdFlagFUA, size-1, 1, []byte{7}, 0); e != 0 {
				t.Fatalf("FUA write of the last byte: errno %d", e)
			}
			if e, _ := c.do(cmdFlush, 0, 0, 0, nil, 0); e != 0 {
				t.Fatalf("flush: errno %d", e)
			}
			if !bytes.Equal(base, orig) {
				t.Fatal("the overlay wrote to its base")
			}
			if got := srv.ReadCount(0); got != 2 {
				t.Errorf("ReadCount(0) = %d, want 2", got)
			}
			if got := srv.ReadCount(1); got != 2 {
				t.Errorf("ReadCount(1) = %d, want 2 (one read crossed into it)", got)
			}
			if got := srv.ReadCount(2); got != 0 {
				t.Errorf("ReadCount(2) = %d, want 0", got)
			}
			c.send(be32(requestMagic), be16(0), be16(cmdDisc), be64(99), be64(0), be32(0))
			c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := c.c.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("after DISC: read %d, %v; want EOF", n, err)
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	const size = 1 << 20
	srv := &Server{Backing: NewOverlay(nil, size)}
	c := dial(t, start(t, srv), true)
	cases := []struct {
		name    string
		typ     uint16
		flags   uint16
		off     uint64
		length  uint32
		payload bool
	}{
		{"read past end", cmdRead, 0, size - 10, 11, false},
		{"read at end+1", cmdRead, 0, size + 1, 0, false},
		{"read offset overflow", cmdRead, 0, 1<<64 - 1, 2, false},
		{"read too long", cmdRead, 0, 0, MaxRequest + 1, false},
		{"read unknown flag", cmdRead, 1 << 9, 0, 1, false},
		{"write past end", cmdWrite, 0, size - 1, 2, true},
		{"write offset overflow", cmdWrite, 0, 1<<64 - 512, 1024, true},
		{"write unknown flag", cmdWrite, 1 << 3, 0, 512, true},
		{"write too long", cmdWrite, 0, 0, MaxRequest + 1, true},
		{"trim", 4, 0, 0, 512, false},
		{"write zeroes", 6, 0, 0, 512, false},
		{"block status", 7, 0, 0, 512, false},
		{"unknown", 0xFFFF, 0, 0, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var payload []byte
			if tc.payload {
				payload = make([]byte, tc.length)
			}
			if e, _ := c.do(tc.typ, tc.flags, tc.off, tc.length, payload, 0); e != errEINVAL {
				t.Fatalf("errno %d, want EINVAL", e)
			}
			// The connection is still in step.
			if got := c.read(size-512, 512); len(got) != 512 {
				t.Fatal("read after a bad request failed")
			}
		})
	}
}

func TestOptions(t *testing.T) {
	srv := &Server{Backing: NewOverlay(nil, 1<<20)}
	path := start(t, srv)

	t.Run("unknown options, INFO, LIST, then GO", func(t *testing.T) {
		c := dialRaw(t, path, flagFixedNewstyle)
		for _, opt := range []uint32{5 /* STARTTLS */, 8 /* STRUCTURED_REPLY */, 10 /* SET_META_CONTEXT */, 0xDEAD} {
			c.option(opt, []byte("xyz"))
			if typ, _ := c.optReply(opt); typ != repErrUnsup {
				t.Errorf("option %d: reply %#x, want NBD_REP_ERR_UNSUP", opt, typ)
			}
		}
		c.option(optList, nil)
		if typ, data := c.optReply(optList); typ != repServer || !bytes.Equal(data, be32(0)) {
			t.Errorf("LIST: %#x % x", typ, data)
		}
		if typ, _ := c.optReply(optList); typ != repAck {
			t.Errorf("LIST end: %#x", typ)
		}
		c.option(optList, []byte("x"))
		if typ, _ := c.optReply(optList); typ != repErrInvalid {
			t.Errorf("LIST with data: %#x", typ)
		}
		c.option(optInfo, goData("disk"))
		if typ, data := c.optReply(optInfo); typ != repInfo || binary.BigEndian.Uint64(data[2:]) != 1<<20 {
			t.Errorf("INFO: %#x % x", typ, data)
		}
		if typ, _ := c.optReply(optInfo); typ != repAck {
			t.Errorf("INFO end: %#x", typ)
		}
		for _, bad := range [][]byte{nil, {0, 0, 0, 9, 'a', 0, 0}, append(goData("a"), 0)} {
			c.option(optGo, bad)
			if typ, _ := c.optReply(optGo); typ != repErrInvalid {
				t.Errorf("GO with % x: %#x, want NBD_REP_ERR_INVALID", bad, typ)
			}
		}
		c.option(optGo, make([]byte, maxOption+1))
		if typ, _ := c.optReply(optGo); typ != repErrTooBig {
			t.Errorf("huge GO: %#x, want NBD_REP_ERR_TOO_BIG", typ)
		}
		c.option(optGo, goData("", 1, 2, infoBlockSize))
		var sawBlockSize bool
		for {
			typ, data := c.optReply(optGo)
			if typ == repAck {
				break
			}
			if typ != repInfo {
				t.Fatalf("GO: %#x", typ)
			}
			if binary.BigEndian.Uint16(data) == infoBlockSize {
				sawBlockSize = true
			}
		}
		if !sawBlockSize {
			t.Error("no NBD_INFO_BLOCK_SIZE though asked")
		}
		c.read(0, 512)
	})
	t.Run("ABORT", func(t *testing.T) {
		c := dialRaw(t, path, flagFixedNewstyle)
		c.option(optAbort, nil)
		if typ, _ := c.optReply(optAbort); typ != repAck {
			t.Errorf("ABORT: %#x", typ)
		}
		if _, err := c.c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("after ABORT: %v, want EOF", err)
		}
	})
	for _, flags := range []uint32{0, flagFixedNewstyle | 1<<5} {
		c := dialRaw(t, path, flags)
		c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("client flags %#x: %v, want the server to close", flags, err)
		}
	}
}

func TestServeStops(t *testing.T) {
	l, err := net.Listen("unix", filepath.Join(sockDir(t), "s"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Backing: NewOverlay(nil, 4096), Log: testLog(t)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	c := dial(t, l.Addr().String(), true)
	c.read(0, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve: %v", err)
	}
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("open connection after shutdown: %v, want EOF", err)
	}
	if err := (&Server{}).Serve(context.Background(), l); err == nil {
		t.Error("Serve without Backing succeeded")
	}
}

func TestOverlay(t *testing.T) {
	base := randomImage(3*BlockSize+100, 2)
	orig := bytes.Clone(base)
	const size = 5 * BlockSize // longer than base: the rest reads as zeros
	o := NewOverlay(bytes.NewReader(base), size)
	model := make([]byte, size)
	copy(model, base)
	writes := []struct{ off, n int }{{10, 5}, {BlockSize - 3, 6}, {2 * BlockSize, BlockSize}, {3*BlockSize + 90, 20}, {size - 1, 1}}
	for i, w := range writes {
		p := bytes.Repeat([]byte{byte(0xC0 + i)}, w.n)
		if n, err := o.WriteAt(p, int64(w.off)); n != w.n || err != nil {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
		copy(model[w.off:], p)
	}
	for _, r := range []struct{ off, n int }{{0, size}, {5, 20}, {BlockSize - 10, 2 * BlockSize}, {3 * BlockSize, 200}, {size - 3, 3}} {
		got := make([]byte, r.n)
		if n, err := o.ReadAt(got, int64(r.off)); n != r.n || err != nil || !bytes.Equal(got, model[r.off:r.off+r.n]) {
			t.Errorf("read %d at %d: %d, %v, match %v", r.n, r.off, n, err, bytes.Equal(got, model[r.off:r.off+r.n]))
		}
	}
	if !bytes.Equal(base, orig) {
		t.Error("overlay modified its base")
	}
	if n, err := o.ReadAt(make([]byte, 10), size-4); n != 4 || err != io.EOF {
		t.Errorf("read across the end: %d, %v", n, err)
	}
	if _, err := o.WriteAt(make([]byte, 2), size-1); err == nil {
		t.Error("write across the end succeeded")
	}
	if _, err := o.WriteAt(nil, -1); err == nil {
		t.Error("write at -1 succeeded")
	}
	if _, err := o.ReadAt(make([]byte, 1), -1); err == nil {
		t.Error("read at -1 succeeded")
	}
}

func TestFlip(t *testing.T) {
	real := bytes.Repeat([]byte{'r'}, 4096)
	evil := bytes.Repeat([]byte{'e'}, 4096)
	hook, err := FlipAfterFirstRead([]Region{{512, 1024}, {3000, 10}}, bytes.NewReader(evil))
	if err != nil {
		t.Fatal(err)
	}
	read := func(h func(int64, []byte), off, n int) string {
		p := bytes.Clone(real[off : off+n])
		h(int64(off), p)
		return string(p)
	}
	rs := func(n int) string { return string(bytes.Repeat([]byte{'r'}, n)) }
	es := func(n int) string { return string(bytes.Repeat([]byte{'e'}, n)) }
	steps := []struct {
		off, n int
		want   string
	}{
		{0, 1024, rs(1024)},                     // first look at 512..1023
		{0, 2048, rs(512) + es(512) + rs(1024)}, // 512..1023 again: evil; 1024..1535 first: real
		{1000, 600, es(536) + rs(64)},           // all of the first region seen now
		{2990, 30, rs(30)},                      // second region, first time
		{2995, 10, rs(5) + es(5)},               // second region, again
		{600, 1, es(1)},                         // single byte
		{4000, 96, rs(96)},                      // outside every region
		{512 + 1024, 1, rs(1)},                  // just past the first region
	}
	for i, s := range steps {
		if got := read(hook, s.off, s.n); got != s.want {
			t.Fatalf("step %d (%d bytes at %d): got %q, want %q", i, s.n, s.off, got, s.want)
		}
	}

	rev, err := FlipOnFirstRead([]Region{{0, 100}}, bytes.NewReader(evil))
	if err != nil {
		t.Fatal(err)
	}
	if got := read(rev, 0, 50); got != es(50) {
		t.Errorf("reverse, first read: %q", got)
	}
	if got := read(rev, 0, 100); got != rs(50)+es(50) {
		t.Errorf("reverse, second read: %q", got)
	}

	for _, bad := range [][]Region{
		{{-1, 10}}, {{0, 0}}, {{0, 10}, {5, 10}}, {{4090, 100}}, {{0, maxFlipBytes + 1}},
	} {
		if _, err := FlipAfterFirstRead(bad, bytes.NewReader(evil)); err == nil {
			t.Errorf("regions %v accepted", bad)
		}
	}
}
