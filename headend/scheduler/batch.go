package scheduler

import (
	"context"
	"fmt"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/media"
)

type holdingKey struct {
	box   api.BoxID
	title media.ID
}

// batch is everything one iteration writes, committed in one Update.
type batch struct {
	boxes        map[boxIdx]bool
	holdings     []schedstore.Holding
	dropHoldings []holdingKey
	lists        map[boxIdx]bool
	titles       []schedstore.Title
	transfers    []schedstore.Transfer
	measurements []schedstore.Measurement
	outbox       []schedstore.Outbound
	acks         map[boxIdx]uint64
	seqs         map[boxIdx]bool
	codes        []string // activation codes to consume
	notify       map[api.BoxID]bool
	deleted      []api.BoxID
}

func (b *batch) reset() {
	*b = batch{boxes: map[boxIdx]bool{}, lists: map[boxIdx]bool{}, acks: map[boxIdx]uint64{},
		seqs: map[boxIdx]bool{}, notify: map[api.BoxID]bool{}}
}

// send queues a message to a box: it gets the box's next sequence number
// and is stored with this iteration, then the gateway is told.
func (s *Scheduler) send(b boxIdx, body api.Body) {
	x := &s.st.boxes[b]
	x.outSeq++
	frame, err := api.Encode(x.outSeq, body)
	if err != nil {
		// A message the scheduler builds must always encode.
		panic(fmt.Sprintf("scheduler: encode %s for %s: %v", body.Type(), x.id, err))
	}
	s.batch.outbox = append(s.batch.outbox, schedstore.Outbound{Box: x.id, Seq: x.outSeq, Frame: frame})
	s.batch.seqs[b] = true
	s.batch.notify[x.id] = true
	s.metrics.sent.WithLabelValues(string(body.Type())).Inc()
}

func (s *Scheduler) boxRecord(b boxIdx) schedstore.Box {
	x := &s.st.boxes[b]
	return schedstore.Box{
		ID: x.id, Account: x.account, CertSHA256: x.cert, Server: x.server,
		Cluster: s.st.clusters.names[x.cluster], Capacity: x.capacity, Free: x.free,
		UpKbps: int(x.upKbps), DownKbps: int(x.downKbps), NAT: x.nat,
		Location:  api.Location{Region: s.st.regions.names[x.region], ISP: s.st.isps.names[x.isp]},
		PieceAddr: x.pieceAddr, Activated: msTime(x.activated), LastSeen: msTime(x.lastSeen),
	}
}

// commit writes the batch, then notifies the gateway of new messages.
func (s *Scheduler) commit(ctx context.Context) error {
	b := &s.batch
	empty := len(b.boxes) == 0 && len(b.holdings) == 0 && len(b.dropHoldings) == 0 && len(b.lists) == 0 &&
		len(b.titles) == 0 && len(b.transfers) == 0 && len(b.measurements) == 0 && len(b.outbox) == 0 &&
		len(b.acks) == 0 && len(b.seqs) == 0 && len(b.codes) == 0 && len(b.deleted) == 0
	if empty {
		return nil
	}
	err := s.cfg.Store.Update(ctx, func(tx schedstore.Tx) error {
		for _, code := range b.codes {
			if _, err := tx.UseActivationCode(code); err != nil {
				return err
			}
		}
		for i := range b.boxes {
			if err := tx.PutBox(s.boxRecord(i)); err != nil {
				return err
			}
		}
		for _, id := range b.deleted {
			if err := tx.DeleteBox(id); err != nil {
				return err
			}
		}
		for _, t := range b.titles {
			if err := tx.PutTitle(t); err != nil {
				return err
			}
		}
		for _, h := range b.holdings {
			if err := tx.PutHolding(h); err != nil {
				return err
			}
		}
		for _, k := range b.dropHoldings {
			if err := tx.DeleteHolding(k.box, k.title); err != nil {
				return err
			}
		}
		for i := range b.lists {
			x := &s.st.boxes[i]
			if err := tx.PutPriorityList(schedstore.PriorityList{Box: x.id, Titles: s.titleIDs(x.list), Version: x.listVer}); err != nil {
				return err
			}
		}
		for _, t := range b.transfers {
			if err := tx.PutTransfer(t); err != nil {
				return err
			}
		}
		for _, m := range b.measurements {
			if err := tx.PutMeasurement(m); err != nil {
				return err
			}
		}
		for _, o := range b.outbox {
			if err := tx.AppendOutbox(o); err != nil {
				return err
			}
		}
		for i, seq := range b.acks {
			if err := tx.AckOutbox(s.st.boxes[i].id, seq); err != nil {
				return err
			}
		}
		for i := range b.seqs {
			x := &s.st.boxes[i]
			if err := tx.SetSeqs(x.id, x.inSeq, x.outSeq); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// The in-memory state is ahead of the store now. Nothing was sent
		// and nothing acknowledged, so reloading it restores agreement.
		s.log.Error("commit failed; reloading state from the store", "err", err)
		s.metrics.commitErrors.Inc()
		if lerr := s.reload(ctx); lerr != nil {
			return fmt.Errorf("commit: %w (and reload: %v)", err, lerr)
		}
		return fmt.Errorf("commit: %w", err)
	}
	if s.cfg.Notify != nil {
		for id := range b.notify {
			s.cfg.Notify(id)
		}
	}
	return nil
}

func (s *Scheduler) titleIDs(ts []titleIdx) []media.ID {
	out := make([]media.ID, len(ts))
	for i, t := range ts {
		out[i] = s.st.titles[t].id
	}
	return out
}
