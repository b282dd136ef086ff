// Package console formats the boot stages' logs for a serial console: one
// slog text line per record, prefixed with the stage's name so that lines
// from the two stages, the daemons and the kernel can be told apart, and
// without timestamps, because a box has no trustworthy clock this early.
package console

import (
	"io"
	"log/slog"
	"sync"
)

// Logger returns a logger writing to w with every line prefixed.
func Logger(w io.Writer, prefix string) *slog.Logger {
	return slog.New(slog.NewTextHandler(&prefixWriter{prefix: prefix, w: w}, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}))
}

// prefixWriter relies on slog writing each record with one Write call.
type prefixWriter struct {
	mu     sync.Mutex
	prefix string
	w      io.Writer
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := io.WriteString(p.w, p.prefix+string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}
