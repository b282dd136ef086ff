package pgstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/media"
)

// everyN is how many rows a Load* reads between looks at its context.
const everyN = 64

// load streams a query's rows to fn from one REPEATABLE READ, read-only
// transaction.
func load[T any](ctx context.Context, s *Store, what, query string,
	scan func(pgx.Rows) (T, error), fn func(T) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// Stopping early cancels the query: closing the rows would otherwise
	// read what is left of them, possibly millions.
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tx, err := s.pool.BeginTx(qctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("pgstore: load %s: %w", what, err)
	}
	finished := false
	var rows pgx.Rows
	defer func() {
		if !finished {
			cancel()
		}
		if rows != nil {
			rows.Close()
		}
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer rcancel()
		_ = tx.Rollback(rctx) // read-only: nothing to keep
	}()
	rows, err = tx.Query(qctx, query)
	if err != nil {
		return fmt.Errorf("pgstore: load %s: %w", what, err)
	}
	n := 0
	for rows.Next() {
		if n++; n%everyN == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		r, err := scan(rows)
		if err != nil {
			return fmt.Errorf("pgstore: load %s: %w", what, err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("pgstore: load %s: %w", what, err)
	}
	finished = true
	return nil
}

const boxColumns = `id, account, cert_sha256, server, cluster, capacity, free, up_kbps, down_kbps,
	nat, region, isp, piece_addr, activated, last_seen`

func scanBox(rows pgx.Row) (schedstore.Box, error) {
	var b schedstore.Box
	var cert []byte
	var nat string
	err := rows.Scan((*[16]byte)(&b.ID), &b.Account, &cert, &b.Server, &b.Cluster, &b.Capacity, &b.Free,
		&b.UpKbps, &b.DownKbps, &nat, &b.Location.Region, &b.Location.ISP, &b.PieceAddr, &b.Activated, &b.LastSeen)
	if err != nil {
		return b, err
	}
	if len(cert) != len(b.CertSHA256) {
		return b, fmt.Errorf("box %s: certificate hash of %d bytes", b.ID, len(cert))
	}
	copy(b.CertSHA256[:], cert)
	b.NAT = api.NATType(nat)
	b.Activated, b.LastSeen = b.Activated.UTC(), b.LastSeen.UTC()
	return b, nil
}

// LoadBoxes calls fn for every box.
func (s *Store) LoadBoxes(ctx context.Context, fn func(schedstore.Box) error) error {
	return load(ctx, s, "boxes", "SELECT "+boxColumns+" FROM boxes",
		func(r pgx.Rows) (schedstore.Box, error) { return scanBox(r) }, fn)
}

// LoadHoldings calls fn for every holding.
func (s *Store) LoadHoldings(ctx context.Context, fn func(schedstore.Holding) error) error {
	return load(ctx, s, "holdings", "SELECT box, title, complete, have FROM holdings",
		func(r pgx.Rows) (schedstore.Holding, error) {
			var h schedstore.Holding
			err := r.Scan((*[16]byte)(&h.Box), (*[16]byte)(&h.Title), &h.Complete, &h.Have)
			return h, err
		}, fn)
}

// LoadPriorityLists calls fn for every priority list.
func (s *Store) LoadPriorityLists(ctx context.Context, fn func(schedstore.PriorityList) error) error {
	return load(ctx, s, "priority lists", "SELECT box, titles, version FROM priority_lists",
		func(r pgx.Rows) (schedstore.PriorityList, error) {
			var l schedstore.PriorityList
			var titles []byte
			var version int64
			if err := r.Scan((*[16]byte)(&l.Box), &titles, &version); err != nil {
				return l, err
			}
			l.Version = uint64(version)
			var err error
			l.Titles, err = splitIDs(titles)
			if err != nil {
				return l, fmt.Errorf("priority list of %s: %w", l.Box, err)
			}
			return l, nil
		}, fn)
}

func splitIDs(b []byte) ([]media.ID, error) {
	if len(b)%len(media.ID{}) != 0 {
		return nil, fmt.Errorf("%d bytes of title IDs", len(b))
	}
	if len(b) == 0 {
		return nil, nil
	}
	ids := make([]media.ID, len(b)/len(media.ID{}))
	for i := range ids {
		copy(ids[i][:], b[i*len(media.ID{}):])
	}
	return ids, nil
}

func joinIDs(ids []media.ID) []byte {
	b := make([]byte, 0, len(ids)*len(media.ID{}))
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	return b
}

// LoadTitles calls fn for every title.
func (s *Store) LoadTitles(ctx context.Context, fn func(schedstore.Title) error) error {
	return load(ctx, s, "titles", "SELECT id, pieces, piece_size, payload_size, payload_hash, publish_at FROM titles",
		func(r pgx.Rows) (schedstore.Title, error) {
			var t schedstore.Title
			var hash []byte
			if err := r.Scan((*[16]byte)(&t.ID), &t.Pieces, &t.PieceSize, &t.PayloadSize, &hash, &t.PublishAt); err != nil {
				return t, err
			}
			if len(hash) != len(t.PayloadHash) {
				return t, fmt.Errorf("title %s: payload hash of %d bytes", t.ID, len(hash))
			}
			copy(t.PayloadHash[:], hash)
			t.PublishAt = t.PublishAt.UTC()
			return t, nil
		}, fn)
}

const transferColumns = `id, title, receiver, sender, portions, initiator, state, outcome, pieces, created, updated`

func scanTransfer(r pgx.Row) (schedstore.Transfer, error) {
	var t schedstore.Transfer
	var id int64
	var portions []int64
	var state string
	err := r.Scan(&id, (*[16]byte)(&t.Title), (*[16]byte)(&t.Receiver), (*[16]byte)(&t.Sender), &portions,
		(*[16]byte)(&t.Initiator), &state, &t.Outcome, &t.Pieces, &t.Created, &t.Updated)
	if err != nil {
		return t, err
	}
	t.ID = api.TransferID(id)
	t.State = schedstore.TransferState(state)
	t.Created, t.Updated = t.Created.UTC(), t.Updated.UTC()
	if len(portions)%2 != 0 {
		return t, fmt.Errorf("transfer %d: %d portion bounds", t.ID, len(portions))
	}
	if len(portions) > 0 {
		t.Portions = make([]api.PieceRange, len(portions)/2)
		for i := range t.Portions {
			t.Portions[i] = api.PieceRange{First: int(portions[2*i]), Last: int(portions[2*i+1])}
		}
	}
	return t, nil
}

// LoadTransfers calls fn for every transfer requested or running.
func (s *Store) LoadTransfers(ctx context.Context, fn func(schedstore.Transfer) error) error {
	return load(ctx, s, "transfers",
		"SELECT "+transferColumns+" FROM transfers WHERE state IN ('requested', 'running')",
		func(r pgx.Rows) (schedstore.Transfer, error) { return scanTransfer(r) }, fn)
}

// LoadMeasurements calls fn for every measurement.
func (s *Store) LoadMeasurements(ctx context.Context, fn func(schedstore.Measurement) error) error {
	return load(ctx, s, "measurements", "SELECT from_box, to_box, kbps, rtt_milli, at FROM measurements",
		func(r pgx.Rows) (schedstore.Measurement, error) {
			var m schedstore.Measurement
			err := r.Scan((*[16]byte)(&m.From), (*[16]byte)(&m.To), &m.Kbps, &m.RTTMilli, &m.At)
			m.At = m.At.UTC()
			return m, err
		}, fn)
}

// LoadSeqs calls fn for every box with sequence numbers recorded.
func (s *Store) LoadSeqs(ctx context.Context, fn func(schedstore.BoxSeqs) error) error {
	return load(ctx, s, "seqs", "SELECT box, seq_in, seq_out FROM seqs WHERE seq_in <> 0 OR seq_out <> 0",
		func(r pgx.Rows) (schedstore.BoxSeqs, error) {
			var sq schedstore.BoxSeqs
			var in, out int64
			err := r.Scan((*[16]byte)(&sq.Box), &in, &out)
			sq.In, sq.Out = uint64(in), uint64(out)
			return sq, err
		}, fn)
}

// Outbox returns the box's messages with Seq > after, in order.
func (s *Store) Outbox(ctx context.Context, box api.BoxID, after uint64) ([]schedstore.Outbound, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if after >= math.MaxInt64 { // no Seq is above it
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, "SELECT seq, frame FROM outbox WHERE box = $1 AND seq > $2 ORDER BY seq",
		[16]byte(box), int64(after))
	if err != nil {
		return nil, fmt.Errorf("pgstore: outbox of %s: %w", box, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (schedstore.Outbound, error) {
		o := schedstore.Outbound{Box: box}
		var seq int64
		err := r.Scan(&seq, &o.Frame)
		o.Seq = uint64(seq)
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: outbox of %s: %w", box, err)
	}
	return out, nil
}

// Transfer returns one transfer, or an error wrapping ErrNotFound.
func (s *Store) Transfer(ctx context.Context, id api.TransferID) (schedstore.Transfer, error) {
	if err := ctx.Err(); err != nil {
		return schedstore.Transfer{}, err
	}
	t, err := scanTransfer(s.pool.QueryRow(ctx, "SELECT "+transferColumns+" FROM transfers WHERE id = $1", int64(id)))
	if errors.Is(err, pgx.ErrNoRows) {
		return t, fmt.Errorf("pgstore: transfer %d: %w", id, schedstore.ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("pgstore: transfer %d: %w", id, err)
	}
	return t, nil
}

// transfersOf takes the newest of each side from its index and merges
// them. Ties in created go to the higher ID as a signed bigint: IDs past
// 2^63, which NextTransferID never reaches, sort as if negative.
const transfersOf = `
SELECT ` + transferColumns + ` FROM (
	(SELECT ` + transferColumns + ` FROM transfers WHERE receiver = $1 ORDER BY created DESC, id DESC LIMIT $2)
	UNION ALL
	(SELECT ` + transferColumns + ` FROM transfers WHERE sender = $1 AND receiver <> $1 ORDER BY created DESC, id DESC LIMIT $2)
) t ORDER BY created DESC, id DESC LIMIT $2`

// TransfersOf returns the box's transfers, newest first, at most limit.
func (s *Store) TransfersOf(ctx context.Context, box api.BoxID, limit int) ([]schedstore.Transfer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, transfersOf, [16]byte(box), int64(limit))
	if err != nil {
		return nil, fmt.Errorf("pgstore: transfers of %s: %w", box, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (schedstore.Transfer, error) { return scanTransfer(r) })
	if err != nil {
		return nil, fmt.Errorf("pgstore: transfers of %s: %w", box, err)
	}
	return out, nil
}
