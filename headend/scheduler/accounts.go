package scheduler

import (
	"context"
	"fmt"
	"math/bits"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
)

// What the scheduler tells the rest of the head-end about viewers' boxes:
// how far each has its titles (for the web's My List), which boxes belong
// to which account, and one message for many boxes (catalog replication).

// TitleProgress is how far a box has one title.
type TitleProgress struct {
	Complete  bool
	Receiving bool // a transfer job for it is open
	Have      int  // pieces stored or reported received
	Pieces    int  // pieces in the title
}

// Percent is the share of the title's pieces the box has, 100 only when
// complete.
func (p TitleProgress) Percent() int {
	switch {
	case p.Complete:
		return 100
	case p.Pieces == 0:
		return 0
	}
	return min(99, p.Have*100/p.Pieces)
}

// Progress returns how far box has each of titles; a title it neither
// holds nor receives is missing from the map.
func (s *Scheduler) Progress(ctx context.Context, box api.BoxID, titles []media.ID) (map[media.ID]TitleProgress, error) {
	out := make(map[media.ID]TitleProgress, len(titles))
	err := s.do(ctx, &request{kind: reqFunc, fn: func(s *Scheduler) error {
		st := s.st
		b, ok := st.boxByID[box]
		if !ok {
			return fmt.Errorf("progress of box %s: %w", box, ErrUnknownBox)
		}
		x := &st.boxes[b]
		for _, id := range titles {
			t, ok := st.titleBy[id]
			if !ok {
				continue
			}
			p := TitleProgress{Pieces: st.titles[t].pieces}
			for _, h := range x.holdings {
				if h.title == t {
					p.Complete = h.complete
					for _, c := range h.have {
						p.Have += bits.OnesCount8(c)
					}
				}
			}
			if j := st.jobs[jobKey{b, t}]; j != nil {
				p.Receiving = true
				for _, l := range j.legs {
					p.Have += l.pieces
				}
			}
			if p.Complete || p.Receiving || p.Have > 0 {
				out[id] = p
			}
		}
		return nil
	}})
	return out, err
}

// AccountBox is a viewer's box and the account its activation code was
// made for.
type AccountBox struct {
	Box     api.BoxID
	Account string
}

// AccountBoxes returns every activated box that is not a media server.
func (s *Scheduler) AccountBoxes(ctx context.Context) ([]AccountBox, error) {
	var out []AccountBox
	err := s.do(ctx, &request{kind: reqFunc, fn: func(s *Scheduler) error {
		for i := range s.st.boxes {
			if x := &s.st.boxes[i]; !x.server {
				out = append(out, AccountBox{Box: x.id, Account: x.account})
			}
		}
		return nil
	}})
	return out, err
}

// TellMany is Tell for many boxes in one step of the loop. Boxes the
// scheduler does not know are skipped; it returns how many were told.
func (s *Scheduler) TellMany(ctx context.Context, boxes []api.BoxID, body api.Body) (int, error) {
	if !api.FromHeadEnd(body.Type()) {
		return 0, fmt.Errorf("tell boxes: %s is not a message the head-end sends", body.Type())
	}
	if err := body.Validate(); err != nil {
		return 0, fmt.Errorf("tell boxes: %w", err)
	}
	told := 0
	err := s.do(ctx, &request{kind: reqFunc, fn: func(s *Scheduler) error {
		for _, id := range boxes {
			if b, ok := s.st.boxByID[id]; ok {
				s.send(b, body)
				told++
			}
		}
		return nil
	}})
	return told, err
}
