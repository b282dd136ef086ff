package rtc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
)

// Throughput benchmarks over loopback. Each reports MB/s (b.SetBytes,
// counting what the receivers read), cpu-s/GiB (user+system CPU of the
// whole test process, from getrusage, per GiB moved), and two counters
// that explain a slow run: udp-rcvbuf-drops (the host's UDP
// RcvbufErrors, /proc/net/snmp) and pion-drops (packets pion dropped
// because one of its 1 MB in-process buffers, ICE's or the webrtc mux's,
// was full). Either kind of drop costs SCTP a retransmission timeout of at
// least a second. Linux only: getrusage and /proc.
//
// The reference is TLS 1.3 over TCP loopback moving the same bytes in the
// same process (BenchmarkLoopback/tls13); compare ratios, not absolute
// numbers, on a shared machine.

// benchChunk is what each sender writes per b.N.
const benchChunk = 1 << 20

// benchTimeout bounds one benchmark run: a stalled transfer fails instead
// of hanging the benchmark.
const benchTimeout = 2 * time.Minute

// benchConfigs are the configurations benchmarked: the package defaults;
// the same with the garbage collector at GOGC=400, as transferd runs
// (pion allocates per packet, so with a small live heap the collector
// runs very often); and an 8 MiB SCTP receive window, the first default,
// whose bursts overflow pion's 1 MB in-process packet buffers.
var benchConfigs = []struct {
	name string
	sctp int
	gc   int // GOGC for the run; 0 leaves it
}{
	{"default", 0, 0},
	{"default-gogc400", 0, 400},
	{"sctp8MiB", 8 << 20, 0},
}

// setGC sets GOGC to gc (0: leave it) until the benchmark ends.
func setGC(b *testing.B, gc int) {
	if gc == 0 {
		return
	}
	old := debug.SetGCPercent(gc)
	b.Cleanup(func() { debug.SetGCPercent(old) })
}

// benchPayload is what senders write: random, so nothing on the path can
// shortcut it, and shared read-only by all senders.
var benchPayload = func() []byte {
	b := make([]byte, benchChunk)
	_, _ = mrand.NewChaCha8([32]byte{7}).Read(b)
	return b
}()

// dropCounter is a slog.Handler that counts pion's log lines about a
// dropped packet and discards everything else. pion logs those at Info or
// Warn, which pionLogs passes on at Debug.
type dropCounter struct{ n *atomic.Int64 }

func newDropCounter() dropCounter { return dropCounter{new(atomic.Int64)} }

func (d dropCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelDebug }

func (d dropCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "buffer is full") || strings.Contains(r.Message, "Failed to write packet") {
		d.n.Add(1)
	}
	return nil
}

func (d dropCounter) WithAttrs([]slog.Attr) slog.Handler { return d }
func (d dropCounter) WithGroup(string) slog.Handler      { return d }

func cpuSeconds(b testing.TB) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// udpRcvbufErrors is the host's count of UDP datagrams dropped because a
// socket's receive buffer was full.
func udpRcvbufErrors(b testing.TB) int64 {
	raw, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		b.Fatalf("read UDP counters: %v", err)
	}
	var names []string
	for line := range strings.SplitSeq(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i := 1; i < len(f) && i < len(names); i++ {
			if names[i] == "RcvbufErrors" {
				v, err := strconv.ParseInt(f[i], 10, 64)
				if err != nil {
					b.Fatalf("parse UDP RcvbufErrors %q: %v", f[i], err)
				}
				return v
			}
		}
	}
	b.Fatal("no UDP RcvbufErrors in /proc/net/snmp")
	return 0
}

// benchStream is one sender's end and the receiver's end of one stream.
type benchStream struct {
	w interface {
		io.Writer
		CloseWrite() error
	}
	r interface {
		io.Reader
		SetReadDeadline(time.Time) error
	}
}

// benchMove writes b.N chunks on every stream at once, reads each to
// io.EOF, checks the counts, and reports cpu-s/GiB and the drop counters.
// The timer covers the writes and the draining of every receiver.
func benchMove(b *testing.B, streams []benchStream, drops dropCounter) {
	deadline := time.Now().Add(benchTimeout)
	for _, s := range streams {
		if err := s.r.SetReadDeadline(deadline); err != nil {
			b.Fatal(err)
		}
	}
	want := int64(b.N) * benchChunk
	udp0, d0 := udpRcvbufErrors(b), int64(0)
	if drops.n != nil {
		d0 = drops.n.Load()
	}
	b.ResetTimer()
	cpu0 := cpuSeconds(b)

	var wg sync.WaitGroup
	errs := make(chan error, 2*len(streams))
	var got atomic.Int64
	for i, s := range streams {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range b.N {
				if _, err := s.w.Write(benchPayload); err != nil {
					errs <- fmt.Errorf("stream %d: write: %w", i, err)
					return
				}
			}
			if err := s.w.CloseWrite(); err != nil {
				errs <- fmt.Errorf("stream %d: close write: %w", i, err)
			}
		}()
		go func() {
			defer wg.Done()
			n, err := drain(s.r)
			got.Add(n)
			if err != nil {
				errs <- fmt.Errorf("stream %d: read after %d bytes: %w", i, n, err)
				return
			}
			if n != want {
				errs <- fmt.Errorf("stream %d: received %d bytes, want %d", i, n, want)
			}
		}()
	}
	wg.Wait()
	cpu := cpuSeconds(b) - cpu0
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Error(err)
	}
	if b.Failed() {
		return
	}
	b.ReportMetric(cpu/(float64(got.Load())/(1<<30)), "cpu-s/GiB")
	b.ReportMetric(float64(udpRcvbufErrors(b)-udp0), "udp-rcvbuf-drops")
	if drops.n != nil {
		b.ReportMetric(float64(drops.n.Load()-d0), "pion-drops")
	}
}

