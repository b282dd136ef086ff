package customers

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/boxswarm/boxswarm/internal/tlv"
)

// ledgerDomain separates ledger hashes from every other SHA-256 in the
// system.
const ledgerDomain = "boxswarm customers ledger v1\x00"

// Entry fields in the hashed encoding (internal/tlv: one encoding per
// entry, so one hash).
const (
	tagAccount uint16 = iota + 1
	tagSeq
	tagAt
	tagKind
	tagAmount
	tagCurrency
	tagPurchase
	tagBox
	tagTitle
	tagMemo
	tagPrev
)

// EntryHash is the hash that chains an entry: SHA-256 over every field
// but Hash itself, Prev included.
func EntryHash(e Entry) [32]byte {
	var enc tlv.Encoder
	enc.String(tagAccount, string(e.Account))
	enc.Uint64(tagSeq, e.Seq)
	enc.Uint64(tagAt, uint64(e.At.UnixMicro()))
	enc.String(tagKind, string(e.Kind))
	enc.Uint64(tagAmount, uint64(e.Amount.Amount))
	enc.String(tagCurrency, e.Amount.Currency)
	enc.String(tagPurchase, string(e.Purchase))
	enc.String(tagBox, string(e.Box))
	enc.Bytes(tagTitle, e.Title[:])
	enc.String(tagMemo, e.Memo)
	enc.Bytes(tagPrev, e.Prev[:])
	h := sha256.New()
	h.Write([]byte(ledgerDomain))
	h.Write(enc.Encoded())
	return [32]byte(h.Sum(nil))
}

// appendEntry numbers and chains an entry after the account's last one and
// appends it; it returns the entry as stored.
func appendEntry(tx Tx, e Entry) (Entry, error) {
	last, err := tx.LastEntry(e.Account)
	switch {
	case errors.Is(err, ErrNotFound):
		e.Seq, e.Prev = 1, [32]byte{}
	case err != nil:
		return Entry{}, err
	default:
		e.Seq, e.Prev = last.Seq+1, last.Hash
	}
	e.Hash = EntryHash(e)
	if err := tx.AppendEntry(e); err != nil {
		return Entry{}, fmt.Errorf("ledger entry %d of %s: %w", e.Seq, e.Account, err)
	}
	return e, nil
}

// Ledger returns up to limit entries of an account's ledger after Seq
// after, in order.
func (s *Service) Ledger(ctx context.Context, account AccountID, after uint64, limit int) ([]Entry, error) {
	var es []Entry
	err := s.store.View(ctx, func(tx ReadTx) error {
		var err error
		es, err = tx.Ledger(account, after, limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("customers: ledger of %s: %w", account, err)
	}
	return es, nil
}

// VerifyLedger checks an account's whole ledger: numbered 1, 2, 3… with no
// gap, each entry's hash right and chained to the one before. It returns
// the number of entries, or an error wrapping ErrLedgerBroken that names
// the first entry that fails.
func (s *Service) VerifyLedger(ctx context.Context, account AccountID) (int, error) {
	n := 0
	err := s.store.View(ctx, func(tx ReadTx) error {
		var prev [32]byte
		for {
			es, err := tx.Ledger(account, uint64(n), 1000)
			if err != nil {
				return err
			}
			if len(es) == 0 {
				return nil
			}
			for _, e := range es {
				n++
				switch {
				case e.Seq != uint64(n):
					return fmt.Errorf("%w: entry %d where %d was due", ErrLedgerBroken, e.Seq, n)
				case e.Prev != prev:
					return fmt.Errorf("%w: entry %d is not chained to entry %d", ErrLedgerBroken, e.Seq, n-1)
				case e.Hash != EntryHash(e):
					return fmt.Errorf("%w: entry %d does not match its hash", ErrLedgerBroken, e.Seq)
				}
				prev = e.Hash
			}
		}
	})
	if err != nil {
		return n, fmt.Errorf("customers: ledger of %s: %w", account, err)
	}
	return n, nil
}
