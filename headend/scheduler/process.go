package scheduler

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/media"
)

// Errors the scheduler answers bad messages with.
var (
	ErrUnknownBox      = errors.New("unknown box")
	ErrNotYourTransfer = errors.New("no such transfer between these boxes")
	ErrNotForBoxes     = errors.New("message type not accepted from a box")
	ErrStaleList       = errors.New("priority list older than the one held")
	ErrUnknownTitle    = errors.New("unknown title")
)

type reqKind int

const (
	reqDeliver reqKind = iota
	reqAck
	reqConnected
	reqDisconnected
	reqUnreachable
	reqAuthenticate
	reqLastProcessed
	reqFunc // an operation of the head-end itself
)

// request is work handed to the loop by another goroutine, which waits on
// done.
type request struct {
	kind reqKind
	box  api.BoxID
	seq  uint64
	body api.Body
	cert [32]byte
	fn   func(*Scheduler) error
	out  uint64
	err  error
	done chan struct{}
}

// do hands a request to the loop and waits for it to be processed and
// committed.
func (s *Scheduler) do(ctx context.Context, r *request) error {
	r.done = make(chan struct{})
	select {
	case s.inbox <- r:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Scheduler) process(r *request) error {
	if r.kind == reqFunc {
		return r.fn(s)
	}
	b, ok := s.st.boxByID[r.box]
	if !ok {
		return fmt.Errorf("box %s: %w", r.box, ErrUnknownBox)
	}
	x := &s.st.boxes[b]
	switch r.kind {
	case reqAuthenticate:
		if r.cert != x.cert {
			return fmt.Errorf("box %s presented a certificate other than its registered one", x.id)
		}
		return nil
	case reqLastProcessed:
		r.out = x.inSeq
		return nil
	case reqConnected:
		x.connected, x.online, x.registered = true, true, false
		x.lastSeen = s.nowMS
		delete(s.st.disconnected, b)
		s.unhold(b, "reconnected")
		s.metrics.connected.Inc()
		return nil
	case reqDisconnected:
		// The box is not taken offline yet: it may be back within
		// OfflineAfter, and its transfers may still be moving.
		x.connected, x.registered = false, false
		x.lastSeen = s.nowMS
		s.st.disconnected[b] = struct{}{}
		s.refreshNeed(b)
		return nil
	case reqUnreachable:
		s.offline(b, "messages went unacknowledged")
		return nil
	case reqAck:
		if r.seq > x.outSeq {
			return fmt.Errorf("box %s acknowledged %d, beyond the last sent (%d)", x.id, r.seq, x.outSeq)
		}
		if r.seq > s.batch.acks[b] {
			s.batch.acks[b] = r.seq
		}
		return nil
	}
	// reqDeliver: the gateway hands over messages in order, once each.
	if r.seq != x.inSeq+1 {
		return fmt.Errorf("box %s: message %d out of sequence (last processed %d)", x.id, r.seq, x.inSeq)
	}
	x.inSeq = r.seq
	s.batch.seqs[b] = true
	x.lastSeen = s.nowMS
	defer s.unhold(b, "heard from again")
	s.metrics.received.WithLabelValues(string(r.body.Type())).Inc()
	err := s.handle(b, r.body)
	if err != nil {
		s.metrics.rejected.Inc()
	}
	return err
}

// handle applies one message from a box.
func (s *Scheduler) handle(b boxIdx, body api.Body) error {
	st := s.st
	x := &st.boxes[b]
	switch m := body.(type) {
	case api.Register:
		if m.Server != x.server {
			return fmt.Errorf("box %s: registered as server=%v, activated as server=%v", x.id, m.Server, x.server)
		}
		x.capacity, x.free = m.Capacity, m.Free
		x.upKbps, x.downKbps = s.rates(x.server, m.UpKbps, m.DownKbps)
		x.nat = m.NAT
		x.isp, x.region = st.isps.id(m.Location.ISP), st.regions.id(m.Location.Region)
		x.cluster = st.clusters.id(m.Cluster)
		x.pieceAddr = m.PieceAddr
		x.registered, x.online = true, true
		if m.Instance != x.instance {
			if x.instance != 0 {
				s.restarted(b)
			}
			x.instance = m.Instance
		}
		s.batch.boxes[b] = true
		reg := api.Registered{Box: x.id, Time: msTime(s.nowMS)}
		if ice := s.ice(x.id); ice != nil {
			reg.ICE = *ice
		}
		s.send(b, reg)
		s.refreshNeed(b)
		return nil
	case api.Inventory:
		s.inventory(b, m)
		return nil
	case api.PriorityList:
		return s.setList(b, m.Titles, m.Version)
	case api.DeleteRequest:
		s.deleteRequest(b, m)
		return nil
	case api.Measurement:
		p, ok := st.boxByID[m.Peer]
		if !ok {
			return fmt.Errorf("measurement of %s: %w", m.Peer, ErrUnknownBox)
		}
		s.measure(b, p, int32(m.Kbps), int32(m.RTTMilli))
		return nil
	case api.TransferStarted, api.TransferProgress, api.TransferSucceeded, api.TransferFailed:
		return s.legReport(b, body)
	case api.Signal:
		return s.relay(b, m)
	case api.PassRequest, api.KeyRequest:
		return fmt.Errorf("%s: media passes and keys are not served by this head-end yet", body.Type())
	}
	return fmt.Errorf("%s: %w", body.Type(), ErrNotForBoxes)
}

// rates returns the rates to plan with: a box that does not state a rate
// (no cap configured, nothing measured yet) gets the configured default,
// since zero would make it useless as a donor or a receiver.
func (s *Scheduler) rates(server bool, up, down int) (int32, int32) {
	if up <= 0 {
		up = s.cfg.DefaultUpKbps
		if server {
			up = s.cfg.DefaultServerKbps
		}
	}
	if down <= 0 {
		down = s.cfg.DefaultDownKbps
		if server {
			down = s.cfg.DefaultServerKbps
		}
	}
	return int32(min(up, 1<<30)), int32(min(down, 1<<30))
}

// legReport applies a box's report about one of its transfers.
func (s *Scheduler) legReport(b boxIdx, body api.Body) error {
	var id api.TransferID
	switch m := body.(type) {
	case api.TransferStarted:
		id = m.Transfer
	case api.TransferProgress:
		id = m.Transfer
	case api.TransferSucceeded:
		id = m.Transfer
	case api.TransferFailed:
		id = m.Transfer
	}
	l, ok := s.st.legs[id]
	if !ok || (l.receiver != b && l.sender != b) {
		// Late reports for transfers already ended are normal after a
		// cancel; they change nothing.
		if tr, err := s.cfg.Store.Transfer(context.Background(), id); err == nil {
			x := s.st.boxes[b].id
			if tr.Receiver == x || tr.Sender == x {
				return nil
			}
		}
		return fmt.Errorf("transfer %d: %w", id, ErrNotYourTransfer)
	}
	recv := b == l.receiver
	if recv {
		l.recvSeen = s.nowMS
	} else {
		l.sendSeen = s.nowMS
	}
	switch m := body.(type) {
	case api.TransferStarted:
		if l.state == schedstore.TransferRequested {
			l.state = schedstore.TransferRunning
			s.batch.transfers = append(s.batch.transfers, s.record(l, ""))
		}
	case api.TransferProgress:
		if recv {
			l.pieces = m.Pieces
			if m.Have != nil {
				s.receiving(l.job, m.Have)
			}
		}
	case api.TransferSucceeded:
		if recv {
			l.recvDone = true
			if len(m.PayloadHash) == 32 {
				l.hash = m.PayloadHash
			}
		} else {
			l.sendDone = true
		}
		// The receiver's word ends the leg: every piece it stored was
		// checked against the signed manifest, and the whole title is
		// checked against its hash. The sender's report only confirms;
		// waiting for it would fail a delivered title whose sender went
		// away just after the last piece.
		if l.recvDone {
			s.legDone(l)
		}
	case api.TransferFailed:
		s.legFailed(l, "failed at "+s.st.boxes[b].id.String()+": "+m.Reason, recv, m.BadPieces)
	}
	return nil
}

// relay forwards WebRTC signalling between the two ends of a transfer, and
// nowhere else.
func (s *Scheduler) relay(from boxIdx, m api.Signal) error {
	l, ok := s.st.legs[m.Transfer]
	to, known := s.st.boxByID[m.To]
	if !ok || !known || !(l.sender == from && l.receiver == to || l.receiver == from && l.sender == to) {
		return fmt.Errorf("signal for transfer %d from %s to %s: %w", m.Transfer, s.st.boxes[from].id, m.To, ErrNotYourTransfer)
	}
	m.From = s.st.boxes[from].id
	s.send(to, m)
	return nil
}

// setList replaces a box's priority list if the version is newer.
func (s *Scheduler) setList(b boxIdx, titles []media.ID, version uint64) error {
	st := s.st
	x := &st.boxes[b]
	if version <= x.listVer && x.list != nil {
		return fmt.Errorf("box %s: version %d, holding %d: %w", x.id, version, x.listVer, ErrStaleList)
	}
	list := make([]titleIdx, 0, len(titles))
	for _, id := range titles {
		t, ok := st.titleBy[id]
		if !ok {
			return fmt.Errorf("priority list names %s: %w", id, ErrUnknownTitle)
		}
		list = append(list, t)
	}
	for _, t := range x.list {
		st.titles[t].demand--
	}
	for _, t := range list {
		st.titles[t].demand++
	}
	x.list, x.listVer = list, version
	s.batch.lists[b] = true
	s.yieldSpeculation(b)
	x.lastTried = 0
	s.refreshNeed(b)
	return nil
}

// yieldSpeculation ends the box's speculative downloads when its viewer
// wants a title it lacks: a box runs one download job at a time, and a
// shadow copy taking half an hour must not stand between the viewer and
// the film. What was received stays, and the copy resumes later.
func (s *Scheduler) yieldSpeculation(b boxIdx) {
	if !s.wantsListed(b) {
		return
	}
	for _, t := range slices.Clone(s.st.boxes[b].shadow) {
		if j := s.st.jobs[jobKey{b, t}]; j != nil && j.spec {
			s.endJob(j)
		}
	}
}

// measure keeps the latest measurements of a box toward its peers.
func (s *Scheduler) measure(from, to boxIdx, kbps, rtt int32) {
	x := &s.st.boxes[from]
	slot := 0
	for i, p := range x.perf {
		if p.peer == to {
			slot = i
			break
		}
		if p.kbps < x.perf[slot].kbps {
			slot = i
		}
	}
	x.perf[slot] = pairPerf{peer: to, kbps: kbps, rtt: rtt}
	s.batch.measurements = append(s.batch.measurements, schedstore.Measurement{
		From: x.id, To: s.st.boxes[to].id, Kbps: int(kbps), RTTMilli: int(rtt), At: msTime(s.nowMS)})
}

// activate consumes an activation code and adds a box, in one transaction
// of its own: the box must exist before its certificate is handed out.
func (s *Scheduler) activate(ctx context.Context, code string, pub ed25519.PublicKey,
	issue func(api.BoxID) ([]byte, error)) (api.BoxID, []byte, error) {
	var id api.BoxID
	if _, err := rand.Read(id[:]); err != nil {
		return id, nil, err
	}
	der, err := issue(id)
	if err != nil {
		return id, nil, fmt.Errorf("issue certificate: %w", err)
	}
	rec := schedstore.Box{ID: id, CertSHA256: sha256.Sum256(der), Activated: msTime(s.nowMS)}
	err = s.cfg.Store.Update(ctx, func(tx schedstore.Tx) error {
		account, err := tx.UseActivationCode(code)
		if err != nil {
			return err
		}
		rec.Account, rec.Server = account, account == ServerAccount
		return tx.PutBox(rec)
	})
	if err != nil {
		return id, nil, fmt.Errorf("activation: %w", err)
	}
	s.addBox(rec)
	s.log.Info("box activated", "box", id, "account", rec.Account, "server", rec.Server)
	return id, der, nil
}

// addBox adds a stored box to the working state.
func (s *Scheduler) addBox(rec schedstore.Box) boxIdx {
	st := s.st
	b := boxIdx(len(st.boxes))
	st.boxes = append(st.boxes, box{
		id: rec.ID, account: rec.Account, server: rec.Server, cert: rec.CertSHA256,
		cluster: st.clusters.id(rec.Cluster), isp: st.isps.id(rec.Location.ISP), region: st.regions.id(rec.Location.Region),
		nat: rec.NAT, pieceAddr: rec.PieceAddr, capacity: rec.Capacity, free: rec.Free,
		upKbps: int32(rec.UpKbps), downKbps: int32(rec.DownKbps), activated: rec.Activated.UnixMilli(),
		lastSeen: rec.LastSeen.UnixMilli(), heapSlot: -1,
	})
	for i := range st.boxes[b].perf {
		st.boxes[b].perf[i].peer = noBox
	}
	st.boxByID[rec.ID] = b
	if rec.Server {
		st.servers = append(st.servers, b)
	}
	return b
}

// ice mints STUN/TURN credentials for a box, if there is a TURN service.
func (s *Scheduler) ice(box api.BoxID) *api.ICECredentials {
	if s.cfg.ICE == nil {
		return nil
	}
	c := s.cfg.ICE(box, msTime(s.nowMS))
	return &c
}
