package scheduler

import (
	"container/heap"
	"math/bits"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
)

// The working state is built for a million boxes: boxes and titles live in
// slices addressed by small integers, strings are interned, and every
// choice the loop makes (which receiver, which donor) comes from an index
// kept up to date as things change, never from a scan. That keeps the cost
// of one scheduling decision flat as the swarm grows, and the memory per
// box near a kilobyte.

type boxIdx int32
type titleIdx int32

const noBox boxIdx = -1

// box is one box or media server.
type box struct {
	id        api.BoxID
	account   string
	server    bool
	cluster   uint16 // interned
	isp       uint16 // interned
	region    uint16 // interned
	nat       api.NATType
	pieceAddr string

	capacity, free   int64
	upKbps, downKbps int32

	cert       [32]byte // SHA-256 of its device certificate
	activated  int64
	online     bool   // considered alive; false once taken offline
	connected  bool   // has a gateway connection
	hold       bool   // a one-sided timeout: no new jobs until heard from again, or for OfflineAfter
	registered bool   // sent Register on this connection
	instance   uint64 // api.Register.Instance: a new one means the box restarted
	lastSeen   int64  // unix ms
	lastServed int64  // unix ms; the receiver served least recently goes first
	lastTried  int64  // unix ms; when no donor could serve it
	lastSent   int64  // unix ms; the donor sending least recently goes first

	upLegs, downJobs int8  // active transfer legs as sender, jobs as receiver
	upKbpsBusy       int32 // uplink promised to active legs
	specLegs         int8  // of upLegs, those of speculative jobs
	specKbps         int32 // of upKbpsBusy, promised to speculative jobs

	holdings []holding
	list     []titleIdx // the viewer's priority list
	listVer  uint64
	shadow   []titleIdx // the scheduler's own list for this box
	perf     [4]pairPerf

	inSeq, outSeq uint64 // at-least-once sequence numbers

	queue    int8 // which needy queue the box is in: queueNone/queueHigh/queueLow
	heapSlot int32
}

// holding is a title on a box: complete, or partly there.
type holding struct {
	title    titleIdx
	complete bool
	have     []byte // piece bitmap while incomplete
}

// pairPerf is a recent measurement from this box to a peer.
type pairPerf struct {
	peer boxIdx
	kbps int32
	rtt  int32
}

// title is one media package the scheduler delivers.
type title struct {
	id            media.ID
	pieces        int
	pieceSize     int
	size          int64
	hash          [32]byte
	publishAt     int64 // unix ms
	demand        int32 // lists naming it: how wanted it is
	copies        int32 // complete copies on boxes (not servers)
	partialCursor int   // fromPartial's place in partial
	servers       []boxIdx
	donors        *donorQueue            // complete copies on boxes, all ISPs
	byISP         map[uint16]*donorQueue // complete copies on boxes, per ISP
	partial       []boxIdx               // boxes receiving it now: donors for what they have
	shadowed      int32                  // shadow lists naming it on boxes that lack it
	pendingDels   []boxIdx               // deletions deferred until a copy moves elsewhere
}

// donorQueue is a ring of boxes holding a title. Taking a donor moves it to
// the back, so the front holds the boxes that sent this title least
// recently; the loop samples a few from the front and picks the best.
type donorQueue struct {
	ring []boxIdx
	head int
}

func (q *donorQueue) push(b boxIdx) { q.ring = append(q.ring, b) }

// remove takes b out of the queue (a box deleted the title or left).
func (q *donorQueue) remove(b boxIdx) {
	for i, x := range q.ring {
		if x == b {
			last := len(q.ring) - 1
			q.ring[i] = q.ring[last]
			q.ring = q.ring[:last]
			if q.head > last {
				q.head = 0
			}
			return
		}
	}
}

// peek returns the i-th box from the front, for i below the queue's length.
func (q *donorQueue) peek(i int) boxIdx { return q.ring[(q.head+i)%len(q.ring)] }

// rotate moves the front past n boxes: they were just considered.
func (q *donorQueue) rotate(n int) {
	if len(q.ring) > 0 {
		q.head = (q.head + n) % len(q.ring)
	}
}

func (q *donorQueue) len() int { return len(q.ring) }

// Needy queues hold the boxes that want something delivered, ordered by
// when they were last served.
const (
	queueNone int8 = iota
	queueHigh      // nothing on the list is watchable yet
	queueLow       // something to watch, more on the list (or shadow list)
)

// turn orders needy boxes: least recently served or tried first, so that
// boxes no donor can serve now rotate to the back instead of being tried
// again, first, on every pass.
func (x *box) turn() int64 { return max(x.lastServed, x.lastTried) }

