package sim

import (
	"container/heap"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
)

type titleIdx int32

// node is a box or a media server.
type node struct {
	id       api.BoxID
	server   bool
	cluster  int
	upKbps   int
	downKbps int
	nat      api.NATType
	isp      uint16
	region   uint16
	online   bool

	disk     []titleIdx // complete titles, oldest first (servers hold every title)
	deleting []titleIdx // deletions asked for and not yet done
	partial  []partialHold
	list     []titleIdx // the viewer's priority list
	pending  []request  // requests not yet playable

	offSince time.Duration // when it went offline, if it is
	offFor   time.Duration // time spent offline before that

	upFlows, downFlows int32
	uploaded           int64 // bytes, in the measured window
	lastOut            time.Duration
}

type partialHold struct {
	title titleIdx
	have  []byte // piece bitmap, bit 7 of byte 0 is piece 0
	n     int    // pieces held
}

type request struct {
	title titleIdx
	at    time.Duration
	offAt time.Duration // the box's offFor at the request
	bound time.Duration // what the downlink allows, from the request
	count bool          // made in the measured window
}

// flow is data moving from one node to another: one transfer leg.
type flow struct {
	id       uint64
	title    titleIdx
	from, to int32
	pieces   []int32 // still to send, in order
	part     float64 // bytes of pieces[0] already sent
	relayed  bool    // through the head-end's TURN server
	startAt  time.Duration
	sent     int64
	pieceCnt int
	lastMove time.Duration
	done     bool
	rate     float64 // bytes per second, this step
}

// policy decides who sends what to whom: the real scheduler or a
// baseline.
type policy interface {
	name() string
	init(ctx context.Context, w *world) error
	online(b int32)
	offline(b int32)
	// requested: the viewer added t to the end of b's list.
	requested(b int32, t titleIdx)
	// unlisted: the viewer watched t and took it off the list.
	unlisted(b int32, t titleIdx)
	// reordered: the viewer changed the order of b's list.
	reordered(b int32)
	// evict: b's disk is over capacity; free the given title.
	evict(b int32, t titleIdx)
	released(t titleIdx)
	// step runs the policy's decisions for this tick; it returns how many
	// it made.
	step(ctx context.Context) (int, error)
	// flowEnded: f delivered its last piece.
	flowEnded(f *flow)
	// flowBroken: an end of f went offline.
	flowBroken(f *flow, gone int32)
	// decisionsAndMessages reports counters the world cannot see.
	messages() int64
}

// world is the simulated network, viewers and catalog; a policy moves
// the data.
type world struct {
	sc     Scenario
	rng    *rand.Rand
	now    time.Duration
	nodes  []node
	boxes  int // nodes[:boxes] are viewers' boxes, the rest servers
	titles int
	hashes [][32]byte
	ranks  []titleIdx // popularity order
	cdf    []float64
	events eventQueue
	flows  []*flow
	nextID uint64
	pol    policy

	m metricsState
}

type eventKind uint8

const (
	evOnline eventKind = iota
	evOffline
	evRequest
	evWatched
	evRelease
	evClusterDown
	evClusterUp
	evSample
)

type event struct {
	at    time.Duration
	seq   uint64
	kind  eventKind
	node  int32
	title titleIdx
}

type eventQueue []event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

func (w *world) schedule(e event) {
	w.nextID++
	e.seq = w.nextID
	heap.Push(&w.events, e)
}

func (w *world) exp(mean time.Duration) time.Duration {
	return time.Duration(w.rng.ExpFloat64() * float64(mean))
}

// nodeID is a deterministic box ID for node i.
func nodeID(i int) api.BoxID {
	var id api.BoxID
	binary.BigEndian.PutUint64(id[:8], uint64(i)+1)
	copy(id[8:], "simbox\x00\x00")
	return id
}

func titleID(t titleIdx) media.ID {
	var id media.ID
	binary.BigEndian.PutUint32(id[:4], uint32(t))
	copy(id[4:], "simtitle")
	return id
}

var nats = []api.NATType{api.NATFullCone, api.NATRestricted, api.NATPortRestricted, api.NATPortRestricted, api.NATSymmetric}

