package pgstore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/internal/pgschema"
	"github.com/boxswarm/boxswarm/media"
)

const (
	// chunkRows is the most rows one batched statement carries.
	chunkRows = 20_000
	// maxPending is the most rows a Tx holds before sending them, which
	// bounds its memory in a huge Update.
	maxPending = 200_000
	// idBlock is how many transfer IDs are taken from the sequence at once.
	idBlock = 64
)

// Update runs fn in one SERIALIZABLE transaction, running it again in a
// new one (up to pgschema.MaxAttempts in all) when the server reports a
// serialization failure or deadlock. A panic in fn rolls back and goes on
// up.
func (s *Store) Update(ctx context.Context, fn func(schedstore.Tx) error) error {
	return pgschema.Retry(ctx, s.log, "pgstore: update", func() error { return s.updateOnce(ctx, fn) })
}

func (s *Store) updateOnce(ctx context.Context, fn func(schedstore.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ptx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		return fmt.Errorf("pgstore: begin update: %w", err)
	}
	t := &tx{ctx: ctx, s: s, tx: ptx}
	committed := false
	defer func() {
		t.done = true
		if !committed {
			// ctx may be what ended the Update; the rollback needs
			// its own.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			_ = ptx.Rollback(rctx)
		}
	}()
	if err := fn(t); err != nil {
		return err
	}
	if t.spoiled != nil {
		return fmt.Errorf("pgstore: update not stored: a write failed: %w", t.spoiled)
	}
	if err := t.flush(); err != nil {
		return fmt.Errorf("pgstore: update not stored: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ptx.Commit(ctx); err != nil {
		return fmt.Errorf("pgstore: commit update: %w", err)
	}
	committed = true
	return nil
}

var errTxDone = errors.New("pgstore: transaction used after its Update returned")

// tx is a schedstore.Tx on a PostgreSQL transaction. Puts and deletes are
// held in batches, one per table, keyed so that a later put of a key
// replaces an earlier one; flush sends deletes first, then puts, then the
// outbox's appends and acknowledgements (outbox.go). That keeps the order
// of writes where it matters: DeleteBox sends what is held before it when
// that could include its box, and DeleteHolding drops a held put of its
// key.
type tx struct {
	ctx     context.Context
	s       *Store
	tx      pgx.Tx
	p       pending
	spoiled error // the first write that failed: the Update will not commit
	done    bool
}

var _ schedstore.Tx = (*tx)(nil)

type (
	key16 = [16]byte
	key32 = [32]byte
)

func pair(a, b [16]byte) (k key32) {
	copy(k[:16], a[:])
	copy(k[16:], b[:])
	return k
}

type pending struct {
	boxDeletes     batch[key16, struct{}]
	holdingDeletes batch[key32, struct{}]
	boxes          batch[key16, schedstore.Box]
	holdings       batch[key32, schedstore.Holding]
	lists          batch[key16, schedstore.PriorityList]
	titles         batch[key16, schedstore.Title]
	transfers      batch[uint64, schedstore.Transfer]
	measurements   batch[key32, schedstore.Measurement]
	seqs           batch[key16, [2]uint64]
	outbox         outboxWrites
}

func (p *pending) rows() int {
	return p.boxDeletes.len() + p.holdingDeletes.len() + p.boxes.len() + p.holdings.len() + p.lists.len() +
		p.titles.len() + p.transfers.len() + p.measurements.len() + p.seqs.len() + p.outbox.len()
}

// boxKeyedPuts reports whether puts DeleteBox would undo are held.
func (p *pending) boxKeyedPuts() bool {
	return p.boxes.len()+p.holdings.len()+p.lists.len()+p.seqs.len() > 0
}

// batch holds rows by key; a row put again replaces the first.
type batch[K comparable, V any] struct {
	idx  map[K]int
	keys []K
	rows []V
}

func (b *batch[K, V]) len() int { return len(b.rows) }

func (b *batch[K, V]) get(k K) (v V, ok bool) {
	i, ok := b.idx[k]
	if !ok {
		return v, false
	}
	return b.rows[i], true
}

func (b *batch[K, V]) put(k K, v V) {
	if i, ok := b.idx[k]; ok {
		b.rows[i] = v
		return
	}
	if b.idx == nil {
		b.idx = map[K]int{}
	}
	b.idx[k] = len(b.rows)
	b.keys = append(b.keys, k)
	b.rows = append(b.rows, v)
}

func (b *batch[K, V]) remove(k K) {
	i, ok := b.idx[k]
	if !ok {
		return
	}
	last := len(b.rows) - 1
	b.keys[i], b.rows[i] = b.keys[last], b.rows[last]
	b.idx[b.keys[i]] = i
	delete(b.idx, k)
	b.keys, b.rows = b.keys[:last], b.rows[:last]
}

// sorted returns the keys and rows in key order, so that index pages are
// visited in order and concurrent Updates lock rows in the same order.
func (b *batch[K, V]) sorted(compare func(a, b K) int) ([]K, []V) {
	order := make([]int, len(b.keys))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int { return compare(b.keys[i], b.keys[j]) })
	keys, rows := make([]K, len(order)), make([]V, len(order))
	for i, o := range order {
		keys[i], rows[i] = b.keys[o], b.rows[o]
	}
	return keys, rows
}

