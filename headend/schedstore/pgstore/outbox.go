package pgstore

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
)

// The outbox's writes are held like the others, and sent at flush after
// every other put, appends before acknowledgements. Three things make
// them more than puts:
//
//   - An appended Seq must be above the box's high-water mark
//     (seqs.appended). The Tx checks that the Seqs it holds for a box
//     increase; the append statement checks the lowest of them against the
//     stored mark, moves the mark and stores the messages, and reports a
//     box it refused, which fails the Update. A concurrent Update that
//     moved the same mark makes the statement fail to serialize, and
//     Update runs again (see appendOutbox).
//   - DeleteBox resets the mark and empties the outbox. Deletes are sent
//     first at flush, so an append or acknowledgement held after a
//     DeleteBox lands after it; DeleteBox sends the box's held outbox
//     writes before it holds itself (dropping them instead would lose the
//     refusal of a Seq not above the stored mark).
//   - An acknowledgement drops only the messages there when it is made,
//     yet it is sent after the appends held after it. Appending a Seq at or
//     below a held acknowledgement lowers the acknowledgement to Seq-1,
//     which keeps its meaning: every message it could see has a Seq below
//     the new one (or the new one is refused and the Update fails anyway).

const (
	// chunkBytes is the most frame bytes one append statement carries
	// (but for a larger frame alone): the frames travel as one bytea[]
	// parameter, which the server limits to 1 GB, and the scheduler's are
	// up to api.MaxFrame (256 KiB) each.
	chunkBytes = 16 << 20
	// maxPendingBytes is the most frame bytes a Tx holds before sending
	// them.
	maxPendingBytes = 64 << 20
)

// outboxWrites are the AppendOutbox and AckOutbox calls a Tx holds.
type outboxWrites struct {
	msgs  []schedstore.Outbound // in call order
	bytes int                   // the frames' bytes in msgs
	last  map[key16]uint64      // the highest Seq in msgs, by box
	acks  batch[key16, uint64]  // the highest Seq acknowledged, by box
}

func (w *outboxWrites) len() int { return len(w.msgs) + w.acks.len() }

// holds reports whether a write of the box is held.
func (w *outboxWrites) holds(box key16) bool {
	_, appended := w.last[box]
	_, acked := w.acks.idx[box]
	return appended || acked
}

// append holds a message whose Seq is in range, refusing one not above a
// Seq held for its box; the stored mark is checked when it is sent.
func (w *outboxWrites) append(o schedstore.Outbound) error {
	if last, ok := w.last[o.Box]; ok && o.Seq <= last {
		return fmt.Errorf("outbox of %s: seq %d not above %d, the last appended", o.Box, o.Seq, last)
	}
	if acked, ok := w.acks.get(o.Box); ok && acked >= o.Seq {
		w.acks.put(o.Box, o.Seq-1) // see the notes at the top of this file
	}
	if w.last == nil {
		w.last = map[key16]uint64{}
	}
	w.last[o.Box] = o.Seq
	o.Frame = nonNil(o.Frame)
	w.msgs = append(w.msgs, o)
	w.bytes += len(o.Frame)
	return nil
}

// ack holds an acknowledgement; seq is at most MaxInt64.
func (w *outboxWrites) ack(box key16, seq uint64) {
	if acked, ok := w.acks.get(box); !ok || seq > acked {
		w.acks.put(box, seq)
	}
}

// appendOutbox stores messages for the boxes whose high-water mark is
// below their lowest Seq in the statement, and moves those marks to their
// highest. $1 to $3 are the boxes (each once), their lowest and highest
// Seqs; $4 to $6 the messages. It answers one row: how many messages it
// stored and, if it refused a box, that box, its lowest Seq and its mark.
//
// Each mark is read by its own index lookup (a join would scan the whole
// table for a thousand boxes), from the statement's snapshot, which the
// upsert then overwrites. An Update that changed or inserted the row
// since that snapshot was taken makes the upsert fail to serialize (under
// SERIALIZABLE it neither waits and overwrites nor does nothing), and
// Update runs again: no mark is moved from a value other than the one
// checked.
const appendOutbox = `WITH batch AS MATERIALIZED (
	SELECT b.*, (SELECT appended FROM seqs s WHERE s.box = b.box) AS mark -- NULL if none
	FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS b(box, lo, hi)
), moved AS (
	INSERT INTO seqs (box, appended)
	SELECT box, hi FROM batch WHERE coalesce(mark, 0) < lo
	ON CONFLICT (box) DO UPDATE SET appended = EXCLUDED.appended
	RETURNING box
), stored AS (
	INSERT INTO outbox (box, seq, frame)
	SELECT * FROM unnest($4::uuid[], $5::bigint[], $6::bytea[]) AS m(box, seq, frame)
	WHERE m.box IN (SELECT box FROM moved)
	RETURNING 1
), refused AS (
	SELECT box, lo, mark FROM batch WHERE coalesce(mark, 0) >= lo ORDER BY box LIMIT 1
)
SELECT n.stored, r.box, r.lo, r.mark
FROM (SELECT count(*) AS stored FROM stored) AS n LEFT JOIN refused AS r ON true`