func newWorld(sc Scenario, pol policy) *world {
	w := &world{sc: sc, rng: rand.New(rand.NewPCG(sc.Seed, sc.Seed^0x5eed)), pol: pol, boxes: sc.Boxes}
	up, down := int(sc.UpMbps*1000), int(sc.DownMbps*1000)
	for i := range sc.Boxes {
		w.nodes = append(w.nodes, node{id: nodeID(i), upKbps: up, downKbps: down, nat: nats[w.rng.IntN(len(nats))],
			isp: uint16(w.rng.IntN(sc.ISPs)), region: uint16(w.rng.IntN(sc.Regions)), online: true})
	}
	perServer := int(sc.ClusterEgressGbps * 1e6 / float64(sc.ServersPerCluster))
	for c := range sc.Clusters {
		for range sc.ServersPerCluster {
			w.nodes = append(w.nodes, node{id: nodeID(len(w.nodes)), server: true, cluster: c, upKbps: perServer,
				downKbps: perServer, nat: api.NATOpen, online: true})
		}
	}
	for range sc.Titles {
		w.addTitle()
	}
	for i := range w.titles {
		w.ranks = append(w.ranks, titleIdx(i))
	}
	w.rebuildCDF()
	// A swarm that has run for months: every box's disk is full but for
	// one title's room, with titles its viewer watched, drawn by
	// popularity. (An empty swarm would measure the months of filling,
	// and the scheduler's speculative copies into free space with it,
	// instead of the steady state.)
	for i := range sc.Boxes {
		n := &w.nodes[i]
		for len(n.disk) < sc.DiskTitles-1 {
			if t := w.popular(); !slices.Contains(n.disk, t) {
				n.disk = append(n.disk, t)
			}
		}
	}
	w.m.init(w)
	return w
}

func (w *world) addTitle() titleIdx {
	t := titleIdx(w.titles)
	w.titles++
	var h [32]byte
	binary.BigEndian.PutUint32(h[:4], uint32(t))
	copy(h[4:], "payload hash of a simulated title")
	w.hashes = append(w.hashes, h)
	w.m.growTitles(w.titles)
	return t
}

func (w *world) rebuildCDF() {
	w.cdf = w.cdf[:0]
	sum := 0.0
	for r := range w.ranks {
		sum += 1 / math.Pow(float64(r+1), w.sc.Zipf)
		w.cdf = append(w.cdf, sum)
	}
	for i := range w.cdf {
		w.cdf[i] /= sum
	}
}

// popular draws a title by popularity.
func (w *world) popular() titleIdx {
	r, _ := slices.BinarySearch(w.cdf, w.rng.Float64())
	return w.ranks[min(r, len(w.ranks)-1)]
}

func (w *world) holds(b int32, t titleIdx) bool {
	n := &w.nodes[b]
	return n.server || slices.Contains(n.disk, t)
}

func (w *world) partialOf(b int32, t titleIdx) *partialHold {
	n := &w.nodes[b]
	for i := range n.partial {
		if n.partial[i].title == t {
			return &n.partial[i]
		}
	}
	return nil
}

// heldBytes is what a box holds of t.
func (w *world) heldBytes(b int32, t titleIdx) int64 {
	if w.holds(b, t) {
		return w.sc.titleBytes()
	}
	if p := w.partialOf(b, t); p != nil {
		return int64(p.n) * w.sc.pieceBytes()
	}
	return 0
}

// missingPieces lists the pieces of t that b lacks.
func (w *world) missingPieces(b int32, t titleIdx) []int32 {
	if w.holds(b, t) {
		return nil
	}
	p := w.partialOf(b, t)
	var out []int32
	for i := range w.sc.pieces() {
		if p == nil || p.have[i/8]&(0x80>>(i%8)) == 0 {
			out = append(out, int32(i))
		}
	}
	return out
}

// gotPiece stores a piece at b; it reports whether the title is now
// complete.
func (w *world) gotPiece(b int32, t titleIdx, piece int32) bool {
	if w.holds(b, t) {
		return true
	}
	p := w.partialOf(b, t)
	if p == nil {
		n := &w.nodes[b]
		n.partial = append(n.partial, partialHold{title: t, have: make([]byte, (w.sc.pieces()+7)/8)})
		p = &n.partial[len(n.partial)-1]
	}
	if p.have[piece/8]&(0x80>>(piece%8)) == 0 {
		p.have[piece/8] |= 0x80 >> (piece % 8)
		p.n++
	}
	return p.n == w.sc.pieces()
}

