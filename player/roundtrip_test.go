package player_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/importer"
	"github.com/boxswarm/boxswarm/media/keys"
	"github.com/boxswarm/boxswarm/media/mediatest"
	"github.com/boxswarm/boxswarm/media/store"
	"github.com/boxswarm/boxswarm/player"
	"github.com/boxswarm/boxswarm/player/sink"
)

// box is an operator (import, key files) and a box (store served to the
// player over a unix socket, as the transfer daemon serves the player
// daemon), in temporary folders.
type box struct {
	opDir, boxDir, tmpDir string
	mediaKey              ed25519.PrivateKey
	keys                  keys.Dir
	st                    *store.Store
	client                *store.Client
}

func newBox(t *testing.T) *box {
	t.Helper()
	_, mk, _ := ed25519.GenerateKey(nil)
	b := &box{opDir: t.TempDir(), boxDir: t.TempDir(), tmpDir: t.TempDir(), mediaKey: mk}
	b.keys = keys.Dir(filepath.Join(b.opDir, "keys"))
	// Everything the test starts (ffmpeg too) puts its temporary files
	// where the secret scan looks.
	t.Setenv("TMPDIR", b.tmpDir)
	st, err := store.Open(filepath.Join(b.boxDir, "store"), store.Options{MediaKeys: []ed25519.PublicKey{b.pub()}, Capacity: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b.st = st
	sock := filepath.Join(b.boxDir, "store.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { store.Serve(ctx, l, st); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	c, err := store.Dial(ctx, sock, b.pub())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	b.client = c
	return b
}

func (b *box) pub() ed25519.PublicKey { return b.mediaKey.Public().(ed25519.PublicKey) }

// importClip imports a file and puts its package into the box's store.
func (b *box) importClip(t *testing.T, path string) *media.Manifest {
	t.Helper()
	out := filepath.Join(b.opDir, "packages")
	m, err := importer.ImportFile(context.Background(), path, importer.Options{Out: out, MediaKey: b.mediaKey, Keys: b.keys}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.st.ImportPackage(context.Background(), filepath.Join(out, m.ID.String())); err != nil {
		t.Fatal(err)
	}
	return m
}

func (b *box) player() *player.Player {
	return player.New(b.client, player.Options{MediaKeys: []ed25519.PublicKey{b.pub()}, Keys: b.keys,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
}

// decode plays a title into ffmpeg and returns the framemd5 of one stream.
func (b *box) decode(t *testing.T, id media.ID, stream string) []string {
	t.Helper()
	var out bytes.Buffer
	ctx := context.Background()
	s, err := sink.NewProcess(ctx, "ffmpeg", sink.FFmpegArgs("-map", "0:"+stream+":0", "-f", "framemd5", "pipe:1"), nil, sink.WithStdout(&out))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.player().Play(ctx, id, s, player.From{}); err != nil {
		t.Fatal(err)
	}
	return mediatest.ParseFrameMD5(out.String())
}

// TestRoundTrip imports each kind of input, plays it from the box's store
// into ffmpeg, and compares the decoded frames with the source's.
func TestRoundTrip(t *testing.T) {
	for _, clip := range []mediatest.Clip{mediatest.TSH264AAC, mediatest.MP4H265, mediatest.FragmentedMP4} {
		t.Run(clip.Name, func(t *testing.T) {
			b := newBox(t)
			src := mediatest.Make(t, b.opDir, clip)
			m := b.importClip(t, src)
			for _, stream := range []string{"v", "a"} {
				want := mediatest.FrameMD5(t, src, stream)
				got := b.decode(t, m.ID, stream)
				if err := mediatest.SameFrames(want, got); err != nil {
					t.Errorf("stream %s: %v", stream, err)
				} else {
					t.Logf("stream %s: %d decoded frames identical to the source", stream, len(got))
				}
			}
			b.scanForSecrets(t, m)
		})
	}
}

// scanForSecrets looks through every file under the box's folder and the
// temporary folder for the content key, every frame key, and windows of
// plaintext taken from the frames.
func (b *box) scanForSecrets(t *testing.T, m *media.Manifest) {
	t.Helper()
	secret, err := b.keys.ContentKey(context.Background(), m.ID)
	if err != nil {
		t.Fatal(err)
	}
	ck := bytes.Clone(secret.Bytes())
	secret.Destroy()
	c, err := media.NewFrameCipher(ck, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	needles := map[string]string{string(ck): "the content key"}
	pkg := filepath.Join(b.opDir, "packages", m.ID.String(), media.PayloadFile)
	payload, err := os.ReadFile(pkg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.NumFrames() {
		k := c.FrameKey(uint64(i))
		needles[string(k[:])] = "a frame key"
		e := m.Frame(i)
		plain, err := c.Open(nil, uint64(i), e.FrameMeta, payload[e.Offset:e.End()])
		if err != nil {
			t.Fatal(err)
		}
		// A window from the middle of each large frame: long enough not to
		// occur by chance, away from start codes and headers.
		if len(plain) >= 256 {
			w := plain[len(plain)/2 : len(plain)/2+48]
			if bytes.Count(w, w[:1]) < len(w) {
				needles[string(w)] = "plaintext of a frame"
			}
		}
	}
	byPrefix := map[uint64][]string{}
	for n := range needles {
		p := binary.LittleEndian.Uint64([]byte(n))
		byPrefix[p] = append(byPrefix[p], n)
	}
	scanned := 0
	for _, root := range []string{b.boxDir, b.tmpDir} {
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("scan %s: %v", path, err)
				return nil
			}
			scanned++
			for i := 0; i+8 <= len(data); i++ {
				for _, n := range byPrefix[binary.LittleEndian.Uint64(data[i:])] {
					if bytes.HasPrefix(data[i:], []byte(n)) {
						t.Errorf("%s found in %s at offset %d", needles[n], path, i)
					}
				}
			}
			return nil
		})
	}
	if scanned == 0 {
		t.Fatal("no files scanned: the box folder is empty?")
	}
	t.Logf("scanned %d files for %d secrets: none found", scanned, len(needles))
}

// TestTamperedStore edits the segment files on the box's disk, as someone
// with the disk in hand could, and plays: each edit must stop playback at
// the damaged frame with an authentication error, and nothing from it or
// after it may reach the decoder.
func TestTamperedStore(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, b *box, m, other *media.Manifest) int // returns the first bad frame
	}{
		{"flipped ciphertext byte", func(t *testing.T, b *box, m, _ *media.Manifest) int {
			i := m.NumFrames() / 2
			e := m.Frame(i)
			editPayload(t, b, m.ID, int64(e.Offset)+int64(e.Size)/2, func(p []byte) { p[0] ^= 0x10 })
			return i
		}},
		{"two frames swapped", func(t *testing.T, b *box, m, _ *media.Manifest) int {
			i, j := sameSizeFrames(t, m)
			ei, ej := m.Frame(i), m.Frame(j)
			a, c := readPayload(t, b, m.ID, ei), readPayload(t, b, m.ID, ej)
			editPayload(t, b, m.ID, int64(ei.Offset), func(p []byte) { copy(p, c) })
			editPayload(t, b, m.ID, int64(ej.Offset), func(p []byte) { copy(p, a) })
			return i
		}},
		{"frame transplanted from another title", func(t *testing.T, b *box, m, other *media.Manifest) int {
			for i := range m.NumFrames() {
				e := m.Frame(i)
				for j := range other.NumFrames() {
					if o := other.Frame(j); o.Size == e.Size && i > 10 {
						foreign := readPayload(t, b, other.ID, o)
						editPayload(t, b, m.ID, int64(e.Offset), func(p []byte) { copy(p, foreign) })
						return i
					}
				}
			}
			t.Fatal("no frame of the same size in the other title")
			return 0
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBox(t)
			m := b.importClip(t, mediatest.Make(t, b.opDir, mediatest.TSH264AAC))
			otherDir := filepath.Join(b.opDir, "other")
			os.MkdirAll(otherDir, 0o755)
			other := b.importClip(t, mediatest.Make(t, otherDir, mediatest.TSH264AAC))
			bad := tc.edit(t, b, m, other)
			h := sink.NewHash()
			err := b.player().Play(context.Background(), m.ID, h, player.From{})
			var fe *player.FrameError
			if !errors.As(err, &fe) || !errors.Is(err, media.ErrFrameAuth) || fe.Index != bad || fe.Title != m.ID {
				t.Fatalf("Play = %v, want an authentication failure at frame %d", err, bad)
			}
			if !strings.Contains(err.Error(), m.ID.String()) {
				t.Errorf("error %q does not name the title", err)
			}
			if got := h.Received(); got != bad {
				t.Errorf("decoder got %d frames, want only the %d before the damaged one", got, bad)
			}
		})
	}
}

func sameSizeFrames(t *testing.T, m *media.Manifest) (int, int) {
	for i := 10; i < m.NumFrames(); i++ {
		for j := i + 1; j < m.NumFrames(); j++ {
			if m.Frame(i).Size == m.Frame(j).Size && m.Frame(i).Track == m.Frame(j).Track {
				return i, j
			}
		}
	}
	t.Fatal("no two frames of equal size")
	return 0, 0
}

// segmentFile returns the segment file holding payload offset off, and the
// offset within it: the store's documented layout, segments/<id>/<n>.seg,
// as someone reading the disk sees it.
func segmentFile(t *testing.T, b *box, id media.ID, off int64) (string, int64) {
	t.Helper()
	const segSize = store.DefaultSegmentSize
	path := filepath.Join(b.boxDir, "store", "segments", id.String(), fmt.Sprintf("%d.seg", off/segSize))
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	return path, off % segSize
}

func editPayload(t *testing.T, b *box, id media.ID, off int64, edit func([]byte)) {
	t.Helper()
	path, at := segmentFile(t, b, id, off)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	n, _ := f.ReadAt(buf, at)
	edit(buf[:n])
	if _, err := f.WriteAt(buf[:n], at); err != nil {
		t.Fatal(err)
	}
}

func readPayload(t *testing.T, b *box, id media.ID, e media.FrameEntry) []byte {
	t.Helper()
	p := make([]byte, e.Size)
	if _, err := b.st.ReadAt(id, p, int64(e.Offset)); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestResumeFromStore stops playback midway and checks that the resume
// point is in the store's database: it survives the store being closed and
// opened again, and the next playback starts from it.
func TestResumeFromStore(t *testing.T) {
	b := newBox(t)
	m := b.importClip(t, mediatest.Make(t, b.opDir, mediatest.TSH264AAC))
	p := b.player()
	h := &stopAfter{Hash: sink.NewHash(), n: 400, stop: p.Stop}
	if err := p.Play(context.Background(), m.ID, h, player.From{}); !errors.Is(err, player.ErrStopped) {
		t.Fatalf("Play = %v, want ErrStopped", err)
	}
	b.client.Close()
	b.st.Close()
	st, err := store.Open(filepath.Join(b.boxDir, "store"), store.Options{MediaKeys: []ed25519.PublicKey{b.pub()}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pos, ok, err := st.Position(m.ID)
	if err != nil || !ok || pos == 0 || !m.Frame(pos).Keyframe {
		t.Fatalf("stored position %d (%v, %v): want a keyframe after the start", pos, ok, err)
	}
	h2 := sink.NewHash()
	p2 := player.New(st, player.Options{MediaKeys: []ed25519.PublicKey{b.pub()}, Keys: b.keys})
	if err := p2.Play(context.Background(), m.ID, h2, player.From{Resume: true}); err != nil {
		t.Fatal(err)
	}
	first := h2.Frames(uint8(0))[0]
	if first.PTS != m.Frame(pos).PTS || !first.Keyframe {
		t.Errorf("resumed at PTS %d, want the stored keyframe's %d", first.PTS, m.Frame(pos).PTS)
	}
}

// stopAfter stops the player after n frames.
type stopAfter struct {
	*sink.Hash
	n    int
	stop func()
}

func (s *stopAfter) WriteFrame(ctx context.Context, f media.Frame) error {
	if s.Received() == s.n {
		s.stop()
	}
	return s.Hash.WriteFrame(ctx, f)
}
