package scheduler

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/media"
)

// The methods below are the scheduler's side of the gateway (the
// gateway.Handler interface). Each hands its work to the loop and returns
// once the loop has processed it and committed its effects.

// Activate consumes an activation code and adds a box.
func (s *Scheduler) Activate(ctx context.Context, code string, pub ed25519.PublicKey,
	issue func(api.BoxID) ([]byte, error)) (api.BoxID, []byte, error) {
	var id api.BoxID
	var der []byte
	err := s.do(ctx, &request{kind: reqFunc, fn: func(s *Scheduler) error {
		var err error
		id, der, err = s.activate(ctx, code, pub, issue)
		return err
	}})
	return id, der, err
}

// Authenticate accepts a known box presenting its registered certificate.
func (s *Scheduler) Authenticate(ctx context.Context, box api.BoxID, certSHA256 [32]byte) error {
	return s.do(ctx, &request{kind: reqAuthenticate, box: box, cert: certSHA256})
}

// Deliver processes one message from a box.
func (s *Scheduler) Deliver(ctx context.Context, box api.BoxID, seq uint64, body api.Body) error {
	return s.do(ctx, &request{kind: reqDeliver, box: box, seq: seq, body: body})
}

// Acked records the box's acknowledgement.
func (s *Scheduler) Acked(ctx context.Context, box api.BoxID, seq uint64) error {
	return s.do(ctx, &request{kind: reqAck, box: box, seq: seq})
}

// Pending returns the messages owed to a box.
func (s *Scheduler) Pending(ctx context.Context, box api.BoxID, after uint64) ([]schedstore.Outbound, error) {
	return s.cfg.Store.Outbox(ctx, box, after)
}

// LastProcessed returns the highest sequence number processed from a box.
func (s *Scheduler) LastProcessed(ctx context.Context, box api.BoxID) (uint64, error) {
	r := &request{kind: reqLastProcessed, box: box}
	err := s.do(ctx, r)
	return r.out, err
}

// Connected, Disconnected and Unreachable report the box's connection.
func (s *Scheduler) Connected(box api.BoxID, _ string) { s.async(reqConnected, box) }

// Disconnected: the box's connection closed.
func (s *Scheduler) Disconnected(box api.BoxID) { s.async(reqDisconnected, box) }

// Unreachable: messages to the box went unacknowledged through every retry.
func (s *Scheduler) Unreachable(box api.BoxID) { s.async(reqUnreachable, box) }

// async queues a connection event without waiting for it, on the caller's
// goroutine, so events reach the loop in the order the gateway reports
// them.
func (s *Scheduler) async(kind reqKind, box api.BoxID) {
	r := &request{kind: kind, box: box, done: make(chan struct{})}
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case s.inbox <- r:
	case <-t.C:
		s.log.Warn("connection event dropped: the scheduler loop is not taking requests", "box", box, "event", kind)
	}
}

// The methods below are the rest of the head-end's way in: media import
// adds titles, customer management adds activation codes and edits
// priority lists from the web, media servers are enrolled by the operator.

// AddTitle makes a title known; it is delivered from its publish time.
func (s *Scheduler) AddTitle(ctx context.Context, t schedstore.Title) error {
	return s.do(ctx, &request{kind: reqFunc, fn: func(s *Scheduler) error { s.putTitle(t); return nil }})
}

// ServerAccount is the account of activation codes that enroll a media
// server rather than a viewer's box.
const ServerAccount = "@media-server"

// AddActivationCode stores a code a viewer can activate a box with.
func (s *Scheduler) AddActivationCode(ctx context.Context, code, account string) error {
	if account == ServerAccount || account == "" {
		return fmt.Errorf("activation code for account %q: not a viewer's account", account)
	}
	return s.cfg.Store.Update(ctx, func(tx schedstore.Tx) error { return tx.AddActivationCode(code, account) })
}

// AddServerCode stores a code that enrolls one media server.
func (s *Scheduler) AddServerCode(ctx context.Context, code string) error {
	return s.cfg.Store.Update(ctx, func(tx schedstore.Tx) error { return tx.AddActivationCode(code, ServerAccount) })
}

// SetPriorityList replaces a box's list from the web; the box is told.
// Version 0 takes the version after the one held.
func (s *Scheduler) SetPriorityList(ctx context.Context, box api.BoxID, titles []media.ID, version uint64) error {
	return s.do(ctx, &request{kind: reqFunc, fn: replaceList(box, titles, version)})
}

func replaceList(box api.BoxID, titles []media.ID, version uint64) func(*Scheduler) error {
	return func(s *Scheduler) error {
		b, ok := s.st.boxByID[box]
		if !ok {
			return fmt.Errorf("box %s: %w", box, ErrUnknownBox)
		}
		if version == 0 {
			version = s.st.boxes[b].listVer + 1
		}
		if err := s.setList(b, titles, version); err != nil {
			return err
		}
		s.send(b, api.PriorityList{Titles: titles, Version: version})
		return nil
	}
}

