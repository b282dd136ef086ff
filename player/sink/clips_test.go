package sink_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/mediatest"
	"github.com/boxswarm/boxswarm/player/sink"
)

// TestClips sends real clips through the sinks and has ffmpeg decode
// what comes out: every picture and every block of samples must be the
// ones ffmpeg decodes from the clip itself.
func TestClips(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	cases := []struct {
		clip mediatest.Clip
		// strip takes the parameter sets out of the access units, so
		// the sink must put Config back in front of each keyframe.
		strip bool
	}{
		// Its access units start with AUDs: the parameter sets must go
		// after them.
		{mediatest.TSH264AAC, true},
		{mediatest.MP4H265, true},
		// ffmpeg's h264_mp4toannexb puts the parameter sets in front of
		// each IDR already: the sink must not double them.
		{mediatest.FragmentedMP4, false},
	}
	for _, c := range cases {
		t.Run(c.clip.Name, func(t *testing.T) {
			src := loadSource(t, c.clip, c.strip)
			whole := [][]media.Frame{src.frames}
			var plain []byte

			t.Run("ts", func(t *testing.T) {
				var out bytes.Buffer
				if err := play(sink.NewTS(&out), src.tracks, whole, false); err != nil {
					t.Fatal(err)
				}
				plain = out.Bytes()
				src.check(t, whole, mediatest.FrameMD5TS(t, plain, "v"), mediatest.FrameMD5TS(t, plain, "a"), nil)
			})

			t.Run("process", func(t *testing.T) {
				var stdout bytes.Buffer
				p, err := sink.NewProcess(t.Context(), "ffmpeg",
					sink.FFmpegArgs("-map", "0:v:0", "-map", "0:a:0", "-f", "framemd5", "pipe:1"),
					testLogger(t), sink.WithStdout(&stdout))
				if err != nil {
					t.Fatal(err)
				}
				if err := play(p, src.tracks, whole, false); err != nil {
					t.Fatal(err)
				}
				video, audio := splitFrameMD5(t, stdout.String())
				src.check(t, whole, video, audio, nil)
			})

			// The player zeroes and reuses its buffer once WriteFrame
			// returns; here it fills it with garbage instead. Not a byte
			// of the output may change.
			t.Run("scrubbed", func(t *testing.T) {
				if plain == nil {
					t.Skip("needs the ts subtest's output")
				}
				var out bytes.Buffer
				if err := play(sink.NewTS(&out), src.tracks, whole, true); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out.Bytes(), plain) {
					t.Fatal("the output changed when the frame buffers were overwritten after WriteFrame")
				}
			})

			for _, seek := range src.seeks() {
				t.Run("seek-"+seek.name, func(t *testing.T) {
					var out bytes.Buffer
					if err := play(sink.NewTS(&out), src.tracks, seek.segments, false); err != nil {
						t.Fatal(err)
					}
					if src.pcm == nil {
						src.pcm = decodePCM(t, src.path, nil)
					}
					ts := out.Bytes()
					src.check(t, seek.segments, mediatest.FrameMD5TS(t, ts, "v"), mediatest.FrameMD5TS(t, ts, "a"), decodePCM(t, "", ts))
				})
			}
		})
	}
}

