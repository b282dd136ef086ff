package turnserver

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/pion/logging"
)

// levelTrace is where pion's Trace lines go: below slog's Debug.
const levelTrace = slog.LevelDebug - 4

// pionLogs adapts pion's logging to slog.
//
// Levels follow pion's except where pion/turn v2.1.6 logs things any
// stranger on the internet can cause, once per datagram: those go to
// Debug so that nobody can flood the head-end's logs at Info or Error.
//   - Info: pion/turn's only server-side Info lines are "No Permission or
//     Channel exists" (a datagram to a relay from an unpermitted peer) and
//     "permission denied" (which this package logs itself).
//   - Error "Failed to handle datagram": every malformed or refused request.
//     This package logs the refusals that matter (credentials, quota,
//     peers) itself, at Info.
type pionLogs struct{ log *slog.Logger }

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) emit(level slog.Level, msg string) {
	ctx := context.Background()
	if l.log.Enabled(ctx, level) {
		l.log.Log(ctx, level, msg)
	}
}

func (l pionLogger) emitf(level slog.Level, format string, args ...any) {
	ctx := context.Background()
	if l.log.Enabled(ctx, level) {
		l.log.Log(ctx, level, fmt.Sprintf(format, args...))
	}
}

func (l pionLogger) Trace(msg string)                  { l.emit(levelTrace, msg) }
func (l pionLogger) Tracef(format string, args ...any) { l.emitf(levelTrace, format, args...) }
func (l pionLogger) Debug(msg string)                  { l.emit(slog.LevelDebug, msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.emitf(slog.LevelDebug, format, args...) }
func (l pionLogger) Info(msg string)                   { l.emit(slog.LevelDebug, msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.emitf(slog.LevelDebug, format, args...) }
func (l pionLogger) Warn(msg string)                   { l.emit(slog.LevelWarn, msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.emitf(slog.LevelWarn, format, args...) }
func (l pionLogger) Error(msg string)                  { l.emit(slog.LevelError, msg) }

func (l pionLogger) Errorf(format string, args ...any) {
	level := slog.LevelError
	if strings.HasPrefix(format, "Failed to handle datagram") {
		level = slog.LevelDebug
	}
	l.emitf(level, format, args...)
}
