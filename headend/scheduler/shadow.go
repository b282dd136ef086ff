package scheduler

import (
	"slices"
	"sort"

	"github.com/boxswarm/boxswarm/headend/placement"
)

// The shadow list is the scheduler's own list for each box, beside the
// viewer's: it keeps at least MinCopies copies of every title in the
// swarm, puts titles that will be wanted (popular on lists, about to be
// published) where peers can send them from, and fills boxes whose viewers
// listed little with the likeliest picks. Shadow items are only ever low
// priority, and only go into space the box has free.

const (
	maxShadow          = 8    // shadow items per box
	placementsPerPlan  = 256  // new copies placed per plan
	shortListBoxesStep = 1024 // boxes looked at per plan for short lists
	prereleaseWindow   = 72 * 3600 * 1000
	hotPerCopy         = 8 // one copy wanted per this many lists naming a title
)

// planShadow runs every ShadowEvery. Its cost is bounded by the number of
// titles and by the constants above, never by the number of boxes.
func (s *Scheduler) planShadow() {
	st := s.st
	placed := 0
	byDemand := make([]titleIdx, 0, len(st.titles))
	for i := range st.titles {
		t := titleIdx(i)
		ti := &st.titles[i]
		if ti.publishAt > s.nowMS+prereleaseWindow {
			continue
		}
		byDemand = append(byDemand, t)
		want := max(int32(s.cfg.MinCopies), ti.demand/hotPerCopy)
		for have := ti.copies + s.inShadow(t); have < want && placed < placementsPerPlan; have++ {
			if !s.placeCopy(t, noBox) {
				break
			}
			placed++
		}
	}
	placed += s.placeOnClusters(placementsPerPlan - placed)
	sort.Slice(byDemand, func(i, j int) bool { return st.titles[byDemand[i]].demand > st.titles[byDemand[j]].demand })
	s.fillShortLists(byDemand)
	s.metrics.shadowPlaced.Add(float64(placed))
}

// placeOnClusters puts each title on the shadow list of a media server in
// every cluster that placement says keeps it and where no server holds or
// is fetching it: servers then get it like any box, from other servers or
// from boxes. It places at most limit copies; its cost is the titles times
// the servers.
func (s *Scheduler) placeOnClusters(limit int) int {
	st := s.st
	byCluster := map[string][]boxIdx{}
	for _, b := range st.servers {
		if x := &st.boxes[b]; x.online && x.registered {
			name := st.clusters.names[x.cluster]
			byCluster[name] = append(byCluster[name], b)
		}
	}
	if len(byCluster) < 2 {
		return 0 // one cluster keeps what it is given
	}
	clusters := make([]string, 0, len(byCluster))
	for c := range byCluster {
		clusters = append(clusters, c)
	}
	slices.Sort(clusters)
	m := s.cfg.ClustersNeeded
	if m <= 0 || m > len(clusters) {
		m = len(clusters) - 1
	}
	placed := 0
	for i := range st.titles {
		t := titleIdx(i)
		ti := &st.titles[i]
		if len(ti.servers) == 0 || ti.publishAt > s.nowMS+prereleaseWindow {
			continue // no server has it to send yet, or not yet worth the space
		}
		keep, err := placement.For(ti.id, clusters, m)
		if err != nil {
			s.log.Error("placement", "err", err)
			return placed
		}
		for _, c := range keep {
			servers := byCluster[c]
			if slices.ContainsFunc(servers, func(b boxIdx) bool {
				h := st.holdingOf(b, t)
				return h != nil && h.complete || s.shadowed(b, t)
			}) {
				continue
			}
			if placed == limit {
				return placed
			}
			best := noBox
			for _, b := range servers {
				if st.boxes[b].free >= ti.size && (best == noBox || st.boxes[b].free > st.boxes[best].free) {
					best = b
				}
			}
			if best == noBox {
				s.log.Warn("no server in the cluster has room for a title placed there", "cluster", c, "title", ti.id)
				continue
			}
			st.boxes[best].shadow = append(st.boxes[best].shadow, t)
			ti.shadowed++
			s.refreshNeed(best)
			placed++
		}
	}
	return placed
}

// inShadow counts boxes whose shadow list names t and lack it.
func (s *Scheduler) inShadow(t titleIdx) int32 {
	return s.st.titles[t].shadowed
}

// placeCopy puts t on the shadow list of one more box: one with room,
// online, not holding it, preferring an ISP with no copy yet. It looks at
// a bounded number of boxes from a rotating cursor.
func (s *Scheduler) placeCopy(t titleIdx, exclude boxIdx) bool {
	st := s.st
	n := len(st.boxes)
	if n == 0 {
		return false
	}
	ti := &st.titles[t]
	best, bestScore := noBox, int64(-1)
	for i := 0; i < min(n, 64); i++ {
		b := boxIdx(s.cursor % n)
		s.cursor++
		x := &st.boxes[b]
		if b == exclude || x.server || !x.online || !x.registered || len(x.shadow) >= maxShadow || s.spare(b) < ti.size*2 {
			continue
		}
		if st.holdingOf(b, t) != nil || s.shadowed(b, t) {
			continue
		}
		score := x.free
		if q := ti.byISP[x.isp]; q == nil || q.len() == 0 {
			score += 1 << 50 // a copy in an ISP that has none is worth most
		}
		if score > bestScore {
			best, bestScore = b, score
		}
	}
	if best == noBox {
		return false
	}
	st.boxes[best].shadow = append(st.boxes[best].shadow, t)
	ti.shadowed++
	s.refreshNeed(best)
	return true
}

// spare is a box's free space less what its shadow list already claims.
func (s *Scheduler) spare(b boxIdx) int64 {
	x := &s.st.boxes[b]
	spare := x.free
	for _, t := range x.shadow {
		spare -= s.st.titles[t].size
	}
	return spare
}

func (s *Scheduler) shadowed(b boxIdx, t titleIdx) bool {
	for _, x := range s.st.boxes[b].shadow {
		if x == t {
			return true
		}
	}
	return false
}

// fillShortLists gives boxes whose viewers listed fewer than three titles
// the most wanted titles they lack, as shadow items.
func (s *Scheduler) fillShortLists(byDemand []titleIdx) {
	st := s.st
	n := len(st.boxes)
	for i := 0; i < min(n, shortListBoxesStep); i++ {
		b := boxIdx(s.fillCursor % n)
		s.fillCursor++
		x := &st.boxes[b]
		if x.server || !x.online || !x.registered || len(x.list) >= 3 || len(x.shadow) >= maxShadow/2 {
			continue
		}
		for _, t := range byDemand {
			if len(x.shadow) >= maxShadow/2 {
				break
			}
			if st.titles[t].demand == 0 {
				break // byDemand is sorted: nothing further is wanted
			}
			if !s.active(t) || st.holdingOf(b, t) != nil || s.shadowed(b, t) || s.spare(b) < st.titles[t].size*2 {
				continue
			}
			x.shadow = append(x.shadow, t)
			st.titles[t].shadowed++
		}
		s.refreshNeed(b)
	}
}

// shadowDone takes a title off a box's shadow list once it holds it.
func (s *Scheduler) shadowDone(b boxIdx, t titleIdx) {
	x := &s.st.boxes[b]
	for i, v := range x.shadow {
		if v == t {
			x.shadow = append(x.shadow[:i], x.shadow[i+1:]...)
			s.st.titles[t].shadowed--
			return
		}
	}
}
