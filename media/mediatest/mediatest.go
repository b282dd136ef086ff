// Package mediatest makes test clips with ffmpeg and compares decoded
// output frame by frame, for the tests of the import tool, the store and
// the player. Clips are generated, never committed.
package mediatest

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// RequireFFmpeg skips the test when ffmpeg is missing, or fails it in CI,
// where make test installs it.
func RequireFFmpeg(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ffmpeg is missing; make test installs Debian's ffmpeg")
		}
		t.Skip("ffmpeg not installed (Debian package ffmpeg)")
	}
}

// Clip is a kind of test input.
type Clip struct {
	Name string
	File string   // file name, with the container's extension
	Args []string // ffmpeg arguments between the inputs and the output
	// Inputs are lavfi sources: video then audio (audio may be empty).
	Video, Audio string
	Seconds      int
}

// The clips the media tests use.
var (
	// TSH264AAC is H.264 (with B-frames) and AAC in MPEG-TS, 720p30, 10 s.
	TSH264AAC = Clip{Name: "ts-h264-aac", File: "h264-aac.ts", Seconds: 10,
		Video: "testsrc=size=1280x720:rate=30", Audio: "sine=frequency=440:sample_rate=48000",
		Args: []string{"-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-bf", "2", "-pix_fmt", "yuv420p",
			"-c:a", "aac", "-b:a", "128k", "-f", "mpegts"}}
	// MP4H265 is H.265 and AAC in a progressive MP4, without an edit list
	// (see FORMAT.md on edit lists).
	MP4H265 = Clip{Name: "mp4-h265-aac", File: "h265-aac.mp4", Seconds: 4,
		Video: "testsrc=size=640x360:rate=25", Audio: "sine=frequency=300:sample_rate=44100",
		Args: []string{"-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error", "-tag:v", "hvc1",
			"-pix_fmt", "yuv420p", "-c:a", "aac", "-use_editlist", "0", "-f", "mp4"}}
	// FragmentedMP4 is H.264 and AAC in a fragmented MP4.
	FragmentedMP4 = Clip{Name: "fmp4-h264-aac", File: "frag.mp4", Seconds: 4,
		Video: "testsrc=size=640x360:rate=30", Audio: "sine=frequency=500:sample_rate=48000",
		Args: []string{"-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac",
			"-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4"}}
	// BenchTS is what a 720p movie looks like to the box: H.264 at 5 Mb/s
	// (on noisy pictures, so the encoder cannot make the frames tiny) and
	// AAC at 128 kb/s, in MPEG-TS, one minute.
	BenchTS = Clip{Name: "bench-ts", File: "bench.ts", Seconds: 60,
		Video: "testsrc2=size=1280x720:rate=30,noise=alls=25:allf=t+u", Audio: "sine=frequency=440:sample_rate=48000",
		Args: []string{"-c:v", "libx264", "-preset", "ultrafast", "-b:v", "5M", "-maxrate", "5M", "-bufsize", "5M", "-g", "60",
			"-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-f", "mpegts"}}
	// BenchClip is a 20-second cut of BenchTS, for benchmarks that loop.
	BenchClip = Clip{Name: "bench-clip", File: "bench-clip.ts", Seconds: 20,
		Video: BenchTS.Video, Audio: BenchTS.Audio, Args: BenchTS.Args}
	// TSH265 is H.265 alone in MPEG-TS.
	TSH265 = Clip{Name: "ts-h265", File: "h265.ts", Seconds: 3,
		Video: "testsrc=size=640x360:rate=25",
		Args:  []string{"-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error", "-pix_fmt", "yuv420p", "-f", "mpegts"}}
)

// Make generates the clip in dir and returns its path.
func Make(t testing.TB, dir string, c Clip) string {
	t.Helper()
	RequireFFmpeg(t)
	out, err := c.Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Generate runs ffmpeg to make the clip in dir and returns its path.
func (c Clip) Generate(dir string) (string, error) {
	out := filepath.Join(dir, c.File)
	args := []string{"-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", c.Video}
	if c.Audio != "" {
		args = append(args, "-f", "lavfi", "-i", c.Audio)
	}
	args = append(args, "-t", fmt.Sprint(c.Seconds))
	args = append(append(args, c.Args...), out)
	if b, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("ffmpeg making %s: %w\n%s", c.Name, err, b)
	}
	return out, nil
}

// FrameMD5 decodes one stream of a file ("v" or "a") and returns the MD5 of
// each decoded frame, in order.
func FrameMD5(t testing.TB, path, stream string) []string {
	t.Helper()
	return frameMD5(t, nil, []string{"-i", path}, stream)
}

// FrameMD5TS decodes one stream of an MPEG-TS byte stream.
func FrameMD5TS(t testing.TB, ts []byte, stream string) []string {
	t.Helper()
	return frameMD5(t, bytes.NewReader(ts), []string{"-f", "mpegts", "-i", "pipe:0"}, stream)
}

func frameMD5(t testing.TB, stdin io.Reader, input []string, stream string) []string {
	t.Helper()
	RequireFFmpeg(t)
	args := append([]string{"-hide_banner", "-loglevel", "error"}, input...)
	args = append(args, "-map", "0:"+stream+":0", "-f", "framemd5", "-")
	cmd := exec.Command("ffmpeg", args...)
	cmd.Stdin = stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffmpeg framemd5 %v: %v\n%s", input, err, stderr.String())
	}
	return ParseFrameMD5(string(out))
}

// ParseFrameMD5 returns the hash column of ffmpeg's framemd5 output. The
// timestamps are left out on purpose: a remuxed stream may start at another
// offset while decoding to exactly the same pictures and samples.
func ParseFrameMD5(out string) []string {
	var hashes []string
	for _, line := range strings.Split(out, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ",")
		hashes = append(hashes, strings.TrimSpace(f[len(f)-1]))
	}
	return hashes
}

// SameFrames reports the first difference between two decoded streams.
func SameFrames(want, got []string) error {
	if len(want) != len(got) {
		return fmt.Errorf("%d decoded frames, want %d", len(got), len(want))
	}
	for i := range want {
		if want[i] != got[i] {
			return fmt.Errorf("decoded frame %d differs (md5 %s, want %s)", i, got[i], want[i])
		}
	}
	return nil
}
