package turnserver

import (
	"log/slog"
	"strings"

	"github.com/pion/logging"

	"github.com/boxswarm/boxswarm/internal/pionlog"
)

// pionLevel keeps pion's levels (Trace below slog's Debug) except where
// pion/turn v2.1.6 logs things any stranger on the internet can cause,
// once per datagram: those go to Debug so that nobody can flood the
// head-end's logs at Info or Error.
//   - Info: pion/turn's only server-side Info lines are "No Permission or
//     Channel exists" (a datagram to a relay from an unpermitted peer) and
//     "permission denied" (which this package logs itself).
//   - Error "Failed to handle datagram": every malformed or refused request.
//     This package logs the refusals that matter (credentials, quota,
//     peers) itself, at Info.
func pionLevel(l logging.LogLevel, format string) slog.Level {
	switch l {
	case logging.LogLevelTrace:
		return pionlog.LevelTrace
	case logging.LogLevelDebug, logging.LogLevelInfo:
		return slog.LevelDebug
	case logging.LogLevelWarn:
		return slog.LevelWarn
	}
	if strings.HasPrefix(format, "Failed to handle datagram") {
		return slog.LevelDebug
	}
	return slog.LevelError
}

// pionLogs is the logger factory this package hands pion.
func pionLogs(log *slog.Logger) logging.LoggerFactory { return pionlog.Factory(log, pionLevel) }
