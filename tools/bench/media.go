package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/keys"
	"github.com/boxswarm/boxswarm/media/mediatest"
	"github.com/boxswarm/boxswarm/media/store"
	"github.com/boxswarm/boxswarm/player"
)

// mediaSection measures decryption, import and the player's memory.
func mediaSection(ctx context.Context, root string, runs, titleMiB int) (string, error) {
	dec, err := decryptBench(ctx, root, runs)
	if err != nil {
		return "", fmt.Errorf("decrypt: %w", err)
	}
	imp, err := importBench(ctx, root, runs)
	if err != nil {
		return "", fmt.Errorf("import: %w", err)
	}
	rss, err := rssBench(ctx, titleMiB)
	if err != nil {
		return "", fmt.Errorf("player memory: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Media\n\n%s\n\n", measured(runs))
	b.WriteString("| measurement | ours | reference | ratio | goal |\n|---|---|---|---|---|\n")
	for _, mode := range dec {
		fmt.Fprintf(&b, "| decrypt every frame of a 720p30 5 Mb/s title (%s) | %.0f MB/s, %.0f ns/frame | raw AES-GCM open, one key: %.0f MB/s | %.2f× | ≥ 0.9 |\n",
			mode.name, mode.player.mbps, mode.player.nsFrame, mode.raw.mbps, mode.player.mbps/mode.raw.mbps)
		fmt.Fprintf(&b, "| … same, against the format's floor | | per-frame keys, one AES-GCM instance each: %.0f MB/s | %.2f× | |\n",
			mode.perFrame.mbps, mode.player.mbps/mode.perFrame.mbps)
		fmt.Fprintf(&b, "| allocations per frame (%s) | %.1f, both made by crypto/aes and crypto/cipher for the frame's key | raw AES-GCM: %.1f | | 0 |\n",
			mode.name, mode.player.allocsFrame, mode.raw.allocsFrame)
	}
	fmt.Fprintf(&b, "| `mediaimport` on a one-minute 720p30 5 Mb/s MPEG-TS (demux, seal, hash, write, sign) | %.0f ms | `ffmpeg -c copy` to MPEG-TS: %.0f ms | %.2f× | ≥ 0.8 |\n",
		float64(imp.ours.Milliseconds()), float64(imp.ffmpeg.Milliseconds()), imp.ffmpeg.Seconds()/imp.ours.Seconds())
	fmt.Fprintf(&b, "| player peak RSS playing a %d MiB title from the store daemon, unpaced | %.1f MiB | | | ≤ 64 MiB |\n\n",
		titleMiB, float64(rss.peakKiB)/1024)
	fmt.Fprintf(&b, "The %d MiB title had %d frames; the player process decrypted it at %.0f MB/s through the store's socket. ", titleMiB, rss.frames, rss.mbps)
	b.WriteString("Per-frame keys cost what the standard library charges for a fresh AES-GCM instance: a key schedule and GHASH table, two allocations of 1280 bytes together; on 5 Mb/s video that is the whole gap to the one-key reference. Everything the player's own code does per frame allocates nothing. Run `make bench` to measure again.\n")
	return b.String(), nil
}

type benchLine struct {
	mbps, nsFrame, allocsFrame float64
}

type decryptMode struct {
	name                  string
	raw, perFrame, player benchLine
}

var (
	benchRE  = regexp.MustCompile(`^BenchmarkDecrypt/(\S+?)-\d+\s+\d+\s+(.*)$`)
	metricRE = regexp.MustCompile(`([\d.]+) (\S+)`)
)

// decryptBench runs the player's BenchmarkDecrypt in both build modes and
// takes each case's median.
func decryptBench(ctx context.Context, root string, runs int) ([]decryptMode, error) {
	var modes []decryptMode
	for _, m := range []struct{ name, experiment string }{
		{"built with GOEXPERIMENT=runtimesecret, as the player daemon is: key schedules erased", "runtimesecret"},
		{"without runtime/secret", ""},
	} {
		cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "^BenchmarkDecrypt$", "-benchtime", "20x",
			"-count", strconv.Itoa(runs), "./player/")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOEXPERIMENT="+m.experiment)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("go test -bench: %w\n%s", err, out)
		}
		samples := map[string][]benchLine{}
		for _, line := range strings.Split(string(out), "\n") {
			f := benchRE.FindStringSubmatch(line)
			if f == nil {
				continue
			}
			metrics := map[string]float64{}
			for _, m := range metricRE.FindAllStringSubmatch(f[2], -1) {
				metrics[m[2]], _ = strconv.ParseFloat(m[1], 64)
			}
			if metrics["frames/op"] == 0 {
				continue
			}
			samples[f[1]] = append(samples[f[1]], benchLine{mbps: metrics["MB/s"], nsFrame: metrics["ns/frame"],
				allocsFrame: metrics["allocs/op"] / metrics["frames/op"]})
		}
		med := func(name string) benchLine {
			s := samples[name]
			if len(s) == 0 {
				return benchLine{}
			}
			var mb, ns []float64
			for _, x := range s {
				mb, ns = append(mb, x.mbps), append(ns, x.nsFrame)
			}
			return benchLine{mbps: median(mb), nsFrame: median(ns), allocsFrame: s[0].allocsFrame}
		}
		d := decryptMode{name: m.name, raw: med("raw-aes-gcm"), perFrame: med("per-frame-keys"), player: med("player")}
		if d.raw.mbps == 0 || d.player.mbps == 0 {
			return nil, fmt.Errorf("no benchmark results in:\n%s", out)
		}
		modes = append(modes, d)
	}
	return modes, nil
}

