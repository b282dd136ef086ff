package sim

import (
	"math"
	"slices"
	"time"
)

// Results is what one run measured, over the measured window.
type Results struct {
	Scenario string
	Policy   string

	CentralBytes int64 // from media servers, plus what the TURN relay carried
	ServerBytes  int64
	RelayBytes   int64
	PeerBytes    int64 // box to box, directly
	LowerBound   int64 // one copy of each requested title, plus re-seeds
	// EgressRatio is CentralBytes over LowerBound.
	EgressRatio float64
	PeerShare   float64 // of all bytes moved

	Requests   int // made in the window
	Playable   int // of those, playable by the end
	Unfinished int // still waiting at the end, on boxes that are on
	// UnfinishedOff are still waiting on boxes switched off at the end:
	// nothing can reach them.
	UnfinishedOff int
	OldestWait    float64 // seconds the box was on, the longest wait among the unfinished
	// Request to playable, seconds, and the same divided by what the
	// receiver's downlink allows (per request).
	LatencyP50, LatencyP95, LatencyP99 float64
	BoundP50, BoundP95                 float64
	RatioP50, RatioP95, RatioP99       float64

	UploadJain float64 // Jain's fairness index of bytes uploaded per box
	UploadMax  float64 // the busiest box's upload over the mean

	Decisions        int
	MicrosPerDecide  float64 // policy CPU (scheduler pass, commit included) per decision
	MsgsPerBoxHour   float64
	StuckFlows       int // flows that moved nothing in their last 10 minutes
	ZeroCopyTitles   int // titles that, at some sample, had dropped to no online copy on any box
	MinCopiesSampled int // the fewest online box copies any title had at a sample
	Samples          []CopySample
}

// CopySample is the swarm's copies per title at one moment.
type CopySample struct {
	At                  time.Duration
	Min, P10, Median    int
	ZeroOnline, ZeroAll int // titles that dropped to no online copy, and to no copy at all
}

type metricsState struct {
	inWindow            bool
	windowStart         time.Duration
	server, relay, peer int64
	lb                  int64
	onlineCopies        []int32
	allCopies           []int32
	seeding             []bool // a server copy is already owed to the bound
	zeroSeen            []bool
	hadCopy             []bool
	lat, bound, ratio   []float64
	requests            int
	samples             []CopySample
}

func (m *metricsState) init(w *world) {
	m.growTitles(w.titles)
	for i := range w.boxes {
		for _, t := range w.nodes[i].disk {
			m.allCopies[t]++
			m.onlineCopies[t]++
		}
	}
}

func (m *metricsState) growTitles(n int) {
	for len(m.onlineCopies) < n {
		m.onlineCopies = append(m.onlineCopies, 0)
		m.allCopies = append(m.allCopies, 0)
		m.seeding = append(m.seeding, false)
		m.zeroSeen = append(m.zeroSeen, false)
		m.hadCopy = append(m.hadCopy, false)
	}
}

func (m *metricsState) startWindow(w *world) {
	m.inWindow = true
	m.windowStart = w.now
	for i := range w.nodes {
		w.nodes[i].uploaded = 0
	}
}

func (m *metricsState) copyAdded(w *world, b int32, t titleIdx) {
	m.allCopies[t]++
	if w.nodes[b].online {
		m.onlineCopies[t]++
	}
	m.seeding[t] = false
}

func (m *metricsState) copyRemoved(w *world, b int32, t titleIdx) {
	m.allCopies[t]--
	if w.nodes[b].online {
		m.onlineCopies[t]--
	}
}

func (m *metricsState) onlineChanged(w *world, b int32, on bool) {
	if w.nodes[b].server {
		return
	}
	d := int32(-1)
	if on {
		d = 1
	}
	for _, t := range w.nodes[b].disk {
		m.onlineCopies[t] += d
	}
}

// requested charges the lower bound: a title no online box holds must
// leave the servers once, however clever the scheduler.
func (m *metricsState) requested(w *world, b int32, t titleIdx, counted bool) {
	if !m.inWindow {
		return
	}
	if counted {
		m.requests++
	}
	if m.onlineCopies[t] == 0 && !m.seeding[t] {
		m.seeding[t] = true
		m.lb += w.sc.titleBytes() - w.heldBytes(b, t)
	}
}