func cmp16(a, b key16) int { return bytes.Compare(a[:], b[:]) }
func cmp32(a, b key32) int { return bytes.Compare(a[:], b[:]) }

// chunks calls fn for successive pieces of at most chunkRows of n rows.
func chunks(n int, fn func(lo, hi int)) {
	for lo := 0; lo < n; lo += chunkRows {
		fn(lo, min(n, lo+chunkRows))
	}
}

// statement is one queued statement, named for errors.
type statement struct {
	what string
	sql  string
	args []any
	// check, if set, reads the statement's one row of answer and says
	// whether it did all it should; otherwise the answer is ignored.
	check func(pgx.Row) error
}

// result reads the statement's answer from the batch.
func (s statement) result(br pgx.BatchResults) error {
	if s.check == nil {
		_, err := br.Exec()
		return err
	}
	return s.check(br.QueryRow())
}

const (
	upsertBoxes = `INSERT INTO boxes (id, account, cert_sha256, server, cluster, capacity, free, up_kbps, down_kbps,
		nat, region, isp, piece_addr, activated, last_seen)
	SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::boolean[], $5::text[], $6::bigint[], $7::bigint[],
		$8::bigint[], $9::bigint[], $10::text[], $11::text[], $12::text[], $13::text[], $14::timestamptz[], $15::timestamptz[])
	ON CONFLICT (id) DO UPDATE SET account = EXCLUDED.account, cert_sha256 = EXCLUDED.cert_sha256,
		server = EXCLUDED.server, cluster = EXCLUDED.cluster, capacity = EXCLUDED.capacity, free = EXCLUDED.free,
		up_kbps = EXCLUDED.up_kbps, down_kbps = EXCLUDED.down_kbps, nat = EXCLUDED.nat, region = EXCLUDED.region,
		isp = EXCLUDED.isp, piece_addr = EXCLUDED.piece_addr, activated = EXCLUDED.activated, last_seen = EXCLUDED.last_seen`
	upsertHoldings = `INSERT INTO holdings (box, title, complete, have)
	SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::boolean[], $4::bytea[])
	ON CONFLICT (box, title) DO UPDATE SET complete = EXCLUDED.complete, have = EXCLUDED.have`
	upsertLists = `INSERT INTO priority_lists (box, titles, version)
	SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::bigint[])
	ON CONFLICT (box) DO UPDATE SET titles = EXCLUDED.titles, version = EXCLUDED.version`
	upsertTitles = `INSERT INTO titles (id, pieces, piece_size, payload_size, payload_hash, publish_at)
	SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bytea[], $6::timestamptz[])
	ON CONFLICT (id) DO UPDATE SET pieces = EXCLUDED.pieces, piece_size = EXCLUDED.piece_size,
		payload_size = EXCLUDED.payload_size, payload_hash = EXCLUDED.payload_hash, publish_at = EXCLUDED.publish_at`
	upsertMeasurements = `INSERT INTO measurements (from_box, to_box, kbps, rtt_milli, at)
	SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], $5::timestamptz[])
	ON CONFLICT (from_box, to_box) DO UPDATE SET kbps = EXCLUDED.kbps, rtt_milli = EXCLUDED.rtt_milli, at = EXCLUDED.at`
	upsertSeqs = `INSERT INTO seqs (box, seq_in, seq_out)
	SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[])
	ON CONFLICT (box) DO UPDATE SET seq_in = EXCLUDED.seq_in, seq_out = EXCLUDED.seq_out`
	// Transfers are few per Update, and portions is an array, which
	// unnest would flatten: one statement each.
	upsertTransfer = `INSERT INTO transfers (id, title, receiver, sender, portions, initiator, state, outcome,
		pieces, created, updated)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
	ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, receiver = EXCLUDED.receiver, sender = EXCLUDED.sender,
		portions = EXCLUDED.portions, initiator = EXCLUDED.initiator, state = EXCLUDED.state,
		outcome = EXCLUDED.outcome, pieces = EXCLUDED.pieces, created = EXCLUDED.created, updated = EXCLUDED.updated`
	deleteHoldings = `DELETE FROM holdings h USING unnest($1::uuid[], $2::uuid[]) AS d(box, title)
	WHERE h.box = d.box AND h.title = d.title`
)