type importResult struct{ ours, ffmpeg time.Duration }

// importBench runs the import tool on a one-minute clip and ffmpeg -c copy
// on the same clip, alternately, both as commands, and keeps the medians.
func importBench(ctx context.Context, root string, runs int) (importResult, error) {
	dir, err := os.MkdirTemp("", "bench-import-")
	if err != nil {
		return importResult{}, err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintln(os.Stderr, "bench: encoding the one-minute import clip")
	clip, err := mediatest.BenchTS.Generate(dir)
	if err != nil {
		return importResult{}, err
	}
	tool := filepath.Join(dir, "mediaimport")
	build := exec.CommandContext(ctx, "go", "build", "-o", tool, "./tools/mediaimport")
	build.Dir = root
	if b, err := build.CombinedOutput(); err != nil {
		return importResult{}, fmt.Errorf("build mediaimport: %w\n%s", err, b)
	}
	mk := filepath.Join(dir, "media")
	if b, err := exec.CommandContext(ctx, tool, "-new-media-key", mk).CombinedOutput(); err != nil {
		return importResult{}, fmt.Errorf("media key: %w\n%s", err, b)
	}
	var ours, ff []time.Duration
	for i := 0; i < runs; i++ {
		out := filepath.Join(dir, fmt.Sprintf("run%d", i))
		start := time.Now()
		if b, err := exec.CommandContext(ctx, tool, "-q", "-in", clip, "-out", out, "-media-key", mk+".key", "-keys", filepath.Join(out, "keys")).CombinedOutput(); err != nil {
			return importResult{}, fmt.Errorf("mediaimport: %w\n%s", err, b)
		}
		ours = append(ours, time.Since(start))
		start = time.Now()
		if b, err := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", clip, "-map", "0", "-c", "copy",
			"-f", "mpegts", filepath.Join(dir, "copy.ts")).CombinedOutput(); err != nil {
			return importResult{}, fmt.Errorf("ffmpeg -c copy: %w\n%s", err, b)
		}
		ff = append(ff, time.Since(start))
		os.RemoveAll(out)
		fmt.Fprintf(os.Stderr, "bench: import %d: %v, ffmpeg -c copy %v\n", i+1, ours[i].Round(time.Millisecond), ff[i].Round(time.Millisecond))
	}
	return importResult{ours: median(ours), ffmpeg: median(ff)}, nil
}

type rssResult struct {
	peakKiB int
	frames  int
	mbps    float64
}

const childEnv = "BOXSWARM_BENCH_PLAYER"

// rssBench writes a synthetic title of titleMiB, puts it in a store, serves
// the store as the transfer daemon would, and plays the title in a separate
// player process whose peak resident memory is reported.
func rssBench(ctx context.Context, titleMiB int) (rssResult, error) {
	dir, err := os.MkdirTemp("", "bench-rss-")
	if err != nil {
		return rssResult{}, err
	}
	defer os.RemoveAll(dir)
	pub, mk, _ := ed25519.GenerateKey(nil)
	kd := keys.Dir(filepath.Join(dir, "keys"))
	fmt.Fprintf(os.Stderr, "bench: writing a %d MiB title\n", titleMiB)
	id, err := syntheticTitle(ctx, dir, kd, mk, int64(titleMiB)<<20)
	if err != nil {
		return rssResult{}, err
	}
	st, err := store.Open(filepath.Join(dir, "store"), store.Options{MediaKeys: []ed25519.PublicKey{pub}})
	if err != nil {
		return rssResult{}, err
	}
	defer st.Close()
	if err := st.ImportPackage(ctx, filepath.Join(dir, id.String())); err != nil {
		return rssResult{}, err
	}
	os.RemoveAll(filepath.Join(dir, id.String())) // only the store's copy is needed now
	sock := filepath.Join(dir, "store.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		return rssResult{}, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go store.Serve(sctx, l, st)

	self, err := os.Executable()
	if err != nil {
		return rssResult{}, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), childEnv+"="+strings.Join([]string{sock, string(kd), hex.EncodeToString(pub), id.String()}, ","))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return rssResult{}, fmt.Errorf("player process: %w", err)
	}
	var r rssResult
	if _, err := fmt.Sscanf(string(out), "peak_kib=%d frames=%d mbps=%f", &r.peakKiB, &r.frames, &r.mbps); err != nil {
		return rssResult{}, fmt.Errorf("player process said %q: %w", out, err)
	}
	return r, nil
}

