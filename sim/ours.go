package sim

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/headend/schedstore/memstore"
	"github.com/boxswarm/boxswarm/headend/scheduler"
	"github.com/boxswarm/boxswarm/media"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// progressEvery is how often a box reports a running transfer, as the
// transfer daemon does.
const progressEvery = 10 * time.Second

// ours drives the head-end's scheduler package, unchanged, through a
// Stepper: virtual boxes send it the messages real boxes send, in the
// api types, and act on what comes back from its outbox.
type ours struct {
	w       *world
	store   schedstore.Store
	sched   *scheduler.Scheduler
	stepper *scheduler.Stepper
	reg     *prometheus.Registry
	clock   time.Time
	byID    map[api.BoxID]int32
	seqOut  []uint64 // last message sequence number each box sent
	read    []uint64 // last outbox message each box has acted on
	inst    []uint64
	notify  []api.BoxID
	legs    map[api.TransferID]*simLeg
	// connecting are boxes yet to make their first connection, in reverse
	// order of connecting.
	connecting []int32
	msgs       int64
	refused    int
	log        *slog.Logger
	cfg        func(*scheduler.Config)
}

// simLeg is one transfer as the two virtual ends know it.
type simLeg struct {
	id         api.TransferID
	title      titleIdx
	sender     int32
	receiver   int32
	portions   []api.PieceRange
	sendKnows  bool // the sender has its TransferStart
	recvKnows  bool
	flow       *flow
	lastReport time.Duration
	dead       bool
	waitSince  time.Duration
}

// Ours is the real scheduler; tweak, if not nil, changes its
// configuration.
func newOurs(log *slog.Logger, tweak func(*scheduler.Config)) *ours {
	return &ours{log: log, cfg: tweak}
}

func (o *ours) name() string { return "boxswarm" }

func (o *ours) now() time.Time { return o.clock.Add(o.w.now) }

