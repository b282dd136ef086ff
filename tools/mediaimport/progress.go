package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress draws a bar on a terminal, redrawn at most ten times a second,
// or prints a line at every tenth of the input otherwise.
type progress struct {
	mu        sync.Mutex
	w         io.Writer
	total     int64
	tty       bool
	off       bool
	start     time.Time
	last      time.Time
	lastTenth int64
	max       int64
}

func newProgress(w io.Writer, total int64, quiet bool) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, total: max(total, 1), tty: tty, off: quiet, start: time.Now()}
}

func (p *progress) update(pos int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.off || pos <= p.max {
		return
	}
	p.max = pos
	if p.tty {
		if time.Since(p.last) >= 100*time.Millisecond {
			p.last = time.Now()
			p.draw(false)
		}
		return
	}
	if tenth := 10 * pos / p.total; tenth > p.lastTenth {
		p.lastTenth = tenth
		fmt.Fprintf(p.w, "import: %d%% (%s)\n", 10*tenth, p.rate())
	}
}

func (p *progress) rate() string {
	secs := time.Since(p.start).Seconds()
	if secs <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MB/s", float64(p.max)/secs/1e6)
}

func (p *progress) draw(final bool) {
	const width = 40
	frac := float64(p.max) / float64(p.total)
	if final {
		frac = 1
	}
	filled := int(frac * width)
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", width-filled)
	fmt.Fprintf(p.w, "\r[%s] %3.0f%% %s", bar, 100*frac, p.rate())
	if final {
		fmt.Fprintln(p.w)
	}
}

func (p *progress) done(ok bool) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.off {
		return
	}
	if p.tty {
		if ok {
			p.draw(true)
		} else {
			fmt.Fprintln(p.w)
		}
	}
}