// complete makes t a complete title of b's disk: the viewer can play it.
func (w *world) complete(b int32, t titleIdx) {
	n := &w.nodes[b]
	if n.server || slices.Contains(n.disk, t) {
		return
	}
	n.partial = slices.DeleteFunc(n.partial, func(p partialHold) bool { return p.title == t })
	n.disk = append(n.disk, t)
	w.m.copyAdded(w, b, t)
	for i, r := range n.pending {
		if r.title == t {
			w.m.playable(w, b, r)
			n.pending = slices.Delete(n.pending, i, i+1)
			w.schedule(event{at: w.now + w.exp(w.sc.WatchAfter), kind: evWatched, node: b, title: t})
			break
		}
	}
	w.makeRoom(b)
}

// makeRoom asks the policy to free the oldest titles the viewer is done
// with until the disk has room for everything the viewer is waiting for.
func (w *world) makeRoom(b int32) {
	n := &w.nodes[b]
	over := len(n.disk) + len(n.partial) - w.sc.DiskTitles
	for _, r := range n.pending {
		if w.partialOf(b, r.title) == nil {
			over++
		}
	}
	over -= len(n.deleting)
	for _, t := range n.disk {
		if over <= 0 {
			return
		}
		if slices.Contains(n.list, t) || slices.Contains(n.deleting, t) {
			continue
		}
		over--
		n.deleting = append(n.deleting, t)
		w.pol.evict(b, t)
	}
}

// drop removes a complete title from b's disk (an approved deletion).
func (w *world) drop(b int32, t titleIdx) {
	n := &w.nodes[b]
	n.deleting = slices.DeleteFunc(n.deleting, func(x titleIdx) bool { return x == t })
	if i := slices.Index(n.disk, t); i >= 0 {
		n.disk = slices.Delete(n.disk, i, i+1)
		w.m.copyRemoved(w, b, t)
	}
}

// startFlow moves the pieces from one node to another from now on, after
// a connection set-up of one step.
func (w *world) startFlow(id uint64, t titleIdx, from, to int32, pieces []int32) *flow {
	f := &flow{id: id, title: t, from: from, to: to, pieces: pieces, startAt: w.now + w.sc.Step, lastMove: w.now,
		relayed: !w.nodes[from].server && !api.HolePunchable(w.nodes[from].nat, w.nodes[to].nat)}
	w.flows = append(w.flows, f)
	w.nodes[from].upFlows++
	w.nodes[to].downFlows++
	return f
}

// stopFlow ends a flow wherever it stands.
func (w *world) stopFlow(f *flow) {
	if f.done {
		return
	}
	f.done = true
	w.nodes[f.from].upFlows--
	w.nodes[f.to].downFlows--
}

// advance moves data for one step: each flow gets the smaller of its
// sender's uplink and its receiver's downlink shared equally among their
// flows (a fluid model of TCP-like fair sharing), then the unused share
// of a link is handed to its flows that could take more.
func (w *world) advance() {
	dt := w.sc.Step.Seconds()
	live := w.flows[:0]
	for _, f := range w.flows {
		if !f.done {
			live = append(live, f)
		}
	}
	w.flows = live
	upLeft := make(map[int32]float64)
	downLeft := make(map[int32]float64)
	for _, f := range w.flows {
		if f.startAt > w.now {
			continue
		}
		s, r := &w.nodes[f.from], &w.nodes[f.to]
		f.rate = min(float64(s.upKbps)*125/float64(s.upFlows), float64(r.downKbps)*125/float64(r.downFlows))
		upLeft[f.from] += f.rate
		downLeft[f.to] += f.rate
	}
	// Second pass: spare capacity on both ends goes to the flow.
	for _, f := range w.flows {
		if f.startAt > w.now {
			continue
		}
		s, r := &w.nodes[f.from], &w.nodes[f.to]
		spareUp := float64(s.upKbps)*125 - upLeft[f.from]
		spareDown := float64(r.downKbps)*125 - downLeft[f.to]
		if extra := min(spareUp, spareDown); extra > 1 {
			f.rate += extra
			upLeft[f.from] += extra
			downLeft[f.to] += extra
		}
	}
	piece := float64(w.sc.pieceBytes())
	for _, f := range w.flows {
		if f.startAt > w.now || f.done {
			continue
		}
		budget := f.rate * dt
		moved := int64(budget)
		for budget > 0 && len(f.pieces) > 0 {
			take := min(budget, piece-f.part)
			f.part += take
			budget -= take
			if f.part >= piece-0.5 {
				p := f.pieces[0]
				f.pieces = f.pieces[1:]
				f.part = 0
				f.pieceCnt++
				w.gotPiece(f.to, f.title, p)
			}
		}
		moved -= int64(max(budget, 0))
		f.sent += moved
		f.lastMove = w.now
		w.m.moved(w, f, moved)
		if len(f.pieces) == 0 {
			w.stopFlow(f)
			w.pol.flowEnded(f)
		}
	}
}