// ackOutbox drops, for each box of $1, the messages up to its Seq in $2.
const ackOutbox = `DELETE FROM outbox o USING unnest($1::uuid[], $2::bigint[]) AS a(box, seq)
	WHERE o.box = a.box AND o.seq <= a.seq`

// statements turns the outbox writes held into statements: appends, in
// chunks of at most chunkRows messages and chunkBytes of frames, then
// acknowledgements.
func (w *outboxWrites) statements() []statement {
	var st []statement
	// By box, then Seq: each box's messages are in a run, in the order
	// they were appended. A run may be cut between chunks; the second
	// chunk's statement then checks against the mark the first moved.
	msgs := slices.SortedFunc(slices.Values(w.msgs), func(a, b schedstore.Outbound) int {
		return cmp.Or(cmp16(a.Box, b.Box), cmp.Compare(a.Seq, b.Seq))
	})
	for lo := 0; lo < len(msgs); {
		hi, size := lo+1, len(msgs[lo].Frame)
		for hi < len(msgs) && hi-lo < chunkRows && size+len(msgs[hi].Frame) <= chunkBytes {
			size += len(msgs[hi].Frame)
			hi++
		}
		st = append(st, appendStatement(msgs[lo:hi]))
		lo = hi
	}
	if w.acks.len() > 0 {
		boxes, seqs := w.acks.sorted(cmp16)
		chunks(len(boxes), func(lo, hi int) {
			through := make([]int64, 0, hi-lo)
			for _, s := range seqs[lo:hi] {
				through = append(through, int64(s))
			}
			st = append(st, statement{fmt.Sprintf("acknowledge the outbox of %d boxes", hi-lo), ackOutbox,
				[]any{boxes[lo:hi], through}, nil})
		})
	}
	return st
}

// appendStatement stores msgs, sorted by box and Seq.
func appendStatement(msgs []schedstore.Outbound) statement {
	var boxes []key16
	var firsts, lasts []int64
	owners, seqs, frames := make([]key16, 0, len(msgs)), make([]int64, 0, len(msgs)), make([][]byte, 0, len(msgs))
	for i, o := range msgs {
		if i == 0 || o.Box != msgs[i-1].Box {
			boxes, firsts, lasts = append(boxes, o.Box), append(firsts, int64(o.Seq)), append(lasts, 0)
		}
		lasts[len(lasts)-1] = int64(o.Seq)
		owners, seqs, frames = append(owners, o.Box), append(seqs, int64(o.Seq)), append(frames, o.Frame)
	}
	return statement{
		what:  fmt.Sprintf("append %d outbox messages", len(msgs)),
		sql:   appendOutbox,
		args:  []any{boxes, firsts, lasts, owners, seqs, frames},
		check: func(r pgx.Row) error { return checkAppended(r, len(msgs)) },
	}
}

// checkAppended reads appendOutbox's answer: an error names the box
// refused, or says that messages went missing.
func checkAppended(r pgx.Row, want int) error {
	var stored int64
	var box *[16]byte // NULL unless a box was refused, and then so are these
	var first, mark *int64
	if err := r.Scan(&stored, &box, &first, &mark); err != nil {
		return err
	}
	switch {
	case box != nil:
		return fmt.Errorf("outbox of %s: seq %d not above %d, the last appended", api.BoxID(*box), *first, *mark)
	case stored != int64(want):
		return fmt.Errorf("stored %d of the messages", stored)
	}
	return nil
}
