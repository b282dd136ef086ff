package main

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// progress shows the compile step on stderr: a line redrawn every second on
// a terminal, a plain line every 30 s otherwise (CI logs).
type progress struct {
	w        io.Writer
	tty      bool
	expected int
	guessed  bool
	done     *atomic.Int64
	begin    time.Time
	quit     chan struct{}
	finished chan struct{}
}

func newProgress(f *os.File, expected int, guessed bool, done *atomic.Int64) *progress {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return &progress{w: f, tty: err == nil, expected: expected, guessed: guessed, done: done}
}

func (p *progress) start() {
	p.begin = time.Now()
	p.quit = make(chan struct{})
	p.finished = make(chan struct{})
	every := 30 * time.Second
	if p.tty {
		every = time.Second
	}
	go func() {
		defer close(p.finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				return
			case <-t.C:
				p.draw(false)
			}
		}
	}()
}

func (p *progress) draw(final bool) {
	line := progressLine(time.Since(p.begin), int(p.done.Load()), p.expected, p.guessed)
	if final {
		line = fmt.Sprintf("kernel: compiled %d objects in %s", p.done.Load(), time.Since(p.begin).Round(time.Second))
	}
	switch {
	case p.tty && final:
		fmt.Fprintf(p.w, "\r\033[K%s\n", line)
	case p.tty:
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	default:
		fmt.Fprintln(p.w, line)
	}
}

func (p *progress) stop() {
	close(p.quit)
	<-p.finished
	p.draw(true)
}
