package scheduler

import (
	"container/heap"
	"sort"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
)

// Policy chooses between peers and servers as donors.
type Policy int

const (
	// PreferPeers sends from boxes whenever one can, from servers only
	// when no box can: the operator's bandwidth bill is the point.
	PreferPeers Policy = iota
	// PreferServers sends from media servers first.
	PreferServers
)

// sample is how many donors are looked at per queue for one choice: enough
// to find a good one, few enough that a choice costs the same in a swarm of
// ten thousand boxes and of a million.
const sample = 8

// refreshNeed puts a box in the needy queue its state calls for: high if it
// has nothing to watch, low if it has but wants more, none otherwise.
func (s *Scheduler) refreshNeed(b boxIdx) {
	x := &s.st.boxes[b]
	which := queueNone
	// A media server receives only what placement puts on its shadow list.
	if x.online && x.registered && !x.hold && (!x.server || len(x.shadow) > 0) && x.downJobs == 0 {
		want, watchable := s.wants(b)
		switch {
		case want && watchable == 0 && len(x.list) > 0:
			which = queueHigh
		case want:
			which = queueLow
		}
	}
	s.st.requeue(b, which)
}

// wants reports whether the box lacks any active title on its list or
// shadow list, and how many titles of its list it can already watch.
func (s *Scheduler) wants(b boxIdx) (want bool, watchable int) {
	x := &s.st.boxes[b]
	for _, t := range x.list {
		h := s.st.holdingOf(b, t)
		if h != nil && h.complete {
			watchable++
		} else if s.active(t) {
			want = true
		}
	}
	for _, t := range x.shadow {
		if h := s.st.holdingOf(b, t); h == nil || !h.complete {
			want = true
		}
	}
	return want, watchable
}

// wantsListed reports whether the box lacks an active title of its
// viewer's list.
func (s *Scheduler) wantsListed(b boxIdx) bool {
	x := &s.st.boxes[b]
	for _, t := range x.list {
		if h := s.st.holdingOf(b, t); (h == nil || !h.complete) && s.active(t) {
			return true
		}
	}
	return false
}

func (s *Scheduler) active(t titleIdx) bool { return s.st.titles[t].publishAt <= s.nowMS }

// retryGap is how long a box no donor could serve waits before it is
// tried again, unless its viewer's list changes: without it, the swarm
// simulator spent most of every pass re-trying the same boxes.
const retryGap = 2000 // ms

// itemsToTry is how many titles of one box a decision tries before the
// box waits for the next round: enough to step past titles nobody can send
// now, few enough to bound the cost of a decision.
const itemsToTry = 4

// chooseItems returns, best first, the titles the box should get next:
// titles on its priority list that are published, not complete, and fit;
// then the same from its shadow list, which are always low priority.
func (s *Scheduler) chooseItems(b boxIdx) []titleIdx {
	x := &s.st.boxes[b]
	var out []titleIdx
	// Shadow items may be fetched before publication: that is how a
	// premiere is in place when it opens.
	consider := func(t titleIdx, early bool) {
		if len(out) == itemsToTry || (!early && !s.active(t)) || s.st.jobs[jobKey{b, t}] != nil {
			return
		}
		if h := s.st.holdingOf(b, t); (h == nil || !h.complete) && s.fits(b, t) {
			out = append(out, t)
		}
	}
	for _, t := range x.list {
		consider(t, false)
	}
	for _, t := range x.shadow {
		consider(t, true)
	}
	return out
}

func (s *Scheduler) listed(b boxIdx, t titleIdx) bool {
	for _, x := range s.st.boxes[b].list {
		if x == t {
			return true
		}
	}
	return false
}

// fits reports whether the box has room for the rest of the title.
func (s *Scheduler) fits(b boxIdx, t titleIdx) bool {
	need := s.st.titles[t].size
	if h := s.st.holdingOf(b, t); h != nil && h.have != nil {
		need -= int64(countPieces(h.have)) * int64(s.st.titles[t].pieceSize)
	}
	return s.st.boxes[b].free >= need
}

