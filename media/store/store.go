// Package store keeps encrypted media titles on a box's data partition, or
// a media server's disks, in fixed-size segment files indexed by a bbolt
// database, and serves them to a second process over a Unix socket.
//
// The transfer daemon owns a Store: pieces of a title arrive in any order,
// from media servers and other boxes, and count only once their SHA-256
// matches the title's signed manifest. The player reads frames through the
// Reader interface, from the Store itself or from a Client connected to
// Serve. The payload stays sealed: the store never sees a content key.
//
// A store folder holds:
//
//	index.db                bbolt: title records, manifests, piece bitmaps, positions
//	segments/<id>/<n>.seg   segment files of title <id>
//
// Piece i of a title with piece size P lives at byte i·P mod S of segment
// i·P / S, where S is the segment size the title got when it was added
// (Options.SegmentSize, or P if that is larger). Segment files are created
// sparse, S bytes long except the last, which ends with the payload.
//
// Guarantees:
//
//   - A piece is present only once its bytes are durable. WritePieces writes
//     the bytes with pwrite, fdatasyncs each touched segment (a new segment
//     file is first sized, fsynced, and its folder fsynced), and only then
//     sets the pieces' bits in one bbolt transaction, whose commit fsyncs.
//     A crash or power cut at any moment leaves every piece the index calls
//     present readable with its manifest hash; at worst pieces written just
//     before the cut are missing and are fetched again. This needs a disk
//     that honours flushes.
//   - Only bytes that match the signed manifest are ever marked present:
//     every piece is hashed before anything is written. Bad input (a wrong
//     hash or length, an index out of range, an unknown title, a manifest
//     signed by an untrusted key or differing from the stored one for the
//     same ID) is refused with an error and changes nothing stored.
//   - Open refuses, with ErrCorrupt, an index it cannot read, one that fails
//     bbolt's consistency check, and a missing or empty index next to
//     segment files: it never starts an empty index over stored media.
//     It checks segment sizes (a stat per segment, no hashing) and marks
//     missing the present pieces of files that are gone or short; Verify
//     rehashes a title's pieces when more is wanted.
//   - DeleteTitle first marks the title deleting in the index, then removes
//     its files and records; a crash in between is finished by the next
//     Open. A title with a Lock held cannot be deleted.
//   - AddTitle reserves the title's whole payload against the capacity, so
//     a title once added never runs out of room for its pieces for want of
//     accounting (the file system may still fill up from elsewhere when the
//     capacity is taken from its free space).
//   - One process at a time: Open fails fast with ErrBusy while another
//     process has the index open. Serve lets that other process read.
//   - Serve checks every request's size and fields before acting on it,
//     bounds what one connection may have in flight, offers nothing that
//     changes media, and releases a connection's locks when it ends. The
//     Client bounds and checks every response and verifies manifests with
//     its own keys, so the player trusts the store process no more than
//     the disk.
//
// All methods are safe for concurrent use.
package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math/bits"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/boxswarm/boxswarm/media"
)

// Errors, wrapped with the title and piece they concern.
var (
	ErrUnknownTitle = errors.New("title not in store")
	ErrMissing      = errors.New("piece not present")
	ErrPieceHash    = errors.New("piece does not match its manifest hash")
	ErrRange        = errors.New("out of range")
	ErrNoSpace      = errors.New("not enough store capacity")
	ErrLocked       = errors.New("title is locked")
	ErrConflict     = errors.New("a different manifest is stored under this media ID")
	ErrBusy         = errors.New("store index is held by another process")
	ErrCorrupt      = errors.New("store index is damaged")
	ErrClosed       = errors.New("store closed")
)

// Files and folders of a store folder.
const (
	IndexFile     = "index.db"
	SegmentFolder = "segments"
	segmentExt    = ".seg"
)

// Defaults for Options.
const (
	DefaultSegmentSize   = 16 << 20
	DefaultLockTimeout   = 200 * time.Millisecond
	DefaultManifestCache = 16
	maxSegmentSize       = 1 << 30
)

