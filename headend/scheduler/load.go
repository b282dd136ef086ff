package scheduler

import (
	"context"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
)

// putTitle adds or updates a title, in the working state and the store.
// Media servers that reported it before it was known now count as holders.
func (s *Scheduler) putTitle(t schedstore.Title) {
	i := s.addTitle(t)
	s.batch.titles = append(s.batch.titles, t)
	for _, b := range s.st.serverHeldUnknown[t.ID] {
		s.addHolding(b, i, true, nil)
	}
	delete(s.st.serverHeldUnknown, t.ID)
}

// addTitle adds or updates a title in the working state.
func (s *Scheduler) addTitle(t schedstore.Title) titleIdx {
	st := s.st
	if i, ok := st.titleBy[t.ID]; ok {
		x := &st.titles[i]
		x.pieces, x.pieceSize, x.size, x.hash, x.publishAt = t.Pieces, t.PieceSize, t.PayloadSize, t.PayloadHash, t.PublishAt.UnixMilli()
		return i
	}
	i := titleIdx(len(st.titles))
	st.titles = append(st.titles, title{id: t.ID, pieces: t.Pieces, pieceSize: t.PieceSize, size: t.PayloadSize,
		hash: t.PayloadHash, publishAt: t.PublishAt.UnixMilli()})
	st.titleBy[t.ID] = i
	return i
}

// load builds the working state from the store. Boxes start offline; open
// transfers from before a restart are ended and both ends told, since no
// one knows how far they got: the jobs are planned again.
func (s *Scheduler) load(ctx context.Context) error {
	st := s.st
	store := s.cfg.Store
	if err := store.LoadTitles(ctx, func(t schedstore.Title) error { s.addTitle(t); return nil }); err != nil {
		return err
	}
	if err := store.LoadBoxes(ctx, func(b schedstore.Box) error { s.addBox(b); return nil }); err != nil {
		return err
	}
	s.batch.reset()
	if err := store.LoadHoldings(ctx, func(h schedstore.Holding) error {
		b, ok1 := st.boxByID[h.Box]
		t, ok2 := st.titleBy[h.Title]
		if !ok1 || !ok2 {
			return nil
		}
		x := &st.boxes[b]
		x.holdings = append(x.holdings, holding{title: t, complete: h.Complete, have: h.Have})
		if h.Complete {
			s.addDonor(b, t)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := store.LoadPriorityLists(ctx, func(l schedstore.PriorityList) error {
		b, ok := st.boxByID[l.Box]
		if !ok {
			return nil
		}
		x := &st.boxes[b]
		for _, id := range l.Titles {
			if t, ok := st.titleBy[id]; ok {
				x.list = append(x.list, t)
				st.titles[t].demand++
			}
		}
		x.listVer = l.Version
		return nil
	}); err != nil {
		return err
	}
	if err := store.LoadSeqs(ctx, func(sq schedstore.BoxSeqs) error {
		if b, ok := st.boxByID[sq.Box]; ok {
			st.boxes[b].inSeq, st.boxes[b].outSeq = sq.In, sq.Out
		}
		return nil
	}); err != nil {
		return err
	}
	if err := store.LoadMeasurements(ctx, func(m schedstore.Measurement) error {
		from, ok1 := st.boxByID[m.From]
		to, ok2 := st.boxByID[m.To]
		if ok1 && ok2 {
			s.measure(from, to, int32(m.Kbps), int32(m.RTTMilli))
		}
		return nil
	}); err != nil {
		return err
	}
	s.batch.reset() // what loading wrote is already stored
	var stale []schedstore.Transfer
	if err := store.LoadTransfers(ctx, func(t schedstore.Transfer) error { stale = append(stale, t); return nil }); err != nil {
		return err
	}
	if len(stale) == 0 {
		return nil
	}
	for _, t := range stale {
		t.State, t.Outcome, t.Updated = schedstore.TransferFailed, "scheduler restarted", msTime(s.nowMS)
		s.batch.transfers = append(s.batch.transfers, t)
		for _, end := range []api.BoxID{t.Sender, t.Receiver} {
			if b, ok := st.boxByID[end]; ok {
				s.send(b, api.TransferCancel{Transfer: t.ID, Reason: "scheduler restarted"})
			}
		}
	}
	return s.commit(ctx)
}

// reload rebuilds the working state after a failed commit.
func (s *Scheduler) reload(ctx context.Context) error {
	fresh := &Scheduler{cfg: s.cfg, st: newState(), log: s.log, metrics: s.metrics, inbox: s.inbox, nowMS: s.nowMS}
	if err := fresh.load(ctx); err != nil {
		return err
	}
	s.st = fresh.st
	s.batch.reset()
	return nil
}
