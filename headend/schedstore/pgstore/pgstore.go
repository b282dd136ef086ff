// Package pgstore is the PostgreSQL schedstore backend, for operators
// whose head-end outgrows one machine's bbolt file. It needs PostgreSQL 15
// or later and a UTF-8 database, and creates its tables on first use
// (schema.go); a database whose schema is newer than the build is refused.
//
// It guarantees what storetest checks, with these means:
//   - An Update is one SERIALIZABLE transaction, so concurrent Updates, from
//     this process or others, behave as if run one after another. A
//     serialization failure or deadlock runs fn again in a new transaction,
//     up to pgschema.MaxAttempts times in all: fn must be safe to run again.
//   - Writes are held in the Tx and sent in batches, one statement per
//     table and chunk of rows (unnest of array parameters), when the Update
//     commits or a call needs the database's answer; the order of writes is
//     kept where it matters (DeleteBox before and after puts of its box).
//     So a failed put may surface at a later call or at commit; either way
//     the Update fails whole.
//   - Each Load* streams its rows from one REPEATABLE READ, read-only
//     transaction: a snapshot, held no more in memory than fn keeps.
//   - Every value reaches the server as a query parameter; no SQL is built
//     from values.
//   - Transfer IDs come from a sequence, taken in blocks: they never
//     repeat, and a block left unused at Close leaves a gap.
package pgstore

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/internal/pgschema"
)

// Option adjusts Open.
type Option func(*options)

type options struct {
	log *slog.Logger
}

// WithLogger sets where the store logs.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// Store is a schedstore.Store in a PostgreSQL database.
type Store struct {
	pool  *pgxpool.Pool
	log   *slog.Logger
	where string // host, port and database, for messages (never the password)
	close func()

	idMu sync.Mutex
	ids  []int64 // transfer IDs taken from the sequence, not yet given out
}

var _ schedstore.Store = (*Store)(nil)

// Open connects to the database at dsn (a URL or key=value string, as
// libpq takes), checks its schema or creates it, and returns the store.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	o := options{log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	pool, where, err := pgschema.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	s := &Store{pool: pool, log: o.log, where: where}
	s.close = sync.OnceFunc(pool.Close)
	created, err := pgschema.Prepare(ctx, pool, pgschema.Schema{
		VersionTable: "schema_version", Lock: migrationLock, Version: schemaVersion, DDL: schemaV1,
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: open %s: %w", where, err)
	}
	o.log.Info("schedule store open", "database", where, "created", created)
	return s, nil
}

// Close closes the store's connections. Calling it again does nothing.
func (s *Store) Close() error {
	s.close()
	return nil
}
