// Package pgstore is the PostgreSQL customers.Store, for operators whose
// head-end outgrows one machine. It needs PostgreSQL 15 or later and a
// UTF-8 database, creates its tables (all named cust_…, so it can share
// the scheduler's database) on first use, and refuses a database whose
// schema is newer than the build.
//
// It guarantees what storetest checks, with these means:
//   - Every value reaches the server as a query parameter; no SQL is ever
//     built from a value. The only SQL chosen at run time is one of three
//     fixed ORDER BY clauses, picked by a switch on the sort.
//   - Search matches with LIKE on text folded by Go, the query's LIKE
//     wildcards (%, _) and the escape character (\) escaped, so a query
//     matches only as a literal substring, as the bbolt backend's does.
//   - A lookup by a key no record can have (NUL, invalid UTF-8, longer
//     than customers.MaxKeyLen) answers ErrNotFound without asking the
//     server, which refuses such text (SQLSTATE 22021) and would fail the
//     transaction around the lookup; searches leave such text out the
//     same way, answering as the reference does.
//   - An Update is one SERIALIZABLE transaction; a serialization failure
//     or deadlock runs fn again in a new one, up to pgschema.MaxAttempts (10) times. A
//     View is one REPEATABLE READ, read-only transaction: a snapshot.
//   - The billing ledger is append-only in the database itself: a trigger
//     refuses UPDATE, DELETE and TRUNCATE on it.
package pgstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/internal/pgschema"
)

// Option adjusts Open.
type Option func(*options)

type options struct {
	log *slog.Logger
}

// WithLogger sets where the store logs.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// Store is a customers.Store in a PostgreSQL database.
type Store struct {
	pool  *pgxpool.Pool
	log   *slog.Logger
	close func()
}

var _ customers.Store = (*Store)(nil)

// Open connects to the database at dsn (a URL or key=value string, as
// libpq takes), checks its schema or creates it, and returns the store.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	o := options{log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	pool, where, err := pgschema.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("customers pgstore: %w", err)
	}
	s := &Store{pool: pool, log: o.log}
	s.close = sync.OnceFunc(pool.Close)
	created, err := pgschema.Prepare(ctx, pool, pgschema.Schema{
		VersionTable: "cust_schema_version", Lock: migrationLock, Version: schemaVersion, DDL: schemaV1,
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("customers pgstore: open %s: %w", where, err)
	}
	o.log.Info("customer store open", "database", where, "created", created)
	return s, nil
}

// Close closes the store's connections. Calling it again does nothing.
func (s *Store) Close() error {
	s.close()
	return nil
}

// View runs fn in one REPEATABLE READ, read-only transaction.
func (s *Store) View(ctx context.Context, fn func(customers.ReadTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ptx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("customers pgstore: begin view: %w", err)
	}
	t := &tx{ctx: ctx, tx: ptx}
	defer func() {
		t.done = true
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = ptx.Rollback(rctx) // read-only: nothing to keep
	}()
	return fn(t)
}

// Update runs fn in one SERIALIZABLE transaction, running it again in a
// new one (up to pgschema.MaxAttempts in all) when the server reports a
// serialization failure or deadlock. A panic in fn rolls back and goes on
// up.
func (s *Store) Update(ctx context.Context, fn func(customers.Tx) error) error {
	return pgschema.Retry(ctx, s.log, "customers pgstore: update", func() error { return s.updateOnce(ctx, fn) })
}

