package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/media"
)

// serveStore serves s on a socket in a temporary folder and returns its
// path; the server stops when the test ends.
func serveStore(t testing.TB, s *Store) (path string, stop func() error) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "store.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, s) }()
	stop = sync.OnceValue(func() error { cancel(); return <-done })
	t.Cleanup(func() { stop() })
	return path, stop
}

func dial(t testing.TB, path string, keys ...ed25519.PublicKey) *Client {
	t.Helper()
	if len(keys) == 0 {
		keys = []ed25519.PublicKey{testPub}
	}
	c, err := Dial(t.Context(), path, keys...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestServeClient(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(nil))
	p := makePackage(t, t.TempDir(), newID(t), 5<<20+4321, 64<<10, testKey)
	mustAdd(t, s, p)
	id := p.m.ID
	path, _ := serveStore(t, s)
	c := dial(t, path)

	var r Reader = c
	ts, err := r.Titles()
	if err != nil || len(ts) != 1 || ts[0].ID != id || ts[0].Pieces != p.m.NumPieces() || ts[0].Present != 0 || ts[0].Size != int64(len(p.payload)) {
		t.Fatalf("Titles: %+v, %v", ts, err)
	}
	m, signed, err := r.Manifest(id)
	if err != nil || m.ID != id || !bytes.Equal(signed, p.signed) {
		t.Fatalf("Manifest: %v", err)
	}
	if _, err := r.ReadAt(id, make([]byte, 10), 0); !errors.Is(err, ErrMissing) {
		t.Fatalf("ReadAt of a missing piece: %v", err)
	}
	if _, _, err := r.Manifest(newID(t)); !errors.Is(err, ErrUnknownTitle) {
		t.Fatalf("Manifest of an unknown title: %v", err)
	}

	// Wait on the socket while a piece arrives; a ReadAt is not held up.
	waited := make(chan error, 1)
	go func() { waited <- r.Wait(t.Context(), id, 40) }()
	time.Sleep(20 * time.Millisecond)
	if _, err := r.Have(id); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		t.Fatalf("Wait returned early: %v", err)
	default:
	}
	writeAll(t, s, p)
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	if err := r.Wait(ctx, id, 1000); !errors.Is(err, ErrRange) {
		t.Fatalf("Wait past the end: %v", err)
	}

	// Reads larger than MaxRead, and across the end.
	got := make([]byte, len(p.payload))
	if n, err := r.ReadAt(id, got, 0); err != nil || n != len(got) || !bytes.Equal(got, p.payload) {
		t.Fatalf("ReadAt whole payload: %d, %v", n, err)
	}
	n, err := PayloadReader(r, id).ReadAt(got[:1000], int64(len(p.payload)-10))
	if n != 10 || err != io.EOF || !bytes.Equal(got[:10], p.payload[len(p.payload)-10:]) {
		t.Fatalf("ReadAt across the end: %d, %v", n, err)
	}
	have, err := r.Have(id)
	if err != nil || !have.Complete() || have.Len() != p.m.NumPieces() {
		t.Fatalf("Have: %v", err)
	}

	if _, ok, err := r.Position(id); ok || err != nil {
		t.Fatalf("Position: %v %v", ok, err)
	}
	if err := r.SetPosition(id, 12); err != nil {
		t.Fatal(err)
	}
	if f, ok, err := s.Position(id); f != 12 || !ok || err != nil {
		t.Fatalf("Position set over the socket: %d %v %v", f, ok, err)
	}
	if f, ok, err := r.Position(id); f != 12 || !ok || err != nil {
		t.Fatalf("Position over the socket: %d %v %v", f, ok, err)
	}
	if err := r.SetPosition(id, p.m.NumFrames()); !errors.Is(err, ErrRange) {
		t.Fatalf("SetPosition past the end: %v", err)
	}

	unlock, err := r.Lock(id, "playing")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTitle(id); !errors.Is(err, ErrLocked) {
		t.Fatalf("DeleteTitle while the client holds a lock: %v", err)
	}
	unlock()
	unlock()
	if err := s.DeleteTitle(id); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Have(id); !errors.Is(err, ErrUnknownTitle) {
		t.Fatalf("Have after delete: %v", err)
	}
}

// TestClientVerifiesManifest checks that the client trusts its own keys,
// not the server's.
func TestClientVerifiesManifest(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(nil))
	p := makePackage(t, t.TempDir(), newID(t), 100<<10, 64<<10, testKey)
	mustAdd(t, s, p)
	path, _ := serveStore(t, s)
	c := dial(t, path, otherKey.Public().(ed25519.PublicKey))
	if _, _, err := c.Manifest(p.m.ID); !errors.Is(err, media.ErrManifestSignature) {
		t.Fatalf("Manifest signed by a key the client does not trust: %v", err)
	}
}

