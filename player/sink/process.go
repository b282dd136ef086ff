package sink

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/boxswarm/boxswarm/media"
)

const (
	// waitDelay bounds how long Wait waits for the decoder's stdout and
	// stderr to close after it exited (a child it left behind may hold
	// them open).
	waitDelay = 5 * time.Second
	// exitGrace is how long a failed write waits for the decoder to be
	// reaped: a broken pipe usually means it is exiting, and its exit
	// status and stderr say why far better than EPIPE.
	exitGrace = 2 * time.Second
	// stderrTail is how much of the decoder's stderr an error carries.
	stderrTail = 2048
	// maxLogLine cuts the decoder's stderr lines before logging them.
	maxLogLine = 512
)

// FFmpegArgs returns the arguments that make ffmpeg read the stream a
// Process feeds it, followed by output, for instance
// FFmpegArgs("-f", "null", "-") or FFmpegArgs("-f", "framemd5", "pipe:1").
func FFmpegArgs(output ...string) []string {
	return append([]string{"-hide_banner", "-nostats", "-loglevel", "error", "-f", "mpegts", "-i", "pipe:0"}, output...)
}

// Process is a Sink that runs a decoder program and feeds it the frames
// as an MPEG-TS stream (see TS) on its standard input, through a pipe.
// Its stderr goes to the log, line by line at level Warn, and its tail
// into the errors; its stdout is discarded unless WithStdout says
// otherwise.
//
// A decoder that exits early makes the next WriteFrame (or Start or
// Discontinuity) fail at once with its exit status and stderr; one that
// stops reading makes WriteFrame block until the call's context ends.
// Close ends the stream and returns the decoder's verdict.
//
// A Process is not safe for concurrent use.
type Process struct {
	name   string
	log    *slog.Logger
	cmd    *exec.Cmd
	stdin  *os.File // our end of the pipe
	ts     *TS
	stderr *stderrLog

	exited  chan struct{} // closed once the decoder has been reaped
	waitErr error         // the decoder's verdict, set before exited closes

	err    error // sticky: the stream was cut
	closed bool
}

// ProcessOption configures a Process.
type ProcessOption func(*processConfig)

type processConfig struct {
	stdout io.Writer
}

// WithStdout sends the decoder's standard output to w, from another
// goroutine. Close returns only once all of it has been written.
func WithStdout(w io.Writer) ProcessOption {
	return func(c *processConfig) { c.stdout = w }
}

// NewProcess starts the decoder program name with args. The process
// lives until Close, or until ctx ends, which kills it.
func NewProcess(ctx context.Context, name string, args []string, log *slog.Logger, opts ...ProcessOption) (*Process, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var cfg processConfig
	for _, o := range opts {
		o(&cfg)
	}
	// Our own pipe rather than cmd.StdinPipe: the write end is an
	// *os.File in the runtime's poller, so a blocked Write can be
	// interrupted with a deadline.
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("decoder %s: stdin pipe: %w", name, err)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = pr
	cmd.Stdout = cfg.stdout
	stderr := &stderrLog{log: log.With("decoder", name)}
	cmd.Stderr = stderr
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("decoder %s: start: %w", name, err)
	}
	// The decoder has its copy; ours would keep the pipe open after it
	// dies, and writes would wait instead of failing.
	pr.Close()

	p := &Process{
		name:   name,
		log:    log,
		cmd:    cmd,
		stdin:  pw,
		ts:     NewTS(pw),
		stderr: stderr,
		exited: make(chan struct{}),
	}
	go p.wait()
	log.Debug("decoder started", "pid", cmd.Process.Pid, "args", args)
	return p, nil
}

func (p *Process) wait() {
	p.waitErr = p.cmd.Wait()
	p.stderr.flush()
	p.log.Debug("decoder exited", "decoder", p.name, "err", p.waitErr)
	close(p.exited)
	// A child the decoder left behind may still hold the pipe open
	// without reading it: make sure no write waits for it.
	_ = p.stdin.SetWriteDeadline(time.Now())
}

// Start sends the program's tables to the decoder.
func (p *Process) Start(ctx context.Context, tracks []media.Track) error {
	return p.do(ctx, func() error { return p.ts.Start(ctx, tracks) })
}

// WriteFrame sends one frame to the decoder. It blocks while the
// decoder is not reading, until ctx ends.
func (p *Process) WriteFrame(ctx context.Context, f media.Frame) error {
	return p.do(ctx, func() error { return p.ts.WriteFrame(ctx, f) })
}

