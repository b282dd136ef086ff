package vault

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/pass"
	"github.com/boxswarm/boxswarm/internal/tlv"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/keywrap"
)

// Outcome is how a key request ended. It is also the reason a refused box
// is given (api.KeyResponse.Reason): it tells the box whether asking for a
// new pass can help, and nothing about the vault's insides.
type Outcome string

// Outcomes.
const (
	Released         Outcome = "released"
	RefusedNoPass    Outcome = "no-pass"
	RefusedMalformed Outcome = "malformed-pass"
	RefusedIssuer    Outcome = "unknown-issuer"
	RefusedSignature Outcome = "bad-signature"
	RefusedExpired   Outcome = "expired"
	RefusedEarly     Outcome = "not-yet-valid"
	RefusedWrongBox  Outcome = "wrong-box"
	RefusedReplayed  Outcome = "replayed"
	RefusedTitle     Outcome = "unknown-title"
	RefusedBoxKey    Outcome = "bad-box-key"
	Failed           Outcome = "error"
)

// outcomeOf classifies a Release error.
func outcomeOf(err error) Outcome {
	for _, c := range []struct {
		err error
		o   Outcome
	}{
		{ErrNoPass, RefusedNoPass},
		{pass.ErrMalformed, RefusedMalformed},
		{pass.ErrUnsupportedVersion, RefusedMalformed},
		{pass.ErrUnknownIssuer, RefusedIssuer},
		{pass.ErrBadSignature, RefusedSignature},
		{pass.ErrExpired, RefusedExpired},
		{pass.ErrNotYetValid, RefusedEarly},
		{ErrWrongBox, RefusedWrongBox},
		{ErrReplayed, RefusedReplayed},
		{ErrUnknownTitle, RefusedTitle},
		{keywrap.ErrBadPublicKey, RefusedBoxKey},
	} {
		if errors.Is(err, c.err) {
			return c.o
		}
	}
	return Failed
}

// LogEntry is one line of the release log. Title, Pass and KeyExpires are
// zero when the request did not get far enough to know them: they are
// filled only from a pass whose signature checked out.
type LogEntry struct {
	Seq        uint64
	Time       time.Time
	Box        api.BoxID
	Title      media.ID
	Pass       pass.ID
	Outcome    Outcome
	KeyExpires time.Time // when the released key expires
}

const (
	logTagTime       = 1
	logTagBox        = 2
	logTagOutcome    = 3
	logTagTitle      = 4
	logTagPass       = 5
	logTagKeyExpires = 6
)

var logSchema = []tlv.Field{
	{Tag: logTagTime, Name: "time", Kind: tlv.KindUint64, Required: true},
	{Tag: logTagBox, Name: "box", Kind: tlv.KindFixed, Max: 16, Required: true},
	{Tag: logTagOutcome, Name: "outcome", Kind: tlv.KindString, Max: 32, Required: true},
	{Tag: logTagTitle, Name: "title", Kind: tlv.KindFixed, Max: 16},
	{Tag: logTagPass, Name: "pass", Kind: tlv.KindFixed, Max: 16},
	{Tag: logTagKeyExpires, Name: "key expires", Kind: tlv.KindUint64},
}

func (e *LogEntry) encode() []byte {
	var t tlv.Encoder
	t.Uint64(logTagTime, uint64(e.Time.UnixNano()))
	t.Bytes(logTagBox, e.Box[:])
	t.String(logTagOutcome, string(e.Outcome))
	if e.Title != (media.ID{}) {
		t.Bytes(logTagTitle, e.Title[:])
	}
	if e.Pass != (pass.ID{}) {
		t.Bytes(logTagPass, e.Pass[:])
	}
	if !e.KeyExpires.IsZero() {
		t.Uint64(logTagKeyExpires, uint64(e.KeyExpires.Unix()))
	}
	return t.Encoded()
}

func decodeLogEntry(seq uint64, b []byte) (LogEntry, error) {
	f, err := tlv.Decode("release log entry", b, logSchema)
	if err != nil {
		return LogEntry{}, fmt.Errorf("release log entry %d: %w", seq, err)
	}
	e := LogEntry{
		Seq:     seq,
		Time:    time.Unix(0, int64(f.Uint64(logTagTime))).UTC(),
		Outcome: Outcome(f.String(logTagOutcome)),
	}
	copy(e.Box[:], f.Bytes(logTagBox))
	copy(e.Title[:], f.Bytes(logTagTitle))
	copy(e.Pass[:], f.Bytes(logTagPass))
	if f.Has(logTagKeyExpires) {
		e.KeyExpires = time.Unix(int64(f.Uint64(logTagKeyExpires)), 0).UTC()
	}
	return e, nil
}

// appendLog adds e to the release log inside tx.
func appendLog(tx *bolt.Tx, e *LogEntry) error {
	b := tx.Bucket(bucketLog)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	e.Seq = seq
	return b.Put(binary.BigEndian.AppendUint64(nil, seq), e.encode())
}

// ReleaseLog returns up to limit entries of the release log after sequence
// number after, oldest first.
func (v *Vault) ReleaseLog(ctx context.Context, after uint64, limit int) ([]LogEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if after == math.MaxUint64 {
		return nil, nil
	}
	var out []LogEntry
	err := v.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLog).Cursor()
		for k, val := c.Seek(binary.BigEndian.AppendUint64(nil, after+1)); k != nil && len(out) < limit; k, val = c.Next() {
			e, err := decodeLogEntry(binary.BigEndian.Uint64(k), val)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}