// createTransfers is create_high_priority_transfers and
// create_low_priority_transfers: it serves the boxes of one needy queue,
// least recently served first, up to budget decisions.
func (s *Scheduler) createTransfers(high bool, budget int) int {
	h := &s.st.low
	if high {
		h = &s.st.high
	}
	decisions := 0
	var later []boxIdx
	for examined := 0; decisions < budget && h.Len() > 0 && examined < 4*budget; examined++ {
		if s.nowMS-s.st.boxes[h.boxes[0]].lastTried < retryGap {
			break // every box left was tried moments ago
		}
		b := heap.Pop(h).(boxIdx)
		items := s.chooseItems(b)
		if len(items) == 0 {
			continue // refreshNeed puts it back when something changes
		}
		started := false
		for _, t := range items {
			listed := s.listed(b, t)
			j := &job{key: jobKey{b, t}, high: high && listed, spec: !listed && s.st.titles[t].copies >= int32(s.cfg.MinCopies),
				legs: map[api.TransferID]*leg{}, created: s.nowMS, suspects: map[boxIdx]bool{}}
			s.st.jobs[j.key] = j
			s.st.boxes[b].downJobs++
			if s.planLegs(j, s.missing(b, t)) {
				s.st.titles[t].partial = append(s.st.titles[t].partial, b)
				started = true
				break
			}
			delete(s.st.jobs, j.key)
			s.st.boxes[b].downJobs--
		}
		if !started {
			later = append(later, b) // no donor can send now; try again next round
			continue
		}
		s.st.boxes[b].lastServed = s.nowMS
		decisions++
		s.metrics.decisions.Inc()
	}
	for _, b := range later {
		s.st.boxes[b].lastTried = s.nowMS
		s.refreshNeed(b)
	}
	return decisions
}

// missing returns the piece ranges of title t the box does not have.
func (s *Scheduler) missing(b boxIdx, t titleIdx) []api.PieceRange {
	n := s.st.titles[t].pieces
	h := s.st.holdingOf(b, t)
	if h == nil || h.have == nil {
		return []api.PieceRange{{First: 0, Last: n - 1}}
	}
	return ranges(n, func(i int) bool { return !hasPiece(h.have, i) })
}

// ranges turns the pieces for which in(i) holds into inclusive ranges.
func ranges(n int, in func(int) bool) []api.PieceRange {
	var rs []api.PieceRange
	for i := 0; i < n; i++ {
		if !in(i) {
			continue
		}
		j := i
		for j+1 < n && in(j+1) {
			j++
		}
		rs = append(rs, api.PieceRange{First: i, Last: j})
		i = j
	}
	return rs
}

type candidate struct {
	box  boxIdx
	kbps int32
	rank int // lower is better
	have []byte
}

// planLegs finds donors for the wanted pieces of a job and starts a leg per
// donor, up to the receiver's downlink. It reports whether any leg started.
func (s *Scheduler) planLegs(j *job, want []api.PieceRange) bool {
	st := s.st
	recv := j.key.box
	r := &st.boxes[recv]
	t := &st.titles[j.key.title]
	need := r.downKbps
	if need <= 0 {
		need = 1
	}
	chosen := s.findDonors(j, recv, t, need)
	if len(chosen) == 0 {
		return false
	}
	if others := len(t.partial) > 1 || len(t.partial) == 1 && t.partial[0] != recv; t.copies < int32(s.cfg.MaxDonors) && others {
		// A scarce title that others are receiving too (a premiere)
		// spreads only as fast as its receivers pass it on, and receivers
		// that all start at piece 0 hold the same pieces and have nothing
		// to give each other. Each starts at its own place instead, as
		// BitTorrent's rarest-first does; the price is that such a title
		// cannot be watched while it arrives.
		want = rotate(want, int(uint32(recv)*2654435761%uint32(max(t.pieces, 1))))
	}
	// Complete copies share the wanted pieces in proportion to their
	// rates; a box still receiving the title offers what it has.
	var full []candidate
	started := false
	for _, c := range chosen {
		if c.have != nil {
			// A box still receiving the title is worth a leg for a good
			// part of what is wanted, not for a handful of pieces: the
			// swarm simulator saw thousands of legs of one or two pieces,
			// each a round of messages, re-planned every pass.
			mine := intersect(want, c.have, t.pieces)
			if n := rangePieces(mine); n > 0 && (n >= minPartial(t) || n == rangePieces(want)) {
				s.startLeg(j, c, mine)
				want = subtract(want, mine)
				started = true
			}
			continue
		}
		full = append(full, c)
	}
	for i, part := range split(want, full) {
		if len(part) > 0 {
			s.startLeg(j, full[i], part)
			started = true
		}
	}
	return started
}

