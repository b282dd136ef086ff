// Package rollback keeps the box's anti-rollback floors in the TPM and
// measures what the first stage boots.
//
// The floors are two monotonic minimums: the lowest firmware image version
// the box will boot, and the lowest signing-key version it accepts (raising
// it revokes a leaked signing key). They live in one ordinary NV index that
// only platform authorization can write. This is the ChromeOS vboot pattern:
//
//   - Stage one (B1) is the only code that runs with the platform hierarchy
//     enabled. It calls [Store.Ensure], checks the slot against
//     [Store.Read], raises the floors with [Store.Raise] when it boots a slot
//     that stage two marked healthy, measures the verified manifest with
//     [Extend], and then calls [Store.Lock] before it kexecs stage two.
//   - [Store.Lock] write-locks the index and disables the platform
//     hierarchy. From then until the next TPM reset (the next boot) nothing
//     can write, undefine or redefine the index, nor define another one with
//     platform authorization.
//   - Stage two and tools may [Store.Read] the floors at any time: reads need
//     only the index's own, empty, authorization.
//
// Guarantees:
//
//   - Floors never move backwards through this package: [Store.Raise] writes
//     the per-field maximum of the stored and requested floors, and only when
//     one of them grows.
//   - Every operation re-reads the index's public area and refuses an index
//     that is not exactly the one [Store.Ensure] defines (see
//     [ErrUnexpectedIndex]), so floors are never taken from, or written to, an
//     index someone else created at our handle.
//   - Writes are synchronous in the TPM (the index is not TPMA_NV_ORDERLY):
//     once Raise returns, the floors survive a power cut.
//   - A write always replaces the whole 16-byte record (TPMA_NV_WRITEALL), so
//     a reader never sees half of an update.
//
// # Record layout
//
// The index holds [RecordSize] bytes, big-endian:
//
//	offset 0  uint64  image floor  (Floors.ImageVersion)
//	offset 8  uint32  key floor    (Floors.KeyVersion)
//	offset 12 [4]byte reserved: written as zero by this version; preserved
//	                  verbatim by Raise so that a newer stage one can use them
//	                  without an older one wiping them.
//
// Nothing here is safe for concurrent use unless the transport is: go-tpm
// transports send one command and read its response without locking.
package rollback

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// DefaultIndex is the NV index holding the floors. It is in the range the TCG
// "Registry of Reserved TPM 2.0 Handles and Localities" gives to platform
// manufacturers (0x01400000-0x017FFFFF), which is where a platform-created
// index belongs: the owner range (0x01800000-0x01BFFFFF) is for indices the
// OS and its users create, and the TPM- and TCG-defined ranges hold things
// like EK certificates. The TPM does not enforce these ranges; Ensure's
// attribute check is what actually stops an owner-created impostor.
const DefaultIndex tpm2.TPMHandle = 0x01400B01

// RecordSize is the size of the NV index in bytes. See the package comment
// for the layout.
const RecordSize = 16

// Errors that callers may need to tell apart. Every error from this package
// that is one of these cases wraps the sentinel with errors.Is semantics.
var (
	// ErrUnexpectedIndex means an index exists at our handle but is not the
	// one Ensure defines (wrong attributes, type, size, name algorithm or
	// policy). The box must refuse to boot: resetting it would mean
	// resetting the floors, which is exactly the rollback an attacker wants.
	ErrUnexpectedIndex = errors.New("TPM rollback index has unexpected attributes")
	// ErrNotProvisioned means the index does not exist or was never written.
	// Stage one fixes this with Ensure; in stage two it means the box has
	// never run stage one's Ensure, which should not happen.
	ErrNotProvisioned = errors.New("TPM rollback index not provisioned")
	// ErrLocked means the floors cannot be written until the next TPM reset:
	// Lock ran, or the platform hierarchy is disabled for another reason.
	ErrLocked = errors.New("TPM rollback floors are locked until the next reboot")
	// ErrPlatformDisabled means Ensure needed platform authorization to
	// define or initialise the index, and the platform hierarchy is
	// disabled: Ensure must run in stage one, before Lock.
	ErrPlatformDisabled = errors.New("TPM platform hierarchy is disabled")
)

// Floors are the anti-rollback minimums.
type Floors struct {
	// ImageVersion is the lowest manifest image version the box boots.
	ImageVersion uint64
	// KeyVersion is the lowest signing-key version the box accepts.
	KeyVersion uint32
}

func (f Floors) String() string {
	return fmt.Sprintf("image>=%d key>=%d", f.ImageVersion, f.KeyVersion)
}

