package pgschema

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// MaxAttempts bounds how often Retry runs a transaction the server could
// not serialize.
const MaxAttempts = 10

// Retry runs once, and again (up to MaxAttempts in all) while it fails
// with a serialization failure or a deadlock, waiting a random time
// between attempts so that the transactions that collided do not collide
// again. once must start a new transaction each time.
func Retry(ctx context.Context, log *slog.Logger, what string, once func() error) error {
	for attempt := 1; ; attempt++ {
		err := once()
		if err == nil || !Retryable(err) || attempt == MaxAttempts || ctx.Err() != nil {
			return err
		}
		wait := time.Duration(rand.Int64N(int64(min(2*time.Millisecond<<attempt, 500*time.Millisecond))))
		log.Debug(what+": retrying", "attempt", attempt, "wait", wait, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// Retryable reports whether err is a serialization failure or a deadlock,
// which running the transaction again may not meet.
func Retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}
