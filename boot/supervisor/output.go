package supervisor

import (
	"bufio"
	"io"
	"os"
	"sync"
)

// lineWriter copies a child's output to a shared writer one whole line at a
// time, each prefixed with the daemon's name, so lines from different
// daemons never interleave mid-line on the console.
type lineWriter struct {
	pipeW *os.File // the child's stdout and stderr
	done  chan struct{}
}

func newLineWriter(out io.Writer, mu *sync.Mutex, prefix string) (*lineWriter, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	lw := &lineWriter{pipeW: w, done: make(chan struct{})}
	go func() {
		defer close(lw.done)
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 4096), 64<<10)
		for sc.Scan() {
			mu.Lock()
			io.WriteString(out, prefix+sc.Text()+"\n")
			mu.Unlock()
		}
	}()
	return lw, nil
}

// Close waits until the child's output has been copied.
func (l *lineWriter) Close() { <-l.done }
