// Package scheduler decides which box gets which title, when, and from
// where. It keeps every box's priority list and shadow list, what each box
// and media server holds, the transfers in flight and the measured
// performance between pairs, and runs the loop of the source design:
//
//	process new messages
//	monitor transfers (timeouts, Fig. 15B and 15C)
//	monitor clients (silent boxes go offline; the gateway reports boxes
//	  whose messages went unacknowledged through every retry)
//	plan shadow lists
//	create high-priority transfers (boxes with nothing to watch)
//	create low-priority transfers
//
// New messages come first, unlike the source's order, so a box that spoke
// in this pass is not timed out by it and decisions see the freshest state.
//
// Donors are chosen least recently sending first, in the receiver's ISP
// first, fastest as measured first, media servers last (or first, by
// policy); several donors share a title up to the receiver's downlink, and
// a donor that stalls or fails has its portion given to another. Every
// transfer ends in one of the outcomes of Fig. 15, and a title counts as
// delivered only when its whole-payload hash matches the manifest.
//
// State lives in memory, owned by the loop's goroutine; each iteration's
// changes reach the store (schedstore) in one atomic Update before any
// message they produce is sent or any box message they answer is
// acknowledged.
package scheduler

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
)

// Config tunes a Scheduler. Zero durations and counts take the defaults
// noted.
type Config struct {
	Store  schedstore.Store
	Key    ed25519.PrivateKey // signs transfer tokens
	Policy Policy
	// Notify tells the gateway that messages are owed to a box.
	Notify func(api.BoxID)
	// ICE mints STUN/TURN credentials for a registering box.
	ICE func(box api.BoxID, now time.Time) api.ICECredentials

	Tick            time.Duration // 100 ms
	StartTimeout    time.Duration // 30 s: from a transfer's start to each end's first word
	ProgressTimeout time.Duration // 30 s: between words from each end while running
	OfflineAfter    time.Duration // 90 s without a message
	TokenLifetime   time.Duration // 2 h
	ShadowEvery     time.Duration // 30 s between shadow-list plans
	MinCopies       int           // 3: copies of every title kept in the swarm
	MaxDonors       int           // 8 per receiver
	MaxUploads      int           // 4 legs per box
	MinLegKbps      int32         // 256: less free uplink than this and a box is not asked to send
	// Rates assumed for a box that registers without stating them.
	DefaultUpKbps     int // 4,000
	DefaultDownKbps   int // 20,000
	DefaultServerKbps int // 1,000,000, up and down
	// ClustersNeeded is m: any m of the n media server clusters together
	// hold every title (package placement). 0 means n−1, so that losing a
	// cluster loses no title; 1 puts every title on every cluster.
	ClustersNeeded int
	MaxRetries     int // 8 reassignments per job
	Budget         int // 1000 decisions per queue per iteration
	Now            func() time.Time
	Log            *slog.Logger
	Metrics        *Metrics
}

func (c *Config) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&c.Tick, 100*time.Millisecond)
	set(&c.StartTimeout, 30*time.Second)
	set(&c.ProgressTimeout, 30*time.Second)
	set(&c.OfflineAfter, 90*time.Second)
	set(&c.TokenLifetime, 2*time.Hour)
	set(&c.ShadowEvery, 30*time.Second)
	if c.MinCopies == 0 {
		c.MinCopies = 3
	}
	if c.MaxDonors == 0 {
		c.MaxDonors = 8
	}
	if c.MaxUploads == 0 {
		c.MaxUploads = 4
	}
	if c.MinLegKbps == 0 {
		c.MinLegKbps = 256
	}
	if c.DefaultUpKbps == 0 {
		c.DefaultUpKbps = 4_000
	}
	if c.DefaultDownKbps == 0 {
		c.DefaultDownKbps = 20_000
	}
	if c.DefaultServerKbps == 0 {
		c.DefaultServerKbps = 1_000_000
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 8
	}
	if c.Budget == 0 {
		c.Budget = 1000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
}

// Scheduler is the loop and its state.
type Scheduler struct {
	cfg        Config
	st         *state
	log        *slog.Logger
	metrics    *Metrics
	inbox      chan *request
	nowMS      int64
	batch      batch
	epoch      uint64 // drawn from the store's transfer counter, once per 2^24 transfers
	counter    uint64
	shadowAt   int64
	cursor     int // placeCopy's position among the boxes
	fillCursor int // fillShortLists' position
}