// Options configures Open.
type Options struct {
	// MediaKeys are the trusted media signing keys: AddTitle takes only
	// manifests signed by one of them, and stored manifests are verified
	// again when loaded.
	MediaKeys []ed25519.PublicKey
	// Capacity is how many payload bytes the store may reserve. 0 means
	// the payload already present plus the file system's free space,
	// minus Reserve, worked out again at every AddTitle.
	Capacity int64
	// Reserve is the free space left to others when Capacity is 0. 0 means
	// 1% of the file system, at least 64 MiB and at most 4 GiB.
	Reserve int64
	// SegmentSize is the size of the segment files of titles added from
	// now on: a power of two from 64 KiB to 1 GiB, default 16 MiB. A title
	// keeps the segment size it was added with.
	SegmentSize int64
	// LockTimeout is how long Open waits for another process to let go
	// of the index before failing with ErrBusy.
	LockTimeout time.Duration
	// ManifestCache is how many parsed manifests are kept in memory;
	// others are read from the index and verified again when needed.
	ManifestCache int
	Log           *slog.Logger
}

// Store is an open store folder.
type Store struct {
	dir, segDir string
	db          *bbolt.DB
	o           Options
	log         *slog.Logger

	// admin serializes AddTitle and DeleteTitle, so a capacity check and
	// the reservation it allows cannot interleave with another.
	admin sync.Mutex

	mu       sync.Mutex
	titles   map[media.ID]*title
	used     int64 // payload bytes present
	reserved int64 // payload bytes of all titles
	lockSeq  uint64
	useSeq   uint64
	cached   int
	closed   bool
	closing  chan struct{}

	// datasync is the data sync, which tests replace to make it fail.
	datasync func(*os.File) error

	// hookAfterMark, when set by a test, runs after DeleteTitle has marked
	// the title deleting; an error stops DeleteTitle there, as a crash
	// would.
	hookAfterMark func() error
}

// title is the in-memory state of a title.
type title struct {
	id  media.ID
	rec titleRecord

	// Under Store.mu.
	have     Bitmap
	present  int64
	changed  chan struct{} // closed and replaced whenever bits change or the title goes
	locks    map[uint64]string
	deleting bool
	manifest *media.Manifest
	signed   []byte
	lastUse  uint64

	// io is held shared by piece reads and writes and exclusively by
	// DeleteTitle, so no segment is created or written under a folder
	// being removed.
	io sync.RWMutex

	segMu    sync.Mutex
	segReady map[int]bool // segments sized and synced with their folder by this process
}

// TitleInfo describes a stored title.
type TitleInfo struct {
	ID           media.ID
	Pieces       int   // in the manifest
	Present      int   // pieces present
	Size         int64 // payload bytes, reserved against capacity
	PresentBytes int64
	Complete     bool
	Locks        int // holders of Lock
	Added        time.Time
}

