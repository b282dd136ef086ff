package schedclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/boxswarm/boxswarm/api"
)

// Outbound is a message the box has sent, or will, and the head-end has not
// acknowledged yet.
type Outbound struct {
	Seq   uint64 `json:"seq"`
	Frame []byte `json:"frame"` // the encoded api frame
}

// State keeps what must survive a restart of the box. The client never
// calls its methods concurrently, and calls each write before acting on it:
// a message is stored before Send returns, and the head-end's sequence
// number is recorded before the box acknowledges it.
type State interface {
	// Load returns the highest sequence processed from the head-end, the
	// highest assigned to the box's own messages, and those not yet
	// acknowledged, in order.
	Load() (lastIn, lastOut uint64, pending []Outbound, err error)
	// AppendOut stores a new message; seq is above every seq assigned
	// before.
	AppendOut(seq uint64, frame []byte) error
	// AckOut drops the pending messages with Seq <= seq, and raises lastOut
	// to seq if it is lower: the head-end has processed numbers this state
	// does not know (it was lost or restored from an old copy), and the
	// box's next message must not reuse them.
	AckOut(seq uint64) error
	// SetLastIn records the highest sequence processed from the head-end.
	SetLastIn(seq uint64) error
}

// memory is the content of a State and the rules every State follows.
type memory struct {
	LastIn  uint64     `json:"last_in"`
	LastOut uint64     `json:"last_out"`
	Pending []Outbound `json:"pending"`
}

// clone copies the state; frames are never changed in place, so the copy
// shares them.
func (m *memory) clone() memory {
	c := *m
	c.Pending = slices.Clone(m.Pending)
	return c
}

func (m *memory) appendOut(seq uint64, frame []byte) error {
	if seq <= m.LastOut {
		return fmt.Errorf("sequence %d is not above the last assigned, %d", seq, m.LastOut)
	}
	if len(frame) == 0 || len(frame) > 4+api.MaxFrame {
		return fmt.Errorf("frame of %d bytes", len(frame))
	}
	m.LastOut = seq
	m.Pending = append(m.Pending, Outbound{Seq: seq, Frame: bytes.Clone(frame)})
	return nil
}

func (m *memory) ackOut(seq uint64) {
	n := 0
	for n < len(m.Pending) && m.Pending[n].Seq <= seq {
		n++
	}
	m.Pending = slices.Delete(m.Pending, 0, n)
	m.LastOut = max(m.LastOut, seq)
}

func (m *memory) setLastIn(seq uint64) error {
	if seq < m.LastIn {
		return fmt.Errorf("sequence %d is below the last processed, %d", seq, m.LastIn)
	}
	m.LastIn = seq
	return nil
}

func (m *memory) check() error {
	prev := uint64(0)
	for _, o := range m.Pending {
		if o.Seq <= prev || o.Seq > m.LastOut || len(o.Frame) == 0 || len(o.Frame) > 4+api.MaxFrame {
			return fmt.Errorf("pending message %d out of order or empty (last assigned %d)", o.Seq, m.LastOut)
		}
		prev = o.Seq
	}
	return nil
}

// load returns the state with frames of the caller's own.
func (m *memory) load() (uint64, uint64, []Outbound, error) {
	p := make([]Outbound, len(m.Pending))
	for i, o := range m.Pending {
		p[i] = Outbound{Seq: o.Seq, Frame: bytes.Clone(o.Frame)}
	}
	return m.LastIn, m.LastOut, p, nil
}

// MemState returns a State kept in memory only: for tests, and for boxes
// that accept losing their outbox with their power.
func MemState() State { return &memState{} }

type memState struct {
	mu sync.Mutex
	m  memory
}

func (s *memState) Load() (uint64, uint64, []Outbound, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.load()
}

func (s *memState) AppendOut(seq uint64, frame []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.appendOut(seq, frame)
}

func (s *memState) AckOut(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m.ackOut(seq)
	return nil
}

func (s *memState) SetLastIn(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.setLastIn(seq)
}

// fileVersion is the format of FileState's file.
const fileVersion = 1

type stateFile struct {
	Version int `json:"version"`
	memory
}

// FileState returns a State kept in one small JSON file at path, which it
// creates if missing. Every change rewrites the whole file atomically (a
// temporary file, fsync, rename, fsync of the folder), so a power cut
// leaves the state before or after the change, never between. Meant for
// boxes until the media store keeps this state; it suits outboxes of a few
// thousand messages.
func FileState(path string) (State, error) {
	s := &fileState{path: path}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := s.save(s.m); err != nil {
			return nil, err
		}
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("box state: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f stateFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("box state %s: %w", path, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("box state %s: data after the JSON value", path)
	}
	if f.Version != fileVersion {
		return nil, fmt.Errorf("box state %s: format version %d, want %d", path, f.Version, fileVersion)
	}
	if err := f.memory.check(); err != nil {
		return nil, fmt.Errorf("box state %s: %w", path, err)
	}
	s.m = f.memory
	return s, nil
}

type fileState struct {
	mu   sync.Mutex
	path string
	m    memory
}

func (s *fileState) Load() (uint64, uint64, []Outbound, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.load()
}

// update applies a change to a copy and keeps it only once it is on disk,
// so a failed write leaves memory and file in agreement.
func (s *fileState) update(change func(*memory) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.m.clone()
	if err := change(&next); err != nil {
		return fmt.Errorf("box state %s: %w", s.path, err)
	}
	if err := s.save(next); err != nil {
		return err
	}
	s.m = next
	return nil
}

func (s *fileState) AppendOut(seq uint64, frame []byte) error {
	return s.update(func(m *memory) error { return m.appendOut(seq, frame) })
}

func (s *fileState) AckOut(seq uint64) error {
	return s.update(func(m *memory) error { m.ackOut(seq); return nil })
}

func (s *fileState) SetLastIn(seq uint64) error {
	return s.update(func(m *memory) error { return m.setLastIn(seq) })
}

func (s *fileState) save(m memory) error {
	if m.Pending == nil {
		m.Pending = []Outbound{}
	}
	b, err := json.Marshal(stateFile{Version: fileVersion, memory: m})
	if err != nil {
		return fmt.Errorf("box state %s: %w", s.path, err)
	}
	// A temporary file left by a failed write is harmless: the next save
	// truncates it.
	tmp := s.path + ".tmp"
	if err := writeSync(tmp, b); err != nil {
		return fmt.Errorf("box state %s: %w", s.path, err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("box state %s: %w", s.path, err)
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		return fmt.Errorf("box state %s: %w", s.path, err)
	}
	return nil
}

func writeSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