// record is the on-TPM encoding of the floors plus the reserved bytes, which
// are carried along so a write never changes them.
type record struct {
	Floors
	reserved [4]byte
}

func (r record) marshal() []byte {
	b := make([]byte, RecordSize)
	binary.BigEndian.PutUint64(b[0:8], r.ImageVersion)
	binary.BigEndian.PutUint32(b[8:12], r.KeyVersion)
	copy(b[12:16], r.reserved[:])
	return b
}

func parseRecord(b []byte) (record, error) {
	if len(b) != RecordSize {
		return record{}, fmt.Errorf("floor record is %d bytes, want %d", len(b), RecordSize)
	}
	var r record
	r.ImageVersion = binary.BigEndian.Uint64(b[0:8])
	r.KeyVersion = binary.BigEndian.Uint32(b[8:12])
	copy(r.reserved[:], b[12:16])
	return r, nil
}

// Option configures a Store.
type Option func(*Store)

// WithIndex stores the floors at another NV index than DefaultIndex (tests,
// or a board whose TPM already uses ours). It should stay in the platform
// manufacturer range.
func WithIndex(index tpm2.TPMHandle) Option {
	return func(s *Store) { s.index = index }
}

// WithLogger sets where the store logs what it changes; slog.Default() if
// not given.
func WithLogger(l *slog.Logger) Option {
	return func(s *Store) { s.log = l }
}

// Store reads and writes the floors in one TPM. It holds no state besides
// its configuration: every call asks the TPM.
type Store struct {
	tpm   transport.TPM
	index tpm2.TPMHandle
	log   *slog.Logger
}

