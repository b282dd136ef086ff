package importer

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/demux"
	"github.com/boxswarm/boxswarm/media/keys"
	"github.com/boxswarm/boxswarm/media/mediatest"
)

func options(t *testing.T) (Options, string) {
	_, mk, _ := ed25519.GenerateKey(nil)
	dir := t.TempDir()
	return Options{Out: filepath.Join(dir, "packages"), MediaKey: mk, Keys: keys.Dir(filepath.Join(dir, "keys"))}, dir
}

// assertNothingLeft checks that a failed import left no package, no
// temporary folder and no key.
func assertNothingLeft(t *testing.T, dir string) {
	t.Helper()
	for _, sub := range []string{"packages", "keys"} {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		if len(entries) != 0 {
			t.Errorf("failed import left %d entries in %s: %v", len(entries), sub, entries[0].Name())
		}
	}
}

func TestImportKinds(t *testing.T) {
	for _, clip := range []mediatest.Clip{mediatest.TSH264AAC, mediatest.MP4H265, mediatest.FragmentedMP4, mediatest.TSH265} {
		t.Run(clip.Name, func(t *testing.T) {
			o, dir := options(t)
			src := mediatest.Make(t, dir, clip)
			var seen int64
			m, err := ImportFile(context.Background(), src, o, func(read, total int64) {
				if read > total {
					t.Errorf("progress %d of %d", read, total)
				}
				seen = read
			})
			if err != nil {
				t.Fatal(err)
			}
			if st, _ := os.Stat(src); seen < st.Size()/2 {
				t.Errorf("progress reached only %d of %d bytes", seen, st.Size())
			}
			p, err := media.OpenPackage(filepath.Join(o.Out, m.ID.String()), o.MediaKey.Public().(ed25519.PublicKey))
			if err != nil {
				t.Fatal(err)
			}
			p.Close()
			k, err := o.Keys.(keys.Dir).ContentKey(context.Background(), m.ID)
			if err != nil {
				t.Fatal(err)
			}
			k.Destroy()
		})
	}
}

// TestRefusals feeds unsupported and damaged inputs: each gets a clear
// error and leaves nothing behind.
func TestRefusals(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	ffmpeg := func(name string, args ...string) string {
		out := filepath.Join(dir, name)
		a := append([]string{"-hide_banner", "-loglevel", "error", "-y"}, args...)
		if b, err := exec.Command("ffmpeg", append(a, out)...).CombinedOutput(); err != nil {
			t.Fatalf("ffmpeg: %v\n%s", err, b)
		}
		return out
	}
	good := mediatest.Make(t, dir, mediatest.TSH264AAC)
	goodBytes, _ := os.ReadFile(good)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	mp4 := mediatest.Make(t, dir, mediatest.MP4H265)
	mp4Bytes, _ := os.ReadFile(mp4)
	for _, tc := range []struct {
		name  string
		input string
		want  error
		text  string
	}{
		{"MPEG-2 video", ffmpeg("mpeg2.ts", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "1", "-c:v", "mpeg2video", "-f", "mpegts"),
			demux.ErrUnsupported, "MPEG-2"},
		{"VP9 in MP4", ffmpeg("vp9.mp4", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-t", "1", "-c:v", "libvpx-vp9", "-f", "mp4"),
			demux.ErrUnsupported, "unsupported"},
		{"not a container", write("junk.bin", bytes.Repeat([]byte("junk"), 5000)), demux.ErrCorrupt, ""},
		{"TS truncated mid-packet", write("cut.ts", goodBytes[:len(goodBytes)/2+77]), demux.ErrCorrupt, ""},
		{"TS with a zeroed region", write("zeroed.ts", func() []byte {
			b := bytes.Clone(goodBytes)
			clear(b[len(b)/3 : len(b)/3+5000])
			return b
		}()), demux.ErrCorrupt, ""},
		{"MP4 truncated", write("cut.mp4", mp4Bytes[:len(mp4Bytes)*2/3]), demux.ErrCorrupt, ""},
		{"empty file", write("empty.ts", nil), demux.ErrCorrupt, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, odir := options(t)
			_, err := ImportFile(context.Background(), tc.input, o, nil)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("ImportFile = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), filepath.Base(tc.input)) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q does not name the file and the problem (%q)", err, tc.text)
			}
			assertNothingLeft(t, odir)
		})
	}
}

// TestKeySinkFailure removes the package when its key cannot be stored.
func TestKeySinkFailure(t *testing.T) {
	o, dir := options(t)
	o.Keys = failingSink{}
	if _, err := ImportFile(context.Background(), mediatest.Make(t, dir, mediatest.TSH265), o, nil); err == nil {
		t.Fatal("import succeeded without storing its key")
	}
	if entries, _ := os.ReadDir(o.Out); len(entries) != 0 {
		t.Errorf("a package without a stored key was left: %v", entries[0].Name())
	}
}

type failingSink struct{}

func (failingSink) Put(context.Context, media.ID, []byte) error {
	return errors.New("vault unreachable")
}