// Run simulates the scenario under one policy and returns its results.
func run(ctx context.Context, sc Scenario, pol policy) (Results, error) {
	if err := sc.Validate(); err != nil {
		return Results{}, err
	}
	w := newWorld(sc, pol)
	if err := pol.init(ctx, w); err != nil {
		return Results{}, fmt.Errorf("sim: %s: %w", pol.name(), err)
	}
	w.seedEvents()
	end := sc.Warmup + sc.Duration
	var decisions int
	var busy time.Duration
	// After the window, a drain: no new requests, until every counted one
	// is playable or Drain has passed.
	for w.now = 0; w.now < end || w.now < end+sc.Drain && w.waiting(); w.now += sc.Step {
		if err := ctx.Err(); err != nil {
			return Results{}, err
		}
		if w.now == sc.Warmup {
			w.m.startWindow(w)
		}
		w.handleEvents()
		start := time.Now()
		n, err := pol.step(ctx)
		busy += time.Since(start)
		if err != nil {
			return Results{}, fmt.Errorf("sim: %s at %v: %w", pol.name(), w.now, err)
		}
		if w.now >= sc.Warmup {
			decisions += n
		}
		w.advance()
	}
	return w.m.results(w, decisions, busy), nil
}

// waiting says whether a counted request is not yet playable.
func (w *world) waiting() bool {
	for i := range w.boxes {
		for _, r := range w.nodes[i].pending {
			if r.count {
				return true
			}
		}
	}
	return false
}

func (w *world) seedEvents() {
	sc := w.sc
	if sc.Churn > 0 {
		onMean := time.Duration(float64(sc.OfflineMean) * (1 - sc.Churn) / sc.Churn)
		for i := range w.boxes {
			w.schedule(event{at: w.exp(onMean), kind: evOffline, node: int32(i)})
		}
	}
	if sc.RequestsPerBoxDay > 0 {
		gap := time.Duration(float64(24*time.Hour) / sc.RequestsPerBoxDay)
		for i := range w.boxes {
			w.schedule(event{at: w.exp(gap), kind: evRequest, node: int32(i)})
		}
	}
	if sc.NewReleasesPerDay > 0 {
		// At a steady pace, the first ten minutes into the window: the
		// lower bound then always has a premiere in it.
		w.schedule(event{at: sc.Warmup + 10*time.Minute, kind: evRelease})
	}
	if sc.ClusterOutage > 0 {
		at := sc.Warmup + sc.Duration/2
		w.schedule(event{at: at, kind: evClusterDown})
		w.schedule(event{at: at + sc.ClusterOutage, kind: evClusterUp})
	}
	w.schedule(event{at: sc.Warmup, kind: evSample})
}

