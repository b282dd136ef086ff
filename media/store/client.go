package store

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/boxswarm/boxswarm/media"
)

// Reader is what the player needs of a store. *Store and *Client both
// implement it, so the player works the same in the process that owns the
// store and in another one.
type Reader interface {
	Titles() ([]TitleInfo, error)
	// Manifest returns a title's manifest, verified against the reader's
	// own trusted keys, and its signed file.
	Manifest(id media.ID) (*media.Manifest, []byte, error)
	// ReadAt reads payload bytes as io.ReaderAt does; ErrMissing if any
	// lies in a piece not present.
	ReadAt(id media.ID, p []byte, off int64) (int, error)
	Have(id media.ID) (Bitmap, error)
	Wait(ctx context.Context, id media.ID, piece int) error
	Lock(id media.ID, reason string) (unlock func(), err error)
	Position(id media.ID) (frame int, ok bool, err error)
	SetPosition(id media.ID, frame int) error
}

var (
	_ Reader = (*Store)(nil)
	_ Reader = (*Client)(nil)
)

// PayloadReader returns an io.ReaderAt over one title's payload.
func PayloadReader(r Reader, id media.ID) io.ReaderAt { return payloadReader{r, id} }

type payloadReader struct {
	r  Reader
	id media.ID
}

func (p payloadReader) ReadAt(b []byte, off int64) (int, error) { return p.r.ReadAt(p.id, b, off) }

// DefaultCallTimeout bounds a Client call that takes no context (all but
// Wait).
const DefaultCallTimeout = 30 * time.Second

// Client is a connection to Serve. Its methods may be called
// concurrently; requests go out as they come, and a Wait does not hold up
// a ReadAt.
//
// Manifests are verified with the client's own trusted keys and must name
// the title asked for; everything else the server says is checked for
// form and size before it is used.
type Client struct {
	c    net.Conn
	keys []ed25519.PublicKey
	// CallTimeout bounds calls that take no context; set it before use.
	CallTimeout time.Duration

	wmu sync.Mutex

	mu      sync.Mutex
	tag     uint32
	pending map[uint32]chan response
	err     error // why the connection ended
	done    chan struct{}
}

// Dial connects to the store socket at path. keys are the media keys the
// client trusts manifests from.
func Dial(ctx context.Context, path string, keys ...ed25519.PublicKey) (*Client, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("dial store %s: no trusted media keys", path)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("dial store: %w", err)
	}
	c := &Client{c: nc, keys: keys, CallTimeout: DefaultCallTimeout, pending: make(map[uint32]chan response), done: make(chan struct{})}
	go c.readLoop()
	return c, nil
}

// Close ends the connection; the server releases the client's locks.
func (c *Client) Close() error {
	err := c.c.Close()
	<-c.done
	return err
}