// play starts s, writes the segments with a Discontinuity between each
// two, and closes s. With scrub, each frame's bytes are handed over in a
// buffer that is overwritten as soon as WriteFrame returns.
func play(s sink.Sink, tracks []media.Track, segments [][]media.Frame, scrub bool) error {
	ctx := context.Background()
	if err := s.Start(ctx, tracks); err != nil {
		s.Close()
		return fmt.Errorf("start: %w", err)
	}
	var buf []byte
	for i, seg := range segments {
		if i > 0 {
			if err := s.Discontinuity(ctx); err != nil {
				s.Close()
				return fmt.Errorf("discontinuity %d: %w", i, err)
			}
		}
		for j, f := range seg {
			if scrub {
				buf = append(buf[:0], f.Data...)
				f.Data = buf
			}
			err := s.WriteFrame(ctx, f)
			if scrub {
				for k := range buf {
					buf[k] = 0xA5
				}
			}
			if err != nil {
				s.Close()
				return fmt.Errorf("segment %d, frame %d: %w", i, j, err)
			}
		}
	}
	if err := s.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

type seek struct {
	name     string
	segments [][]media.Frame
}

// seeks returns the jumps the clip allows: from the middle of the first
// GOP forward to the third keyframe, and from the middle of the last GOP
// back to the second keyframe (the first, if there is only one).
func (src *source) seeks() []seek {
	var keys []int // positions of video keyframes in src.frames
	for i, f := range src.frames {
		if f.Track == 0 && f.Keyframe {
			keys = append(keys, i)
		}
	}
	var out []seek
	if len(keys) >= 3 {
		cut := (keys[0] + keys[1]) / 2
		out = append(out, seek{"forward", [][]media.Frame{src.frames[:cut], src.frames[keys[2]:]}})
	}
	last := keys[len(keys)-1]
	cut := last + (len(src.frames)-last)/2
	to := keys[min(1, len(keys)-1)]
	out = append(out, seek{"back", [][]media.Frame{src.frames[:cut], src.frames[to:]}})
	return out
}

// check compares what ffmpeg decoded from a sink's output with what it
// decoded from the clip, for the frames of the segments. Within a
// segment every video frame the sink got decodes to the clip's picture
// with the same PTS, in display order, and every audio frame to the
// clip's samples.
//
// Audio after a jump is the exception. The AAC decoder carries state
// from one frame to the next, and a TS stream has no way to reset it:
// the first frame after the jump is overlapped with the samples of the
// one before it (nothing is checked there), and the noise generator of
// perceptual noise substitution, which ffmpeg's encoder uses, goes on
// from where it was, so the frames after it differ from the clip's in
// their noise bands only. For those, gotPCM (the output decoded to
// float samples, needed only when there are jumps) must be within
// minJumpSNR of the clip's samples.
func (src *source) check(t *testing.T, segments [][]media.Frame, video, audio []string, gotPCM []float32) {
	t.Helper()
	audioIndex := map[int64]int{}
	n := 0
	for _, f := range src.frames {
		if f.Track == 1 {
			audioIndex[f.PTS] = n
			n++
		}
	}
	var wantVideo []string
	var wantAudio []int // the source's audio frame for each decoded one
	var jumped []bool   // ... and whether a jump came before it
	for i, seg := range segments {
		var pts []int64
		for _, f := range seg {
			if f.Track == 0 {
				pts = append(pts, f.PTS)
				continue
			}
			wantAudio = append(wantAudio, audioIndex[f.PTS])
			jumped = append(jumped, i > 0)
		}
		slices.Sort(pts)
		for _, p := range pts {
			rank, _ := slices.BinarySearch(src.videoPTS, p)
			wantVideo = append(wantVideo, src.video[rank])
		}
	}
	if err := mediatest.SameFrames(wantVideo, video); err != nil {
		t.Errorf("video: %v", err)
	}

	if len(audio) != len(wantAudio) {
		t.Errorf("audio: %d decoded frames, want %d", len(audio), len(wantAudio))
		return
	}
	samples := frameSamples * int(src.tracks[1].Channels)
	for i, j := range wantAudio {
		switch {
		case !jumped[i]:
			if audio[i] != src.audio[j] {
				t.Errorf("audio: decoded frame %d differs (md5 %s, want %s, frame %d of the clip)", i, audio[i], src.audio[j], j)
				return
			}
		case i > 0 && !jumped[i-1]:
			// The first after a jump: overlapped with the frame before.
		default:
			if gotPCM == nil {
				t.Fatal("check needs the decoded samples when there are jumps")
			}
			if (i+1)*samples > len(gotPCM) || (j+1)*samples > len(src.pcm) {
				t.Fatalf("audio: decoded frame %d (frame %d of the clip) lies beyond the decoded samples", i, j)
			}
			got, want := gotPCM[i*samples:(i+1)*samples], src.pcm[j*samples:(j+1)*samples]
			if snr := snr(want, got); snr < minJumpSNR {
				t.Errorf("audio: decoded frame %d after a jump is %.1f dB from frame %d of the clip, want at least %d dB", i, snr, j, minJumpSNR)
				return
			}
		}
	}
}

const (
	frameSamples = 1024 // per channel in an AAC-LC frame
	// minJumpSNR bounds the difference left by the noise generator; a
	// frame from elsewhere in a clip is near 0 dB. The clips measure at
	// 64 dB and more.
	minJumpSNR = 40
)

// snr returns the signal-to-noise ratio of got against want, in dB.
func snr(want, got []float32) float64 {
	var signal, noise float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		signal += float64(want[i]) * float64(want[i])
		noise += d * d
	}
	if noise == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(signal/noise)
}

// decodePCM decodes the first audio stream of a file, or of an MPEG-TS
// stream when path is empty, to native-endian float samples.
func decodePCM(t *testing.T, path string, ts []byte) []float32 {
	t.Helper()
	input := []string{"-i", path}
	if path == "" {
		input = []string{"-f", "mpegts", "-i", "pipe:0"}
	}
	cmd := exec.Command("ffmpeg", append(append([]string{"-hide_banner", "-loglevel", "error"}, input...),
		"-map", "0:a:0", "-f", "f32le", "-")...)
	cmd.Stdin = bytes.NewReader(ts)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffmpeg decoding to PCM: %v\n%s", err, stderr.Bytes())
	}
	pcm := make([]float32, len(out)/4)
	for i := range pcm {
		pcm[i] = math.Float32frombits(binary.LittleEndian.Uint32(out[4*i:]))
	}
	return pcm
}

// splitFrameMD5 splits framemd5 output of video (stream 0) and audio
// (stream 1) into the two lists of hashes.
func splitFrameMD5(t *testing.T, out string) (video, audio []string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		stream, _, _ := strings.Cut(line, ",")
		hash := mediatest.ParseFrameMD5(line)
		switch strings.TrimSpace(stream) {
		case "0":
			video = append(video, hash...)
		case "1":
			audio = append(audio, hash...)
		default:
			t.Fatalf("framemd5 line of an unexpected stream: %q", line)
		}
	}
	return video, audio
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}