// syntheticTitle writes a package of about size bytes shaped like a 720p
// movie: 25 fps video frames averaging 40 KB with a keyframe every 2 s,
// and AAC-sized audio frames. The bytes are random: the player cannot tell.
func syntheticTitle(ctx context.Context, dir string, kd keys.Dir, mk ed25519.PrivateKey, size int64) (media.ID, error) {
	id, _ := media.NewID()
	ck := make([]byte, media.ContentKeySize)
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	fillRandom(rng, ck)
	tracks := []media.Track{
		{Codec: media.H264, Timescale: 90000, Config: []byte{0, 0, 0, 1, 0x67, 0x64}, Width: 1280, Height: 720},
		{Codec: media.AAC, Timescale: 48000, Config: []byte{0x11, 0x90}, SampleRate: 48000, Channels: 2},
	}
	w, err := media.NewWriter(dir, id, tracks, ck, 0)
	if err != nil {
		return id, err
	}
	buf := make([]byte, 400<<10)
	fillRandom(rng, buf)
	var written int64
	var audio int64
	for v := int64(0); written < size; v++ {
		if v%1000 == 0 && ctx.Err() != nil {
			w.Abort()
			return id, ctx.Err()
		}
		n := 20<<10 + rng.IntN(40<<10)
		if v%50 == 0 {
			n = 200 << 10
		}
		if err := w.WriteFrame(media.Frame{Track: 0, PTS: v * 3600, DTS: v * 3600, Duration: 3600, Keyframe: v%50 == 0, Data: buf[:n]}); err != nil {
			w.Abort()
			return id, err
		}
		written += int64(n)
		for ; audio*1024*90000/48000 < (v+1)*3600; audio++ {
			if err := w.WriteFrame(media.Frame{Track: 1, PTS: audio * 1024, DTS: audio * 1024, Duration: 1024, Data: buf[n : n+370]}); err != nil {
				w.Abort()
				return id, err
			}
			written += 370
		}
	}
	if _, err := w.Finish(mk); err != nil {
		return id, err
	}
	return id, kd.Put(ctx, id, ck)
}

func fillRandom(r *rand.Rand, b []byte) {
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
}

// playChild is the player process of rssBench.
func playChild() int {
	parts := strings.Split(os.Getenv(childEnv), ",")
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "bench player: %v\n", err)
		return 1
	}
	if len(parts) != 4 {
		return fail(fmt.Errorf("bad %s", childEnv))
	}
	pubBytes, err := hex.DecodeString(parts[2])
	if err != nil {
		return fail(err)
	}
	id, err := media.ParseID(parts[3])
	if err != nil {
		return fail(err)
	}
	pub := ed25519.PublicKey(pubBytes)
	ctx := context.Background()
	c, err := store.Dial(ctx, parts[0], pub)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	p := player.New(c, player.Options{MediaKeys: []ed25519.PublicKey{pub}, Keys: keys.Dir(parts[1])})
	d := &discard{}
	start := time.Now()
	if err := p.Play(ctx, id, d, player.From{}); err != nil {
		return fail(err)
	}
	secs := time.Since(start).Seconds()
	fmt.Printf("peak_kib=%d frames=%d mbps=%f\n", peakRSS(), d.frames, float64(d.bytes)/secs/1e6)
	return 0
}

// discard is a sink that only counts.
type discard struct{ frames, bytes int }

func (d *discard) Start(context.Context, []media.Track) error { return nil }
func (d *discard) WriteFrame(_ context.Context, f media.Frame) error {
	d.frames++
	d.bytes += len(f.Data)
	return nil
}
func (d *discard) Discontinuity(context.Context) error { return nil }
func (d *discard) Close() error                        { return nil }

// peakRSS is the process's resident high-water mark (VmHWM), in KiB.
func peakRSS() int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return -1
}