func (s *Store) updateOnce(ctx context.Context, fn func(customers.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ptx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		return fmt.Errorf("customers pgstore: begin update: %w", err)
	}
	t := &tx{ctx: ctx, tx: ptx, write: true}
	committed := false
	defer func() {
		t.done = true
		if !committed {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			_ = ptx.Rollback(rctx)
		}
	}()
	if err := fn(t); err != nil {
		return err
	}
	if t.spoiled != nil {
		return fmt.Errorf("customers pgstore: update not stored: a write failed: %w", t.spoiled)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ptx.Commit(ctx); err != nil {
		return fmt.Errorf("customers pgstore: commit update: %w", err)
	}
	committed = true
	return nil
}

// EscapeLike escapes s for a LIKE pattern with ESCAPE '\': the wildcards
// % and _ and the escape character itself match only themselves.
func EscapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// orderBy is the ORDER BY of each sort: fixed text, never built from the
// query.
func orderBy(s customers.Sort) (string, error) {
	switch s {
	case customers.SortTitle:
		return `name_key COLLATE "C", media`, nil
	case customers.SortYear:
		return `year DESC, name_key COLLATE "C", media`, nil
	case customers.SortNewest:
		return `publish_at DESC, name_key COLLATE "C", media`, nil
	}
	return "", fmt.Errorf("%w: sort %q", customers.ErrInvalid, s)
}

// visibleWhere filters titles as customers.TitleQuery.Visible does. The
// parameters are visibleArgs: $1 catalogs, $2 now, $3 region. The index
// cust_titles_catalog serves the first two.
const visibleWhere = ` FROM cust_titles
	WHERE catalog = ANY($1::text[])
	AND publish_at <= $2
	AND regions && ARRAY[$3::text, '*']`

// searchWhere filters titles as customers.TitleQuery.Matches does. The
// parameters are visibleWhere's, $4 LIKE pattern, $5 folded genre.
const searchWhere = visibleWhere + `
	AND search_key LIKE $4 ESCAPE '\'
	AND ($5 = '' OR genre_key = $5)`

// visibleArgs are visibleWhere's parameters for q. The server refuses
// text with NUL or invalid UTF-8, which no stored catalog or region holds:
// such catalogs are left out, and such a region becomes "*", which
// allows exactly the titles allowed everywhere, as the region would.
func visibleArgs(q customers.TitleQuery) []any {
	catalogs := make([]string, 0, len(q.Catalogs))
	for _, c := range q.Catalogs {
		if customers.ValidText(string(c)) == nil {
			catalogs = append(catalogs, string(c))
		}
	}
	region := q.Region
	if customers.ValidText(region) != nil {
		region = customers.WildcardRegion
	}
	return []any{catalogs, q.Now, region}
}

// SearchTitles runs a search over one snapshot: the count and the page.
func (s *Store) SearchTitles(ctx context.Context, q customers.TitleQuery) (customers.Page, error) {
	q.Query = q.Query.Normalized()
	order, err := orderBy(q.Sort)
	if err != nil {
		return customers.Page{}, err
	}
	text, genre := customers.FoldText(q.Text), customers.FoldText(q.Genre)
	p := customers.Page{Offset: q.Offset, Limit: q.Limit}
	if customers.ValidText(text) != nil || customers.ValidText(genre) != nil {
		// Folded, invalid UTF-8 is U+FFFD, but a NUL stays, and no
		// stored text holds one: nothing matches, and the server would
		// refuse the query.
		return p, ctx.Err()
	}
	args := append(visibleArgs(q), "%"+EscapeLike(text)+"%", genre)
	err = s.View(ctx, func(rt customers.ReadTx) error {
		t := rt.(*tx)
		if err := t.tx.QueryRow(ctx, "SELECT count(*)"+searchWhere, args...).Scan(&p.Total); err != nil {
			return err
		}
		rows, err := t.tx.Query(ctx, "SELECT "+titleColumns+searchWhere+" ORDER BY "+order+" LIMIT $6 OFFSET $7",
			append(args, q.Limit, q.Offset)...)
		if err != nil {
			return err
		}
		p.Titles, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (customers.Title, error) { return scanTitle(r) })
		return err
	})
	if err != nil {
		return customers.Page{}, fmt.Errorf("customers pgstore: search: %w", err)
	}
	return p, nil
}

// Genres answers with one query: the distinct spellings of the visible
// titles' genres, which GenreSet folds into the menu. The spellings are
// few (a catalog has tens of genres, not thousands), so folding in Go
// costs nothing and folds exactly as the bbolt backend does.
func (s *Store) Genres(ctx context.Context, q customers.TitleQuery) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// One statement is a snapshot by itself: no transaction needed.
	rows, err := s.pool.Query(ctx, "SELECT DISTINCT genre"+visibleWhere+" AND genre_key <> ''", visibleArgs(q)...)
	if err != nil {
		return nil, fmt.Errorf("customers pgstore: genres: %w", err)
	}
	var g customers.GenreSet
	var genre string
	if _, err := pgx.ForEachRow(rows, []any{&genre}, func() error { g.Add(genre); return nil }); err != nil {
		return nil, fmt.Errorf("customers pgstore: genres: %w", err)
	}
	return g.List(), nil
}
