package sim

import (
	"context"
	"slices"

	"github.com/boxswarm/boxswarm/api"
)

// The baselines move data in the same world as the real scheduler, but
// decide inside the simulator. They have no shadow lists and delete
// without asking: a box's disk is its viewer's business.

// direct is what the baselines share: downloads they track per box and
// title, and plain eviction.
type direct struct {
	w     *world
	flows map[[2]int32][]*flow // (receiver, title) → its flows
	msgs  int64
}

func (d *direct) init(_ context.Context, w *world) error {
	d.w = w
	d.flows = make(map[[2]int32][]*flow)
	return nil
}

func (d *direct) offline(int32)             {}
func (d *direct) unlisted(int32, titleIdx)  {}
func (d *direct) reordered(int32)           {}
func (d *direct) released(titleIdx)         {}
func (d *direct) messages() int64           { return d.msgs }
func (d *direct) evict(b int32, t titleIdx) { d.w.drop(b, t) }

func (d *direct) start(t titleIdx, from, to int32, pieces []int32) {
	d.w.nextID++
	f := d.w.startFlow(d.w.nextID, t, from, to, pieces)
	k := [2]int32{to, int32(t)}
	d.flows[k] = append(d.flows[k], f)
	d.w.nodes[from].lastOut = d.w.now
	d.msgs += 4 // start to both ends, completion from both
}

// downloading says whether b has a flow of t in progress.
func (d *direct) downloading(b int32, t titleIdx) bool {
	k := [2]int32{b, int32(t)}
	d.flows[k] = slices.DeleteFunc(d.flows[k], func(f *flow) bool { return f.done })
	if len(d.flows[k]) == 0 {
		delete(d.flows, k)
		return false
	}
	return true
}

// ended completes the title once its last flow has delivered every piece.
func (d *direct) ended(f *flow) {
	if len(d.w.missingPieces(f.to, f.title)) == 0 {
		d.w.complete(f.to, f.title)
	}
}

// onlineServer picks the least loaded online media server.
func (d *direct) onlineServer() int32 {
	best := int32(-1)
	for i := d.w.boxes; i < len(d.w.nodes); i++ {
		n := &d.w.nodes[i]
		if n.online && (best < 0 || n.upFlows < d.w.nodes[best].upFlows) {
			best = int32(i)
		}
	}
	return best
}

// wanted is every (box, title) whose request is not yet satisfied, in
// box order.
func (d *direct) retryPending(fn func(b int32, t titleIdx)) {
	for i := range d.w.boxes {
		n := &d.w.nodes[i]
		if !n.online {
			continue
		}
		for _, r := range n.pending {
			if !d.downloading(int32(i), r.title) {
				fn(int32(i), r.title)
			}
		}
	}
}

// serverOnly is video on demand: every request streams from a media
// server.
type serverOnly struct{ direct }

func (*serverOnly) name() string { return "server-only" }

func (s *serverOnly) online(int32)                   {}
func (s *serverOnly) requested(b int32, t titleIdx)  { s.fetch(b, t) }
func (s *serverOnly) flowEnded(f *flow)              { s.ended(f) }
func (s *serverOnly) flowBroken(f *flow, gone int32) {}

func (s *serverOnly) fetch(b int32, t titleIdx) {
	if srv := s.onlineServer(); srv >= 0 {
		s.start(t, srv, b, s.w.missingPieces(b, t))
	}
}

func (s *serverOnly) step(context.Context) (int, error) {
	n := 0
	if int(s.w.now/s.w.sc.Step)%30 == 0 { // re-request what broke, every 30 s
		s.retryPending(func(b int32, t titleIdx) { s.fetch(b, t); n++ })
	}
	return n, nil
}

// swarm is an uncoordinated BitTorrent-like swarm: a tracker knows who
// holds each title and hands a requester random holders, media servers
// among them as web seeds; the requester splits what it lacks among up
// to four of them and asks again when one goes away. No one plans for
// the swarm as a whole. (In a fluid model every piece is as rare as the
// others, so rarest-first reduces to taking what the chosen holders have.)
type swarm struct {
	direct
	holders [][]int32 // tracker: title → boxes announcing a complete copy
}

func (*swarm) name() string { return "uncoordinated swarm" }

func (s *swarm) init(ctx context.Context, w *world) error {
	if err := s.direct.init(ctx, w); err != nil {
		return err
	}
	s.holders = make([][]int32, w.titles)
	for i := range w.boxes {
		for _, t := range w.nodes[i].disk {
			s.holders[t] = append(s.holders[t], int32(i))
		}
	}
	return nil
}

