package sim

import (
	"context"
	"math"
	"reflect"
	"testing"
	"time"
)

// TestStandardScenario runs the standard scenario at CI length under the
// real scheduler and every baseline, and checks the goals of issue 8: the
// scheduler's central egress within 1.1× of the lower bound and its p95
// request-to-playable within 1.5× of the downlink bound, ahead of every
// baseline on both.
func TestStandardScenario(t *testing.T) {
	sc := Standard().Reduced()
	rs := runAll(t, sc)
	t.Logf("\n%s", Table(rs))
	ours := rs[0]
	if ours.LowerBound == 0 {
		t.Fatal("the lower bound is zero: the window holds no premiere, so the egress goal measures nothing")
	}
	if ours.EgressRatio > 1.1 {
		t.Errorf("central egress %.2f× the lower bound, want ≤ 1.1×", ours.EgressRatio)
	}
	if ours.RatioP95 > 1.5 {
		t.Errorf("p95 request to playable %.2f× the downlink bound, want ≤ 1.5×", ours.RatioP95)
	}
	for _, b := range rs[1:] {
		if ours.EgressRatio >= b.EgressRatio {
			t.Errorf("central egress %.2f× the bound, not ahead of %s (%.2f×)", ours.EgressRatio, b.Policy, b.EgressRatio)
		}
		if ours.RatioP95 >= b.RatioP95 {
			t.Errorf("p95 %.2f× the downlink bound, not ahead of %s (%.2f×)", ours.RatioP95, b.Policy, b.RatioP95)
		}
	}
	if ours.Playable < ours.Requests*9/10 {
		t.Errorf("%d of %d requests playable by the end", ours.Playable, ours.Requests)
	}
	if ours.ZeroCopyTitles != 0 {
		t.Errorf("%d titles had no online copy at some sample", ours.ZeroCopyTitles)
	}
}

// TestHighChurn: with a fifth of the boxes offline at any time, every
// requested title is still delivered and no transfer is stuck. After the
// window the run drains (no new requests) for up to an hour: by then every
// request of a box that is on must be playable.
func TestHighChurn(t *testing.T) {
	sc := Standard().With("churn-20", func(s *Scenario) { s.Churn = 0.20 }).Reduced()
	sc.Boxes = 3000
	r, err := Run(context.Background(), sc, "boxswarm", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", Table([]Results{r}))
	t.Logf("%d requests wait on boxes that are off at the end", r.UnfinishedOff)
	if r.Unfinished != 0 {
		t.Errorf("%d requests on boxes that are on still unfinished after the drain, the oldest waiting %.0f s", r.Unfinished, r.OldestWait)
	}
	if r.StuckFlows != 0 {
		t.Errorf("%d transfers moved nothing for 10 minutes", r.StuckFlows)
	}
	if r.Playable+r.UnfinishedOff != r.Requests {
		t.Errorf("%d playable and %d on boxes that are off, of %d requests", r.Playable, r.UnfinishedOff, r.Requests)
	}
}

// TestSameSeedSameResults: a run is a function of its scenario and seed,
// for the real scheduler too; another seed gives another run.
func TestSameSeedSameResults(t *testing.T) {
	sc := Standard().Reduced()
	sc.Boxes, sc.Titles, sc.Warmup, sc.Duration = 1500, 300, 10*time.Minute, 40*time.Minute
	var rs [3]Results
	for i := range rs {
		if i == 2 {
			sc.Seed++
		}
		r, err := Run(context.Background(), sc, "boxswarm", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.MicrosPerDecide = 0 // wall-clock time, the one thing that may differ
		rs[i] = r
	}
	if !reflect.DeepEqual(rs[0], rs[1]) {
		t.Errorf("the same seed gave two results:\n%+v\n%+v", rs[0], rs[1])
	}
	if reflect.DeepEqual(rs[0], rs[2]) {
		t.Error("another seed gave the same results")
	}
}

func TestScenarioValidation(t *testing.T) {
	for name, f := range map[string]func(*Scenario){
		"no boxes":      func(s *Scenario) { s.Boxes = 0 },
		"churn of 1":    func(s *Scenario) { s.Churn = 1 },
		"no servers":    func(s *Scenario) { s.Clusters = 0 },
		"zero step":     func(s *Scenario) { s.Step = 0 },
		"negative zipf": func(s *Scenario) { s.Zipf = -1 },
	} {
		if _, err := Run(context.Background(), Standard().With(name, f), "boxswarm", nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := Run(context.Background(), Standard(), "nonsense", nil); err == nil {
		t.Error("an unknown policy ran")
	}
}

func runAll(t *testing.T, sc Scenario) []Results {
	t.Helper()
	var rs []Results
	for _, p := range Policies {
		start := time.Now()
		r, err := Run(context.Background(), sc, p, nil)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		t.Logf("%s: %v of wall time", p, time.Since(start).Round(time.Millisecond))
		if math.IsNaN(r.RatioP95) {
			t.Fatalf("%s: no request became playable", p)
		}
		rs = append(rs, r)
	}
	return rs
}