// Open opens the store in folder dir, creating it if needed.
func Open(dir string, o Options) (*Store, error) {
	if len(o.MediaKeys) == 0 {
		return nil, fmt.Errorf("open store %s: no trusted media keys", dir)
	}
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if ss := o.SegmentSize; ss < media.MinPieceSize || ss > maxSegmentSize || bits.OnesCount64(uint64(ss)) != 1 {
		return nil, fmt.Errorf("open store %s: segment size %d is not a power of two from %d to %d", dir, ss, media.MinPieceSize, maxSegmentSize)
	}
	if o.Capacity < 0 || o.Reserve < 0 {
		return nil, fmt.Errorf("open store %s: negative capacity %d or reserve %d", dir, o.Capacity, o.Reserve)
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.ManifestCache <= 0 {
		o.ManifestCache = DefaultManifestCache
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		dir: dir, segDir: filepath.Join(dir, SegmentFolder), o: o,
		log:    o.Log.With("store", dir),
		titles: make(map[media.ID]*title), closing: make(chan struct{}),
		datasync: datasync,
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := s.openIndex(); err != nil {
		return nil, err
	}
	if err := s.load(); err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

// openIndex opens index.db, refusing to start an empty index where
// segments exist and telling a busy index from a damaged one.
func (s *Store) openIndex() (err error) {
	path := filepath.Join(s.dir, IndexFile)
	st, statErr := os.Stat(path)
	if statErr != nil && !errors.Is(statErr, fs.ErrNotExist) {
		return fmt.Errorf("open store index %s: %w", path, statErr)
	}
	empty := statErr != nil || st.Size() == 0
	stored, err := s.segmentFolders()
	if err != nil {
		return err
	}
	if empty && len(stored) > 0 {
		return fmt.Errorf("open store %s: %s is missing or empty but %s holds %d titles; refusing to start an empty index over them (restore the index, or remove the folder to start over): %w",
			s.dir, IndexFile, SegmentFolder, len(stored), ErrCorrupt)
	}
	if f, err := os.Open(path); err == nil {
		err = checkBoltFile(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("open store index %s: %w (refusing to start empty; restore the index or remove the store folder): %w", path, err, ErrCorrupt)
		}
	}
	// bbolt panics on some damaged pages instead of returning an error,
	// and a file cut short faults when bbolt touches a page past its end.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	var file *os.File
	defer func() {
		if r := recover(); r != nil {
			if s.db != nil {
				s.db.Close()
				s.db = nil
			} else if file != nil {
				// Its memory map, if made, keeps the lock until the process ends.
				file.Close()
			}
			err = fmt.Errorf("open store index %s: bbolt: %v: %w", path, r, ErrCorrupt)
		}
	}()
	s.db, err = bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: s.o.LockTimeout,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("open store index %s: still locked after %v; another process owns this store (reach it with store.Dial): %w", path, s.o.LockTimeout, ErrBusy)
	case err != nil:
		return fmt.Errorf("open store index %s: %w (refusing to start empty; restore the index or remove the store folder): %w", path, err, ErrCorrupt)
	}
	fail := func(err error) error {
		s.db.Close()
		return err
	}
	var problems []string
	err = s.db.View(func(tx *bbolt.Tx) error {
		// Check runs on a goroutine of its own, where a fault would kill
		// the process, so first make sure every page it may visit is in
		// the file.
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		if st.Size() < tx.Size() {
			return fmt.Errorf("file is %d bytes but its pages reach %d", st.Size(), tx.Size())
		}
		for e := range tx.Check() {
			if len(problems) < 5 {
				problems = append(problems, e.Error())
			}
		}
		return nil
	})
	if err == nil && len(problems) > 0 {
		err = fmt.Errorf("consistency check: %s", strings.Join(problems, "; "))
	}
	if err != nil {
		return fail(fmt.Errorf("open store index %s: %w: %w", path, err, ErrCorrupt))
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			// A new index, or one whose first commit a crash cut short.
			if len(stored) > 0 {
				return fmt.Errorf("index has no store schema but %s holds %d titles: %w", SegmentFolder, len(stored), ErrCorrupt)
			}
			if name := firstBucket(tx); name != "" {
				return fmt.Errorf("not a store index (has bucket %q): %w", name, ErrCorrupt)
			}
			var err error
			if meta, err = tx.CreateBucket(bucketMeta); err != nil {
				return err
			}
			if err := meta.Put(keySchema, encodePosition(schemaVersion)); err != nil {
				return err
			}
		}
		if v, err := decodePosition(meta.Get(keySchema)); err != nil || v != schemaVersion {
			return fmt.Errorf("index schema %d (this build reads %d), %v: %w", v, schemaVersion, err, ErrCorrupt)
		}
		for _, b := range [][]byte{bucketTitles, bucketManifests, bucketHave, bucketPositions} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fail(fmt.Errorf("open store index %s: %w", path, err))
	}
	// bbolt syncs the file but not the folder naming it.
	if err := os.MkdirAll(s.segDir, 0o700); err != nil {
		return fail(fmt.Errorf("open store: %w", err))
	}
	if err := syncDir(s.dir); err != nil {
		return fail(fmt.Errorf("open store: sync %s: %w", s.dir, err))
	}
	return nil
}

func firstBucket(tx *bbolt.Tx) string {
	var name string
	tx.ForEach(func(n []byte, _ *bbolt.Bucket) error {
		name = string(n)
		return errStop
	})
	return name
}

var errStop = errors.New("stop")

// segmentFolders lists the names in segments/.
func (s *Store) segmentFolders() ([]string, error) {
	ents, err := os.ReadDir(s.segDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

// Close closes the index. Wait calls return ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.mu.Unlock()
	return s.db.Close()
}

// Dir returns the store folder.
func (s *Store) Dir() string { return s.dir }

// get returns a title that is stored and not being deleted.
func (s *Store) get(id media.ID) (*title, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.getLocked(id)
}

func (s *Store) getLocked(id media.ID) (*title, error) {
	if s.closed {
		return nil, ErrClosed
	}
	t := s.titles[id]
	if t == nil || t.deleting {
		return nil, fmt.Errorf("title %s: %w", id, ErrUnknownTitle)
	}
	return t, nil
}

// AddTitle verifies a signed manifest and adds its title, reserving its
// whole payload against the capacity (ErrNoSpace if it does not fit).
// Adding a title again with the same manifest returns the stored one.
func (s *Store) AddTitle(signed []byte) (*media.Manifest, error) {
	// The manifest refers to the bytes it was parsed from, and is kept.
	signed = bytes.Clone(signed)
	m, err := media.Verify(signed, s.o.MediaKeys...)
	if err != nil {
		return nil, fmt.Errorf("add title: %w", err)
	}
	id := m.ID
	// Compare manifests, not files, so that a manifest signed again by
	// another trusted key is the same title.
	mhash := sha256.Sum256(m.Encode())
	s.admin.Lock()
	defer s.admin.Unlock()

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if t := s.titles[id]; t != nil {
		deleting := t.deleting
		s.mu.Unlock()
		if deleting {
			return nil, fmt.Errorf("add title %s: it is being deleted", id)
		}
		if t.rec.ManifestHash != mhash {
			return nil, fmt.Errorf("add title %s: %w", id, ErrConflict)
		}
		m, _, err := s.manifestOf(t)
		return m, err
	}
	s.mu.Unlock()

	// A deletion cut short by an I/O error is finished first.
	var pending bool
	err = s.db.View(func(tx *bbolt.Tx) error {
		pending = tx.Bucket(bucketTitles).Get(id[:]) != nil
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("add title %s: %w", id, err)
	}
	if pending {
		if err := s.finishDelete(id); err != nil {
			return nil, fmt.Errorf("add title %s: finish its earlier deletion: %w", id, err)
		}
	}

	size := int64(m.PayloadSize)
	capacity, err := s.capacity()
	if err != nil {
		return nil, fmt.Errorf("add title %s: %w", id, err)
	}
	s.mu.Lock()
	reserved := s.reserved
	s.mu.Unlock()
	if reserved+size > capacity {
		return nil, fmt.Errorf("add title %s: %d bytes with %d of %d reserved: %w", id, size, reserved, capacity, ErrNoSpace)
	}

	rec := titleRecord{
		PieceSize: m.PieceSize, PayloadSize: m.PayloadSize,
		Pieces: uint32(m.NumPieces()), Frames: uint32(m.NumFrames()),
		SegmentSize:  uint64(max(s.o.SegmentSize, int64(m.PieceSize))),
		ManifestHash: mhash, Added: time.Now().Unix(),
	}
	have := NewBitmap(m.NumPieces())
	err = s.db.Update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketTitles).Put(id[:], rec.encode()); err != nil {
			return err
		}
		b, err := tx.Bucket(bucketManifests).CreateBucket(id[:])
		if err != nil {
			return err
		}
		if err := b.Put(keySigned, signed); err != nil {
			return err
		}
		return tx.Bucket(bucketHave).Put(id[:], have.Bytes())
	})
	if err != nil {
		return nil, fmt.Errorf("add title %s: %w", id, err)
	}
	t := &title{id: id, rec: rec, have: have, changed: make(chan struct{}), locks: map[uint64]string{}, segReady: map[int]bool{}}
	s.mu.Lock()
	s.titles[id] = t
	s.reserved += size
	s.cacheLocked(t, m, signed)
	s.mu.Unlock()
	s.log.Info("title added", "title", id, "bytes", size, "pieces", m.NumPieces())
	return m, nil
}

