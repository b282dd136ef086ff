package scheduler

import (
	"sort"
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
	sort.Slice(byDemand, func(i, j int) bool { return st.titles[byDemand[i]].demand > st.titles[byDemand[j]].demand })
	s.fillShortLists(byDemand)
	s.metrics.shadowPlaced.Add(float64(placed))
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
		if b == exclude || x.server || !x.online || !x.registered || len(x.shadow) >= maxShadow || x.free < ti.size*2 {
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
			if !s.active(t) || st.holdingOf(b, t) != nil || s.shadowed(b, t) || x.free < st.titles[t].size*2 {
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
