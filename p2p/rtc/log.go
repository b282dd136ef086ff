package rtc

import (
	"log/slog"

	"github.com/pion/logging"

	"github.com/boxswarm/boxswarm/internal/pionlog"
)

// levelTrace is where pion's Trace and Debug lines go: below slog's Debug,
// since pion logs per packet at those levels.
const levelTrace = pionlog.LevelTrace

// pionLevel puts pion's lines one level down from pion's: pion logs at
// Warn and Error what a remote party causes (a stray STUN packet, a peer
// that went away, a DTLS alert), while this package logs the outcomes that
// matter (a connection refused, failed or closed) itself.
func pionLevel(l logging.LogLevel, _ string) slog.Level {
	switch l {
	case logging.LogLevelError:
		return slog.LevelInfo
	case logging.LogLevelWarn, logging.LogLevelInfo:
		return slog.LevelDebug
	}
	return levelTrace
}

// pionLogs is the logger factory this package hands pion.
func pionLogs(log *slog.Logger) logging.LoggerFactory { return pionlog.Factory(log, pionLevel) }