// Discontinuity tells the muxer that the next frames start a new
// segment (see TS).
func (p *Process) Discontinuity(ctx context.Context) error {
	return p.do(ctx, func() error { return p.ts.Discontinuity(ctx) })
}

// do runs one TS call with the pipe's write deadline tied to ctx.
func (p *Process) do(ctx context.Context, op func() error) error {
	switch {
	case p.closed:
		return fmt.Errorf("decoder %s: closed", p.name)
	case p.err != nil:
		return p.err
	}
	select {
	case <-p.exited:
		p.err = p.exitError()
		return p.err
	default:
	}

	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = p.stdin.SetWriteDeadline(time.Unix(1, 0))
		close(interrupted)
	})
	err := op()
	if !stop() {
		// The deadline is set, or about to be: undo it for the next call.
		<-interrupted
		_ = p.stdin.SetWriteDeadline(time.Time{})
		select {
		case <-p.exited:
			_ = p.stdin.SetWriteDeadline(time.Now())
		default:
		}
	}
	if err == nil || p.ts.err == nil {
		// Success, or a frame refused before anything was written.
		return err
	}

	// The pipe broke, or the write was cut short: the stream is torn.
	if ctx.Err() != nil {
		p.err = fmt.Errorf("decoder %s: write interrupted, stream cut: %w", p.name, context.Cause(ctx))
		return p.err
	}
	select {
	case <-p.exited:
		p.err = p.exitError()
	case <-time.After(exitGrace):
		p.err = fmt.Errorf("decoder %s: %w", p.name, err)
	}
	return p.err
}

// exitError describes a decoder that exited before the end of the
// stream. Call it only once exited is closed.
func (p *Process) exitError() error {
	if p.waitErr != nil {
		return fmt.Errorf("decoder %s exited before the end of the stream: %w%s", p.name, p.waitErr, p.stderr.tail())
	}
	return fmt.Errorf("decoder %s exited with status 0 before the end of the stream%s", p.name, p.stderr.tail())
}

// Close ends the stream (the decoder reads end of file), waits for the
// decoder to exit and returns its verdict: an error if it exited with a
// status other than 0, carrying the tail of its stderr, or if the
// stream was cut short before. It waits as long as the decoder takes to
// finish; ending the context given to NewProcess kills it.
func (p *Process) Close() error {
	if p.closed {
		return fmt.Errorf("decoder %s: closed twice", p.name)
	}
	p.closed = true
	_ = p.ts.Close() // its only error is a broken stream, which p.err has
	if err := p.stdin.Close(); err != nil && p.err == nil {
		p.err = fmt.Errorf("decoder %s: close stdin: %w", p.name, err)
	}
	<-p.exited
	if p.waitErr != nil {
		return fmt.Errorf("decoder %s: %w%s", p.name, p.waitErr, p.stderr.tail())
	}
	return p.err
}

// stderrLog logs the decoder's stderr line by line and keeps its tail.
type stderrLog struct {
	log *slog.Logger

	mu   sync.Mutex
	last []byte // the last stderrTail bytes
	cut  bool   // ... of more
	line []byte // the line being read, at most maxLogLine bytes
}

func (s *stderrLog) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = append(s.last, b...)
	if over := len(s.last) - stderrTail; over > 0 {
		s.last = append(s.last[:0], s.last[over:]...)
		s.cut = true
	}
	for _, c := range b {
		switch {
		case c == '\n' || c == '\r': // ffmpeg ends progress lines with \r
			s.emit()
		case len(s.line) < maxLogLine:
			s.line = append(s.line, c)
		}
	}
	return len(b), nil
}

func (s *stderrLog) emit() {
	if line := strings.TrimSpace(string(s.line)); line != "" {
		s.log.Warn("decoder stderr", "line", line)
	}
	s.line = s.line[:0]
}

func (s *stderrLog) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.emit()
}

// tail returns the stderr tail to append to an error, or "".
func (s *stderrLog) tail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := string(s.last)
	if s.cut {
		// Start at a line.
		if _, rest, ok := strings.Cut(t, "\n"); ok {
			t = rest
		}
	}
	t = strings.TrimSpace(t)
	if t == "" {
		return ""
	}
	return "; stderr: " + t
}
