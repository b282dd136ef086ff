package scheduler

import (
	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
)

// addHolding records a title (or part of it) on a box and, for a complete
// copy, makes the box a donor for it.
func (s *Scheduler) addHolding(b boxIdx, t titleIdx, complete bool, have []byte) {
	st := s.st
	x := &st.boxes[b]
	h := st.holdingOf(b, t)
	wasComplete := h != nil && h.complete
	if h == nil {
		x.holdings = append(x.holdings, holding{title: t})
		h = &x.holdings[len(x.holdings)-1]
	}
	before := s.heldBytes(t, h)
	h.complete = complete
	h.have = nil
	if !complete {
		h.have = have
	}
	s.used(b, s.heldBytes(t, h)-before)
	s.batch.holdings = append(s.batch.holdings, schedstore.Holding{Box: x.id, Title: st.titles[t].id, Complete: complete, Have: h.have})
	if complete && !wasComplete {
		s.addDonor(b, t)
		s.shadowDone(b, t)
		s.settleDeletions(t)
	} else if !complete && wasComplete {
		s.removeDonor(b, t)
	}
}

// dropHolding forgets a title on a box.
func (s *Scheduler) dropHolding(b boxIdx, t titleIdx) {
	st := s.st
	x := &st.boxes[b]
	for i := range x.holdings {
		if x.holdings[i].title == t {
			if x.holdings[i].complete {
				s.removeDonor(b, t)
			}
			s.used(b, -s.heldBytes(t, &x.holdings[i]))
			x.holdings = append(x.holdings[:i], x.holdings[i+1:]...)
			s.batch.dropHoldings = append(s.batch.dropHoldings, holdingKey{x.id, st.titles[t].id})
			return
		}
	}
}

// heldBytes is the space a holding takes on the box's disk.
func (s *Scheduler) heldBytes(t titleIdx, h *holding) int64 {
	ti := &s.st.titles[t]
	if h.complete {
		return ti.size
	}
	return int64(countPieces(h.have)) * int64(ti.pieceSize)
}

// used keeps a box's free space current between its registrations (which
// state it afresh): the shadow list and fits decide on it, and a box
// filled by transfers the scheduler itself planned must not look empty.
func (s *Scheduler) used(b boxIdx, delta int64) {
	x := &s.st.boxes[b]
	if x.server {
		return
	}
	x.free = min(max(x.free-delta, 0), x.capacity)
}

func (s *Scheduler) addDonor(b boxIdx, t titleIdx) {
	st := s.st
	x := &st.boxes[b]
	ti := &st.titles[t]
	if x.server {
		ti.servers = append(ti.servers, b)
		return
	}
	ti.copies++
	if ti.donors == nil {
		ti.donors = &donorQueue{}
	}
	ti.donors.push(b)
	if ti.byISP == nil {
		ti.byISP = map[uint16]*donorQueue{}
	}
	q := ti.byISP[x.isp]
	if q == nil {
		q = &donorQueue{}
		ti.byISP[x.isp] = q
	}
	q.push(b)
}

func (s *Scheduler) removeDonor(b boxIdx, t titleIdx) {
	st := s.st
	x := &st.boxes[b]
	ti := &st.titles[t]
	if x.server {
		for i, v := range ti.servers {
			if v == b {
				ti.servers = append(ti.servers[:i], ti.servers[i+1:]...)
				break
			}
		}
		return
	}
	ti.copies--
	ti.donors.remove(b)
	if q := ti.byISP[x.isp]; q != nil {
		q.remove(b)
	}
}

// inventory applies a box's report of what it holds.
func (s *Scheduler) inventory(b boxIdx, inv api.Inventory) {
	st := s.st
	if inv.Full {
		// The free space its Register stated counts these already.
		defer func(x *box, free int64) { x.free = free }(&st.boxes[b], st.boxes[b].free)
	}
	seen := map[titleIdx]bool{}
	for _, ts := range inv.Titles {
		t, ok := st.titleBy[ts.Title]
		if !ok {
			// A title the scheduler does not deliver (yet). A media server
			// may ingest a title before the operator adds it: remember
			// which servers have it, so they count from the moment it is.
			if x := &st.boxes[b]; x.server && ts.Complete && len(st.serverHeldUnknown) < maxUnknownTitles {
				st.serverHeldUnknown[ts.Title] = append(st.serverHeldUnknown[ts.Title], b)
			}
			continue
		}
		seen[t] = true
		if ts.Complete {
			// A box's claim of a complete copy is taken as it comes: every
			// piece was checked against the signed manifest when it was
			// stored, and the scheduler confirms the whole-title hash of
			// what it delivers itself.
			s.addHolding(b, t, true, nil)
			continue
		}
		have := make([]byte, (st.titles[t].pieces+7)/8)
		copy(have, ts.Have)
		s.addHolding(b, t, false, have)
	}
	if inv.Full {
		x := &st.boxes[b]
		for i := len(x.holdings) - 1; i >= 0; i-- {
			if t := x.holdings[i].title; !seen[t] && st.jobs[jobKey{b, t}] == nil {
				s.dropHolding(b, t)
			}
		}
	}
	s.refreshNeed(b)
}

// receiving notes the pieces a receiver holds so far, so other receivers
// of the title can get them from it (it is in the title's partial list
// while its job lasts). It is kept in memory only: a box reports what it
// holds again, in full, on every connection.
func (s *Scheduler) receiving(j *job, have []byte) {
	b, t := j.key.box, j.key.title
	x := &s.st.boxes[b]
	h := s.st.holdingOf(b, t)
	if h == nil {
		x.holdings = append(x.holdings, holding{title: t})
		h = &x.holdings[len(x.holdings)-1]
	}
	if h.complete {
		return
	}
	n := (s.st.titles[t].pieces + 7) / 8
	if len(h.have) != n {
		h.have = make([]byte, n)
	}
	before := s.heldBytes(t, h)
	copy(h.have, have)
	s.used(b, s.heldBytes(t, h)-before)
}

// deleteRequest approves a deletion unless the box holds one of the last
// MinCopies copies of the title; then the title is first copied elsewhere
// (through another box's shadow list) and the approval follows.
func (s *Scheduler) deleteRequest(b boxIdx, title api.DeleteRequest) {
	st := s.st
	t, ok := st.titleBy[title.Title]
	if !ok {
		s.send(b, api.DeleteAnswer{Title: title.Title, Approved: true})
		return
	}
	ti := &st.titles[t]
	h := st.holdingOf(b, t)
	if h == nil || !h.complete || int(ti.copies) > s.cfg.MinCopies {
		s.dropHolding(b, t)
		s.send(b, api.DeleteAnswer{Title: title.Title, Approved: true})
		s.refreshNeed(b)
		return
	}
	for _, p := range ti.pendingDels {
		if p == b {
			return
		}
	}
	ti.pendingDels = append(ti.pendingDels, b)
	s.send(b, api.DeleteAnswer{Title: title.Title, Approved: false,
		Reason: "one of the last copies in the swarm; it is being copied elsewhere first"})
	s.placeCopy(t, b)
}

// settleDeletions approves deferred deletions once enough copies exist.
func (s *Scheduler) settleDeletions(t titleIdx) {
	ti := &s.st.titles[t]
	for len(ti.pendingDels) > 0 && int(ti.copies) > s.cfg.MinCopies {
		b := ti.pendingDels[0]
		ti.pendingDels = ti.pendingDels[1:]
		s.dropHolding(b, t)
		s.send(b, api.DeleteAnswer{Title: ti.id, Approved: true})
		s.refreshNeed(b)
	}
}