func (s *swarm) online(int32)                  {}
func (s *swarm) requested(b int32, t titleIdx) { s.fetch(b, t) }
func (s *swarm) released(titleIdx)             { s.holders = append(s.holders, nil) }
func (s *swarm) flowBroken(*flow, int32)       {}

func (s *swarm) flowEnded(f *flow) {
	s.ended(f)
	if s.w.holds(f.to, f.title) && !slices.Contains(s.holders[f.title], f.to) {
		s.holders[f.title] = append(s.holders[f.title], f.to)
	}
}

func (s *swarm) evict(b int32, t titleIdx) {
	s.w.drop(b, t)
	s.holders[t] = slices.DeleteFunc(s.holders[t], func(x int32) bool { return x == b })
}

func (s *swarm) fetch(b int32, t titleIdx) {
	missing := s.w.missingPieces(b, t)
	if len(missing) == 0 {
		return
	}
	// The tracker's answer: up to 50 random holders, servers included as
	// seeds like any other; the client connects to those it can reach.
	var cands []int32
	hs := s.holders[t]
	for range min(50, len(hs)) {
		cands = append(cands, hs[s.w.rng.IntN(len(hs))])
	}
	for i := s.w.boxes; i < len(s.w.nodes); i++ {
		cands = append(cands, int32(i))
	}
	s.w.rng.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	var use []int32
	for _, c := range cands {
		n := &s.w.nodes[c]
		if len(use) == 4 || !n.online || c == b || slices.Contains(use, c) || (!n.server && !api.HolePunchable(n.nat, s.w.nodes[b].nat)) {
			continue
		}
		use = append(use, c)
	}
	for i, c := range use {
		lo, hi := i*len(missing)/len(use), (i+1)*len(missing)/len(use)
		s.start(t, c, b, slices.Clone(missing[lo:hi]))
	}
}

func (s *swarm) step(context.Context) (int, error) {
	n := 0
	if int(s.w.now/s.w.sc.Step)%30 == 0 {
		s.retryPending(func(b int32, t titleIdx) { s.fetch(b, t); n++ })
	}
	return n, nil
}

// literal is the source document's loop taken at its word: every pass
// queries the client table for boxes that are connected, not
// downloading and wanting a title, ordered by when media last went out
// to them, up to 100 (create_high_priority_transfers); each gets the
// top-ranked title it lacks, from the first donor a second query finds
// (find_donor: any connected client or server holding it, not already
// sending, least recently sending first), whole, from one donor. Boxes
// that cannot reach each other are relayed. It has no shadow lists.
type literal struct {
	direct
	downloading []bool
}

const literalLimit = 100 // CLIENT_INFO_HIGH_MAX

func (*literal) name() string { return "source loop (literal)" }

func (l *literal) init(ctx context.Context, w *world) error {
	l.downloading = make([]bool, len(w.nodes))
	return l.direct.init(ctx, w)
}

func (l *literal) online(int32)              {}
func (l *literal) requested(int32, titleIdx) {}

func (l *literal) flowEnded(f *flow) {
	l.downloading[f.to] = false
	l.ended(f)
}

func (l *literal) flowBroken(f *flow, _ int32) { l.downloading[f.to] = false }

func (l *literal) step(context.Context) (int, error) {
	w := l.w
	// SELECT … WHERE connected AND downlink_current = 0 AND list > 0
	// ORDER BY media_out_time LIMIT 100: a scan of the table.
	var clients []int32
	for i := range w.boxes {
		n := &w.nodes[i]
		if n.online && !l.downloading[i] && len(n.pending) > 0 {
			clients = append(clients, int32(i))
		}
	}
	slices.SortStableFunc(clients, func(a, b int32) int { return int(w.nodes[a].lastOut - w.nodes[b].lastOut) })
	clients = clients[:min(len(clients), literalLimit)]
	made := 0
	for _, c := range clients {
		t := w.nodes[c].pending[0].title
		donor := int32(-1)
		// find_donor: another scan, of every client and server.
		for i := range w.nodes {
			n := &w.nodes[i]
			if int32(i) == c || !n.online || !w.holds(int32(i), t) || (!n.server && n.upFlows > 0) {
				continue
			}
			if donor < 0 || n.lastOut < w.nodes[donor].lastOut {
				donor = int32(i)
			}
		}
		if donor < 0 {
			continue
		}
		l.downloading[c] = true
		l.start(t, donor, c, w.missingPieces(c, t))
		made++
	}
	return made, nil
}
