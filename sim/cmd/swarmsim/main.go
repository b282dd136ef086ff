// Command swarmsim runs the swarm simulator's scenarios (package sim)
// under the real scheduler and the baselines, and writes the results
// table and the plots.
//
//	swarmsim -out docs/sim             the standard scenario and the sensitivity runs, with plots
//	swarmsim -only standard -reduced   the standard scenario at CI length
//	swarmsim -scale 10000,100000,1000000 -policies boxswarm
//	                                   cost per decision against swarm size
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/boxswarm/boxswarm/sim"
	"github.com/boxswarm/boxswarm/sim/plot"
)

func main() {
	out := flag.String("out", "out/sim", "directory for results.md, results.json and the plots")
	only := flag.String("only", "", "run only this scenario (standard, uplink-1, churn-20, …); empty: all")
	reduced := flag.Bool("reduced", false, "every scenario at CI length (a shorter measured window)")
	policies := flag.String("policies", strings.Join(sim.Policies, ","), "policies to run, comma-separated")
	scale := flag.String("scale", "", "instead of the scenarios: the standard scenario at these box counts (comma-separated), short windows, reporting wall time, memory and cost per decision")
	seed := flag.Uint64("seed", 1, "random seed: the same seed gives the same results")
	replot := flag.Bool("replot", false, "only redraw the plots from the results.json in -out")
	verbose := flag.Bool("v", false, "log the scheduler's warnings")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	level := slog.LevelError
	if *verbose {
		level = slog.LevelWarn
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	pols := strings.Split(*policies, ",")
	var err error
	switch {
	case *replot:
		err = redraw(*out, pols)
	case *scale != "":
		err = runScale(ctx, *out, *scale, *seed, pols, log)
	default:
		err = runScenarios(ctx, *out, *only, *reduced, *seed, pols, log)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "swarmsim:", err)
		os.Exit(1)
	}
}

// scenarios are the standard one and the sensitivity runs, each changing
// one thing.
func scenarios(seed uint64) []sim.Scenario {
	std := sim.Standard()
	std.Seed = seed
	return []sim.Scenario{
		std,
		std.With("uplink-1", func(s *sim.Scenario) { s.UpMbps = 1 }),
		std.With("uplink-50", func(s *sim.Scenario) { s.UpMbps = 50 }),
		std.With("churn-1", func(s *sim.Scenario) { s.Churn = 0.01 }),
		std.With("churn-20", func(s *sim.Scenario) { s.Churn = 0.20 }),
		std.With("zipf-0.6", func(s *sim.Scenario) { s.Zipf = 0.6 }),
		std.With("zipf-1.0", func(s *sim.Scenario) { s.Zipf = 1.0 }),
		std.With("boxes-1k", func(s *sim.Scenario) { s.Boxes = 1_000 }),
		std.With("boxes-3k", func(s *sim.Scenario) { s.Boxes = 3_000 }),
		// Servers sized for video on demand: the baseline's best case.
		std.With("servers-10g", func(s *sim.Scenario) { s.ClusterEgressGbps = 10 }),
	}
}

func runScenarios(ctx context.Context, out, only string, reduced bool, seed uint64, pols []string, log *slog.Logger) error {
	var results []sim.Results
	for _, sc := range scenarios(seed) {
		if only != "" && sc.Name != only {
			continue
		}
		if reduced {
			sc = sc.Reduced()
		}
		for _, p := range pols {
			start := time.Now()
			r, err := sim.Run(ctx, sc, p, log)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "%s / %s: %v\n", sc.Name, p, time.Since(start).Round(time.Second))
			results = append(results, r)
		}
	}
	if len(results) == 0 {
		return fmt.Errorf("no scenario named %q", only)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	table := sim.Table(results)
	fmt.Print(table)
	if err := os.WriteFile(filepath.Join(out, "results.md"), []byte(table), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "results.json"), js, 0o644); err != nil {
		return err
	}
	return plots(out, results, pols, reduced)
}

func redraw(out string, pols []string) error {
	js, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		return err
	}
	var rs []sim.Results
	if err := json.Unmarshal(js, &rs); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(out, "results.json"), err)
	}
	reduced := len(rs) > 0 && strings.HasSuffix(rs[0].Scenario, "-reduced")
	return plots(out, rs, pols, reduced)
}

