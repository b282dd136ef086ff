package demux

import (
	"io"
	"os"
	"runtime"
	"syscall"
	"testing"

	"github.com/boxswarm/boxswarm/media/mediatest"
)

// BenchmarkDemux demuxes a whole file, the one BOXSWARM_DEMUX_BENCH names
// or a 20 s 1080p H.264/AAC MPEG-TS it makes, and reports the peak heap in
// use while it does (sampled every 64 frames) and the process's peak RSS.
//
//	BOXSWARM_DEMUX_BENCH=movie.mp4 go test -run - -bench Demux -benchtime 1x ./media/demux
func BenchmarkDemux(b *testing.B) {
	path := os.Getenv("BOXSWARM_DEMUX_BENCH")
	if path == "" {
		c := mediatest.TSH264AAC
		c.Name, c.File, c.Seconds, c.Video = "bench", "bench.ts", 20, "testsrc2=size=1920x1080:rate=30"
		c.Args = append([]string{"-b:v", "8M"}, c.Args...)
		path = mediatest.Make(b, b.TempDir(), c)
	}
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Size())
	var peak uint64
	var ms runtime.MemStats
	frames := 0
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		src, err := quiet.Open(f, st.Size())
		if err != nil {
			b.Fatal(err)
		}
		for frames = 0; ; frames++ {
			_, err := src.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if frames%64 == 0 {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
		}
		f.Close()
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "maxrss-MiB") // Linux: KiB
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(frames), "frames")
}