func (w *world) handleEvents() {
	sc := w.sc
	for len(w.events) > 0 && w.events[0].at <= w.now {
		e := heap.Pop(&w.events).(event)
		switch e.kind {
		case evOffline:
			w.setOnline(e.node, false)
			w.schedule(event{at: w.now + max(sc.Step, w.exp(sc.OfflineMean)), kind: evOnline, node: e.node})
		case evOnline:
			w.setOnline(e.node, true)
			onMean := time.Duration(float64(sc.OfflineMean) * (1 - sc.Churn) / sc.Churn)
			w.schedule(event{at: w.now + w.exp(onMean), kind: evOffline, node: e.node})
		case evRequest:
			w.request(e.node)
			gap := time.Duration(float64(24*time.Hour) / sc.RequestsPerBoxDay)
			w.schedule(event{at: w.now + w.exp(gap), kind: evRequest, node: e.node})
		case evWatched:
			n := &w.nodes[e.node]
			if i := slices.Index(n.list, e.title); i >= 0 {
				n.list = slices.Delete(n.list, i, i+1)
				w.pol.unlisted(e.node, e.title)
				w.makeRoom(e.node)
			}
		case evRelease:
			t := w.addTitle()
			at := w.rng.IntN(20)
			w.ranks = slices.Insert(w.ranks, at, t)
			w.rebuildCDF()
			w.pol.released(t)
			w.schedule(event{at: w.now + time.Duration(float64(24*time.Hour)/sc.NewReleasesPerDay), kind: evRelease})
		case evClusterDown, evClusterUp:
			for i := w.boxes; i < len(w.nodes); i++ {
				if w.nodes[i].cluster == 0 {
					w.setOnline(int32(i), e.kind == evClusterUp)
				}
			}
		case evSample:
			w.m.sample(w)
			w.schedule(event{at: w.now + 10*time.Minute, kind: evSample})
		}
	}
}

// request: the viewer adds a title it does not have to the list. Only
// online boxes' viewers do (the box is their remote's way in).
func (w *world) request(b int32) {
	n := &w.nodes[b]
	if !n.online || w.now >= w.sc.Warmup+w.sc.Duration {
		return // off, or draining
	}
	// Now and then the viewer first moves a title it is waiting for to the
	// top of the list.
	if len(n.list) > 1 && w.rng.Float64() < reorderShare {
		w.moveToTop(b, n.list[w.rng.IntN(len(n.list))])
	}
	var t titleIdx
	for try := 0; ; try++ {
		if try == 20 {
			return
		}
		t = w.popular()
		if !w.holds(b, t) && !slices.Contains(n.list, t) {
			break
		}
	}
	// The bound: the downlink alone, carrying everything asked for before
	// this title and still missing, then this one.
	need := w.sc.titleBytes() - w.heldBytes(b, t)
	for _, r := range n.pending {
		need += w.sc.titleBytes() - w.heldBytes(b, r.title)
	}
	bound := time.Duration(float64(need) * 8 / (float64(n.downKbps) * 1000) * float64(time.Second))
	n.list = append(n.list, t)
	// Requests from the window's last fifth are not counted: they could
	// not finish whatever the policy.
	end := w.sc.Warmup + w.sc.Duration
	count := w.now >= w.sc.Warmup && w.now < end-w.sc.Duration/5
	n.pending = append(n.pending, request{title: t, at: w.now, offAt: n.offFor, bound: bound, count: count})
	w.m.requested(w, b, t, count)
	w.pol.requested(b, t)
	w.makeRoom(b)
}

// reorderShare is the share of requests before which the viewer reorders
// the list.
const reorderShare = 0.25

// moveToTop puts a listed title first on the viewer's list, and first
// among what the box waits for.
func (w *world) moveToTop(b int32, t titleIdx) {
	n := &w.nodes[b]
	if i := slices.Index(n.list, t); i > 0 {
		n.list = slices.Insert(slices.Delete(n.list, i, i+1), 0, t)
	}
	if i := slices.IndexFunc(n.pending, func(r request) bool { return r.title == t }); i > 0 {
		r := n.pending[i]
		n.pending = slices.Insert(slices.Delete(n.pending, i, i+1), 0, r)
	}
	w.pol.reordered(b)
}

// waited is how long a request has waited while its box was on: a box
// switched off cannot receive, whatever the policy.
func (w *world) waited(b int32, r request) time.Duration {
	n := &w.nodes[b]
	off := n.offFor - r.offAt
	if !n.online {
		off += w.now - n.offSince
	}
	return w.now - r.at - off
}

func (w *world) setOnline(b int32, on bool) {
	n := &w.nodes[b]
	if n.online == on {
		return
	}
	n.online = on
	if on {
		n.offFor += w.now - n.offSince
	} else {
		n.offSince = w.now
	}
	w.m.onlineChanged(w, b, on)
	if on {
		w.pol.online(b)
		return
	}
	for _, f := range w.flows {
		if !f.done && (f.from == b || f.to == b) {
			w.stopFlow(f)
			w.pol.flowBroken(f, b)
		}
	}
	w.pol.offline(b)
}