// Tell sends a message to a box through its outbox, with the same
// at-least-once delivery as the scheduler's own: how other head-end
// services (media passes, keys) answer a box.
func (s *Scheduler) Tell(ctx context.Context, box api.BoxID, body api.Body) error {
	if !api.FromHeadEnd(body.Type()) {
		return fmt.Errorf("tell box %s: %s is not a message the head-end sends", box, body.Type())
	}
	if err := body.Validate(); err != nil {
		return fmt.Errorf("tell box %s: %w", box, err)
	}
	return s.do(ctx, &request{kind: reqFunc, fn: func(s *Scheduler) error { return s.tell(box, body) }})
}

func (s *Scheduler) tell(box api.BoxID, body api.Body) error {
	b, ok := s.st.boxByID[box]
	if !ok {
		return fmt.Errorf("tell box %s: %w", box, ErrUnknownBox)
	}
	s.send(b, body)
	return nil
}

// Snapshot describes the scheduler for tests and the operator.
type Snapshot struct {
	Boxes  int `json:"boxes"`
	Online int `json:"online"`
	Titles int `json:"titles"`
	Jobs   int `json:"jobs"` // receivers getting a title
	Legs   int `json:"legs"` // transfers in flight, one donor each
}

// Inspect runs fn on the loop's goroutine with a summary, for tests and
// operator tools.
func (s *Scheduler) Inspect(ctx context.Context, fn func(Snapshot)) error {
	return s.do(ctx, &request{kind: reqFunc, fn: func(s *Scheduler) error {
		snap := Snapshot{Boxes: len(s.st.boxes), Titles: len(s.st.titles), Jobs: len(s.st.jobs), Legs: len(s.st.legs)}
		for i := range s.st.boxes {
			if s.st.boxes[i].online {
				snap.Online++
			}
		}
		fn(snap)
		return nil
	}})
}

// BoxStatus is what the scheduler knows of one box, for operators and
// tests.
type BoxStatus struct {
	ID        api.BoxID        `json:"id"`
	Account   string           `json:"account"`
	Server    bool             `json:"server"`
	Online    bool             `json:"online"`
	Connected bool             `json:"connected"`
	OnHold    bool             `json:"on_hold"`
	List      []media.ID       `json:"list"`
	Shadow    []media.ID       `json:"shadow"`
	Holdings  []api.TitleState `json:"holdings"`
	Receiving []media.ID       `json:"receiving"` // titles with a job open
	Sending   []api.TransferID `json:"sending"`   // transfers it sends in
	PieceAddr string           `json:"piece_addr,omitempty"`
}

// Box reports on one box.
func (s *Scheduler) Box(ctx context.Context, box api.BoxID) (BoxStatus, error) {
	var bs BoxStatus
	err := s.do(ctx, &request{kind: reqFunc, fn: func(s *Scheduler) error {
		st := s.st
		b, ok := st.boxByID[box]
		if !ok {
			return fmt.Errorf("box %s: %w", box, ErrUnknownBox)
		}
		x := &st.boxes[b]
		bs = BoxStatus{ID: x.id, Account: x.account, Server: x.server, Online: x.online, Connected: x.connected,
			OnHold: x.hold, PieceAddr: x.pieceAddr}
		for _, t := range x.list {
			bs.List = append(bs.List, st.titles[t].id)
		}
		for _, t := range x.shadow {
			bs.Shadow = append(bs.Shadow, st.titles[t].id)
		}
		for _, h := range x.holdings {
			bs.Holdings = append(bs.Holdings, api.TitleState{Title: st.titles[h.title].id, Complete: h.complete, Have: h.have})
		}
		for k := range st.jobs {
			if k.box == b {
				bs.Receiving = append(bs.Receiving, st.titles[k.title].id)
			}
		}
		for id, l := range st.legs {
			if l.sender == b {
				bs.Sending = append(bs.Sending, id)
			}
		}
		return nil
	}})
	return bs, err
}

// Transfers returns a box's most recent transfers, newest first. Those in
// flight show their progress as last reported, which is kept in memory
// only (the store has their state as of their start).
func (s *Scheduler) Transfers(ctx context.Context, box api.BoxID, limit int) ([]schedstore.Transfer, error) {
	ts, err := s.cfg.Store.TransfersOf(ctx, box, limit)
	if err != nil {
		return nil, err
	}
	err = s.do(ctx, &request{kind: reqFunc, fn: func(s *Scheduler) error {
		for i := range ts {
			if l := s.st.legs[ts[i].ID]; l != nil {
				ts[i].State, ts[i].Pieces = l.state, l.pieces
			}
		}
		return nil
	}})
	return ts, err
}
