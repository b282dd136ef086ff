// Package pionlog passes pion's logging (github.com/pion/logging) on to
// log/slog. Each user chooses the slog level of pion's lines, since pion's
// own levels say little about what matters to the user: pion logs per
// packet at Trace and Debug, and at Warn or Error what any remote party can
// cause.
package pionlog

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// LevelTrace is below slog's Debug, for pion's per-packet lines.
const LevelTrace = slog.LevelDebug - 4

// LevelFunc picks the slog level of one pion line, from pion's level and
// the line's format string (the message itself for the methods without f).
// It runs before the line is formatted.
type LevelFunc func(pionLevel logging.LogLevel, format string) slog.Level

// Factory returns a pion logger factory that logs to log, with a "pion"
// attribute naming pion's scope, at the levels that level picks.
func Factory(log *slog.Logger, level LevelFunc) logging.LoggerFactory {
	return factory{log, level}
}

type factory struct {
	log   *slog.Logger
	level LevelFunc
}

func (f factory) NewLogger(scope string) logging.LeveledLogger {
	return logger{f.log.With("pion", scope), f.level}
}

type logger struct {
	log   *slog.Logger
	level LevelFunc
}

func (l logger) emit(pl logging.LogLevel, msg string) {
	ctx := context.Background()
	if level := l.level(pl, msg); l.log.Enabled(ctx, level) {
		l.log.Log(ctx, level, msg)
	}
}

// emitf formats only when the level is enabled: pion calls Tracef on every
// SCTP chunk.
func (l logger) emitf(pl logging.LogLevel, format string, args ...any) {
	ctx := context.Background()
	if level := l.level(pl, format); l.log.Enabled(ctx, level) {
		l.log.Log(ctx, level, fmt.Sprintf(format, args...))
	}
}

func (l logger) Trace(msg string)                  { l.emit(logging.LogLevelTrace, msg) }
func (l logger) Tracef(format string, args ...any) { l.emitf(logging.LogLevelTrace, format, args...) }
func (l logger) Debug(msg string)                  { l.emit(logging.LogLevelDebug, msg) }
func (l logger) Debugf(format string, args ...any) { l.emitf(logging.LogLevelDebug, format, args...) }
func (l logger) Info(msg string)                   { l.emit(logging.LogLevelInfo, msg) }
func (l logger) Infof(format string, args ...any)  { l.emitf(logging.LogLevelInfo, format, args...) }
func (l logger) Warn(msg string)                   { l.emit(logging.LogLevelWarn, msg) }
func (l logger) Warnf(format string, args ...any)  { l.emitf(logging.LogLevelWarn, format, args...) }
func (l logger) Error(msg string)                  { l.emit(logging.LogLevelError, msg) }
func (l logger) Errorf(format string, args ...any) { l.emitf(logging.LogLevelError, format, args...) }
