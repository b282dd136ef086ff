// Package pgstore is the PostgreSQL schedstore backend, for operators
// whose head-end outgrows one machine's bbolt file. It needs PostgreSQL 15
// or later and a UTF-8 database, and creates its tables on first use
// (schema.go); a database whose schema is newer than the build is refused.
//
// It guarantees what storetest checks, with these means:
//   - An Update is one SERIALIZABLE transaction, so concurrent Updates, from
//     this process or others, behave as if run one after another. A
//     serialization failure or deadlock runs fn again in a new transaction,
//     up to maxAttempts times in all: fn must be safe to run again.
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
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/boxswarm/boxswarm/headend/schedstore"
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
	cfg, err := pgxpool.ParseConfig(dsn) // its errors hide the password
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	cc := cfg.ConnConfig
	where := fmt.Sprintf("%s:%d/%s", cc.Host, cc.Port, cc.Database)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: connect to %s: %w", where, err)
	}
	s := &Store{pool: pool, log: o.log, where: where}
	s.close = sync.OnceFunc(pool.Close)
	created, err := s.prepare(ctx)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: open %s: %w", where, err)
	}
	o.log.Info("schedule store open", "database", where, "created", created)
	return s, nil
}

// prepare checks the server and creates the schema if the database has
// none.
func (s *Store) prepare(ctx context.Context) (created bool, err error) {
	var encoding string
	var version int
	if err := s.pool.QueryRow(ctx, "SELECT current_setting('server_encoding'), current_setting('server_version_num')::int").
		Scan(&encoding, &version); err != nil {
		return false, err
	}
	if encoding != "UTF8" {
		return false, fmt.Errorf("database encoding is %s; the store needs UTF8", encoding)
	}
	if version < 150000 {
		return false, fmt.Errorf("server version %d; the store needs PostgreSQL 15 or later", version)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Openers of an empty database wait here for the first to
		// create the schema.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLock)); err != nil {
			return err
		}
		// Only a new database needs the right to create tables.
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass('schema_version') IS NOT NULL").Scan(&exists); err != nil {
			return err
		}
		if !exists {
			if _, err := tx.Exec(ctx, "CREATE TABLE schema_version (version integer NOT NULL)"); err != nil {
				return fmt.Errorf("create schema: %w", err)
			}
			if _, err := tx.Exec(ctx, schemaV1); err != nil {
				return fmt.Errorf("create schema: %w", err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_version (version) VALUES ($1)", schemaVersion); err != nil {
				return err
			}
			created = true
			return nil
		}
		var have int
		err := tx.QueryRow(ctx, "SELECT version FROM schema_version").Scan(&have)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return errors.New("table schema_version is empty")
		case err != nil:
			return fmt.Errorf("read schema version: %w", err)
		case have > schemaVersion:
			return fmt.Errorf("schema version %d is newer than this build's %d", have, schemaVersion)
		case have < schemaVersion:
			return fmt.Errorf("schema version %d is older than this build's %d, and there is no migration", have, schemaVersion)
		}
		return nil
	})
	return created, err
}

// Close closes the store's connections. Calling it again does nothing.
func (s *Store) Close() error {
	s.close()
	return nil
}