// New returns a Store for the floors at DefaultIndex unless an option says
// otherwise.
func New(tpm transport.TPM, opts ...Option) *Store {
	s := &Store{tpm: tpm, index: DefaultIndex}
	for _, o := range opts {
		o(s)
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("nv_index", fmt.Sprintf("%#08x", uint32(s.index)))
	return s
}

// Index returns the NV index the store uses.
func (s *Store) Index() tpm2.TPMHandle { return s.index }

// Attribute bits that record the index's state rather than its definition;
// they are masked out when comparing with what we define.
const stateAttrMask = 1<<11 | 1<<28 | 1<<29 // WRITELOCKED, READLOCKED, WRITTEN

// Attributes returns the attributes Ensure defines the index with, and the
// only ones (apart from the state bits WRITELOCKED, READLOCKED and WRITTEN)
// it accepts on an existing index. Each one is there, or absent, for a
// reason:
//
//   - PLATFORMCREATE: created under the platform hierarchy, so TPM2_Clear
//     (owner or lockout) cannot delete it, and it can be undefined only with
//     platform authorization, which only stage one has.
//   - PPWRITE and no OWNERWRITE/AUTHWRITE/POLICYWRITE: platform
//     authorization is the only way to write.
//   - AUTHREAD with an empty auth value: anyone can read the floors; they
//     are not secret. The auth value cannot be changed later, because
//     TPM2_NV_ChangeAuth needs the admin role, i.e. a policy session, and the
//     auth policy is empty. No PPREAD/OWNERREAD/POLICYREAD: one read path is
//     enough and PPREAD would add nothing once everyone can read.
//   - NO_DA: reads are authorised with the index's auth value, and without
//     NO_DA they would be refused while the TPM is in dictionary-attack
//     lockout, which anyone can provoke with wrong passwords; stage one must
//     always be able to read the floors.
//   - WRITE_STCLEAR: TPM2_NV_WriteLock holds until the next TPM reset or
//     restart, i.e. exactly for the rest of this boot. Not WRITEDEFINE,
//     which would lock the floors forever.
//   - WRITEALL: every write replaces the whole record.
//   - Not POLICY_DELETE: with it the index could be deleted only through a
//     policy that would have to be got right; without it, undefining needs
//     platform authorization, which Lock disables for stage two.
//   - Not ORDERLY: a raised floor must survive a power cut.
//   - Not READ_STCLEAR: nobody can hide the floors until the next boot.
//   - Not GLOBALLOCK: TPM2_NV_GlobalWriteLock is an owner command, and the
//     owner has no business locking the floors.
//   - Not CLEAR_STCLEAR: the index never goes back to "unwritten".
func Attributes() tpm2.TPMANV {
	return tpm2.TPMANV{
		PPWrite:        true,
		NT:             tpm2.TPMNTOrdinary,
		WriteAll:       true,
		WriteSTClear:   true,
		AuthRead:       true,
		NoDA:           true,
		PlatformCreate: true,
	}
}

func attrBits(a tpm2.TPMANV) uint32 {
	return binary.BigEndian.Uint32(tpm2.Marshal(a))
}

// describeBits names TPMA_NV bits (the TPM_NT field excluded), so that an
// error says exactly which attributes differ.
func describeBits(bits uint32) string {
	nvAttrNames := [32]string{
		0: "PPWRITE", 1: "OWNERWRITE", 2: "AUTHWRITE", 3: "POLICYWRITE",
		10: "POLICY_DELETE", 11: "WRITELOCKED", 12: "WRITEALL", 13: "WRITEDEFINE",
		14: "WRITE_STCLEAR", 15: "GLOBALLOCK", 16: "PPREAD", 17: "OWNERREAD",
		18: "AUTHREAD", 19: "POLICYREAD", 25: "NO_DA", 26: "ORDERLY",
		27: "CLEAR_STCLEAR", 28: "READLOCKED", 29: "WRITTEN", 30: "PLATFORMCREATE",
		31: "READ_STCLEAR",
	}
	var names []string
	for i := range 32 {
		if bits&(1<<i) == 0 || (i >= 4 && i <= 7) {
			continue
		}
		if n := nvAttrNames[i]; n != "" {
			names = append(names, n)
		} else {
			names = append(names, fmt.Sprintf("bit%d", i))
		}
	}
	return strings.Join(names, "|")
}

// indexState is what an operation learns about the index before it acts.
type indexState struct {
	name        tpm2.TPM2BName
	written     bool
	writeLocked bool
}

// handle returns the index as go-tpm wants it in a handle slot. go-tpm
// insists on a Name for every non-permanent handle, which HMAC sessions
// would need; with our password sessions the TPM ignores it.
func (st indexState) handle(index tpm2.TPMHandle) tpm2.NamedHandle {
	return tpm2.NamedHandle{Handle: index, Name: st.name}
}

// inspect reads the index's public area and checks that it is ours. It
// returns ErrNotProvisioned (wrapping the TPM error) if no index exists.
func (s *Store) inspect(ctx context.Context) (indexState, error) {
	if err := ctx.Err(); err != nil {
		return indexState{}, fmt.Errorf("NV_ReadPublic %#08x: %w", uint32(s.index), err)
	}
	rsp, err := tpm2.NVReadPublic{NVIndex: s.index}.Execute(s.tpm)
	if err != nil {
		if isHandleMissing(err) {
			return indexState{}, fmt.Errorf("NV index %#08x is not defined: %w: %w", uint32(s.index), ErrNotProvisioned, err)
		}
		return indexState{}, fmt.Errorf("NV_ReadPublic %#08x: %w", uint32(s.index), err)
	}
	pub, err := rsp.NVPublic.Contents()
	if err != nil {
		return indexState{}, fmt.Errorf("NV_ReadPublic %#08x: decoding public area: %w", uint32(s.index), err)
	}
	if err := s.check(pub); err != nil {
		return indexState{}, err
	}
	return indexState{
		name:        rsp.NVName,
		written:     pub.Attributes.Written,
		writeLocked: pub.Attributes.WriteLocked,
	}, nil
}

// check compares an existing index's public area with the one Ensure
// defines.
func (s *Store) check(pub *tpm2.TPMSNVPublic) error {
	var problems []string
	if pub.NVIndex != s.index {
		problems = append(problems, fmt.Sprintf("public area names index %#08x", uint32(pub.NVIndex)))
	}
	if pub.NameAlg != tpm2.TPMAlgSHA256 {
		problems = append(problems, fmt.Sprintf("name algorithm %#04x, want SHA-256 (%#04x)", uint16(pub.NameAlg), uint16(tpm2.TPMAlgSHA256)))
	}
	if pub.Attributes.NT != tpm2.TPMNTOrdinary {
		problems = append(problems, fmt.Sprintf("type %d, want ordinary (%d)", pub.Attributes.NT, tpm2.TPMNTOrdinary))
	}
	got := attrBits(pub.Attributes) &^ stateAttrMask
	want := attrBits(Attributes())
	if got != want {
		p := fmt.Sprintf("attributes %#08x, want %#08x", got, want)
		if extra := got &^ want; extra != 0 {
			p += "; unexpected " + describeBits(extra)
		}
		if missing := want &^ got; missing != 0 {
			p += "; missing " + describeBits(missing)
		}
		problems = append(problems, p)
	}
	if n := len(pub.AuthPolicy.Buffer); n != 0 {
		problems = append(problems, fmt.Sprintf("auth policy of %d bytes, want none", n))
	}
	if pub.DataSize != RecordSize {
		problems = append(problems, fmt.Sprintf("size %d bytes, want %d", pub.DataSize, RecordSize))
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: NV index %#08x: %s", ErrUnexpectedIndex, uint32(s.index), strings.Join(problems, ", "))
}

// isHandleMissing reports whether err is the TPM's answer for an NV index
// that does not exist: TPM_RC_HANDLE on the first handle.
func isHandleMissing(err error) bool {
	var f tpm2.TPMFmt1Error
	if !errors.As(err, &f) || !errors.Is(err, tpm2.TPMRCHandle) {
		return false
	}
	ok, i := f.Handle()
	return ok && i == 1
}

func platformAuth() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: tpm2.TPMRHPlatform, Auth: tpm2.PasswordAuth(nil)}
}