// deleteBoxes are DeleteBox's statements, all taking the boxes as $1.
var deleteBoxes = []string{
	"DELETE FROM boxes WHERE id = ANY($1::uuid[])",
	"DELETE FROM holdings WHERE box = ANY($1::uuid[])",
	"DELETE FROM priority_lists WHERE box = ANY($1::uuid[])",
	"DELETE FROM outbox WHERE box = ANY($1::uuid[])",
	"DELETE FROM seqs WHERE box = ANY($1::uuid[])",
}

// nonNil keeps an empty byte string from becoming NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// deletes turns the deletes held into statements.
func (p *pending) deletes() []statement {
	var st []statement
	if p.boxDeletes.len() > 0 {
		ids, _ := p.boxDeletes.sorted(cmp16)
		for _, sql := range deleteBoxes {
			st = append(st, statement{fmt.Sprintf("delete %d boxes", len(ids)), sql, []any{ids}, nil})
		}
	}
	if p.holdingDeletes.len() > 0 {
		keys, _ := p.holdingDeletes.sorted(cmp32)
		chunks(len(keys), func(lo, hi int) {
			boxes, titles := make([]key16, 0, hi-lo), make([]key16, 0, hi-lo)
			for _, k := range keys[lo:hi] {
				boxes, titles = append(boxes, key16(k[:16])), append(titles, key16(k[16:]))
			}
			st = append(st, statement{fmt.Sprintf("delete %d holdings", hi-lo), deleteHoldings, []any{boxes, titles}, nil})
		})
	}
	return st
}

