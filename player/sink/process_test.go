package sink_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/player/sink"
)

// bigFrames returns an endless supply of 32 KiB video frames, a
// keyframe every 30, that fill a pipe quickly.
func bigFrames() func() media.Frame {
	i := int64(0)
	return func() media.Frame {
		f := media.Frame{PTS: i * 512, DTS: i * 512, Duration: 512, Keyframe: i%30 == 0}
		nal := h264NonIDR
		if f.Keyframe {
			nal = h264IDR
		}
		f.Data = au(append(slices.Clone(nal), make([]byte, 32<<10)...))
		i++
		return f
	}
}

// TestProcessDeadDecoder checks that a decoder that dies, at once or
// after reading a while, turns the next write into an error that says
// why, without waiting, and that Close says it too.
func TestProcessDeadDecoder(t *testing.T) {
	ffmpeg := func(t *testing.T) {
		if _, err := exec.LookPath("ffmpeg"); err != nil {
			t.Skip("no ffmpeg")
		}
	}
	cases := []struct {
		name     string
		needs    func(*testing.T)
		program  string
		args     []string
		want     string // in the errors
		inStderr string // in the log
	}{
		{"false", nil, "false", nil, "exit status 1", ""},
		{"exit status 0", nil, "true", nil, "status 0 before the end of the stream", ""},
		{"ffmpeg with a bad option", ffmpeg, "ffmpeg", sink.FFmpegArgs("-nosuchoption"), "nosuchoption", "nosuchoption"},
		// ffmpeg reads the stream before it opens the output.
		{"ffmpeg with a bad output", ffmpeg, "ffmpeg", sink.FFmpegArgs("-f", "nosuchformat", "-"), "nosuchformat", "nosuchformat"},
		{"killed", nil, "sh", []string{"-c", "head -c 100000 >/dev/null; echo dying >&2; kill -9 $$"}, "signal: killed", "dying"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.needs != nil {
				c.needs(t)
			}
			var log syncBuffer
			p, err := sink.NewProcess(t.Context(), c.program, c.args, slog.New(slog.NewTextHandler(&log, nil)))
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			start := time.Now()
			err = p.Start(ctx, testTracks(t))
			next := bigFrames()
			for i := 0; err == nil && time.Since(start) < 20*time.Second; i++ {
				err = p.WriteFrame(ctx, next())
			}
			if err == nil {
				t.Fatal("still writing after 20 s")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it to say %q", err, c.want)
			}
			t.Logf("after %v: %v", time.Since(start).Round(time.Millisecond), err)
			if err := p.WriteFrame(ctx, next()); err == nil {
				t.Error("WriteFrame worked after the decoder died")
			}
			if err := p.Close(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Close: %v, want it to say %q", err, c.want)
			}
			if !strings.Contains(log.String(), c.inStderr) {
				t.Errorf("the log lacks %q:\n%s", c.inStderr, log.String())
			}
		})
	}
}

// TestProcessVerdict checks that Close returns the decoder's verdict
// once it has read everything: its exit status and the end of its
// stderr.
func TestProcessVerdict(t *testing.T) {
	cases := []struct {
		name   string
		script string
		want   []string // what the error says; none for no error
	}{
		{"success", "cat >/dev/null", nil},
		{"failure", "cat >/dev/null; echo 'picture 3 is broken' >&2; exit 3", []string{"exit status 3; stderr: picture 3 is broken"}},
		// The tail only, from the start of a line.
		{"long stderr", "cat >/dev/null; i=0; while [ $i -lt 500 ]; do echo line $i >&2; i=$((i+1)); done; exit 2",
			[]string{"exit status 2; stderr: line ", "line 499"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := sink.NewProcess(t.Context(), "sh", []string{"-c", c.script}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			if err := p.Start(ctx, testTracks(t)); err != nil {
				t.Fatal(err)
			}
			next := bigFrames()
			for range 50 {
				if err := p.WriteFrame(ctx, next()); err != nil {
					t.Fatal(err)
				}
			}
			err = p.Close()
			if c.want == nil {
				if err != nil {
					t.Fatalf("Close: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Close returned no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Close: %v; want it to say %q", err, w)
				}
			}
			if len(err.Error()) > 2200 {
				t.Errorf("Close: the error carries %d bytes, want only the tail of stderr", len(err.Error()))
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Errorf("Close: %v does not wrap the *exec.ExitError", err)
			}
		})
	}
}

// TestProcessStuckDecoder checks that a decoder that stops reading
// blocks WriteFrame only until its context ends, and that ending the
// context given to NewProcess kills it.
func TestProcessStuckDecoder(t *testing.T) {
	procCtx, kill := context.WithCancel(t.Context())
	defer kill()
	p, err := sink.NewProcess(procCtx, "sleep", []string{"60"}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context(), testTracks(t)); err != nil {
		t.Fatal(err)
	}
	next := bigFrames()
	const patience = 300 * time.Millisecond
	var start time.Time
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(t.Context(), patience)
		start = time.Now()
		err = p.WriteFrame(ctx, next())
		cancel()
		if err != nil {
			break
		}
		if i > 1000 {
			t.Fatal("a decoder that does not read took 32 MiB")
		}
	}
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > patience+time.Second {
		t.Fatalf("WriteFrame returned %v after %v; want the deadline, after %v", err, took, patience)
	}
	if err := p.WriteFrame(t.Context(), next()); err == nil {
		t.Fatal("WriteFrame worked on a cut stream")
	}
	kill()
	start = time.Now()
	if err := p.Close(); err == nil {
		t.Fatal("Close of a killed decoder returned no error")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Close took %v", took)
	}
}

func TestProcessMissingProgram(t *testing.T) {
	_, err := sink.NewProcess(t.Context(), "/nonexistent/decoder", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/decoder") {
		t.Fatalf("error %v, want one naming the program", err)
	}
}

func TestFFmpegArgs(t *testing.T) {
	got := sink.FFmpegArgs("-f", "null", "-")
	want := []string{"-hide_banner", "-nostats", "-loglevel", "error", "-f", "mpegts", "-i", "pipe:0", "-f", "null", "-"}
	if !slices.Equal(got, want) {
		t.Fatalf("FFmpegArgs = %q, want %q", got, want)
	}
}

// syncBuffer is a bytes.Buffer for a log written from another goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