// drain reads r to io.EOF in reads of a whole message, as a piece
// receiver would (io.Copy to io.Discard reads 8 KiB at a time), and
// returns the bytes read.
func drain(r io.Reader) (int64, error) {
	buf := make([]byte, MaxMessage)
	var n int64
	for {
		m, err := r.Read(buf)
		n += int64(m)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// benchTransport is a loopback Transport configuration for benchmarks:
// the named SCTP window (0: the default), pion's drops counted.
func benchTransport(sctp int, drops dropCounter) Config {
	cfg := loopbackConfig()
	cfg.SCTPReceiveBuffer = sctp
	cfg.Log = slog.New(drops)
	return cfg
}

// BenchmarkLoopback moves bytes one way over one Conn, and over TLS 1.3
// on TCP, the reference.
func BenchmarkLoopback(b *testing.B) {
	for _, v := range benchConfigs {
		b.Run("rtc-"+v.name, func(b *testing.B) {
			setGC(b, v.gc)
			drops := newDropCounter()
			r := newRelay(b)
			send := r.add(box(1), benchTransport(v.sctp, drops))
			recv := r.add(box(2), benchTransport(v.sctp, drops))
			ctx, cancel := context.WithTimeout(b.Context(), benchTimeout)
			defer cancel()
			cs, cr := connectPair(b, ctx, send, recv, 1, true)
			defer cs.Close()
			defer cr.Close()
			b.SetBytes(benchChunk)
			benchMove(b, []benchStream{{cs, cr}}, drops)
		})
	}
	b.Run("tls13", func(b *testing.B) {
		cs, cr := tlsPair(b)
		b.SetBytes(benchChunk)
		benchMove(b, []benchStream{{cs, cr}}, dropCounter{})
	})
}

// BenchmarkMultiDonor has 1, 2 and 3 senders, each its own box and Conn,
// send to one receiver at once; MB/s is the aggregate.
func BenchmarkMultiDonor(b *testing.B) {
	for _, v := range benchConfigs {
		for senders := 1; senders <= 3; senders++ {
			b.Run(fmt.Sprintf("%s/senders=%d", v.name, senders), func(b *testing.B) {
				setGC(b, v.gc)
				drops := newDropCounter()
				r := newRelay(b)
				recv := r.add(box(100), benchTransport(v.sctp, drops))
				ctx, cancel := context.WithTimeout(b.Context(), benchTimeout)
				defer cancel()
				streams := make([]benchStream, senders)
				for i := range senders {
					send := r.add(box(byte(i+1)), benchTransport(v.sctp, drops))
					cs, cr := connectPair(b, ctx, send, recv, api.TransferID(i+1), true)
					defer cs.Close()
					defer cr.Close()
					streams[i] = benchStream{cs, cr}
				}
				b.SetBytes(int64(senders) * benchChunk)
				benchMove(b, streams, drops)
			})
		}
	}
}

// tlsPair returns the client and server ends of a TLS 1.3 connection over
// TCP loopback, closed in b.Cleanup.
func tlsPair(b *testing.B) (*tls.Conn, *tls.Conn) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion:   tls.VersionTLS13,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Second)
	defer cancel()
	type accepted struct {
		c   *tls.Conn
		err error
	}
	ach := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ach <- accepted{nil, err}
			return
		}
		tc := c.(*tls.Conn)
		ach <- accepted{tc, tc.HandshakeContext(ctx)}
	}()
	d := tls.Dialer{Config: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13}}
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		b.Fatalf("dial TLS %s: %v", ln.Addr(), err)
	}
	a := <-ach
	if a.err != nil {
		c.Close()
		b.Fatalf("accept TLS: %v", a.err)
	}
	client := c.(*tls.Conn)
	if v := client.ConnectionState().Version; v != tls.VersionTLS13 {
		b.Fatalf("TLS version %x, want TLS 1.3", v)
	}
	b.Cleanup(func() { client.Close(); a.c.Close() })
	return client, a.c
}

// TestBenchHelpers checks the benchmark plumbing that a benchmark run
// would otherwise only exercise unchecked: the drop counter matches both
// of pion's messages and nothing else, and the UDP counter parses.
func TestBenchHelpers(t *testing.T) {
	d := newDropCounter()
	log := slog.New(d).With("pion", "mux")
	for _, tc := range []struct {
		msg   string
		level slog.Level
		count bool
	}{
		{"mux: endpoint buffer is full, dropping packet", slog.LevelDebug, true},
		{"Failed to write packet: buffer is full", slog.LevelDebug, true},
		{"mux: endpoint buffer is full, dropping packet", levelTrace, false},
		{"rtc: connection open", slog.LevelInfo, false},
	} {
		before := d.n.Load()
		log.Log(context.Background(), tc.level, tc.msg)
		if got := d.n.Load() - before; got != map[bool]int64{true: 1, false: 0}[tc.count] {
			t.Errorf("%q at %v counted %d", tc.msg, tc.level, got)
		}
	}
	if n := udpRcvbufErrors(t); n < 0 {
		t.Fatalf("UDP RcvbufErrors %d", n)
	}
	if c := cpuSeconds(t); c <= 0 {
		t.Fatalf("process CPU %v s", c)
	}
}