// puts turns the puts held into statements.
func (p *pending) puts() []statement {
	var st []statement
	if p.boxes.len() > 0 {
		_, rows := p.boxes.sorted(cmp16)
		chunks(len(rows), func(lo, hi int) {
			n := hi - lo
			var (
				ids                           = make([]key16, 0, n)
				certs                         = make([][]byte, 0, n)
				servers                       = make([]bool, 0, n)
				capacity, free, up, down      = make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n)
				account, cluster, nat, region = make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
				isp, addr                     = make([]string, 0, n), make([]string, 0, n)
				activated, lastSeen           = make([]time.Time, 0, n), make([]time.Time, 0, n)
			)
			for _, b := range rows[lo:hi] {
				ids = append(ids, b.ID)
				account = append(account, b.Account)
				certs = append(certs, b.CertSHA256[:])
				servers = append(servers, b.Server)
				cluster = append(cluster, b.Cluster)
				capacity, free = append(capacity, b.Capacity), append(free, b.Free)
				up, down = append(up, int64(b.UpKbps)), append(down, int64(b.DownKbps))
				nat, region, isp = append(nat, string(b.NAT)), append(region, b.Location.Region), append(isp, b.Location.ISP)
				addr = append(addr, b.PieceAddr)
				activated, lastSeen = append(activated, b.Activated), append(lastSeen, b.LastSeen)
			}
			st = append(st, statement{fmt.Sprintf("store %d boxes", n), upsertBoxes, []any{ids, account, certs, servers,
				cluster, capacity, free, up, down, nat, region, isp, addr, activated, lastSeen}, nil})
		})
	}
	if p.holdings.len() > 0 {
		_, rows := p.holdings.sorted(cmp32)
		chunks(len(rows), func(lo, hi int) {
			n := hi - lo
			boxes, titles, complete, have := make([]key16, 0, n), make([]key16, 0, n), make([]bool, 0, n), make([][]byte, 0, n)
			for _, h := range rows[lo:hi] {
				boxes, titles = append(boxes, h.Box), append(titles, h.Title)
				complete, have = append(complete, h.Complete), append(have, nonNil(h.Have))
			}
			st = append(st, statement{fmt.Sprintf("store %d holdings", n), upsertHoldings, []any{boxes, titles, complete, have}, nil})
		})
	}
	if p.lists.len() > 0 {
		_, rows := p.lists.sorted(cmp16)
		chunks(len(rows), func(lo, hi int) {
			n := hi - lo
			boxes, titles, versions := make([]key16, 0, n), make([][]byte, 0, n), make([]int64, 0, n)
			for _, l := range rows[lo:hi] {
				boxes, titles, versions = append(boxes, l.Box), append(titles, joinIDs(l.Titles)), append(versions, int64(l.Version))
			}
			st = append(st, statement{fmt.Sprintf("store %d priority lists", n), upsertLists, []any{boxes, titles, versions}, nil})
		})
	}
	if p.titles.len() > 0 {
		_, rows := p.titles.sorted(cmp16)
		chunks(len(rows), func(lo, hi int) {
			n := hi - lo
			ids, pieces, sizes, payloads := make([]key16, 0, n), make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n)
			hashes, publish := make([][]byte, 0, n), make([]time.Time, 0, n)
			for _, t := range rows[lo:hi] {
				ids, pieces, sizes = append(ids, t.ID), append(pieces, int64(t.Pieces)), append(sizes, int64(t.PieceSize))
				payloads, hashes, publish = append(payloads, t.PayloadSize), append(hashes, t.PayloadHash[:]), append(publish, t.PublishAt)
			}
			st = append(st, statement{fmt.Sprintf("store %d titles", n), upsertTitles, []any{ids, pieces, sizes, payloads, hashes, publish}, nil})
		})
	}
	if p.transfers.len() > 0 {
		_, rows := p.transfers.sorted(cmp.Compare[uint64])
		for _, t := range rows {
			portions := make([]int64, 0, 2*len(t.Portions))
			for _, r := range t.Portions {
				portions = append(portions, int64(r.First), int64(r.Last))
			}
			st = append(st, statement{fmt.Sprintf("store transfer %d", t.ID), upsertTransfer, []any{int64(t.ID),
				key16(t.Title), key16(t.Receiver), key16(t.Sender), portions, key16(t.Initiator), string(t.State),
				t.Outcome, int64(t.Pieces), t.Created, t.Updated}, nil})
		}
	}
	if p.measurements.len() > 0 {
		_, rows := p.measurements.sorted(cmp32)
		chunks(len(rows), func(lo, hi int) {
			n := hi - lo
			from, to, kbps, rtt, at := make([]key16, 0, n), make([]key16, 0, n), make([]int64, 0, n), make([]int64, 0, n), make([]time.Time, 0, n)
			for _, m := range rows[lo:hi] {
				from, to, kbps = append(from, m.From), append(to, m.To), append(kbps, int64(m.Kbps))
				rtt, at = append(rtt, int64(m.RTTMilli)), append(at, m.At)
			}
			st = append(st, statement{fmt.Sprintf("store %d measurements", n), upsertMeasurements, []any{from, to, kbps, rtt, at}, nil})
		})
	}
	if p.seqs.len() > 0 {
		keys, rows := p.seqs.sorted(cmp16)
		chunks(len(rows), func(lo, hi int) {
			n := hi - lo
			in, out := make([]int64, 0, n), make([]int64, 0, n)
			for _, s := range rows[lo:hi] {
				in, out = append(in, int64(s[0])), append(out, int64(s[1]))
			}
			st = append(st, statement{fmt.Sprintf("store %d sequence numbers", n), upsertSeqs, []any{keys[lo:hi], in, out}, nil})
		})
	}
	return append(st, p.outbox.statements()...)
}

// flush sends everything held: deletes, then new rows of large batches
// by COPY, then the other puts and the outbox's writes.
func (t *tx) flush() error {
	p := &t.p
	defer func() { t.p = pending{} }()
	if err := t.send(p.deletes()); err != nil {
		return err
	}
	if err := copyFresh(t, &p.boxes, cmp16, boxCopy); err != nil {
		return err
	}
	if err := copyFresh(t, &p.holdings, cmp32, holdingCopy); err != nil {
		return err
	}
	if err := copyFresh(t, &p.lists, cmp16, listCopy); err != nil {
		return err
	}
	return t.send(p.puts())
}