func (c *Client) readLoop() {
	r := bufio.NewReaderSize(c.c, 64<<10)
	var err error
	for {
		var b []byte
		if b, err = readFrame(r, MaxResponse); err != nil {
			break
		}
		var resp response
		if resp, err = decodeResponse(b); err != nil {
			break
		}
		c.mu.Lock()
		ch := c.pending[resp.tag]
		delete(c.pending, resp.tag)
		c.mu.Unlock()
		if ch != nil {
			ch <- resp // buffered
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		err = ErrClosed
	}
	c.mu.Lock()
	c.err = fmt.Errorf("store connection: %w", err)
	c.pending = nil
	c.mu.Unlock()
	c.c.Close()
	close(c.done)
}

func (c *Client) send(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.c.Write(b); err != nil {
		c.c.Close() // a half-written request would put the stream out of step
		return fmt.Errorf("store connection: %w: %w", ErrClosed, err)
	}
	return nil
}

// call sends r and returns the body of a successful response.
func (c *Client) call(ctx context.Context, r request) ([]byte, error) {
	ch := make(chan response, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.tag++
	r.tag = c.tag
	c.pending[r.tag] = ch
	c.mu.Unlock()
	body := r.encode()
	frame := finishFrame(append(make([]byte, 4, 4+len(body)), body...))
	if err := c.send(frame); err != nil {
		return nil, err
	}
	select {
	case resp := <-ch:
		if err := resp.err(); err != nil {
			return nil, err
		}
		return resp.body, nil
	case <-c.done:
		select {
		case resp := <-ch: // answered just before the end
			if err := resp.err(); err != nil {
				return nil, err
			}
			return resp.body, nil
		default:
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return nil, c.err
	case <-ctx.Done():
		c.mu.Lock()
		if c.pending != nil {
			delete(c.pending, r.tag)
		}
		c.mu.Unlock()
		cancel := request{op: opCancel, n: r.tag}.encode()
		c.send(finishFrame(append(make([]byte, 4, 4+len(cancel)), cancel...)))
		return nil, ctx.Err()
	}
}

// quick runs a call bounded by CallTimeout.
func (c *Client) quick(r request) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.CallTimeout)
	defer cancel()
	b, err := c.call(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("store %v: %w", r.op, err)
	}
	return b, nil
}

// Titles lists the stored titles.
func (c *Client) Titles() ([]TitleInfo, error) {
	b, err := c.quick(request{op: opTitles})
	if err != nil {
		return nil, err
	}
	return parseTitles(b)
}

// Manifest fetches a title's signed manifest and verifies it with the
// client's keys.
func (c *Client) Manifest(id media.ID) (*media.Manifest, []byte, error) {
	b, err := c.quick(request{op: opManifest, id: id})
	if err != nil {
		return nil, nil, fmt.Errorf("title %s: %w", id, err)
	}
	m, err := media.Verify(b, c.keys...)
	if err != nil {
		return nil, nil, fmt.Errorf("title %s: manifest from store server: %w", id, err)
	}
	if m.ID != id {
		return nil, nil, fmt.Errorf("title %s: store server sent the manifest of %s: %w", id, m.ID, ErrProtocol)
	}
	return m, b, nil
}

// ReadAt reads payload bytes, in requests of at most MaxRead.
func (c *Client) ReadAt(id media.ID, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("title %s: read at %d: %w", id, off, ErrRange)
	}
	done := 0
	for {
		n := min(len(p)-done, MaxRead)
		b, err := c.quick(request{op: opReadAt, id: id, off: uint64(off) + uint64(done), n: uint32(n)})
		if err != nil {
			return done, fmt.Errorf("title %s: %w", id, err)
		}
		data, eof, err := parseReadAt(b, n)
		if err != nil {
			return done, fmt.Errorf("title %s: %w", id, err)
		}
		done += copy(p[done:], data)
		if eof {
			return done, io.EOF
		}
		if done == len(p) {
			return done, nil
		}
	}
}

// Have returns the title's pieces-present bitmap.
func (c *Client) Have(id media.ID) (Bitmap, error) {
	b, err := c.quick(request{op: opHave, id: id})
	if err != nil {
		return Bitmap{}, fmt.Errorf("title %s: %w", id, err)
	}
	return parseHave(b)
}

// Wait returns once the piece is present, or when ctx is done.
func (c *Client) Wait(ctx context.Context, id media.ID, piece int) error {
	if piece < 0 || piece > media.MaxPieces {
		return fmt.Errorf("title %s: wait for piece %d: %w", id, piece, ErrRange)
	}
	if _, err := c.call(ctx, request{op: opWait, id: id, n: uint32(piece)}); err != nil {
		return fmt.Errorf("title %s: wait for piece %d: %w", id, piece, err)
	}
	return nil
}

// Lock locks a title in the server's store; the lock also ends when the
// connection does. reason is cut to 64 bytes.
func (c *Client) Lock(id media.ID, reason string) (unlock func(), err error) {
	if len(reason) > maxReason {
		reason = strings.ToValidUTF8(reason[:maxReason], "")
	}
	b, err := c.quick(request{op: opLock, id: id, reason: reason})
	if err != nil {
		return nil, fmt.Errorf("title %s: %w", id, err)
	}
	h, err := parseHandle(b)
	if err != nil {
		return nil, fmt.Errorf("title %s: %w", id, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			// If this fails the connection is gone, and the lock with it.
			c.quick(request{op: opUnlock, handle: h})
		})
	}, nil
}

// Position returns the title's resume position, if any.
func (c *Client) Position(id media.ID) (int, bool, error) {
	b, err := c.quick(request{op: opPosition, id: id})
	if err != nil {
		return 0, false, fmt.Errorf("title %s: %w", id, err)
	}
	return parsePosition(b)
}

// SetPosition records the title's resume position.
func (c *Client) SetPosition(id media.ID, frame int) error {
	if frame < 0 || frame >= media.MaxFrames {
		return fmt.Errorf("title %s: position frame %d: %w", id, frame, ErrRange)
	}
	if _, err := c.quick(request{op: opSetPosition, id: id, n: uint32(frame)}); err != nil {
		return fmt.Errorf("title %s: %w", id, err)
	}
	return nil
}