// minPartial is the least a box still receiving a title is asked to pass
// on in one leg (unless it is all that is wanted): 16 pieces, or an eighth
// of a shorter title.
func minPartial(t *title) int { return min(16, max(1, t.pieces/8)) }

func rangePieces(rs []api.PieceRange) int {
	n := 0
	for _, r := range rs {
		n += r.Count()
	}
	return n
}

// findDonors chooses up to MaxDonors senders whose rates together reach
// the receiver's downlink: least recently sending first, in the receiver's
// ISP first, faster as measured first, media servers last (or first, by
// policy), never a donor that already failed this job.
func (s *Scheduler) findDonors(j *job, recv boxIdx, t *title, need int32) []candidate {
	st := s.st
	r := &st.boxes[recv]
	var picked []candidate
	var sum int32
	take := func(c candidate) bool {
		for _, p := range picked {
			if p.box == c.box {
				return false
			}
		}
		// A donor promises only what the receiver still lacks, leaving the
		// rest of its uplink to other receivers.
		c.kbps = min(c.kbps, need-sum)
		picked = append(picked, c)
		sum += c.kbps
		return sum >= need || len(picked) >= s.cfg.MaxDonors
	}
	fromQueue := func(q *donorQueue, size int) bool {
		if q == nil || q.len() == 0 {
			return false
		}
		n := min(size, q.len())
		var cands []candidate
		for i := 0; i < n; i++ {
			if c, ok := s.donorOK(j, recv, q.peek(i)); ok {
				cands = append(cands, c)
			}
		}
		q.rotate(n)
		sort.Slice(cands, func(a, b int) bool { return s.better(cands[a], cands[b]) })
		for _, c := range cands {
			if take(c) {
				return true
			}
		}
		return false
	}
	fromServers := func() bool {
		var cands []candidate
		for _, b := range t.servers {
			if c, ok := s.donorOK(j, recv, b); ok {
				cands = append(cands, c)
			}
		}
		sort.Slice(cands, func(a, b int) bool { return s.better(cands[a], cands[b]) })
		for _, c := range cands {
			if take(c) {
				return true
			}
		}
		return false
	}
	// Boxes still receiving the title: a sample, from a cursor that moves
	// on, so that a title half the swarm is fetching costs a choice no more
	// than a rare one.
	fromPartial := func() bool {
		n := len(t.partial)
		for i := 0; i < min(n, 2*sample); i++ {
			t.partialCursor = (t.partialCursor + 1) % n
			b := t.partial[t.partialCursor]
			h := st.holdingOf(b, j.key.title)
			if h == nil || h.have == nil || countPieces(h.have) < minPartial(t) {
				continue
			}
			if c, ok := s.donorOK(j, recv, b); ok {
				c.have = h.have
				if take(c) {
					return true
				}
			}
		}
		return false
	}
	peers := func() bool {
		return fromQueue(t.byISP[r.isp], sample) || fromQueue(t.donors, sample) || fromPartial()
	}
	if s.cfg.Policy == PreferServers {
		_ = fromServers() || peers()
		return picked
	}
	// Short of the downlink, look harder among the boxes before settling:
	// a receiver behind a symmetric NAT can use few of them, and samples
	// of eight often held one free donor or none (in the swarm simulator,
	// sim/, such boxes made the whole tail of request-to-playable). The
	// cost stays bounded, whatever the swarm. Servers send only what no
	// box can (serverMaySend), never to top up a downlink: that made
	// central egress several times the lower bound. Copies between media
	// server clusters stay inside the head-end.
	if !peers() {
		fromQueue(t.donors, 8*sample)
	}
	if len(picked) == 0 && (r.server || s.serverMaySend(recv, t)) {
		fromServers()
	}
	return picked
}

// serverMaySend says whether a media server should send a title to a
// box no peer can serve now: only when no box is receiving it and no
// online box that can reach this one holds it, which is the lower bound
// of central egress (NAT permitting). Otherwise the
// box waits for a peer, even a viewer's: in the swarm simulator, letting
// a server step in after a viewer had waited ten minutes sent a hot
// premiere from the servers two to three times over and made the tail of
// request-to-playable no shorter, since the waiting boxes, once fed, pass
// the title on.
func (s *Scheduler) serverMaySend(recv boxIdx, t *title) bool {
	return len(t.partial) == 0 && !s.holderFor(recv, t)
}