// TestClientLockReleasedOnDisconnect checks that locks die with their
// connection, and that a Wait in flight ends with it.
func TestClientLockReleasedOnDisconnect(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(nil))
	p := makePackage(t, t.TempDir(), newID(t), 100<<10, 64<<10, testKey)
	mustAdd(t, s, p)
	path, _ := serveStore(t, s)
	c, err := Dial(t.Context(), path, testPub)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.Lock(p.m.ID, "playing"); err != nil {
			t.Fatal(err)
		}
	}
	waited := make(chan error, 1)
	go func() { waited <- c.Wait(context.Background(), p.m.ID, 0) }()
	time.Sleep(20 * time.Millisecond)
	if ts, _ := s.Titles(); ts[0].Locks != 3 {
		t.Fatalf("locks: %d", ts[0].Locks)
	}
	c.Close()
	if err := <-waited; !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait when the connection closed: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.DeleteTitle(p.m.ID)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrLocked) || time.Now().After(deadline) {
			t.Fatalf("DeleteTitle after the client left: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestServeStops checks that cancelling Serve ends its connections.
func TestServeStops(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(nil))
	p := makePackage(t, t.TempDir(), newID(t), 100<<10, 64<<10, testKey)
	mustAdd(t, s, p)
	path, stop := serveStore(t, s)
	c := dial(t, path)
	waited := make(chan error, 1)
	go func() { waited <- c.Wait(context.Background(), p.m.ID, 0) }()
	time.Sleep(20 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if err := <-waited; err == nil {
		t.Fatal("Wait succeeded after the server stopped")
	}
	if _, err := c.Titles(); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after the server stopped: %v", err)
	}
}

// TestServeBadRequests speaks raw bytes to the server: a request that is
// framed but wrong gets an error and the connection goes on; a frame
// longer than the limit ends the connection.
func TestServeBadRequests(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(nil))
	path, _ := serveStore(t, s)
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	send := func(body []byte) {
		t.Helper()
		if _, err := nc.Write(binary.BigEndian.AppendUint32(nil, uint32(len(body)))); err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(tag uint32, status uint8) {
		t.Helper()
		b, err := readFrame(nc, MaxResponse)
		if err != nil {
			t.Fatal(err)
		}
		r, err := decodeResponse(b)
		if err != nil || r.tag != tag || r.status != status {
			t.Fatalf("response %+v, %v; want tag %d status %d", r, err, tag, status)
		}
	}
	send([]byte{1, 99, 0, 0, 0, 7})
	expect(7, statusBadRequest)
	send([]byte{2, byte(opTitles), 0, 0, 0, 8})
	expect(8, statusVersion)
	send(append([]byte{1, byte(opReadAt), 0, 0, 0, 9}, make([]byte, 27)...)) // one byte short
	expect(9, statusBadRequest)
	send(append([]byte{1, byte(opUnlock), 0, 0, 0, 10}, make([]byte, 8)...))
	expect(10, statusBadRequest)
	send(request{op: opTitles, tag: 11}.encode())
	expect(11, statusOK)
	// The server may hang up before it has all of it.
	nc.Write(append(binary.BigEndian.AppendUint32(nil, maxRequest+1), make([]byte, maxRequest+1)...))
	if _, err := readFrame(nc, MaxResponse); err == nil {
		t.Fatal("connection survived an over-long frame")
	}
}

func TestProtocolRoundTrip(t *testing.T) {
	id := media.ID{1, 2, 3}
	for _, r := range []request{
		{op: opTitles, tag: 1},
		{op: opManifest, tag: 2, id: id},
		{op: opReadAt, tag: 3, id: id, off: 1 << 40, n: MaxRead},
		{op: opHave, tag: 4, id: id},
		{op: opWait, tag: 5, id: id, n: 77},
		{op: opLock, tag: 6, id: id, reason: "playing ▶"},
		{op: opLock, tag: 6, id: id},
		{op: opUnlock, tag: 7, handle: 1<<64 - 1},
		{op: opPosition, tag: 8, id: id},
		{op: opSetPosition, tag: 9, id: id, n: 5},
		{op: opCancel, tag: 10, n: 5},
	} {
		got, err := decodeRequest(r.encode())
		if err != nil || got != r {
			t.Errorf("%v: decoded %+v, %v", r.op, got, err)
		}
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"short", []byte{1, 1, 0, 0}},
		{"read too long", request{op: opReadAt, id: id, n: MaxRead + 1}.encode()},
		{"reason too long", request{op: opLock, id: id, reason: string(make([]byte, maxReason+1))}.encode()},
		{"reason not UTF-8", request{op: opLock, id: id, reason: "\xff"}.encode()},
		{"trailing byte", append(request{op: opHave, id: id}.encode(), 0)},
	} {
		if _, err := decodeRequest(tc.b); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// TestServeListenerClosed checks that Serve returns, ending its
// connections, when its listener is closed under it.
func TestServeListenerClosed(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(nil))
	path := filepath.Join(t.TempDir(), "store.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Serve(t.Context(), l, s) }()
	c := dial(t, path)
	if _, err := c.Titles(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := c.Titles(); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after Serve returned: %v", err)
	}
}