// Manifest returns a title's manifest and the signed file it came from;
// neither may be modified.
func (s *Store) Manifest(id media.ID) (*media.Manifest, []byte, error) {
	t, err := s.get(id)
	if err != nil {
		return nil, nil, err
	}
	return s.manifestOf(t)
}

// manifestOf returns t's manifest, reading and verifying it from the index
// if it is not cached.
func (s *Store) manifestOf(t *title) (*media.Manifest, []byte, error) {
	s.mu.Lock()
	if t.manifest != nil {
		s.useSeq++
		t.lastUse = s.useSeq
		m, signed := t.manifest, t.signed
		s.mu.Unlock()
		return m, signed, nil
	}
	s.mu.Unlock()
	var signed []byte
	err := s.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketManifests).Bucket(t.id[:]); b != nil {
			signed = bytes.Clone(b.Get(keySigned))
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("title %s: read manifest: %w", t.id, err)
	}
	if signed == nil {
		return nil, nil, fmt.Errorf("title %s: manifest missing from the index: %w", t.id, ErrCorrupt)
	}
	m, err := media.Verify(signed, s.o.MediaKeys...)
	if err != nil {
		return nil, nil, fmt.Errorf("title %s: stored manifest: %w", t.id, err)
	}
	if m.ID != t.id || sha256.Sum256(m.Encode()) != t.rec.ManifestHash {
		return nil, nil, fmt.Errorf("title %s: stored manifest does not match its record: %w", t.id, ErrCorrupt)
	}
	s.mu.Lock()
	s.cacheLocked(t, m, signed)
	s.mu.Unlock()
	return m, signed, nil
}