// send runs statements in one round trip.
func (t *tx) send(st []statement) error {
	if len(st) == 0 {
		return nil
	}
	var b pgx.Batch
	for _, s := range st {
		b.Queue(s.sql, s.args...)
	}
	br := t.tx.SendBatch(t.ctx, &b)
	for _, s := range st {
		if err := s.result(br); err != nil {
			_ = br.Close()
			return t.fail(fmt.Errorf("pgstore: %s: %w", s.what, err))
		}
	}
	if err := br.Close(); err != nil {
		return t.fail(fmt.Errorf("pgstore: store batch: %w", err))
	}
	return nil
}

// copyAtLeast is the size from which a batch's new rows are sent by COPY,
// about two and a half times as fast as the upsert; below it, the extra
// round trips cost more than they save.
const copyAtLeast = 1000

// copySpec says how to COPY the rows of one table.
type copySpec[V any] struct {
	what    string
	probe   string // the boxes, of $1, that already have rows in the table
	owner   func(V) key16
	table   string
	columns []string
	values  func(V) []any
}

var (
	boxCopy = copySpec[schedstore.Box]{
		what:  "boxes",
		probe: "SELECT id FROM boxes WHERE id = ANY($1::uuid[])",
		owner: func(b schedstore.Box) key16 { return b.ID },
		table: "boxes",
		columns: []string{"id", "account", "cert_sha256", "server", "cluster", "capacity", "free", "up_kbps",
			"down_kbps", "nat", "region", "isp", "piece_addr", "activated", "last_seen"},
		values: func(b schedstore.Box) []any {
			return []any{key16(b.ID), b.Account, b.CertSHA256[:], b.Server, b.Cluster, b.Capacity, b.Free,
				int64(b.UpKbps), int64(b.DownKbps), string(b.NAT), b.Location.Region, b.Location.ISP, b.PieceAddr,
				b.Activated, b.LastSeen}
		},
	}
	holdingCopy = copySpec[schedstore.Holding]{
		what:    "holdings",
		probe:   "SELECT b FROM unnest($1::uuid[]) AS b WHERE EXISTS (SELECT FROM holdings WHERE box = b)",
		owner:   func(h schedstore.Holding) key16 { return h.Box },
		table:   "holdings",
		columns: []string{"box", "title", "complete", "have"},
		values: func(h schedstore.Holding) []any {
			return []any{key16(h.Box), key16(h.Title), h.Complete, nonNil(h.Have)}
		},
	}
	listCopy = copySpec[schedstore.PriorityList]{
		what:    "priority lists",
		probe:   "SELECT box FROM priority_lists WHERE box = ANY($1::uuid[])",
		owner:   func(l schedstore.PriorityList) key16 { return l.Box },
		table:   "priority_lists",
		columns: []string{"box", "titles", "version"},
		values: func(l schedstore.PriorityList) []any {
			return []any{key16(l.Box), joinIDs(l.Titles), int64(l.Version)}
		},
	}
)