func (o *ours) init(ctx context.Context, w *world) error {
	o.w = w
	o.clock = time.Unix(1_900_000_000, 0).UTC()
	o.store = memstore.New()
	o.byID = make(map[api.BoxID]int32, len(w.nodes))
	o.seqOut = make([]uint64, len(w.nodes))
	o.read = make([]uint64, len(w.nodes))
	o.inst = make([]uint64, len(w.nodes))
	o.legs = make(map[api.TransferID]*simLeg)
	// The head-end as it stands after running a while: titles imported,
	// boxes and servers activated.
	err := o.store.Update(ctx, func(tx schedstore.Tx) error {
		for t := range w.titles {
			if err := tx.PutTitle(o.titleRecord(titleIdx(t))); err != nil {
				return err
			}
		}
		for i := range w.nodes {
			n := &w.nodes[i]
			o.byID[n.id] = int32(i)
			account, cluster := fmt.Sprintf("viewer-%d", i), ""
			if n.server {
				account, cluster = scheduler.ServerAccount, fmt.Sprintf("cluster-%d", n.cluster)
			}
			err := tx.PutBox(schedstore.Box{ID: n.id, Account: account, CertSHA256: sha256.Sum256(n.id[:]), Server: n.server,
				Cluster: cluster, Capacity: o.capacity(int32(i)), Free: o.capacity(int32(i)), UpKbps: n.upKbps, DownKbps: n.downKbps,
				NAT: n.nat, Activated: o.now()})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	_, key, _ := ed25519.GenerateKey(nil)
	o.reg = prometheus.NewRegistry()
	cfg := scheduler.Config{Store: o.store, Key: key, Now: o.now, Tick: w.sc.Step, Log: o.log,
		Notify: func(id api.BoxID) { o.notify = append(o.notify, id) }, Metrics: scheduler.NewMetrics(o.reg)}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	o.sched, err = scheduler.New(ctx, cfg)
	if err != nil {
		return err
	}
	o.stepper = o.sched.Stepper()
	// The swarm connects as after a head-end restart: a batch per pass,
	// as the gateway hands registrations over, servers first.
	for i := len(w.nodes) - 1; i >= 0; i-- {
		o.connecting = append(o.connecting, int32(i))
	}
	return nil
}

// reconnectBatch is how many boxes connect per pass at the start.
const reconnectBatch = 4096

func (o *ours) titleRecord(t titleIdx) schedstore.Title {
	sc := o.w.sc
	return schedstore.Title{ID: titleID(t), Pieces: sc.pieces(), PieceSize: int(sc.pieceBytes()), PayloadSize: sc.titleBytes(),
		PayloadHash: o.w.hashes[t], PublishAt: o.now().Add(-time.Minute)}
}

func (o *ours) capacity(b int32) int64 {
	if o.w.nodes[b].server {
		return 1 << 50
	}
	return int64(o.w.sc.DiskTitles) * o.w.sc.titleBytes()
}

func (o *ours) free(b int32) int64 {
	n := &o.w.nodes[b]
	if n.server {
		return 1 << 49
	}
	used := int64(len(n.disk)) * o.w.sc.titleBytes()
	for _, p := range n.partial {
		used += int64(p.n) * o.w.sc.pieceBytes()
	}
	return max(0, o.capacity(b)-used)
}

func (o *ours) send(b int32, body api.Body) {
	o.seqOut[b]++
	o.msgs++
	o.stepper.Deliver(o.w.nodes[b].id, o.seqOut[b], body)
}

// online: the box powers up (or its cluster comes back), connects, and
// registers with a new instance (a restart: what it had in flight is
// forgotten), then reports everything it holds.
func (o *ours) online(b int32) {
	n := &o.w.nodes[b]
	o.inst[b]++
	o.stepper.Connected(n.id)
	cluster := ""
	if n.server {
		cluster = fmt.Sprintf("cluster-%d", n.cluster)
	}
	o.send(b, api.Register{Capacity: o.capacity(b), Free: o.free(b), UpKbps: n.upKbps, DownKbps: n.downKbps, NAT: n.nat,
		Location: api.Location{Region: fmt.Sprintf("r%d", n.region), ISP: fmt.Sprintf("isp-%d", n.isp)},
		Server:   n.server, Cluster: cluster, Instance: o.inst[b]})
	inv := api.Inventory{Full: true}
	if n.server {
		for t := range o.w.titles {
			inv.Titles = append(inv.Titles, api.TitleState{Title: titleID(titleIdx(t)), Complete: true})
		}
	} else {
		for _, t := range n.disk {
			inv.Titles = append(inv.Titles, api.TitleState{Title: titleID(t), Complete: true})
		}
		for _, p := range n.partial {
			inv.Titles = append(inv.Titles, api.TitleState{Title: titleID(p.title), Have: slices.Clone(p.have)})
		}
	}
	o.send(b, inv)
	if !n.server && len(n.list) > 0 {
		o.sendList(b)
	}
}

func (o *ours) offline(b int32) {
	o.stepper.Disconnected(o.w.nodes[b].id)
	// Its side of every transfer is gone with its memory.
	for _, l := range o.sortedLegs() {
		if l.sender == b || l.receiver == b {
			l.dead = true
			delete(o.legs, l.id)
		}
	}
}

// sendList: the viewer's list edit reaches the head-end from the web.
func (o *ours) sendList(b int32) {
	n := &o.w.nodes[b]
	ids := make([]media.ID, len(n.list))
	for i, t := range n.list {
		ids[i] = titleID(t)
	}
	o.stepper.SetPriorityList(n.id, ids, 0)
}

func (o *ours) requested(b int32, _ titleIdx) { o.sendList(b) }

func (o *ours) reordered(b int32) { o.sendList(b) }

func (o *ours) unlisted(b int32, _ titleIdx) {
	if o.w.nodes[b].online {
		o.sendList(b)
	}
}

func (o *ours) evict(b int32, t titleIdx) {
	if o.w.nodes[b].online {
		o.send(b, api.DeleteRequest{Title: titleID(t)})
	}
}

func (o *ours) released(t titleIdx) {
	o.stepper.AddTitle(o.titleRecord(t))
	for i := o.w.boxes; i < len(o.w.nodes); i++ {
		if o.w.nodes[i].online {
			o.send(int32(i), api.Inventory{Titles: []api.TitleState{{Title: titleID(t), Complete: true}}})
		}
	}
}

func (o *ours) messages() int64 { return o.msgs }

func (o *ours) sortedLegs() []*simLeg {
	out := make([]*simLeg, 0, len(o.legs))
	for _, l := range o.legs {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b *simLeg) int { return cmp.Compare(a.id, b.id) })
	return out
}

// step: boxes report running transfers, the scheduler runs one pass,
// and every box it notified reads and acts on its outbox.
func (o *ours) step(ctx context.Context) (int, error) {
	for range min(reconnectBatch, len(o.connecting)) {
		b := o.connecting[len(o.connecting)-1]
		o.connecting = o.connecting[:len(o.connecting)-1]
		if o.w.nodes[b].online && o.inst[b] == 0 {
			o.online(b)
		}
	}
	o.report()
	before := o.decisions()
	errs := o.stepper.Step(ctx)
	for _, err := range errs {
		if err != nil {
			o.refused++
			if o.refused <= 5 {
				o.log.Warn("sim: the scheduler refused a box's message", "err", err)
			}
		}
	}
	notified := o.notify
	o.notify = nil
	slices.SortFunc(notified, func(a, b api.BoxID) int { return slices.Compare(a[:], b[:]) })
	notified = slices.Compact(notified)
	for _, id := range notified {
		b := o.byID[id]
		if !o.w.nodes[b].online {
			continue // it reads them when it is back
		}
		if err := o.readOutbox(ctx, b); err != nil {
			return 0, err
		}
	}
	return o.decisions() - before, nil
}

func (o *ours) readOutbox(ctx context.Context, b int32) error {
	n := &o.w.nodes[b]
	out, err := o.sched.Pending(ctx, n.id, o.read[b])
	if err != nil {
		return err
	}
	for _, m := range out {
		msg, err := api.ReadMessage(bytes.NewReader(m.Frame))
		if err != nil {
			return fmt.Errorf("box %d: outbox message %d: %w", b, m.Seq, err)
		}
		o.read[b] = m.Seq
		o.msgs++
		o.handle(b, msg.Body)
	}
	if len(out) > 0 {
		o.stepper.Acked(n.id, o.read[b])
	}
	return nil
}

func (o *ours) handle(b int32, body api.Body) {
	switch m := body.(type) {
	case api.TransferStart:
		o.transferStart(b, m)
	case api.TransferCancel:
		if l := o.legs[m.Transfer]; l != nil {
			l.dead = true
			if l.flow != nil {
				o.w.stopFlow(l.flow)
			}
			delete(o.legs, m.Transfer)
		}
	case api.TransferConfirmed:
		if t, ok := o.titleOf(m.Title); ok {
			o.w.complete(b, t)
		}
	case api.DeleteAnswer:
		if t, ok := o.titleOf(m.Title); ok && m.Approved {
			o.w.drop(b, t)
		}
	}
}

func (o *ours) titleOf(id media.ID) (titleIdx, bool) {
	t := titleIdx(int32(id[0])<<24 | int32(id[1])<<16 | int32(id[2])<<8 | int32(id[3]))
	return t, t >= 0 && int(t) < o.w.titles && titleID(t) == id
}

func (o *ours) transferStart(b int32, m api.TransferStart) {
	t, ok := o.titleOf(m.Title)
	if !ok {
		return
	}
	l := o.legs[m.Transfer]
	if l == nil {
		l = &simLeg{id: m.Transfer, title: t, portions: m.Portions, waitSince: o.w.now}
		o.legs[m.Transfer] = l
	}
	peer, known := o.byID[m.Peer.Box]
	if !known {
		return
	}
	if m.Role == api.RoleSend {
		l.sender, l.receiver, l.sendKnows = b, peer, true
	} else {
		l.sender, l.receiver, l.recvKnows = peer, b, true
	}
	if !l.sendKnows || !l.recvKnows || l.flow != nil {
		return
	}
	var pieces []int32
	for _, r := range l.portions {
		for p := r.First; p <= r.Last; p++ {
			pieces = append(pieces, int32(p))
		}
	}
	missing := o.w.missingPieces(l.receiver, t)
	pieces = slices.DeleteFunc(pieces, func(p int32) bool { _, found := slices.BinarySearch(missing, p); return !found })
	l.flow = o.w.startFlow(uint64(l.id), t, l.sender, l.receiver, pieces)
	l.lastReport = o.w.now
	o.send(l.sender, api.TransferStarted{Transfer: l.id})
	o.send(l.receiver, api.TransferStarted{Transfer: l.id})
	if len(pieces) == 0 {
		o.w.stopFlow(l.flow)
		o.flowEnded(l.flow)
	}
}

// report: each end of a running transfer tells the scheduler how it goes
// every progressEvery; an end whose peer never showed gives up after the
// transfer daemon's connect timeout.
func (o *ours) report() {
	for _, l := range o.sortedLegs() {
		if l.flow == nil {
			if o.w.now-l.waitSince > 20*time.Second {
				o.abandon(l, "peer never connected")
			}
			continue
		}
		if o.w.now-l.lastReport < progressEvery {
			continue
		}
		l.lastReport = o.w.now
		f := l.flow
		o.send(l.sender, api.TransferProgress{Transfer: l.id, Pieces: f.pieceCnt, Bytes: f.sent})
		tp := api.TransferProgress{Transfer: l.id, Pieces: f.pieceCnt, Bytes: f.sent}
		if p := o.w.partialOf(l.receiver, l.title); p != nil {
			tp.Have = slices.Clone(p.have)
		}
		o.send(l.receiver, tp)
	}
}

func (o *ours) abandon(l *simLeg, why string) {
	l.dead = true
	delete(o.legs, l.id)
	end := l.receiver
	if !l.recvKnows {
		end = l.sender
	}
	if o.w.nodes[end].online {
		o.send(end, api.TransferFailed{Transfer: l.id, Reason: why})
	}
}

// flowEnded: the portion arrived. Both ends say so; the receiver adds the
// payload hash once it holds the whole title.
func (o *ours) flowEnded(f *flow) {
	l := o.legs[api.TransferID(f.id)]
	if l == nil {
		return
	}
	delete(o.legs, l.id)
	o.send(l.sender, api.TransferSucceeded{Transfer: l.id})
	done := api.TransferSucceeded{Transfer: l.id}
	if p := o.w.partialOf(l.receiver, l.title); p != nil && p.n == o.w.sc.pieces() {
		h := o.w.hashes[l.title]
		done.PayloadHash = h[:]
	}
	o.send(l.receiver, done)
}

// flowBroken: the surviving end sees the connection drop and says so.
func (o *ours) flowBroken(f *flow, gone int32) {
	l := o.legs[api.TransferID(f.id)]
	if l == nil {
		return
	}
	delete(o.legs, l.id)
	alive := f.from
	if alive == gone {
		alive = f.to
	}
	if o.w.nodes[alive].online {
		o.send(alive, api.TransferFailed{Transfer: l.id, Reason: "peer went away"})
	}
}

// decisions reads the scheduler's own count of jobs created.
func (o *ours) decisions() int {
	mfs, err := o.reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == "boxswarm_scheduler_decisions_total" {
			return int(counterValue(mf.GetMetric()))
		}
	}
	return 0
}

func counterValue(ms []*dto.Metric) float64 {
	var v float64
	for _, m := range ms {
		v += m.GetCounter().GetValue()
	}
	return v
}
