package scheduler

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
)

// A job is one receiver getting one title; it has one leg per donor sending
// a portion of it. Each leg is a schedstore.Transfer.
type jobKey struct {
	box   boxIdx
	title titleIdx
}

type job struct {
	key      jobKey
	high     bool
	spec     bool // neither on the viewer's list nor one of the swarm's first copies: it only takes what viewers leave
	legs     map[api.TransferID]*leg
	created  int64
	retries  int
	suspects map[boxIdx]bool // donors that failed or sent garbage for this job
}

type leg struct {
	id        api.TransferID
	job       *job
	sender    boxIdx
	receiver  boxIdx
	portions  []api.PieceRange
	initiator boxIdx
	kbps      int32 // uplink promised by the sender
	state     schedstore.TransferState
	created   int64
	recvSeen  int64 // last message about this leg from each end (unix ms)
	sendSeen  int64
	recvDone  bool
	sendDone  bool
	hash      []byte // payload hash the receiver reported
	pieces    int
}

// record is the leg as the store keeps it.
func (s *Scheduler) record(l *leg, outcome string) schedstore.Transfer {
	st := s.st
	return schedstore.Transfer{
		ID:        l.id,
		Title:     st.titles[l.job.key.title].id,
		Receiver:  st.boxes[l.receiver].id,
		Sender:    st.boxes[l.sender].id,
		Portions:  l.portions,
		Initiator: st.boxes[l.initiator].id,
		State:     l.state,
		Outcome:   outcome,
		Pieces:    l.pieces,
		Created:   msTime(l.created),
		Updated:   msTime(s.nowMS),
	}
}

// endLeg closes a leg: it frees the sender's uplink, stores the outcome,
// and cancels the ends that are still at it.
func (s *Scheduler) endLeg(l *leg, state schedstore.TransferState, outcome string, cancel ...boxIdx) {
	if l.over() {
		return
	}
	st := s.st
	l.state = state
	snd := &st.boxes[l.sender]
	snd.upLegs--
	snd.upKbpsBusy -= l.kbps
	if l.job.spec {
		snd.specLegs--
		snd.specKbps -= l.kbps
	}
	delete(l.job.legs, l.id)
	delete(st.legs, l.id)
	s.batch.transfers = append(s.batch.transfers, s.record(l, outcome))
	for _, b := range cancel {
		s.send(b, api.TransferCancel{Transfer: l.id, Reason: outcome})
	}
	if state == schedstore.TransferFailed {
		s.metrics.legsFailed.Inc()
		s.log.Info("transfer ended", "transfer", l.id, "title", st.titles[l.job.key.title].id,
			"sender", snd.id, "receiver", st.boxes[l.receiver].id, "outcome", outcome)
	}
	s.refreshNeed(l.sender)
}

// endJob ends a job whose legs are all gone, successful or not.
func (s *Scheduler) endJob(j *job) {
	st := s.st
	if st.jobs[j.key] != j {
		return // ended already, by another of its legs' ends
	}
	for _, l := range legsInOrder(j.legs, nil) {
		s.endLeg(l, schedstore.TransferFailed, "job ended", l.sender, l.receiver)
	}
	delete(st.jobs, j.key)
	st.boxes[j.key.box].downJobs--
	t := &st.titles[j.key.title]
	for i, b := range t.partial {
		if b == j.key.box {
			t.partial = append(t.partial[:i], t.partial[i+1:]...)
			break
		}
	}
	s.refreshNeed(j.key.box)
}

// legDone handles both ends reporting success (Fig. 15A).
func (s *Scheduler) legDone(l *leg) {
	j := l.job
	hash := l.hash
	s.endLeg(l, schedstore.TransferDone, "succeeded")
	s.metrics.legsDone.Inc()
	st := s.st
	t := &st.titles[j.key.title]
	if hash != nil {
		if [32]byte(hash) != t.hash {
			// The receiver holds something else than the manifest says: its
			// copy is not counted, it is told to check and discard it, and
			// the job starts over.
			s.metrics.hashMismatch.Inc()
			s.log.Warn("whole-title hash mismatch", "title", t.id, "box", st.boxes[j.key.box].id)
			s.dropHolding(j.key.box, j.key.title)
			s.send(j.key.box, api.TransferCancel{Transfer: l.id, Reason: "whole-title hash mismatch: verify and discard the copy"})
			j.retries++
			s.endJob(j)
			return
		}
		for _, other := range legsInOrder(j.legs, nil) {
			s.endLeg(other, schedstore.TransferDone, "title complete", other.sender, other.receiver)
		}
		s.addHolding(j.key.box, j.key.title, true, nil)
		s.send(j.key.box, api.TransferConfirmed{Transfer: l.id, Title: t.id})
		s.metrics.jobsDone.Inc()
		s.metrics.bytesConfirmed(st.boxes[l.sender].server, t.size)
		s.endJob(j)
		return
	}
	// The receiver verified every piece of the portion: plan from there,
	// even before its next progress report, or the same pieces would be
	// asked for again.
	s.gotPortions(j, l.portions)
	if len(j.legs) == 0 {
		// Every portion came, but the title is not complete (a donor had
		// less than the plan assumed): plan again for what is missing.
		j.retries++
		s.endJob(j)
	}
}

// legFailed handles a failure reported by one end (Fig. 15D) or a timeout.
// The other end is cancelled; the portion goes to another donor.
func (s *Scheduler) legFailed(l *leg, reason string, byReceiver bool, badPieces int) {
	j := l.job
	other := l.receiver
	if byReceiver {
		other = l.sender
	}
	if badPieces > 0 {
		s.metrics.badDonors.Inc()
		s.log.Warn("donor sent pieces that failed their hash", "donor", s.st.boxes[l.sender].id, "pieces", badPieces, "transfer", l.id)
	}
	s.endLeg(l, schedstore.TransferFailed, reason, other)
	s.reassign(j, l)
}

