package scheduler

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/headend/schedstore/boltstore"
	"github.com/boxswarm/boxswarm/headend/schedstore/pgstore"
	"github.com/boxswarm/boxswarm/headend/schedstore/storetest"
	"github.com/boxswarm/boxswarm/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// ScaleSizesEnv overrides the swarm sizes BenchmarkScale measures, as a
// comma-separated list of box counts.
const ScaleSizesEnv = "BOXSWARM_SCALE_SIZES"

// The benchmark's swarm: every box registered, holding two titles and
// listing five it mostly lacks, so every box is a receiver waiting in the
// high-priority queue and a donor of two titles.
const (
	scaleTitles    = 1000
	scaleHoldings  = 2
	scaleList      = 5
	scaleBatch     = 10_000 // boxes per store Update while filling the store
	scaleRegister  = 4096   // Register messages per loop pass, as Run batches them
	scaleDecisions = 5000   // decisions timed at every size
)

// BenchmarkScale measures the scheduler with 10k, 100k and 1M registered
// boxes on both backends: the cost of one scheduling decision (choosing
// the receiver, the title and the donors, and committing the transfer and
// its messages), the memory the working state takes per box, the start-up
// load and the rate at which a reconnecting swarm registers. Run it with
// -benchtime 1x: each size is built once.
func BenchmarkScale(b *testing.B) {
	sizes := []int{10_000, 100_000, 1_000_000}
	if s := os.Getenv(ScaleSizesEnv); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 2*scaleDecisions {
				b.Fatalf("%s=%q: want box counts of at least %d", ScaleSizesEnv, s, 2*scaleDecisions)
			}
			sizes = append(sizes, n)
		}
	}
	backends := []struct {
		name string
		open func(b *testing.B) schedstore.Store
	}{
		{"bolt", func(b *testing.B) schedstore.Store {
			s, err := boltstore.Open(filepath.Join(b.TempDir(), "scheduler.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}},
		{"postgres", func(b *testing.B) schedstore.Store {
			dsn := pgtest.Start(b)
			s, err := pgstore.Open(context.Background(), dsn)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}},
	}
	for _, be := range backends {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/boxes=%d", be.name, n), func(b *testing.B) {
				for range b.N {
					scaleRun(b, be.open(b), n)
				}
			})
		}
	}
}

func scaleRun(b *testing.B, store schedstore.Store, n int) {
	ctx := context.Background()
	b.StopTimer()
	fillStart := time.Now()
	scaleFill(b, store, n)
	fill := time.Since(fillStart)

	heap0, rss0 := memory()
	_, key, _ := ed25519.GenerateKey(nil)
	loadStart := time.Now()
	s, err := New(ctx, Config{Store: store, Key: key, Budget: 1000})
	if err != nil {
		b.Fatal(err)
	}
	load := time.Since(loadStart)

	// The swarm reconnects: every box connects and registers, through the
	// loop, as the gateway hands messages over.
	s.cfg.Budget = 0
	regStart := time.Now()
	for start := 0; start < n; start += scaleRegister {
		var reqs []*request
		for i := start; i < min(n, start+scaleRegister); i++ {
			id := storetest.ScatteredBoxID(i)
			reqs = append(reqs, &request{kind: reqConnected, box: id, done: make(chan struct{})},
				&request{kind: reqDeliver, box: id, seq: 1, body: scaleRegisterMsg(i), done: make(chan struct{})})
		}
		s.Iterate(ctx, reqs)
		for _, r := range reqs {
			if r.err != nil {
				b.Fatalf("register: %v", r.err)
			}
		}
	}
	register := time.Since(regStart)
	heap1, rss1 := memory()

	// Decisions, with the default budget per pass.
	s.cfg.Budget = 1000
	jobs0 := len(s.st.jobs)
	b.StartTimer()
	decStart := time.Now()
	for pass := 0; len(s.st.jobs)-jobs0 < scaleDecisions; pass++ {
		if pass > 4*scaleDecisions/s.cfg.Budget {
			b.Fatalf("only %d decisions after %d passes", len(s.st.jobs)-jobs0, pass)
		}
		// A no-op request carries the pass's commit error, if any.
		r := &request{kind: reqFunc, fn: func(*Scheduler) error { return nil }, done: make(chan struct{})}
		s.Iterate(ctx, []*request{r})
		if r.err != nil {
			b.Fatalf("decision pass: %v", r.err)
		}
	}
	decisions := len(s.st.jobs) - jobs0
	dec := time.Since(decStart)
	b.StopTimer()
	b.ReportMetric(float64(dec.Nanoseconds())/float64(decisions), "ns/decision")
	b.ReportMetric(float64(heap1-heap0)/float64(n), "heap-B/box")
	b.ReportMetric(float64(rss1-rss0)/float64(n), "rss-B/box")
	b.ReportMetric(load.Seconds(), "load-s")
	b.ReportMetric(float64(2*n)/register.Seconds(), "register-msg/s")
	b.ReportMetric(fill.Seconds(), "fill-s")
	runtime.KeepAlive(s)
}

// memory returns the live heap after a collection and the process's
// anonymous resident memory: the second leaves out the store's file
// mapping, which the kernel may drop and refill.
func memory() (heap, rssAnon uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	f, err := os.Open("/proc/self/status")
	if err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "RssAnon:"); ok {
				kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				rssAnon = kb << 10
			}
		}
	}
	return ms.HeapAlloc, rssAnon
}

var scaleNATs = []api.NATType{api.NATFullCone, api.NATRestricted, api.NATPortRestricted, api.NATSymmetric}

func scaleRegisterMsg(i int) api.Register {
	return api.Register{Capacity: 1 << 40, Free: 1 << 39, UpKbps: 40_000, DownKbps: 20_000,
		NAT: scaleNATs[i%len(scaleNATs)], Location: api.Location{Region: fmt.Sprintf("r%d", i%4), ISP: fmt.Sprintf("isp-%d", i%20)}}
}

// scaleFill writes the swarm as a head-end that has run for a while holds
// it: titles, activated boxes, what they hold and their lists.
func scaleFill(b *testing.B, store schedstore.Store, n int) {
	ctx := context.Background()
	published := time.Now().Add(-24 * time.Hour)
	err := store.Update(ctx, func(tx schedstore.Tx) error {
		for t := range scaleTitles {
			err := tx.PutTitle(schedstore.Title{ID: storetest.ScatteredTitleID(t), Pieces: 1000, PieceSize: 1 << 20,
				PayloadSize: 1000 << 20, PublishAt: published})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	for start := 0; start < n; start += scaleBatch {
		err := store.Update(ctx, func(tx schedstore.Tx) error {
			for i := start; i < min(n, start+scaleBatch); i++ {
				id := storetest.ScatteredBoxID(i)
				reg := scaleRegisterMsg(i)
				err := tx.PutBox(schedstore.Box{ID: id, Account: "account", Capacity: reg.Capacity, Free: reg.Free,
					UpKbps: reg.UpKbps, DownKbps: reg.DownKbps, NAT: reg.NAT, Location: reg.Location, Activated: published})
				if err != nil {
					return err
				}
				for h := range scaleHoldings {
					if err := tx.PutHolding(schedstore.Holding{Box: id, Title: storetest.ScatteredTitleID((i*7 + h*13) % scaleTitles), Complete: true}); err != nil {
						return err
					}
				}
				list := schedstore.PriorityList{Box: id, Version: 1}
				for j := range scaleList {
					list.Titles = append(list.Titles, storetest.ScatteredTitleID((i*11+j*17+3)%scaleTitles))
				}
				if err := tx.PutPriorityList(list); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