// Ensure makes sure the index exists, is ours and holds a record. If it is
// missing it is defined with platform authorization and written with zero
// floors, so it must run in stage one before Lock. If it exists, its public
// area must match exactly (see Attributes), or Ensure fails with
// ErrUnexpectedIndex and the box must not boot. An index of ours left
// unwritten (a power cut between define and write) is written with zeros.
func (s *Store) Ensure(ctx context.Context) error {
	st, err := s.inspect(ctx)
	switch {
	case errors.Is(err, ErrNotProvisioned):
		if err := s.define(ctx); err != nil {
			return err
		}
		if st, err = s.inspect(ctx); err != nil {
			return fmt.Errorf("after defining: %w", err)
		}
	case err != nil:
		return err
	}
	if st.written {
		return nil
	}
	if err := s.write(ctx, st, record{}); err != nil {
		if errors.Is(err, tpm2.TPMRCHierarchy) {
			return fmt.Errorf("initialising NV index %#08x: %w: %w", uint32(s.index), ErrPlatformDisabled, err)
		}
		return fmt.Errorf("initialising NV index %#08x: %w", uint32(s.index), err)
	}
	s.log.Info("TPM rollback floors initialised", "floors", Floors{})
	return nil
}

func (s *Store) define(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("NV_DefineSpace %#08x: %w", uint32(s.index), err)
	}
	_, err := tpm2.NVDefineSpace{
		AuthHandle: platformAuth(),
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex:    s.index,
			NameAlg:    tpm2.TPMAlgSHA256,
			Attributes: Attributes(),
			DataSize:   RecordSize,
		}),
	}.Execute(s.tpm)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCHierarchy) {
			return fmt.Errorf("NV_DefineSpace %#08x with platform auth: %w: %w", uint32(s.index), ErrPlatformDisabled, err)
		}
		return fmt.Errorf("NV_DefineSpace %#08x with platform auth: %w", uint32(s.index), err)
	}
	s.log.Info("TPM rollback index defined", "attributes", describeBits(attrBits(Attributes())))
	return nil
}

func (s *Store) write(ctx context.Context, st indexState, r record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("NV_Write %#08x: %w", uint32(s.index), err)
	}
	_, err := tpm2.NVWrite{
		AuthHandle: platformAuth(),
		NVIndex:    st.handle(s.index),
		Data:       tpm2.TPM2BMaxNVBuffer{Buffer: r.marshal()},
		Offset:     0,
	}.Execute(s.tpm)
	if err != nil {
		return fmt.Errorf("NV_Write %#08x with platform auth: %w", uint32(s.index), err)
	}
	return nil
}

