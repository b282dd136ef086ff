package store

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/boxswarm/boxswarm/media"
)

// Limits per connection, so one client cannot exhaust the server.
const (
	maxInFlight  = 64  // requests being answered at once
	maxConnLocks = 256 // locks held
	maxConnReads = 4   // ReadAt requests being answered at once, MaxRead bytes each
	writeTimeout = 10 * time.Second
)

// Serve answers store clients (see Dial) on l until ctx is done, then
// closes l and every connection and returns nil. Each connection gets
// what the player needs and nothing that changes media: titles,
// manifests, payload reads, bitmaps, waits, locks and resume positions.
// Locks a connection holds are released when it ends, however it ends.
//
// Anyone who can connect can read the (sealed) payload, hold locks and
// move resume positions: put the socket where only the player can reach
// it.
func Serve(ctx context.Context, l net.Listener, s *Store) error {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(ctx, func() { l.Close() })
	var wg sync.WaitGroup
	defer func() {
		cancel() // ends the connections
		stop()
		wg.Wait()
	}()
	for {
		c, err := l.Accept()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, net.ErrClosed):
			return fmt.Errorf("serve store %s: %w", s.dir, err)
		case err != nil:
			// Out of file descriptors and the like: wait for some to go.
			s.log.Warn("accept store client", "err", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		wg.Go(func() { (&conn{s: s, c: c, log: s.log.With("client", c.RemoteAddr().String())}).serve(ctx) })
	}
}

// conn is one client connection.
type conn struct {
	s   *Store
	c   net.Conn
	log *slog.Logger

	wmu sync.Mutex

	reads chan struct{} // a slot per ReadAt being answered

	mu       sync.Mutex
	pending  map[uint32]context.CancelFunc
	locks    map[uint64]func()
	nextLock uint64
}

func (c *conn) serve(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(ctx, func() { c.c.Close() })
	var handlers sync.WaitGroup
	c.pending = make(map[uint32]context.CancelFunc)
	c.locks = make(map[uint64]func())
	c.reads = make(chan struct{}, maxConnReads)
	defer func() {
		cancel()
		stop()
		c.c.Close()
		handlers.Wait()
		for _, unlock := range c.locks {
			unlock()
		}
		if len(c.locks) > 0 {
			c.log.Info("store client gone; released its locks", "locks", len(c.locks))
		}
	}()
	r := bufio.NewReader(c.c)
	for {
		b, err := readFrame(r, maxRequest)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.log.Warn("store client cut off", "err", err)
			}
			return
		}
		req, err := decodeRequest(b)
		if err != nil {
			c.log.Debug("bad store request", "err", err)
			st := statusBadRequest
			if b[0] != protoVersion {
				st = statusVersion
			}
			c.reply(errFrame(st, req.tag, err))
			continue
		}
		if req.op == opCancel {
			c.mu.Lock()
			if cancel := c.pending[req.n]; cancel != nil {
				cancel()
			}
			c.mu.Unlock()
			continue
		}
		c.mu.Lock()
		_, dup := c.pending[req.tag]
		full := len(c.pending) >= maxInFlight
		var rctx context.Context
		if !dup && !full {
			var rcancel context.CancelFunc
			rctx, rcancel = context.WithCancel(ctx)
			c.pending[req.tag] = rcancel
		}
		c.mu.Unlock()
		if dup || full {
			c.reply(errFrame(statusBusy, req.tag, fmt.Errorf("tag %d already in use, or %d requests in flight: %w", req.tag, maxInFlight, ErrProtocol)))
			continue
		}
		handlers.Go(func() {
			out := c.handle(rctx, req)
			c.mu.Lock()
			c.pending[req.tag]()
			delete(c.pending, req.tag)
			c.mu.Unlock()
			c.reply(out)
		})
	}
}

// reply writes a finished response frame; a client that does not read
// is cut off.
func (c *conn) reply(frame []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.c.Write(frame); err != nil {
		c.log.Warn("write to store client", "err", err)
		c.c.Close()
	}
}

func errFrame(status uint8, tag uint32, err error) []byte {
	msg := err.Error()
	if len(msg) > maxMessage {
		msg = strings.ToValidUTF8(msg[:maxMessage-3], "") + "..."
	}
	b := newFrame(status, tag, len(msg))
	return finishFrame(append(b, msg...))
}

// handle answers one request with a finished frame.
func (c *conn) handle(ctx context.Context, r request) []byte {
	fail := func(err error) []byte { return errFrame(statusOf(err), r.tag, err) }
	s := c.s
	switch r.op {
	case opTitles:
		ts, err := s.Titles()
		if err != nil {
			return fail(err)
		}
		return finishFrame(appendTitles(newFrame(statusOK, r.tag, 4+len(ts)*titleEntry), ts))
	case opManifest:
		_, signed, err := s.Manifest(r.id)
		if err != nil {
			return fail(err)
		}
		return finishFrame(append(newFrame(statusOK, r.tag, len(signed)), signed...))
	case opReadAt:
		select {
		case c.reads <- struct{}{}:
			defer func() { <-c.reads }()
		case <-ctx.Done():
			return fail(ctx.Err())
		}
		b := newFrame(statusOK, r.tag, 1+int(r.n))
		b = append(b, 0)
		data := b[len(b) : len(b)+int(r.n)]
		n, err := s.ReadAt(r.id, data, int64(r.off))
		switch {
		case err == io.EOF:
			b[len(b)-1] = 1
		case err != nil:
			return fail(err)
		}
		return finishFrame(b[:len(b)+n])
	case opHave:
		bm, err := s.Have(r.id)
		if err != nil {
			return fail(err)
		}
		b := binary.BigEndian.AppendUint32(newFrame(statusOK, r.tag, 4+len(bm.bits)), uint32(bm.Len()))
		return finishFrame(append(b, bm.bits...))
	case opWait:
		if err := s.Wait(ctx, r.id, int(r.n)); err != nil {
			return fail(err)
		}
	case opLock:
		return c.lock(r.tag, r.id, r.reason)
	case opUnlock:
		c.mu.Lock()
		unlock := c.locks[r.handle]
		delete(c.locks, r.handle)
		c.mu.Unlock()
		if unlock == nil {
			return fail(fmt.Errorf("unlock: no lock %d on this connection: %w", r.handle, ErrProtocol))
		}
		unlock()
	case opPosition:
		frame, ok, err := s.Position(r.id)
		if err != nil {
			return fail(err)
		}
		b := append(newFrame(statusOK, r.tag, 5), 0)
		if ok {
			b[len(b)-1] = 1
		}
		return finishFrame(binary.BigEndian.AppendUint32(b, uint32(frame)))
	case opSetPosition:
		if err := s.SetPosition(r.id, int(r.n)); err != nil {
			return fail(err)
		}
	}
	return finishFrame(newFrame(statusOK, r.tag, 0))
}

func (c *conn) lock(tag uint32, id media.ID, reason string) []byte {
	c.mu.Lock()
	n := len(c.locks)
	c.mu.Unlock()
	if n >= maxConnLocks {
		return errFrame(statusBusy, tag, fmt.Errorf("%d locks held on this connection: %w", n, ErrProtocol))
	}
	unlock, err := c.s.Lock(id, reason+" (via socket)")
	if err != nil {
		return errFrame(statusOf(err), tag, err)
	}
	c.mu.Lock()
	c.nextLock++
	h := c.nextLock
	c.locks[h] = unlock
	c.mu.Unlock()
	return finishFrame(binary.BigEndian.AppendUint64(newFrame(statusOK, tag, 8), h))
}