// cacheLocked keeps m for t and drops the least recently used manifest
// beyond the cache size.
func (s *Store) cacheLocked(t *title, m *media.Manifest, signed []byte) {
	if s.titles[t.id] != t {
		return // deleted meanwhile
	}
	if t.manifest == nil {
		s.cached++
	}
	s.useSeq++
	t.manifest, t.signed, t.lastUse = m, signed, s.useSeq
	for s.cached > s.o.ManifestCache {
		var old *title
		for _, u := range s.titles {
			if u.manifest != nil && u != t && (old == nil || u.lastUse < old.lastUse) {
				old = u
			}
		}
		if old == nil {
			return
		}
		old.manifest, old.signed = nil, nil
		s.cached--
	}
}

// Titles lists the stored titles in ID order.
func (s *Store) Titles() ([]TitleInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	var out []TitleInfo
	for _, id := range slices.SortedFunc(maps.Keys(s.titles), func(a, b media.ID) int { return bytes.Compare(a[:], b[:]) }) {
		t := s.titles[id]
		if t.deleting {
			continue
		}
		n := t.have.Count()
		out = append(out, TitleInfo{
			ID: id, Pieces: int(t.rec.Pieces), Present: n,
			Size: int64(t.rec.PayloadSize), PresentBytes: t.present,
			Complete: n == int(t.rec.Pieces), Locks: len(t.locks),
			Added: time.Unix(t.rec.Added, 0),
		})
	}
	return out, nil
}

// Have returns a copy of the title's pieces-present bitmap.
func (s *Store) Have(id media.ID) (Bitmap, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.getLocked(id)
	if err != nil {
		return Bitmap{}, err
	}
	return t.have.clone(), nil
}

// Wait returns once the piece is present, or with ctx's error, ErrClosed,
// or ErrUnknownTitle if the title is deleted meanwhile.
func (s *Store) Wait(ctx context.Context, id media.ID, piece int) error {
	for {
		s.mu.Lock()
		t, err := s.getLocked(id)
		if err != nil {
			s.mu.Unlock()
			return err
		}
		if piece < 0 || piece >= int(t.rec.Pieces) {
			s.mu.Unlock()
			return fmt.Errorf("title %s: wait for piece %d of %d: %w", id, piece, t.rec.Pieces, ErrRange)
		}
		if t.have.Has(piece) {
			s.mu.Unlock()
			return nil
		}
		ch := t.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-s.closing:
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("title %s: wait for piece %d: %w", id, piece, ctx.Err())
		}
	}
}

// Lock keeps the title from being deleted until unlock is called; reason
// says who holds it ("playing", "sending to <peer>") for ErrLocked's
// message. Several holders may lock a title at once; unlock is idempotent.
func (s *Store) Lock(id media.ID, reason string) (unlock func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.getLocked(id)
	if err != nil {
		return nil, err
	}
	s.lockSeq++
	h := s.lockSeq
	t.locks[h] = reason
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			delete(t.locks, h)
			s.mu.Unlock()
		})
	}, nil
}