// holderFor says whether a box holding a complete copy of t may be online
// and able to reach recv: it looks at up to 8×sample of them, and beyond
// that assumes so. (A box behind a symmetric NAT whose title only boxes
// it cannot reach hold would otherwise wait for ever: the simulator's
// 1k-box swarm stranded requests that way.)
func (s *Scheduler) holderFor(recv boxIdx, t *title) bool {
	q := t.donors
	if q == nil || q.len() == 0 {
		return false
	}
	if q.len() > 8*sample {
		return true
	}
	r := &s.st.boxes[recv]
	for i := range q.len() {
		if x := &s.st.boxes[q.peek(i)]; x.online && x.registered && (r.server || api.HolePunchable(x.nat, r.nat)) {
			return true
		}
	}
	return false
}

// donorOK checks a donor can send to the receiver now, and rates it.
func (s *Scheduler) donorOK(j *job, recv, d boxIdx) (candidate, bool) {
	st := s.st
	x := &st.boxes[d]
	if d == recv || !x.online || x.hold || !x.registered || j.suspects[d] {
		return candidate{}, false
	}
	if r := &st.boxes[recv]; !x.server && !r.server && !api.HolePunchable(x.nat, r.nat) {
		return candidate{}, false
	}
	maxLegs := int8(s.cfg.MaxUploads)
	if x.server {
		maxLegs = 127
	}
	legs, free := x.upLegs, x.upKbps-x.upKbpsBusy
	switch {
	case j.spec && x.upLegs > 0:
		// Speculation only uses idle uplinks…
		return candidate{}, false
	case !j.spec && x.specLegs > 0:
		// …and a viewer's title shares an uplink speculation holds: the
		// flows split it evenly, so this leg can count on its share.
		legs -= x.specLegs
		free = (free + x.specKbps) / int32(x.specLegs+1)
	}
	if legs >= maxLegs || free < s.cfg.MinLegKbps {
		return candidate{}, false
	}
	kbps := free
	rank := 0
	r := &st.boxes[recv]
	if measured := s.measured(d, recv); measured > 0 {
		kbps = min(kbps, measured)
		if measured < r.downKbps/4 {
			rank += 2 // measured slow toward this receiver: as good as far away
		}
	}
	if x.isp != r.isp {
		rank += 2
	}
	if x.region != r.region {
		rank++
	}
	return candidate{box: d, kbps: kbps, rank: rank}, true
}

// better orders donors: nearer (same ISP, same region, not measured slow),
// then least recently sending, then faster.
func (s *Scheduler) better(a, b candidate) bool {
	if a.rank != b.rank {
		return a.rank < b.rank
	}
	la, lb := s.st.boxes[a.box].lastSent, s.st.boxes[b.box].lastSent
	if la != lb {
		return la < lb
	}
	if a.kbps != b.kbps {
		return a.kbps > b.kbps
	}
	return a.box < b.box
}

// measured returns the last measured throughput from d to r, 0 if none.
func (s *Scheduler) measured(d, r boxIdx) int32 {
	for _, p := range s.st.boxes[d].perf {
		if p.peer == r && p.kbps > 0 {
			return p.kbps
		}
	}
	return 0
}

// startLeg records a transfer and tells both ends.
func (s *Scheduler) startLeg(j *job, c candidate, portions []api.PieceRange) {
	st := s.st
	id := s.nextTransferID()
	l := &leg{id: id, job: j, sender: c.box, receiver: j.key.box, portions: portions,
		initiator: initiator(st, j.key.box, c.box), kbps: c.kbps, state: schedstore.TransferRequested, created: s.nowMS}
	j.legs[id] = l
	st.legs[id] = l
	snd := &st.boxes[c.box]
	snd.upLegs++
	snd.upKbpsBusy += c.kbps
	if j.spec {
		snd.specLegs++
		snd.specKbps += c.kbps
	}
	snd.lastSent = s.nowMS
	t := &st.titles[j.key.title]
	expires := msTime(s.nowMS).Add(s.cfg.TokenLifetime)
	grant := api.Grant{Transfer: id, Sender: snd.id, Receiver: st.boxes[j.key.box].id, Title: t.id, Portions: portions, Expires: expires}
	token := grant.Sign(s.cfg.Key)
	rcv := &st.boxes[j.key.box]
	s.send(j.key.box, api.TransferStart{Transfer: id, Title: t.id, Role: api.RoleReceive,
		Peer: api.Peer{Box: snd.id, Server: snd.server, Addr: snd.pieceAddr}, Initiate: l.initiator == j.key.box,
		Portions: portions, Token: token, Expires: expires, ICE: s.ice(rcv.id)})
	s.send(c.box, api.TransferStart{Transfer: id, Title: t.id, Role: api.RoleSend,
		Peer: api.Peer{Box: rcv.id, Addr: rcv.pieceAddr}, Initiate: l.initiator == c.box,
		Portions: portions, Token: token, Expires: expires, ICE: s.ice(snd.id)})
	s.batch.transfers = append(s.batch.transfers, s.record(l, ""))
	s.metrics.legsStarted.Inc()
	s.refreshNeed(c.box)
}