func (m *metricsState) playable(w *world, b int32, r request) {
	if !r.count {
		return
	}
	lat := w.waited(b, r).Seconds()
	bound := max(r.bound.Seconds(), w.sc.Step.Seconds())
	m.lat = append(m.lat, lat)
	m.bound = append(m.bound, bound)
	m.ratio = append(m.ratio, lat/bound)
}

func (m *metricsState) moved(w *world, f *flow, n int64) {
	if !m.inWindow {
		return
	}
	w.nodes[f.from].uploaded += n
	switch {
	case w.nodes[f.from].server:
		m.server += n
	case f.relayed:
		m.relay += n
	default:
		m.peer += n
	}
}

func (m *metricsState) sample(w *world) {
	c := slices.Clone(m.onlineCopies)
	slices.Sort(c)
	s := CopySample{At: w.now - m.windowStart, Min: int(c[0]), P10: int(c[len(c)/10]), Median: int(c[len(c)/2])}
	for t := range c {
		switch {
		case m.onlineCopies[t] > 0:
			m.hadCopy[t] = true
		case m.hadCopy[t]:
			// Dropped to zero; a premiere no box has received yet has not.
			s.ZeroOnline++
			m.zeroSeen[t] = true
		}
		if m.allCopies[t] == 0 && m.hadCopy[t] {
			s.ZeroAll++
		}
	}
	m.samples = append(m.samples, s)
}

func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func (m *metricsState) results(w *world, decisions int, busy time.Duration) Results {
	r := Results{Scenario: w.sc.Name, Policy: w.pol.name(),
		ServerBytes: m.server, RelayBytes: m.relay, PeerBytes: m.peer, CentralBytes: m.server + m.relay, LowerBound: m.lb,
		Requests: m.requests, Playable: len(m.lat), Decisions: decisions, Samples: m.samples}
	if m.lb > 0 {
		r.EgressRatio = float64(r.CentralBytes) / float64(m.lb)
	} else {
		r.EgressRatio = math.Inf(1)
	}
	if total := m.server + m.relay + m.peer; total > 0 {
		r.PeerShare = float64(m.peer) / float64(total)
	}
	var sum, sq, top float64
	for i := range w.boxes {
		u := float64(w.nodes[i].uploaded)
		sum += u
		sq += u * u
		top = max(top, u)
	}
	if sq > 0 {
		r.UploadJain = sum * sum / (float64(w.boxes) * sq)
		r.UploadMax = top / (sum / float64(w.boxes))
	}
	// A request still waiting has waited at least this long: counting it
	// so keeps a policy that strands requests from looking fast.
	for i := range w.boxes {
		for _, p := range w.nodes[i].pending {
			if !p.count {
				continue
			}
			if !w.nodes[i].online {
				r.UnfinishedOff++
			} else {
				r.Unfinished++
			}
			wait := w.waited(int32(i), p).Seconds()
			r.OldestWait = max(r.OldestWait, wait)
			m.lat = append(m.lat, wait)
			m.ratio = append(m.ratio, wait/max(p.bound.Seconds(), w.sc.Step.Seconds()))
		}
	}
	r.LatencyP50, r.LatencyP95, r.LatencyP99 = quantile(m.lat, .5), quantile(m.lat, .95), quantile(m.lat, .99)
	r.BoundP50, r.BoundP95 = quantile(m.bound, .5), quantile(m.bound, .95)
	r.RatioP50, r.RatioP95, r.RatioP99 = quantile(m.ratio, .5), quantile(m.ratio, .95), quantile(m.ratio, .99)

	for _, f := range w.flows {
		if !f.done && w.now-f.lastMove > 10*time.Minute {
			r.StuckFlows++
		}
	}
	if decisions > 0 {
		r.MicrosPerDecide = float64(busy.Microseconds()) / float64(decisions)
	}
	r.MsgsPerBoxHour = float64(w.pol.messages()) / float64(w.boxes) / w.now.Hours()
	r.MinCopiesSampled = math.MaxInt
	for _, s := range m.samples {
		r.MinCopiesSampled = min(r.MinCopiesSampled, s.Min)
	}
	for _, z := range m.zeroSeen {
		if z {
			r.ZeroCopyTitles++
		}
	}
	return r
}