// DeleteTitle removes a title: its segments, bitmap, manifest and
// position, and frees its reservation. It fails with ErrLocked while the
// title is locked.
func (s *Store) DeleteTitle(id media.ID) error {
	s.admin.Lock()
	defer s.admin.Unlock()
	s.mu.Lock()
	t, err := s.getLocked(id)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	if len(t.locks) > 0 {
		reasons := slices.Sorted(maps.Values(t.locks))
		s.mu.Unlock()
		return fmt.Errorf("delete title %s: held for %s: %w", id, strings.Join(reasons, ", "), ErrLocked)
	}
	t.deleting = true // no new locks, reads or writes from here
	s.mu.Unlock()

	rec := t.rec
	rec.Deleting = true
	err = s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketTitles).Put(id[:], rec.encode())
	})
	if err != nil {
		s.mu.Lock()
		t.deleting = false
		s.mu.Unlock()
		return fmt.Errorf("delete title %s: mark deleting: %w", id, err)
	}
	t.io.Lock() // let piece I/O in flight finish
	s.mu.Lock()
	delete(s.titles, id)
	s.reserved -= int64(t.rec.PayloadSize)
	s.used -= t.present
	if t.manifest != nil {
		s.cached--
	}
	close(t.changed)
	s.mu.Unlock()
	t.io.Unlock()
	if s.hookAfterMark != nil {
		if err := s.hookAfterMark(); err != nil {
			return err
		}
	}
	if err := s.finishDelete(id); err != nil {
		return fmt.Errorf("delete title %s: %w (the next Open finishes it)", id, err)
	}
	s.log.Info("title deleted", "title", id, "bytes", t.rec.PayloadSize)
	return nil
}

// finishDelete removes what is left of a title marked deleting.
func (s *Store) finishDelete(id media.ID) error {
	if err := os.RemoveAll(filepath.Join(s.segDir, id.String())); err != nil {
		return fmt.Errorf("remove segments: %w", err)
	}
	if err := syncDir(s.segDir); err != nil {
		return fmt.Errorf("sync %s: %w", s.segDir, err)
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketManifests).DeleteBucket(id[:]); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
			return err
		}
		for _, b := range [][]byte{bucketHave, bucketPositions, bucketTitles} {
			if err := tx.Bucket(b).Delete(id[:]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove index records: %w", err)
	}
	return nil
}

// Usage reports the payload bytes present, the bytes reserved by the
// stored titles, and the capacity.
func (s *Store) Usage() (used, reserved, capacity int64, err error) {
	capacity, err = s.capacity()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used, s.reserved, capacity, err
}

// capacity returns Options.Capacity, or what the file system can take.
func (s *Store) capacity() (int64, error) {
	if s.o.Capacity > 0 {
		return s.o.Capacity, nil
	}
	avail, total, err := diskSpace(s.dir)
	if err != nil {
		return 0, fmt.Errorf("free space of %s: %w", s.dir, err)
	}
	reserve := s.o.Reserve
	if reserve == 0 {
		reserve = min(max(total/100, 64<<20), 4<<30)
	}
	s.mu.Lock()
	used := s.used
	s.mu.Unlock()
	return max(used+avail-reserve, 0), nil
}

// SetPosition records where the player stopped in a title, as a frame
// index, for it to resume there.
func (s *Store) SetPosition(id media.ID, frame int) error {
	t, err := s.get(id)
	if err != nil {
		return err
	}
	if frame < 0 || frame >= int(t.rec.Frames) {
		return fmt.Errorf("title %s: position frame %d of %d: %w", id, frame, t.rec.Frames, ErrRange)
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		if r := tx.Bucket(bucketTitles).Get(id[:]); r == nil {
			return fmt.Errorf("title %s: %w", id, ErrUnknownTitle)
		}
		return tx.Bucket(bucketPositions).Put(id[:], encodePosition(frame))
	})
	if err != nil {
		return fmt.Errorf("title %s: set position %d: %w", id, frame, err)
	}
	return nil
}

// Position returns the recorded resume position, if any.
func (s *Store) Position(id media.ID) (frame int, ok bool, err error) {
	if _, err := s.get(id); err != nil {
		return 0, false, err
	}
	err = s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketPositions).Get(id[:])
		if v == nil {
			return nil
		}
		ok = true
		frame, err = decodePosition(v)
		return err
	})
	if err != nil {
		return 0, false, fmt.Errorf("title %s: position: %w", id, err)
	}
	return frame, ok, nil
}
