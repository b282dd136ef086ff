package sim

import (
	"fmt"
	"time"
)

// Scenario is one simulated deployment. Standard returns the reference
// one; the sensitivity runs vary one field of it.
type Scenario struct {
	Name string
	Seed uint64

	Boxes      int     // viewers' boxes
	Titles     int     // catalog at the start
	Zipf       float64 // popularity exponent over the catalog's ranks
	TitleGB    float64 // every title's payload
	PieceMB    int     // piece size
	DiskTitles int     // titles a box's disk holds

	UpMbps, DownMbps float64 // every box's access link
	ISPs, Regions    int

	// Churn is the share of boxes offline at any moment; an offline spell
	// lasts OfflineMean on average, so a box goes off every
	// OfflineMean×(1−Churn)/Churn on average.
	Churn       float64
	OfflineMean time.Duration

	RequestsPerBoxDay float64       // titles a viewer adds to the list per day
	WatchAfter        time.Duration // a delivered title is watched, then leaves the list, this long after (mean)
	NewReleasesPerDay float64       // titles added to the catalog during the run, each entering the top 20

	Clusters          int // media server clusters
	ServersPerCluster int // servers in each
	// ClusterEgressGbps is one cluster's egress cap, shared by its
	// servers. The standard scenario provisions 1 Gb/s a cluster: a
	// swarm's premieres and stragglers need far less, video on demand of
	// the same audience about 4.5 Gb/s on average.
	ClusterEgressGbps float64
	// ClusterOutage takes cluster 0 offline this long, from the middle of
	// the measured window (0: no outage).
	ClusterOutage time.Duration

	Warmup   time.Duration // run before measuring, so that start-up bursts are not counted
	Duration time.Duration // measured
	// Drain runs on after the window, without new requests, until every
	// request counted is playable or this has passed (0: no drain).
	Drain time.Duration
	Step  time.Duration // the simulator's tick and the scheduler's pass
}

// Standard is the reference scenario of issue 8, in full: 10k boxes, a
// 2,000-title catalog with Zipf 0.8 popularity, 10 Mb/s up and 50 Mb/s
// down, 5% churn, 40-title disks.
func Standard() Scenario {
	return Scenario{
		Name: "standard", Seed: 1,
		Boxes: 10_000, Titles: 2_000, Zipf: 0.8, TitleGB: 2, PieceMB: 8, DiskTitles: 40,
		UpMbps: 10, DownMbps: 50, ISPs: 20, Regions: 4,
		Churn: 0.05, OfflineMean: time.Hour,
		RequestsPerBoxDay: 3, WatchAfter: 3 * time.Hour, NewReleasesPerDay: 10,
		Clusters: 3, ServersPerCluster: 2, ClusterEgressGbps: 1, ClusterOutage: 30 * time.Minute,
		Warmup: time.Hour, Duration: 6 * time.Hour, Drain: time.Hour, Step: time.Second,
	}
}

// Reduced is s at CI length: the same swarm and rates over a shorter
// window.
func (s Scenario) Reduced() Scenario {
	s.Name += "-reduced"
	s.Warmup = 20 * time.Minute
	s.Duration = 90 * time.Minute
	s.ClusterOutage = 15 * time.Minute
	return s
}

// With returns s renamed, changed by f.
func (s Scenario) With(name string, f func(*Scenario)) Scenario {
	s.Name = name
	f(&s)
	return s
}

// Validate reports a scenario the simulator cannot run.
func (s Scenario) Validate() error {
	switch {
	case s.Boxes < 10 || s.Titles < 10:
		return fmt.Errorf("scenario %s: %d boxes and %d titles (at least 10 each)", s.Name, s.Boxes, s.Titles)
	case s.Zipf < 0 || s.TitleGB <= 0 || s.PieceMB <= 0 || s.DiskTitles < 2:
		return fmt.Errorf("scenario %s: zipf %v, title %v GB, piece %d MB, disk %d titles", s.Name, s.Zipf, s.TitleGB, s.PieceMB, s.DiskTitles)
	case s.UpMbps <= 0 || s.DownMbps <= 0 || s.ISPs < 1 || s.Regions < 1:
		return fmt.Errorf("scenario %s: links %v/%v Mb/s, %d ISPs, %d regions", s.Name, s.UpMbps, s.DownMbps, s.ISPs, s.Regions)
	case s.Churn < 0 || s.Churn >= 1 || (s.Churn > 0 && s.OfflineMean <= 0):
		return fmt.Errorf("scenario %s: churn %v with offline spells of %v", s.Name, s.Churn, s.OfflineMean)
	case s.Clusters < 1 || s.ServersPerCluster < 1 || s.ClusterEgressGbps <= 0:
		return fmt.Errorf("scenario %s: %d clusters of %d servers at %v Gb/s", s.Name, s.Clusters, s.ServersPerCluster, s.ClusterEgressGbps)
	case s.Step <= 0 || s.Duration < s.Step || s.Warmup < 0 || s.Drain < 0:
		return fmt.Errorf("scenario %s: step %v, warm-up %v, duration %v", s.Name, s.Step, s.Warmup, s.Duration)
	}
	return nil
}

func (s Scenario) titleBytes() int64 { return int64(s.TitleGB * (1 << 30)) }
func (s Scenario) pieceBytes() int64 { return int64(s.PieceMB) << 20 }
func (s Scenario) pieces() int {
	return int((s.titleBytes() + s.pieceBytes() - 1) / s.pieceBytes())
}