// plots draws offload and latency against swarm size, uplink and churn,
// for every policy, from the runs that vary each.
func plots(out string, rs []sim.Results, pols []string, reduced bool) error {
	suffix := ""
	if reduced {
		suffix = "-reduced"
	}
	axes := []struct {
		file, xlabel string
		logX         bool
		points       map[string]float64 // scenario → x
	}{
		{"size", "boxes in the swarm", true, map[string]float64{"boxes-1k": 1_000, "boxes-3k": 3_000, "standard": 10_000}},
		{"uplink", "box uplink (Mb/s)", true, map[string]float64{"uplink-1": 1, "standard": 10, "uplink-50": 50}},
		{"churn", "boxes offline at any time (%)", false, map[string]float64{"churn-1": 1, "standard": 5, "churn-20": 20}},
	}
	for _, ax := range axes {
		offload := plot.Chart{Title: "Peer offload against " + ax.xlabel, XLabel: ax.xlabel, YLabel: "bytes sent box to box (%)", LogX: ax.logX}
		// Video on demand from capped servers runs off the top (tens of
		// times the bound); the table has its numbers.
		ymin, ymax := 0.0, 6.0
		latency := plot.Chart{Title: "p95 request to playable against " + ax.xlabel, XLabel: ax.xlabel, YLabel: "p95 / downlink bound (cut at 6)",
			LogX: ax.logX, YMin: &ymin, YMax: &ymax}
		for _, p := range pols {
			var o, l plot.Series
			o.Name, l.Name = p, p
			for _, r := range rs {
				x, ok := ax.points[strings.TrimSuffix(r.Scenario, suffix)]
				if !ok || r.Policy != p {
					continue
				}
				o.X, o.Y = append(o.X, x), append(o.Y, 100*r.PeerShare)
				l.X, l.Y = append(l.X, x), append(l.Y, min(r.RatioP95, ymax))
			}
			sortSeries(&o)
			sortSeries(&l)
			for _, pair := range []struct {
				c *plot.Chart
				s plot.Series
			}{{&offload, o}, {&latency, l}} {
				if len(pair.s.X) > 1 {
					pair.c.Series = append(pair.c.Series, pair.s)
				}
			}
		}
		for _, c := range []struct {
			name  string
			chart plot.Chart
		}{{"offload", offload}, {"latency", latency}} {
			if len(c.chart.Series) == 0 {
				continue
			}
			if err := c.chart.WriteFile(filepath.Join(out, c.name+"-"+ax.file+".svg")); err != nil {
				return err
			}
		}
	}
	return copiesChart(out, rs, suffix)
}

// copiesChart draws the copies per title the swarm keeps over the
// standard run, as the scheduler's shadow lists maintain them.
func copiesChart(out string, rs []sim.Results, suffix string) error {
	for _, r := range rs {
		if r.Scenario != "standard"+suffix || r.Policy != "boxswarm" || len(r.Samples) < 2 {
			continue
		}
		c := plot.Chart{Title: "Online copies per title, standard scenario", XLabel: "hours into the measured window", YLabel: "copies on online boxes"}
		names := []string{"fewest (any title)", "10th percentile", "median"}
		for i, name := range names {
			sr := plot.Series{Name: name}
			for _, smp := range r.Samples {
				sr.X = append(sr.X, smp.At.Hours())
				sr.Y = append(sr.Y, float64([]int{smp.Min, smp.P10, smp.Median}[i]))
			}
			c.Series = append(c.Series, sr)
		}
		return c.WriteFile(filepath.Join(out, "copies-standard.svg"))
	}
	return nil
}

func sortSeries(s *plot.Series) {
	for i := 1; i < len(s.X); i++ {
		for j := i; j > 0 && s.X[j] < s.X[j-1]; j-- {
			s.X[j], s.X[j-1] = s.X[j-1], s.X[j]
			s.Y[j], s.Y[j-1] = s.Y[j-1], s.Y[j]
		}
	}
}

// runScale runs the standard scenario at each size for a short window
// and reports what the scheduler costs.
func runScale(ctx context.Context, out, sizes string, seed uint64, pols []string, log *slog.Logger) error {
	var b strings.Builder
	b.WriteString("| boxes | policy | wall time | peak heap | µs per decision | decisions | msgs per box-hour |\n|---|---|---|---|---|---|---|\n")
	for _, f := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 10 {
			return fmt.Errorf("-scale %q: want box counts of at least 10", sizes)
		}
		sc := sim.Standard().With(fmt.Sprintf("scale-%d", n), func(s *sim.Scenario) {
			s.Seed, s.Boxes = seed, n
			s.Warmup, s.Duration, s.ClusterOutage, s.Drain = 5*time.Minute, 15*time.Minute, 0, 0
		})
		for _, p := range pols {
			runtime.GC()
			peak := startPeakHeap()
			start := time.Now()
			r, err := sim.Run(ctx, sc, p, log)
			if err != nil {
				return err
			}
			wall := time.Since(start)
			line := fmt.Sprintf("| %d | %s | %v | %.1f GiB | %.1f | %d | %.1f |\n", n, p, wall.Round(time.Second),
				float64(peak())/(1<<30), r.MicrosPerDecide, r.Decisions, r.MsgsPerBoxHour)
			fmt.Fprint(os.Stderr, line)
			b.WriteString(line)
		}
	}
	fmt.Print(b.String())
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	return errors.Join(os.WriteFile(filepath.Join(out, "scale.md"), []byte(b.String()), 0o644))
}

// startPeakHeap samples the heap every 100 ms until the returned function
// is called, which reports the peak.
func startPeakHeap() func() uint64 {
	done := make(chan struct{})
	res := make(chan uint64)
	go func() {
		var peak uint64
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			select {
			case <-done:
				res <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); return <-res }
}