// copyFresh sends by COPY, from a large batch, the rows of the boxes that
// have none in the table yet (so none can conflict), and leaves the rest
// in the batch for the upsert. Registering boxes is all such rows.
//
// The probe reads what a concurrent Update could be inserting; under
// SERIALIZABLE, such a race ends in a serialization failure, which Update
// retries, and not in a duplicate key.
func copyFresh[K comparable, V any](t *tx, b *batch[K, V], compare func(K, K) int, spec copySpec[V]) error {
	if b.len() < copyAtLeast {
		return nil
	}
	keys, rows := b.sorted(compare)
	var owners []key16
	for i, r := range rows {
		if o := spec.owner(r); i == 0 || o != owners[len(owners)-1] {
			owners = append(owners, o)
		}
	}
	existing := map[key16]bool{}
	for lo := 0; lo < len(owners); lo += chunkRows {
		found, err := t.tx.Query(t.ctx, spec.probe, owners[lo:min(len(owners), lo+chunkRows)])
		if err != nil {
			return t.fail(fmt.Errorf("pgstore: look for %s stored: %w", spec.what, err))
		}
		var k key16
		if _, err := pgx.ForEachRow(found, []any{&k}, func() error { existing[k] = true; return nil }); err != nil {
			return t.fail(fmt.Errorf("pgstore: look for %s stored: %w", spec.what, err))
		}
	}
	*b = batch[K, V]{}
	var fresh []V
	for i, r := range rows {
		if existing[spec.owner(r)] {
			b.put(keys[i], r)
		} else {
			fresh = append(fresh, r)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	n, err := t.tx.CopyFrom(t.ctx, pgx.Identifier{spec.table}, spec.columns,
		pgx.CopyFromSlice(len(fresh), func(i int) ([]any, error) { return spec.values(fresh[i]), nil }))
	if err != nil {
		return t.fail(fmt.Errorf("pgstore: copy %d %s: %w", len(fresh), spec.what, err))
	}
	if n != int64(len(fresh)) {
		return t.fail(fmt.Errorf("pgstore: copy %d %s: server took %d", len(fresh), spec.what, n))
	}
	return nil
}

// held is called after each write is held: a Tx that holds too much
// sends it.
func (t *tx) held() error {
	if t.p.rows() >= maxPending || t.p.outbox.bytes >= maxPendingBytes {
		return t.flush()
	}
	return nil
}

// begin is called by every method: it refuses once the Update is over, or
// once a write has failed (the server has aborted the transaction then).
func (t *tx) begin() error {
	if t.done {
		return errTxDone
	}
	if t.spoiled != nil {
		return fmt.Errorf("pgstore: an earlier write in this update failed: %w", t.spoiled)
	}
	return nil
}

// fail spoils the Update with err and returns it.
func (t *tx) fail(err error) error {
	if t.spoiled == nil {
		t.spoiled = err
	}
	return err
}

func (t *tx) PutBox(b schedstore.Box) error {
	if err := t.begin(); err != nil {
		return err
	}
	if err := schedstore.CheckBox(b); err != nil {
		return t.fail(fmt.Errorf("pgstore: box %s: %w", b.ID, err))
	}
	t.p.boxes.put(b.ID, b)
	return t.held()
}

func (t *tx) DeleteBox(id api.BoxID) error {
	if err := t.begin(); err != nil {
		return err
	}
	// Flush sends deletes first, so what is held before this delete and
	// could be of its box goes now. The outbox's writes are held by box,
	// so only this box's count: sending them (rather than dropping them)
	// keeps the refusal of a Seq not above the stored mark.
	if t.p.boxKeyedPuts() || t.p.outbox.holds(id) {
		if err := t.flush(); err != nil {
			return err
		}
	}
	t.p.boxDeletes.put(id, struct{}{})
	return t.held()
}

func (t *tx) PutHolding(h schedstore.Holding) error {
	if err := t.begin(); err != nil {
		return err
	}
	t.p.holdings.put(pair(h.Box, h.Title), h)
	return t.held()
}

func (t *tx) DeleteHolding(box api.BoxID, title media.ID) error {
	if err := t.begin(); err != nil {
		return err
	}
	k := pair(box, title)
	t.p.holdings.remove(k)
	t.p.holdingDeletes.put(k, struct{}{})
	return t.held()
}

func (t *tx) PutPriorityList(l schedstore.PriorityList) error {
	if err := t.begin(); err != nil {
		return err
	}
	t.p.lists.put(l.Box, l)
	return t.held()
}

func (t *tx) PutTitle(ti schedstore.Title) error {
	if err := t.begin(); err != nil {
		return err
	}
	if err := schedstore.CheckTitle(ti); err != nil {
		return t.fail(fmt.Errorf("pgstore: title %s: %w", ti.ID, err))
	}
	t.p.titles.put(ti.ID, ti)
	return t.held()
}

func (t *tx) PutTransfer(tr schedstore.Transfer) error {
	if err := t.begin(); err != nil {
		return err
	}
	if err := schedstore.CheckTransfer(tr); err != nil {
		return t.fail(fmt.Errorf("pgstore: transfer %d: %w", tr.ID, err))
	}
	t.p.transfers.put(uint64(tr.ID), tr)
	return t.held()
}

func (t *tx) PutMeasurement(m schedstore.Measurement) error {
	if err := t.begin(); err != nil {
		return err
	}
	if err := schedstore.CheckMeasurement(m); err != nil {
		return t.fail(fmt.Errorf("pgstore: measurement %s to %s: %w", m.From, m.To, err))
	}
	t.p.measurements.put(pair(m.From, m.To), m)
	return t.held()
}

func (t *tx) SetSeqs(box api.BoxID, in, out uint64) error {
	if err := t.begin(); err != nil {
		return err
	}
	// Held: it sets seq_in and seq_out, and the outbox's appends set
	// only appended, so the two commute.
	t.p.seqs.put(box, [2]uint64{in, out})
	return t.held()
}

func (t *tx) AppendOutbox(o schedstore.Outbound) error {
	if err := t.begin(); err != nil {
		return err
	}
	if o.Seq == 0 || o.Seq > math.MaxInt64 {
		return t.fail(fmt.Errorf("pgstore: outbox of %s: seq %d outside 1 to 2^63-1", o.Box, o.Seq))
	}
	if err := t.p.outbox.append(o); err != nil {
		return t.fail(fmt.Errorf("pgstore: %w", err))
	}
	return t.held()
}

func (t *tx) AckOutbox(box api.BoxID, seq uint64) error {
	if err := t.begin(); err != nil {
		return err
	}
	t.p.outbox.ack(box, min(seq, math.MaxInt64)) // no Seq is above MaxInt64
	return t.held()
}

func (t *tx) NextTransferID() (api.TransferID, error) {
	if err := t.begin(); err != nil {
		return 0, err
	}
	id, err := t.s.nextTransferID(t)
	if err != nil {
		return 0, t.fail(fmt.Errorf("pgstore: next transfer ID: %w", err))
	}
	return api.TransferID(id), nil
}

// nextTransferID hands out IDs from the store's block, taking a new block
// from the sequence when it is empty. The sequence never gives a number
// twice, committed or not, so the block can outlive the Update.
func (s *Store) nextTransferID(t *tx) (int64, error) {
	s.idMu.Lock()
	defer s.idMu.Unlock()
	if len(s.ids) == 0 {
		rows, err := t.tx.Query(t.ctx, "SELECT nextval('transfer_ids') FROM generate_series(1, $1)", idBlock)
		if err != nil {
			return 0, err
		}
		s.ids, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return 0, err
		}
		if len(s.ids) == 0 {
			return 0, errors.New("the sequence gave nothing")
		}
	}
	id := s.ids[0]
	s.ids = s.ids[1:]
	return id, nil
}

// Activation codes are secrets until used, so errors do not quote them.

func (t *tx) AddActivationCode(code, account string) error {
	if err := t.begin(); err != nil {
		return err
	}
	if err := schedstore.CheckCode(code); err != nil {
		return t.fail(fmt.Errorf("pgstore: activation code: %w", err))
	}
	if err := schedstore.CheckString(account); err != nil {
		return t.fail(fmt.Errorf("pgstore: activation code for account %q: %w", account, err))
	}
	tag, err := t.tx.Exec(t.ctx, "INSERT INTO activation_codes (code, account) VALUES ($1, $2) ON CONFLICT (code) DO NOTHING",
		code, account)
	if err != nil {
		return t.fail(fmt.Errorf("pgstore: add activation code for account %q: %w", account, err))
	}
	if tag.RowsAffected() == 0 {
		return t.fail(fmt.Errorf("pgstore: activation code for account %q: code exists", account))
	}
	return nil
}

func (t *tx) UseActivationCode(code string) (string, error) {
	if err := t.begin(); err != nil {
		return "", err
	}
	if schedstore.CheckCode(code) != nil { // cannot have been added; and would not reach the server intact
		return "", schedstore.ErrCodeUnknown
	}
	var account string
	err := t.tx.QueryRow(t.ctx, "UPDATE activation_codes SET used = now() WHERE code = $1 AND used IS NULL RETURNING account",
		code).Scan(&account)
	if err == nil {
		return account, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return "", t.fail(fmt.Errorf("pgstore: use activation code: %w", err))
	}
	var used bool
	err = t.tx.QueryRow(t.ctx, "SELECT used IS NOT NULL FROM activation_codes WHERE code = $1", code).Scan(&used)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", schedstore.ErrCodeUnknown
	case err != nil:
		return "", t.fail(fmt.Errorf("pgstore: use activation code: %w", err))
	case used:
		return "", schedstore.ErrCodeUsed
	}
	// The UPDATE and the SELECT share one snapshot: this cannot be.
	return "", t.fail(errors.New("pgstore: use activation code: unused, yet not updated"))
}