func (s *Store) read(ctx context.Context) (indexState, record, error) {
	st, err := s.inspect(ctx)
	if err != nil {
		return st, record{}, err
	}
	if !st.written {
		return st, record{}, fmt.Errorf("NV index %#08x was never written: %w", uint32(s.index), ErrNotProvisioned)
	}
	if err := ctx.Err(); err != nil {
		return st, record{}, fmt.Errorf("NV_Read %#08x: %w", uint32(s.index), err)
	}
	h := st.handle(s.index)
	rsp, err := tpm2.NVRead{
		// TPMA_NV_AUTHREAD: the index authorises its own read, with its
		// empty auth value.
		AuthHandle: tpm2.AuthHandle{Handle: s.index, Name: st.name, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    h,
		Size:       RecordSize,
		Offset:     0,
	}.Execute(s.tpm)
	if err != nil {
		return st, record{}, fmt.Errorf("NV_Read %#08x: %w", uint32(s.index), err)
	}
	r, err := parseRecord(rsp.Data.Buffer)
	if err != nil {
		return st, record{}, fmt.Errorf("NV_Read %#08x: %w", uint32(s.index), err)
	}
	return st, r, nil
}

// Read returns the stored floors. It needs no hierarchy authorization and
// works before and after Lock.
func (s *Store) Read(ctx context.Context) (Floors, error) {
	_, r, err := s.read(ctx)
	return r.Floors, err
}

// Raise moves each floor up to the value in to, if that is higher, and
// returns the floors now stored. Lower values are ignored field by field, so
// Raise never lowers anything. It writes only if some floor grows; a Raise
// that changes nothing succeeds even after Lock. A Raise that would change
// something after Lock fails with ErrLocked.
func (s *Store) Raise(ctx context.Context, to Floors) (Floors, error) {
	st, cur, err := s.read(ctx)
	if err != nil {
		return Floors{}, err
	}
	next := cur
	next.ImageVersion = max(cur.ImageVersion, to.ImageVersion)
	next.KeyVersion = max(cur.KeyVersion, to.KeyVersion)
	if next == cur {
		return cur.Floors, nil
	}
	if st.writeLocked {
		return cur.Floors, fmt.Errorf("raising floors %v to %v: NV index %#08x is write-locked: %w", cur.Floors, next.Floors, uint32(s.index), ErrLocked)
	}
	if err := s.write(ctx, st, next); err != nil {
		if errors.Is(err, tpm2.TPMRCHierarchy) || errors.Is(err, tpm2.TPMRCNVLocked) {
			err = fmt.Errorf("%w: %w", ErrLocked, err)
		}
		return cur.Floors, fmt.Errorf("raising floors %v to %v: %w", cur.Floors, next.Floors, err)
	}
	s.log.Info("TPM rollback floors raised", "from", cur.Floors, "to", next.Floors)
	return next.Floors, nil
}

// Lock ends this boot's ability to change the floors: it write-locks the
// index (TPM2_NV_WriteLock with platform authorization, held until the next
// TPM reset because of TPMA_NV_WRITE_STCLEAR), then disables the platform
// hierarchy (TPM2_HierarchyControl), so that nothing later in this boot can
// write, undefine or redefine the index, lift the lock, or define another
// platform index. Stage one calls it last, just before kexec.
//
// It always tries to disable the platform hierarchy, even if the write lock
// failed (for example because Ensure failed and the index is missing): an
// enabled platform hierarchy in stage two is the worse outcome. The errors
// are then joined.
//
// If Lock returns an error, stage one must not hand over to stage two: it
// cannot be sure the floors are safe from it. (A cancelled context, for
// example, stops Lock before it sends anything.)
//
// Calling Lock again in the same boot is not an error: it finds the platform
// hierarchy already disabled and returns nil without sending anything else.
// Once the platform hierarchy is disabled the floors cannot be written even
// without the write lock, since platform authorization is their only write
// path, so there is nothing left to do (it logs a warning if it finds the
// hierarchy disabled but the index not write-locked: someone else disabled
// it).
func (s *Store) Lock(ctx context.Context) error {
	enabled, err := PlatformHierarchyEnabled(ctx, s.tpm)
	if err != nil {
		return fmt.Errorf("locking rollback floors: %w", err)
	}
	if !enabled {
		st, err := s.inspect(ctx)
		switch {
		case err != nil:
			s.log.Warn("platform hierarchy already disabled; rollback index not checked", "err", err)
		case !st.writeLocked:
			s.log.Warn("platform hierarchy already disabled by someone else; rollback index not write-locked, but unwritable until reboot")
		default:
			s.log.Debug("rollback floors already locked")
		}
		return nil
	}
	lockErr := s.writeLock(ctx)
	if err := DisablePlatformHierarchy(ctx, s.tpm); err != nil {
		return errors.Join(lockErr, fmt.Errorf("locking rollback floors: %w", err))
	}
	if lockErr != nil {
		return lockErr
	}
	s.log.Info("TPM rollback floors locked and platform hierarchy disabled until reboot")
	return nil
}

func (s *Store) writeLock(ctx context.Context) error {
	st, err := s.inspect(ctx)
	if err != nil {
		return fmt.Errorf("write-locking rollback floors: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("NV_WriteLock %#08x: %w", uint32(s.index), err)
	}
	// An index that is already write-locked is not an error for the TPM:
	// TPM2_NV_WriteLock returns success.
	_, err = tpm2.NVWriteLock{
		AuthHandle: platformAuth(),
		NVIndex:    st.handle(s.index),
	}.Execute(s.tpm)
	if err != nil {
		return fmt.Errorf("NV_WriteLock %#08x with platform auth: %w", uint32(s.index), err)
	}
	return nil
}