// reassign gives a failed leg's portion to another donor, or ends the job
// when none can take it now (it will be planned again).
func (s *Scheduler) reassign(j *job, failed *leg) {
	j.suspects[failed.sender] = true
	j.retries++
	if j.retries > s.cfg.MaxRetries {
		s.endJob(j)
		return
	}
	if !s.planLegs(j, failed.portions) {
		if len(j.legs) == 0 {
			s.endJob(j)
		}
	}
}

// monitorTransfers enforces the timeouts of Fig. 15B and 15C.
func (s *Scheduler) monitorTransfers() {
	now := s.nowMS
	lateness := func(l *leg) (recvLate, sendLate bool) {
		limit := s.cfg.StartTimeout.Milliseconds()
		if l.state == schedstore.TransferRunning {
			limit = s.cfg.ProgressTimeout.Milliseconds()
		}
		return !l.recvDone && now-max(l.recvSeen, l.created) > limit, !l.sendDone && now-max(l.sendSeen, l.created) > limit
	}
	late := legsInOrder(s.st.legs, func(l *leg) bool { r, s := lateness(l); return r || s })
	for _, l := range late {
		if l.over() {
			continue
		}
		recvLate, sendLate := lateness(l)
		switch {
		case recvLate && sendLate:
			// Fig. 15C: both silent. Cancel both, hold both until they are
			// heard from, and reset the job.
			s.metrics.timeouts.Inc()
			j := l.job
			s.hold(l.sender)
			s.hold(l.receiver)
			s.endLeg(l, schedstore.TransferFailed, "both ends timed out", l.sender, l.receiver)
			s.endJob(j)
		case recvLate || sendLate:
			// Fig. 15B: one end silent. It is put on hold (no new jobs until
			// it is heard from) and the transfer goes elsewhere.
			s.metrics.timeouts.Inc()
			late, alive := l.receiver, l.sender
			if sendLate {
				late, alive = l.sender, l.receiver
			}
			s.hold(late)
			j := l.job
			s.endLeg(l, schedstore.TransferFailed, fmt.Sprintf("%s timed out", s.st.boxes[late].id), alive, late)
			if late == l.receiver {
				s.endJob(j)
			} else {
				s.reassign(j, l)
			}
		}
	}
}

// restarted ends the transfers a box had in flight before it restarted:
// it has forgotten them, so waiting for their timeouts would only put it
// on hold once it is back. A portion it was sending goes to another
// donor; a title it was receiving is planned again, from what it holds.
func (s *Scheduler) restarted(b boxIdx) {
	x := &s.st.boxes[b]
	s.log.Info("box restarted: its transfers in flight are ended", "box", x.id)
	for _, l := range legsInOrder(s.st.legs, func(l *leg) bool { return l.sender == b || l.receiver == b }) {
		if l.over() {
			continue
		}
		j := l.job
		other := l.receiver
		if other == b {
			other = l.sender
		}
		s.endLeg(l, schedstore.TransferFailed, fmt.Sprintf("%s restarted", x.id), other, b)
		if l.receiver == b {
			s.endJob(j)
		} else {
			s.reassign(j, l)
		}
	}
}

// hold gives a box no new transfers until it is heard from, reconnects,
// or OfflineAfter passes: a box that is connected but quiet (heartbeats
// never reach the loop) must not stay out of the swarm for good.
func (s *Scheduler) hold(b boxIdx) {
	x := &s.st.boxes[b]
	s.st.held[b] = s.nowMS + s.cfg.OfflineAfter.Milliseconds()
	if !x.hold {
		x.hold = true
		s.log.Info("box on hold", "box", x.id)
		s.refreshNeed(b)
	}
}

func (s *Scheduler) unhold(b boxIdx, why string) {
	x := &s.st.boxes[b]
	if !x.hold {
		return
	}
	x.hold = false
	delete(s.st.held, b)
	s.log.Info("hold lifted", "box", x.id, "why", why)
	s.refreshNeed(b)
}

// legsInOrder returns the legs that keep accepts (all, if keep is nil) in
// transfer order. Handling legs in map order would make which donor gets
// a reassigned portion, and so every later decision, vary from run to
// run; the simulator must replay a seed exactly.
func legsInOrder(m map[api.TransferID]*leg, keep func(*leg) bool) []*leg {
	out := make([]*leg, 0, len(m))
	for _, l := range m {
		if keep == nil || keep(l) {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b *leg) int { return cmp.Compare(a.id, b.id) })
	return out
}

// over says whether a leg has ended: a leg taken from legsInOrder may have
// been ended since by an earlier one's handling.
func (l *leg) over() bool {
	return l.state == schedstore.TransferDone || l.state == schedstore.TransferFailed
}

// gotPortions adds delivered portions to what the receiver of j holds.
func (s *Scheduler) gotPortions(j *job, portions []api.PieceRange) {
	t := &s.st.titles[j.key.title]
	have := make([]byte, (t.pieces+7)/8)
	if h := s.st.holdingOf(j.key.box, j.key.title); h != nil {
		if h.complete {
			return
		}
		copy(have, h.have)
	}
	for _, r := range portions {
		for p := max(r.First, 0); p <= min(r.Last, t.pieces-1); p++ {
			have[p/8] |= 0x80 >> (p % 8)
		}
	}
	s.receiving(j, have)
}
