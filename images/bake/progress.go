package bake

import (
	"fmt"
	"io"
	"os"
	"time"
)

// Progress reports the bake's steps: a numbered line when a step starts,
// its duration when it ends, and a reminder every 15 seconds while a slow
// step runs, so a build on a two-core machine never looks stuck.
type Progress struct {
	w     io.Writer
	n     int
	total int
}

// NewProgress writes to w (standard error if nil).
func NewProgress(w io.Writer) *Progress {
	if w == nil {
		w = os.Stderr
	}
	return &Progress{w: w}
}

// Total sets the number of steps.
func (p *Progress) Total(n int) { p.total = n }

// Step runs fn as the next step.
func (p *Progress) Step(name string, fn func() error) error {
	p.n++
	fmt.Fprintf(p.w, "==> [%d/%d] %s\n", p.n, p.total, name)
	start := time.Now()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(15 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(p.w, "    ... %s, %s so far\n", name, time.Since(start).Round(time.Second))
			}
		}
	}()
	err := fn()
	close(done)
	if err != nil {
		fmt.Fprintf(p.w, "    FAILED after %s: %v\n", time.Since(start).Round(100*time.Millisecond), err)
		return fmt.Errorf("%s: %w", name, err)
	}
	fmt.Fprintf(p.w, "    done in %s\n", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// Note prints a detail of the current step.
func (p *Progress) Note(format string, args ...any) {
	fmt.Fprintf(p.w, "    "+format+"\n", args...)
}
