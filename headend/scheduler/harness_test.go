package scheduler

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"path/filepath"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/headend/schedstore/boltstore"
	"github.com/boxswarm/boxswarm/media"
)

// harness drives a Scheduler by hand: a memory store, a clock the test
// moves, and boxes whose messages are delivered straight into the loop.
type harness struct {
	t       *testing.T
	s       *Scheduler
	store   schedstore.Store
	now     time.Time
	seq     map[api.BoxID]uint64
	read    map[api.BoxID]uint64 // outbox messages already looked at
	names   map[api.BoxID]string
	regs    map[api.BoxID]api.Register
	titles  map[string]media.ID
	codes   int
	seqList uint64
}

func newHarness(t *testing.T, tweak ...func(*Config)) *harness {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(nil)
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "scheduler.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h := &harness{t: t, store: store, now: time.Unix(1_800_000_000, 0), seq: map[api.BoxID]uint64{},
		read: map[api.BoxID]uint64{}, names: map[api.BoxID]string{}, regs: map[api.BoxID]api.Register{}, titles: map[string]media.ID{}}
	cfg := Config{Store: h.store, Key: key, Now: func() time.Time { return h.now }, ShadowEvery: time.Hour,
		StartTimeout: 30 * time.Second, ProgressTimeout: 30 * time.Second, OfflineAfter: 90 * time.Second}
	for _, f := range tweak {
		f(&cfg)
	}
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	h.s.shadowAt = h.now.UnixMilli() // no shadow planning unless a test asks
	h.s.cfg.Budget = 0               // no transfers planned until tick: setup order must not matter
	return h
}

// title adds a published title of n pieces of 1 MiB.
func (h *harness) title(name string, pieces int) media.ID {
	var id media.ID
	copy(id[:], name)
	h.titles[name] = id
	h.run(func(s *Scheduler) error {
		t := schedstore.Title{ID: id, Pieces: pieces, PieceSize: 1 << 20, PayloadSize: int64(pieces) << 20,
			PayloadHash: hashOf(name), PublishAt: h.now.Add(-time.Hour)}
		s.putTitle(t)
		return nil
	})
	return id
}

func hashOf(name string) [32]byte {
	var h [32]byte
	copy(h[:], "hash of "+name)
	return h
}

type boxOpts struct {
	up, down int
	isp      string
	nat      api.NATType
	server   bool
	free     int64
	addr     string
	cluster  string
}

// box activates, connects and registers a box.
func (h *harness) box(name string, o boxOpts) api.BoxID {
	h.t.Helper()
	if o.up == 0 {
		o.up = 10_000
	}
	if o.down == 0 {
		o.down = 10_000
	}
	if o.isp == "" {
		o.isp = "isp-a"
	}
	if o.nat == "" {
		o.nat = api.NATPortRestricted
	}
	if o.free == 0 {
		o.free = 1 << 40
	}
	var id api.BoxID
	h.run(func(s *Scheduler) error {
		h.codes++
		code := fmt.Sprintf("code-%d", h.codes)
		account := "acct-" + name
		if o.server {
			account = ServerAccount
		}
		if err := s.cfg.Store.Update(context.Background(), func(tx schedstore.Tx) error { return tx.AddActivationCode(code, account) }); err != nil {
			return err
		}
		pub, _, _ := ed25519.GenerateKey(nil)
		var err error
		id, _, err = s.activate(context.Background(), code, pub,
			func(api.BoxID) ([]byte, error) { return []byte("cert of " + name), nil })
		return err
	})
	h.names[id] = name
	h.regs[id] = api.Register{Capacity: o.free, Free: o.free, UpKbps: o.up, DownKbps: o.down, NAT: o.nat,
		Location: api.Location{Region: "eu", ISP: o.isp}, Server: o.server, PieceAddr: o.addr, Cluster: o.cluster}
	h.connect(id)
	return id
}

// connect connects a box and registers it, as an agent does on every
// connection.
func (h *harness) connect(id api.BoxID) {
	h.t.Helper()
	h.iterate(&request{kind: reqConnected, box: id})
	h.mustDeliver(id, h.regs[id])
	h.sent(id) // drop the Registered answer
}

func (h *harness) disconnect(id api.BoxID) { h.iterate(&request{kind: reqDisconnected, box: id}) }

// holds reports complete copies of titles.
func (h *harness) holds(box api.BoxID, names ...string) {
	inv := api.Inventory{}
	for _, n := range names {
		inv.Titles = append(inv.Titles, api.TitleState{Title: h.titles[n], Complete: true})
	}
	h.mustDeliver(box, inv)
}

func (h *harness) list(box api.BoxID, names ...string) {
	var ids []media.ID
	for _, n := range names {
		ids = append(ids, h.titles[n])
	}
	h.seqList++
	h.mustDeliver(box, api.PriorityList{Titles: ids, Version: h.seqList})
}

func (h *harness) deliver(box api.BoxID, body api.Body) error {
	h.seq[box]++
	r := &request{kind: reqDeliver, box: box, seq: h.seq[box], body: body}
	h.iterate(r)
	return r.err
}

func (h *harness) mustDeliver(box api.BoxID, body api.Body) {
	h.t.Helper()
	if err := h.deliver(box, body); err != nil {
		h.t.Fatalf("%s %s: %v", h.names[box], body.Type(), err)
	}
}

func (h *harness) run(fn func(*Scheduler) error) {
	h.t.Helper()
	r := &request{kind: reqFunc, fn: fn}
	h.iterate(r)
	if r.err != nil {
		h.t.Fatal(r.err)
	}
}

// iterate runs one pass of the loop with the given requests.
func (h *harness) iterate(reqs ...*request) {
	for _, r := range reqs {
		r.done = make(chan struct{})
	}
	h.s.Iterate(context.Background(), reqs)
}

// tick runs a pass of the loop that plans transfers.
func (h *harness) tick() {
	h.s.cfg.Budget = 1000
	h.iterate()
	h.s.cfg.Budget = 0
}

func (h *harness) advance(d time.Duration) { h.now = h.now.Add(d) }

// sent returns the messages owed to a box since the last call.
func (h *harness) sent(box api.BoxID) []api.Body {
	h.t.Helper()
	out, err := h.store.Outbox(context.Background(), box, h.read[box])
	if err != nil {
		h.t.Fatal(err)
	}
	var bodies []api.Body
	for _, o := range out {
		m, err := api.Decode(o.Frame[4:])
		if err != nil {
			h.t.Fatalf("stored frame does not decode: %v", err)
		}
		bodies = append(bodies, m.Body)
		h.read[box] = o.Seq
	}
	return bodies
}

// starts returns the TransferStart messages a box got since the last look.
func (h *harness) starts(box api.BoxID) []api.TransferStart {
	var ts []api.TransferStart
	for _, b := range h.sent(box) {
		if t, ok := b.(api.TransferStart); ok {
			ts = append(ts, t)
		}
	}
	return ts
}

func (h *harness) name(id api.BoxID) string { return h.names[id] }

func (h *harness) titleName(id media.ID) string {
	for n, t := range h.titles {
		if t == id {
			return n
		}
	}
	return id.String()
}

// describe renders transfer starts as "receiver<-sender:title[pieces]".
func (h *harness) describe(box api.BoxID, ts []api.TransferStart) []string {
	var out []string
	for _, t := range ts {
		if t.Role == api.RoleReceive {
			out = append(out, fmt.Sprintf("%s<-%s:%s%v", h.name(box), h.name(t.Peer.Box), h.titleName(t.Title), t.Portions))
		}
	}
	return out
}
