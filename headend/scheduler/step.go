package scheduler

import (
	"context"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/media"
)

// Stepper drives a Scheduler from a single goroutine that owns the clock
// (Config.Now), instead of Run: the swarm simulator's way in. Its methods
// are the gateway's and the head-end's (Deliver, Acked, Connected, …) but
// only queue; Step runs one pass of the loop over what was queued, in
// order, exactly as Run would over a batch from its inbox. Messages for
// boxes come out as they do for the gateway: Config.Notify, then
// Scheduler.Pending.
//
// A Scheduler driven by a Stepper must not also Run.
type Stepper struct {
	s    *Scheduler
	reqs []*request
}

// Stepper returns a Stepper for s.
func (s *Scheduler) Stepper() *Stepper { return &Stepper{s: s} }

// Connected queues the gateway's report that the box connected.
func (p *Stepper) Connected(box api.BoxID) { p.queue(&request{kind: reqConnected, box: box}) }

// Disconnected queues the report that the box's connection closed.
func (p *Stepper) Disconnected(box api.BoxID) { p.queue(&request{kind: reqDisconnected, box: box}) }

// Unreachable queues the report that messages to the box went
// unacknowledged through every retry.
func (p *Stepper) Unreachable(box api.BoxID) { p.queue(&request{kind: reqUnreachable, box: box}) }

// Deliver queues message seq from the box.
func (p *Stepper) Deliver(box api.BoxID, seq uint64, body api.Body) {
	p.queue(&request{kind: reqDeliver, box: box, seq: seq, body: body})
}

// Acked queues the box's acknowledgement of messages up to seq.
func (p *Stepper) Acked(box api.BoxID, seq uint64) {
	p.queue(&request{kind: reqAck, box: box, seq: seq})
}

// AddTitle queues a new title, as media import adds one.
func (p *Stepper) AddTitle(t schedstore.Title) {
	p.queue(&request{kind: reqFunc, fn: func(s *Scheduler) error { s.putTitle(t); return nil }})
}

// SetPriorityList queues a list edit from the web (see
// Scheduler.SetPriorityList).
func (p *Stepper) SetPriorityList(box api.BoxID, titles []media.ID, version uint64) {
	p.queue(&request{kind: reqFunc, fn: replaceList(box, titles, version)})
}

func (p *Stepper) queue(r *request) {
	r.done = make(chan struct{})
	p.reqs = append(p.reqs, r)
}

// Step runs one pass of the loop over the queued requests and commits it.
// It returns one error per queued request, in order (nil where it was
// accepted; a failed commit fails them all).
func (p *Stepper) Step(ctx context.Context) []error {
	reqs := p.reqs
	p.reqs = nil
	p.s.Iterate(ctx, reqs)
	errs := make([]error, len(reqs))
	for i, r := range reqs {
		errs[i] = r.err
	}
	return errs
}
