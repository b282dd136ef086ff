package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/boxswarm/boxswarm/board"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/player/sink"
)

// FFmpeg is the software decoder: ffmpeg reading the player's MPEG-TS
// stream on a pipe (sink.Process) and writing the pictures to the screen
// itself. Decrypted media reaches only the pipe; nothing here names a
// file for it.
type FFmpeg struct {
	// Path is the program; "ffmpeg" (looked up in PATH) if empty.
	Path string
	// Video is the output for the first video stream, as ffmpeg
	// arguments after "-map 0:v:0 -an"; DefaultVideoOut if nil. An empty,
	// non-nil slice means no picture output (with Report, tests).
	Video []string
	// Audio is the output for the first audio stream, as ffmpeg arguments
	// after "-map 0:a:0 -vn"; nil leaves audio out (the box has no audio
	// sink yet).
	Audio []string
	// Report, if set, makes ffmpeg also write the framemd5 of the decoded
	// video stream there (a file in a tmpfs, or a serial port device), so
	// that a test outside the box can compare the in-box decode with the
	// source frame by frame. The file is written over at each playback.
	// It holds hashes only. "virtio:NAME" is the virtio serial port of
	// that name (a test harness's "report" port).
	Report string
	// Input is ffmpeg's options for its input, the pipe; DefaultInput if
	// nil, none if empty and non-nil.
	Input []string
}

// DefaultInput bounds how much of the stream ffmpeg reads to learn its
// streams before it decodes anything: 0.5 s instead of its 5 s default.
// The player paces the stream in real time, so that default kept the
// screen black for the first 5 s of every playback (all of a short
// clip) while ffmpeg waited, then raced through the backlog. The tracks'
// codecs are in the stream's PMT and their parameters in the first
// keyframe and audio frame, so half a second finds them; the decoded
// frames are the same.
var DefaultInput = []string{"-analyzeduration", "500000"}

// DefaultVideoOut writes the pictures to the Linux frame buffer, in the
// 32-bit format of virtio-gpu's (and most boards') fbdev emulation:
// ffmpeg's fbdev output converts nothing and refuses a stream whose pixel
// format is not the frame buffer's.
var DefaultVideoOut = []string{"-pix_fmt", "bgra", "-f", "fbdev", "/dev/fb0"}

// Args returns ffmpeg's arguments for a title with video and audio
// tracks as told: one input (the pipe) and an output per configured
// sink that has a stream to take. Every output maps its stream
// explicitly, so none picks up a stream it was not meant to get.
func (f FFmpeg) Args(video, audio bool) []string {
	vout := f.Video
	if vout == nil {
		vout = DefaultVideoOut
	}
	var out []string
	if video && len(vout) > 0 {
		out = append(out, "-map", "0:v:0", "-an")
		out = append(out, vout...)
	}
	if audio && len(f.Audio) > 0 {
		out = append(out, "-map", "0:a:0", "-vn")
		out = append(out, f.Audio...)
	}
	if video && f.Report != "" {
		out = append(out, "-map", "0:v:0", "-an", "-f", "framemd5", f.Report)
	}
	if len(out) == 0 {
		return nil
	}
	// -y: the report (a file from an earlier playback, or a device node)
	// is written over without ffmpeg asking on a terminal nobody reads.
	in := f.Input
	if in == nil {
		in = DefaultInput
	}
	return append(append([]string{"-y"}, in...), sink.FFmpegArgs(out...)...)
}

// Decoder returns a function that makes the decoder for one playback.
// ffmpeg starts at the sink's Start, when the title's tracks are known
// (an output for a stream the title lacks would make it fail), and lives
// until the sink's Close, or until ctx ends, which kills it.
func (f FFmpeg) Decoder(log *slog.Logger) func(ctx context.Context) (sink.Sink, error) {
	return func(ctx context.Context) (sink.Sink, error) {
		return &lazyProcess{f: f, ctx: ctx, log: log}, nil
	}
}

// lazyProcess is a sink.Process started at Start.
type lazyProcess struct {
	f   FFmpeg
	ctx context.Context
	log *slog.Logger
	p   *sink.Process
}

func (l *lazyProcess) Start(ctx context.Context, tracks []media.Track) error {
	if l.p != nil {
		return errors.New("decoder: started twice")
	}
	var video, audio bool
	for _, t := range tracks {
		video = video || t.Codec.IsVideo()
		audio = audio || !t.Codec.IsVideo()
	}
	f := l.f
	if name, ok := strings.CutPrefix(f.Report, "virtio:"); ok {
		wait, cancel := context.WithTimeout(ctx, 5*time.Second)
		dev, err := board.FindVirtioPort(wait, name)
		cancel()
		if err != nil {
			return fmt.Errorf("decoder: report port: %w", err)
		}
		f.Report = dev
	}
	args := f.Args(video, audio)
	if args == nil {
		return fmt.Errorf("decoder: no output configured for a title with video %v and audio %v", video, audio)
	}
	path := l.f.Path
	if path == "" {
		path = "ffmpeg"
	}
	p, err := sink.NewProcess(l.ctx, path, args, l.log)
	if err != nil {
		return err
	}
	l.p = p
	return p.Start(ctx, tracks)
}

func (l *lazyProcess) WriteFrame(ctx context.Context, f media.Frame) error {
	if l.p == nil {
		return errors.New("decoder: frame before Start")
	}
	return l.p.WriteFrame(ctx, f)
}

func (l *lazyProcess) Discontinuity(ctx context.Context) error {
	if l.p == nil {
		return errors.New("decoder: discontinuity before Start")
	}
	return l.p.Discontinuity(ctx)
}

func (l *lazyProcess) Close() error {
	if l.p == nil {
		return nil
	}
	return l.p.Close()
}
