// Package pgschema opens a PostgreSQL pool for a store and creates the
// store's schema in an empty database, or checks the version of the one it
// finds. Several stores can share one database: each keeps its version in
// its own table and takes its own advisory lock. Retry runs a store's
// serializable transactions again when the server could not serialize
// them.
package pgschema

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Connect opens a pool to the database at dsn (a URL or key=value string,
// as libpq takes). where is its host, port and database, for messages:
// never the password, which pgx's parse errors hide too.
func Connect(ctx context.Context, dsn string) (pool *pgxpool.Pool, where string, err error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, "", err
	}
	cc := cfg.ConnConfig
	where = fmt.Sprintf("%s:%d/%s", cc.Host, cc.Port, cc.Database)
	pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, where, fmt.Errorf("connect to %s: %w", where, err)
	}
	return pool, where, nil
}

// Schema is one store's layout.
type Schema struct {
	// VersionTable is the table holding the version, one row, one
	// integer column named version. It is SQL text, so a constant.
	VersionTable string
	// Lock is the advisory lock key that makes processes opening one
	// empty database at once create the schema once.
	Lock int64
	// Version is the layout this build creates and reads; any other is
	// refused, since there are no migrations yet.
	Version int
	// DDL creates the whole layout, in the same transaction as the
	// version table.
	DDL string
}

// Prepare checks that the server runs PostgreSQL 15 or later with a UTF-8
// database, then creates s in the database if its version table is
// missing (created is true), or checks the version it holds.
func Prepare(ctx context.Context, pool *pgxpool.Pool, s Schema) (created bool, err error) {
	var encoding string
	var version int
	if err := pool.QueryRow(ctx, "SELECT current_setting('server_encoding'), current_setting('server_version_num')::int").
		Scan(&encoding, &version); err != nil {
		return false, err
	}
	if encoding != "UTF8" {
		return false, fmt.Errorf("database encoding is %s; the store needs UTF8", encoding)
	}
	if version < 150000 {
		return false, fmt.Errorf("server version %d; the store needs PostgreSQL 15 or later", version)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// Openers of an empty database wait here for the first to
		// create the schema.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", s.Lock); err != nil {
			return err
		}
		// Only a new database needs the right to create tables.
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", s.VersionTable).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			if _, err := tx.Exec(ctx, "CREATE TABLE "+s.VersionTable+" (version integer NOT NULL)"); err != nil {
				return fmt.Errorf("create schema: %w", err)
			}
			if _, err := tx.Exec(ctx, s.DDL); err != nil {
				return fmt.Errorf("create schema: %w", err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO "+s.VersionTable+" (version) VALUES ($1)", s.Version); err != nil {
				return err
			}
			created = true
			return nil
		}
		var have int
		err := tx.QueryRow(ctx, "SELECT version FROM "+s.VersionTable).Scan(&have)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("table %s is empty", s.VersionTable)
		case err != nil:
			return fmt.Errorf("read schema version: %w", err)
		case have > s.Version:
			return fmt.Errorf("schema version %d is newer than this build's %d", have, s.Version)
		case have < s.Version:
			return fmt.Errorf("schema version %d is older than this build's %d, and there is no migration", have, s.Version)
		}
		return nil
	})
	return created, err
}