// New loads the scheduler's state from the store.
func New(ctx context.Context, cfg Config) (*Scheduler, error) {
	cfg.defaults()
	if cfg.Store == nil || len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("scheduler: a store and a token signing key are required")
	}
	s := &Scheduler{cfg: cfg, st: newState(), log: cfg.Log, metrics: cfg.Metrics, inbox: make(chan *request, 4096)}
	s.nowMS = cfg.Now().UnixMilli()
	if err := s.load(ctx); err != nil {
		return nil, fmt.Errorf("scheduler: load state: %w", err)
	}
	if err := s.newEpoch(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// TokenKey returns the public key boxes verify transfer tokens with.
func (s *Scheduler) TokenKey() ed25519.PublicKey { return s.cfg.Key.Public().(ed25519.PublicKey) }

// Run runs the loop until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for {
		var reqs []*request
		select {
		case <-ctx.Done():
			s.drain(ctx.Err())
			return ctx.Err()
		case <-t.C:
		case r := <-s.inbox:
			reqs = append(reqs, r)
		}
		// Take what else has arrived, so one commit serves many messages.
		for more := true; more && len(reqs) < 4096; {
			select {
			case r := <-s.inbox:
				reqs = append(reqs, r)
			default:
				more = false
			}
		}
		s.Iterate(ctx, reqs)
	}
}

// Iterate runs one pass of the loop over the given requests and commits
// it. Run calls it; tests and benchmarks call it directly.
func (s *Scheduler) Iterate(ctx context.Context, reqs []*request) {
	start := time.Now()
	s.nowMS = s.cfg.Now().UnixMilli()
	s.batch.reset()
	// Messages first: a box that spoke in this batch is not timed out by it.
	for _, r := range reqs {
		r.err = s.process(r)
	}
	s.monitorTransfers()
	s.monitorClients()
	if s.nowMS-s.shadowAt >= s.cfg.ShadowEvery.Milliseconds() {
		s.planShadow()
		s.shadowAt = s.nowMS
	}
	s.createTransfers(true, s.cfg.Budget)
	s.createTransfers(false, s.cfg.Budget)
	err := s.commit(ctx)
	for _, r := range reqs {
		if err != nil {
			r.err = err
		}
		close(r.done)
	}
	s.metrics.iteration(time.Since(start), len(s.st.boxes), len(s.st.legs))
}

func (s *Scheduler) drain(err error) {
	for {
		select {
		case r := <-s.inbox:
			r.err = err
			close(r.done)
		default:
			return
		}
	}
}

// monitorClients takes boxes whose connection has been gone for
// OfflineAfter offline, resetting their jobs, and lifts holds that ran
// out. A connected box is alive: the gateway answers its heartbeats and
// reports it Disconnected when they stop.
func (s *Scheduler) monitorClients() {
	limit := s.cfg.OfflineAfter.Milliseconds()
	var gone, lifted []boxIdx
	for b := range s.st.disconnected {
		if s.nowMS-s.st.boxes[b].lastSeen > limit {
			gone = append(gone, b)
		}
	}
	for b, until := range s.st.held {
		if s.nowMS >= until {
			lifted = append(lifted, b)
		}
	}
	// In box order, not map order: the same inputs must give the same
	// decisions (the simulator replays a seed).
	slices.Sort(gone)
	slices.Sort(lifted)
	for _, b := range gone {
		delete(s.st.disconnected, b)
		s.offline(b, "disconnected for longer than OfflineAfter")
	}
	for _, b := range lifted {
		s.unhold(b, "hold expired")
	}
}

// offline marks a box offline and resets every job it takes part in.
func (s *Scheduler) offline(b boxIdx, why string) {
	x := &s.st.boxes[b]
	if !x.online {
		return
	}
	x.online = false
	x.registered = false
	s.metrics.offline.Inc()
	s.log.Info("box offline", "box", x.id, "why", why)
	for _, l := range legsInOrder(s.st.legs, func(l *leg) bool { return l.sender == b || l.receiver == b }) {
		if l.over() {
			continue
		}
		switch b {
		case l.receiver:
			j := l.job
			s.endLeg(l, schedstore.TransferFailed, "receiver offline", l.sender)
			if len(j.legs) == 0 {
				s.endJob(j)
			}
		case l.sender:
			j := l.job
			s.endLeg(l, schedstore.TransferFailed, "sender offline", l.receiver)
			s.reassign(j, l)
		}
	}
	var jobs []*job
	for k, j := range s.st.jobs {
		if k.box == b {
			jobs = append(jobs, j)
		}
	}
	slices.SortFunc(jobs, func(a, b *job) int { return cmp.Compare(a.key.title, b.key.title) })
	for _, j := range jobs {
		s.endJob(j)
	}
	s.refreshNeed(b)
}

// Transfer IDs are an epoch, drawn from the store's never-repeating
// counter, and a counter within it: unique across restarts without a store
// round trip per transfer.
const epochBits = 24

func (s *Scheduler) newEpoch(ctx context.Context) error {
	return s.cfg.Store.Update(ctx, func(tx schedstore.Tx) error {
		id, err := tx.NextTransferID()
		s.epoch, s.counter = uint64(id), 0
		return err
	})
}

func (s *Scheduler) nextTransferID() api.TransferID {
	if s.counter == 1<<epochBits-1 {
		if err := s.newEpoch(context.Background()); err != nil {
			// Without a fresh epoch IDs could repeat; stop rather than risk it.
			panic(fmt.Sprintf("scheduler: cannot draw transfer IDs: %v", err))
		}
	}
	s.counter++
	return api.TransferID(s.epoch<<epochBits | s.counter)
}

func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
