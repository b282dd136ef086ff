package vault

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/pass"
	"github.com/boxswarm/boxswarm/media/keywrap"
)

// Release checks a media pass presented by a box and returns the title's
// content key wrapped to that box. box and boxKey are who the caller
// authenticated (the device certificate of the TLS connection), never what
// the request says.
//
// The response is ready to send: on success it carries the title and the
// wrapped key; on refusal, the title if the pass was genuine and the
// Outcome as the reason. The error says why, wrapping:
//
//	ErrNoPass                     nothing presented
//	pass.ErrMalformed             not a pass (also a changed one that no longer parses)
//	pass.ErrUnsupportedVersion    a pass version this build does not read
//	pass.ErrUnknownIssuer         signed by a key the vault does not trust
//	pass.ErrBadSignature          changed after signing, or forged
//	pass.ErrExpired               the pass or its play window is over
//	pass.ErrNotYetValid           issued in the future, or the window has not opened
//	ErrWrongBox                   the pass names another box ID or identity key
//	ErrReplayed                   a key was already released for this pass
//	ErrUnknownTitle               the vault has no key for the title
//	keywrap.ErrBadPublicKey       the box's key cannot receive a wrapped key
//
// A pass is used up only by a release: a refused pass stays as good as it
// was, so a pass stolen and presented by another box does not deny the
// rightful box its key.
func (v *Vault) Release(ctx context.Context, box api.BoxID, boxKey ed25519.PublicKey, passBytes []byte) (api.KeyResponse, error) {
	if err := ctx.Err(); err != nil {
		return api.KeyResponse{}, err
	}
	now := v.now()
	e := LogEntry{Time: now.UTC(), Box: box}
	wrapped, err := v.release(&e, box, boxKey, passBytes, now)
	if err != nil {
		e.Outcome = outcomeOf(err)
		v.log.Warn("key release refused", "box", box, "title", e.Title, "pass", e.Pass, "outcome", e.Outcome, "err", err)
		if lerr := v.commit.update(func(tx *bolt.Tx) error { return appendLog(tx, &e) }); lerr != nil {
			v.log.Error("release log", "box", box, "err", lerr)
			err = fmt.Errorf("%w (and the release log failed: %v)", err, lerr)
		}
		return api.KeyResponse{Title: e.Title, Reason: string(e.Outcome)}, err
	}
	v.log.Info("key released", "box", box, "title", e.Title, "pass", e.Pass, "key_expires", e.KeyExpires, "seq", e.Seq)
	return api.KeyResponse{Title: e.Title, WrappedKey: wrapped}, nil
}

// release does the checks, fills in e, and for a release records the pass
// and the log entry durably before it returns the wrapped key.
func (v *Vault) release(e *LogEntry, box api.BoxID, boxKey ed25519.PublicKey, raw []byte, now time.Time) ([]byte, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("box %s: %w", box, ErrNoPass)
	}
	p, err := pass.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("box %s: %w", box, err)
	}
	if err := p.VerifySignature(v.passKeys); err != nil {
		return nil, fmt.Errorf("box %s: %w", box, err)
	}
	// Genuine from here on: its fields may go into the log.
	e.Title, e.Pass = p.Title, p.ID
	if err := p.ValidAt(now); err != nil {
		return nil, fmt.Errorf("box %s: %w", box, err)
	}
	if p.Box != box {
		return nil, fmt.Errorf("pass %s names box %s, presented by box %s: %w", p.ID, p.Box, box, ErrWrongBox)
	}
	if !bytes.Equal(p.BoxKey, boxKey) {
		return nil, fmt.Errorf("pass %s names box key %x, box %s has key %x: %w", p.ID, []byte(p.BoxKey), box, []byte(boxKey), ErrWrongBox)
	}

	// Look first, without the write lock, so that a replay or an unknown
	// title costs no wrapping; the write below decides.
	var sealed []byte
	err = v.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketNonces).Get(p.ID[:]) != nil {
			return fmt.Errorf("pass %s from box %s: %w", p.ID, box, ErrReplayed)
		}
		sealed = clone(tx.Bucket(bucketKeys).Get(p.Title[:]))
		if sealed == nil {
			return fmt.Errorf("pass %s from box %s for title %s: %w", p.ID, box, p.Title, ErrUnknownTitle)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	expires := p.NotAfter
	if limit := now.Add(v.maxKeyLife); limit.Before(expires) {
		expires = limit
	}
	expires = expires.Truncate(time.Second).UTC()
	key, err := v.open(p.Title, sealed)
	if err != nil {
		return nil, err
	}
	wrapped, err := keywrap.Wrap(boxKey, keywrap.Header{Title: p.Title, Box: box, Expires: expires}, key.Bytes())
	key.Destroy()
	if err != nil {
		return nil, err
	}
	e.Outcome, e.KeyExpires = Released, expires
	// The replay check and the mark are one transaction, shared with
	// concurrent releases (committer): this function may run again after
	// a rollback, and sets afresh all it changes outside tx (e.Seq).
	err = v.commit.update(func(tx *bolt.Tx) error {
		nonces := tx.Bucket(bucketNonces)
		if nonces.Get(p.ID[:]) != nil {
			return fmt.Errorf("pass %s from box %s: %w", p.ID, box, ErrReplayed)
		}
		exp := uint64(p.Expires.Unix())
		if err := nonces.Put(p.ID[:], binary.BigEndian.AppendUint64(nil, exp)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketExpiries).Put(expiryKey(exp, p.ID), nil); err != nil {
			return err
		}
		if _, err := pruneTx(tx, now, v.pruneBatch); err != nil {
			return err
		}
		return appendLog(tx, e)
	})
	if err != nil {
		e.KeyExpires = time.Time{}
		return nil, err
	}
	return wrapped, nil
}

func expiryKey(exp uint64, id pass.ID) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 24), exp), id[:]...)
}

// pruneGrace is how long after its expiry a used pass is remembered all
// the same, so that a clock stepped back a little cannot revive it.
const pruneGrace = time.Hour

// prune forgets up to max used passes (all if max < 0) that expired more
// than pruneGrace before now: an expired pass is refused for its expiry, so
// its ID no longer needs remembering.
func (v *Vault) prune(now time.Time, max int) (int, error) {
	var n int
	err := v.db.Update(func(tx *bolt.Tx) error {
		var err error
		n, err = pruneTx(tx, now, max)
		return err
	})
	return n, err
}

func pruneTx(tx *bolt.Tx, now time.Time, max int) (int, error) {
	idx, nonces := tx.Bucket(bucketExpiries), tx.Bucket(bucketNonces)
	c := idx.Cursor()
	n := 0
	cutoff := now.Add(-pruneGrace).Unix()
	for k, _ := c.First(); k != nil && n != max; k, _ = c.First() {
		if int64(binary.BigEndian.Uint64(k)) > cutoff {
			break
		}
		if err := nonces.Delete(k[8:]); err != nil {
			return n, err
		}
		if err := c.Delete(); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