type needyHeap struct {
	s     *state
	which int8
	boxes []boxIdx
}

func (h *needyHeap) Len() int { return len(h.boxes) }
func (h *needyHeap) Less(i, j int) bool {
	a, b := &h.s.boxes[h.boxes[i]], &h.s.boxes[h.boxes[j]]
	if ka, kb := a.turn(), b.turn(); ka != kb {
		return ka < kb
	}
	return h.boxes[i] < h.boxes[j]
}
func (h *needyHeap) Swap(i, j int) {
	h.boxes[i], h.boxes[j] = h.boxes[j], h.boxes[i]
	h.s.boxes[h.boxes[i]].heapSlot = int32(i)
	h.s.boxes[h.boxes[j]].heapSlot = int32(j)
}
func (h *needyHeap) Push(x any) {
	b := x.(boxIdx)
	h.s.boxes[b].heapSlot = int32(len(h.boxes))
	h.s.boxes[b].queue = h.which
	h.boxes = append(h.boxes, b)
}
func (h *needyHeap) Pop() any {
	last := len(h.boxes) - 1
	b := h.boxes[last]
	h.boxes = h.boxes[:last]
	h.s.boxes[b].queue = queueNone
	h.s.boxes[b].heapSlot = -1
	return b
}

// interner gives small stable numbers to strings (ISPs, regions, clusters).
type interner struct {
	ids   map[string]uint16
	names []string
}

func (in *interner) id(s string) uint16 {
	if v, ok := in.ids[s]; ok {
		return v
	}
	if in.ids == nil {
		in.ids = map[string]uint16{}
	}
	v := uint16(len(in.names))
	in.ids[s] = v
	in.names = append(in.names, s)
	return v
}

// bitmap helpers on piece bitmaps (bit 7 of byte 0 is piece 0).
func hasPiece(b []byte, i int) bool {
	return i/8 < len(b) && b[i/8]&(0x80>>(i%8)) != 0
}

func countPieces(b []byte) int {
	n := 0
	for _, x := range b {
		n += bits.OnesCount8(x)
	}
	return n
}

// state is everything the loop knows, owned by the loop's goroutine.
type state struct {
	boxes    []box
	boxByID  map[api.BoxID]boxIdx
	titles   []title
	titleBy  map[media.ID]titleIdx
	isps     interner
	regions  interner
	clusters interner
	high     needyHeap
	low      needyHeap
	jobs     map[jobKey]*job
	legs     map[api.TransferID]*leg
	// Boxes whose connection is gone (since lastSeen) and boxes on hold
	// (until the time given): the loop watches only these, never every box.
	disconnected map[boxIdx]struct{}
	held         map[boxIdx]int64
	// servers are the media servers, in every cluster: few, so the loop
	// may scan them.
	servers []boxIdx
	// serverHeldUnknown are titles media servers reported before the
	// scheduler knew them, and the servers holding them.
	serverHeldUnknown map[media.ID][]boxIdx
}

// maxUnknownTitles bounds serverHeldUnknown.
const maxUnknownTitles = 1 << 16

func newState() *state {
	s := &state{boxByID: map[api.BoxID]boxIdx{}, titleBy: map[media.ID]titleIdx{},
		jobs: map[jobKey]*job{}, legs: map[api.TransferID]*leg{},
		disconnected: map[boxIdx]struct{}{}, held: map[boxIdx]int64{}, serverHeldUnknown: map[media.ID][]boxIdx{}}
	s.high = needyHeap{s: s, which: queueHigh}
	s.low = needyHeap{s: s, which: queueLow}
	return s
}

func (s *state) heapOf(which int8) *needyHeap {
	if which == queueHigh {
		return &s.high
	}
	return &s.low
}

// requeue puts a box in the needy queue its state calls for, or takes it
// out of the queues.
func (s *state) requeue(b boxIdx, which int8) {
	x := &s.boxes[b]
	if x.queue == which {
		if which != queueNone {
			heap.Fix(s.heapOf(which), int(x.heapSlot))
		}
		return
	}
	if x.queue != queueNone {
		heap.Remove(s.heapOf(x.queue), int(x.heapSlot))
	}
	if which != queueNone {
		heap.Push(s.heapOf(which), b)
	}
}

func (s *state) holdingOf(b boxIdx, t titleIdx) *holding {
	hs := s.boxes[b].holdings
	for i := range hs {
		if hs[i].title == t {
			return &hs[i]
		}
	}
	return nil
}