// initiator picks the end that opens the connection: the other end must be
// able to accept it. A media server (or anything with a piece address)
// accepts; otherwise the less reachable end calls the more reachable one;
// on a tie the receiver calls.
func initiator(st *state, recv, send boxIdx) boxIdx {
	r, d := &st.boxes[recv], &st.boxes[send]
	switch {
	case d.server || d.pieceAddr != "":
		return recv
	case r.server || r.pieceAddr != "":
		return send
	case d.nat.Reachability() > r.nat.Reachability():
		return recv
	case r.nat.Reachability() > d.nat.Reachability():
		return send
	}
	return recv
}

// split divides ranges among donors in proportion to their rates, keeping
// each donor's share contiguous.
func split(want []api.PieceRange, donors []candidate) [][]api.PieceRange {
	out := make([][]api.PieceRange, len(donors))
	if len(donors) == 0 {
		return out
	}
	total := 0
	for _, r := range want {
		total += r.Count()
	}
	var kbps int64
	for _, d := range donors {
		kbps += int64(max(d.kbps, 1))
	}
	quota := make([]int, len(donors))
	given := 0
	for i, d := range donors {
		quota[i] = int(int64(total) * int64(max(d.kbps, 1)) / kbps)
		given += quota[i]
	}
	quota[0] += total - given // rounding
	di := 0
	for _, r := range want {
		for first := r.First; first <= r.Last; {
			for di < len(donors)-1 && quota[di] == 0 {
				di++
			}
			n := min(quota[di], r.Last-first+1)
			if di == len(donors)-1 {
				n = r.Last - first + 1
			}
			out[di] = append(out[di], api.PieceRange{First: first, Last: first + n - 1})
			quota[di] -= n
			first += n
		}
	}
	return out
}

// rotate reorders ranges to start at piece at, wrapping round.
func rotate(rs []api.PieceRange, at int) []api.PieceRange {
	var head, tail []api.PieceRange
	for _, r := range rs {
		switch {
		case r.First >= at:
			head = append(head, r)
		case r.Last < at:
			tail = append(tail, r)
		default:
			head = append(head, api.PieceRange{First: at, Last: r.Last})
			tail = append(tail, api.PieceRange{First: r.First, Last: at - 1})
		}
	}
	return append(head, tail...)
}

// intersect returns the wanted pieces present in a bitmap.
func intersect(want []api.PieceRange, have []byte, n int) []api.PieceRange {
	in := func(i int) bool {
		if !hasPiece(have, i) {
			return false
		}
		for _, r := range want {
			if i >= r.First && i <= r.Last {
				return true
			}
		}
		return false
	}
	return ranges(n, in)
}

// subtract removes ranges b from ranges a.
func subtract(a, b []api.PieceRange) []api.PieceRange {
	var out []api.PieceRange
	for _, r := range a {
		cur := []api.PieceRange{r}
		for _, x := range b {
			var next []api.PieceRange
			for _, c := range cur {
				if x.Last < c.First || x.First > c.Last {
					next = append(next, c)
					continue
				}
				if x.First > c.First {
					next = append(next, api.PieceRange{First: c.First, Last: x.First - 1})
				}
				if x.Last < c.Last {
					next = append(next, api.PieceRange{First: x.Last + 1, Last: c.Last})
				}
			}
			cur = next
		}
		out = append(out, cur...)
	}
	return out
}
