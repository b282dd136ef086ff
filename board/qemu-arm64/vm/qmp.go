package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// qmp is a client of QEMU's machine protocol on a unix socket: one
// command at a time, events skipped.
type qmp struct {
	path string

	mu   sync.Mutex
	conn net.Conn
	dec  *json.Decoder
}

// QMPError is an error QEMU answered a command with.
type QMPError struct {
	Command string
	Class   string `json:"class"`
	Desc    string `json:"desc"`
}

func (e *QMPError) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}

// connect dials the socket, which QEMU creates as it starts, and
// negotiates capabilities.
func (q *qmp) connect(ctx context.Context) error {
	var err error
	for {
		var d net.Dialer
		q.conn, err = d.DialContext(ctx, "unix", q.path)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrNotExist) && !strings.Contains(err.Error(), "connection refused") {
			return fmt.Errorf("qmp: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("qmp: %s never appeared: %w", q.path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		q.conn.SetDeadline(dl)
	}
	q.dec = json.NewDecoder(bufio.NewReader(q.conn))
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := q.dec.Decode(&greeting); err != nil || greeting.QMP == nil {
		q.conn.Close()
		q.conn = nil
		return fmt.Errorf("qmp: no greeting on %s: %v", q.path, err)
	}
	if _, err := q.send(ctx, "qmp_capabilities", nil); err != nil {
		q.conn.Close()
		q.conn = nil
		return err
	}
	return nil
}

// execute runs a command and returns its "return" value.
func (q *qmp) execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.conn == nil {
		if err := q.connect(ctx); err != nil {
			return nil, err
		}
	}
	r, err := q.send(ctx, command, args)
	var qe *QMPError
	if err != nil && !errors.As(err, &qe) {
		// A broken connection; the next command dials again.
		q.conn.Close()
		q.conn = nil
	}
	return r, err
}

func (q *qmp) send(ctx context.Context, command string, args any) (json.RawMessage, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(time.Minute)
	}
	q.conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { q.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	for {
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *QMPError       `json:"error"`
			Event  string          `json:"event"`
		}
		if err := q.dec.Decode(&resp); err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return nil, fmt.Errorf("qmp %s: %w", command, err)
		}
		switch {
		case resp.Event != "":
			continue
		case resp.Error != nil:
			resp.Error.Command = command
			return nil, resp.Error
		case resp.Return != nil:
			return resp.Return, nil
		}
	}
}

func (q *qmp) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.conn != nil {
		q.conn.Close()
		q.conn = nil
	}
}

// QMP runs a QEMU machine protocol command (see QEMU's QMP reference) and
// returns its result.
func (v *VM) QMP(ctx context.Context, command string, args any) (json.RawMessage, error) {
	select {
	case <-v.done:
		return nil, fmt.Errorf("qmp %s: %w", command, ErrExited)
	default:
	}
	return v.qmp.execute(ctx, command, args)
}

// Screendump saves what the box's display shows as a PNG file. The path
// is opened by QEMU.
func (v *VM) Screendump(ctx context.Context, path string) error {
	_, err := v.QMP(ctx, "screendump", map[string]any{"filename": path, "format": "png"})
	return err
}

// KeyHold is how long SendKey holds each key down.
const KeyHold = 50 * time.Millisecond

// SendKey presses keys on the box's keyboard (the virtio keyboard that
// stands in for the remote control's receiver) one after the other. Keys
// are QEMU key codes ("up", "ret", "esc", "a", "1", "audionext"); keys
// joined by '-' ("ctrl-alt-delete") are pressed together.
func (v *VM) SendKey(ctx context.Context, keys ...string) error {
	for _, k := range keys {
		var codes []map[string]string
		for _, c := range strings.Split(k, "-") {
			if c == "" {
				return fmt.Errorf("send-key %q: empty key name", k)
			}
			codes = append(codes, map[string]string{"type": "qcode", "data": c})
		}
		if _, err := v.QMP(ctx, "send-key", map[string]any{"keys": codes, "hold-time": KeyHold.Milliseconds()}); err != nil {
			return err
		}
		// The release is queued behind the hold time; the next press
		// follows it rather than overlapping.
		select {
		case <-time.After(KeyHold + 10*time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
