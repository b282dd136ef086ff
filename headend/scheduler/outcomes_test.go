package scheduler

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/placement"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/media"
)

func TestWhoInitiates(t *testing.T) {
	for _, tc := range []struct {
		name             string
		recv, send       boxOpts
		receiverInitiate bool
	}{
		{"the sender is a media server: the receiver calls it", boxOpts{nat: api.NATSymmetric}, boxOpts{server: true, addr: "127.0.0.1:9"}, true},
		{"the sender is more reachable: the receiver calls", boxOpts{nat: api.NATSymmetric}, boxOpts{nat: api.NATFullCone}, true},
		{"the receiver is more reachable: the sender calls", boxOpts{nat: api.NATOpen}, boxOpts{nat: api.NATPortRestricted}, false},
		{"equally reachable: the receiver calls", boxOpts{nat: api.NATRestricted}, boxOpts{nat: api.NATRestricted}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.title("T", 4)
			d := h.box("donor", tc.send)
			h.holds(d, "T")
			r := h.box("viewer", tc.recv)
			h.list(r, "T")
			h.tick()
			rs, ds := h.starts(r), h.starts(d)
			if len(rs) != 1 || len(ds) != 1 {
				t.Fatalf("starts: receiver %d, sender %d", len(rs), len(ds))
			}
			if rs[0].Initiate != tc.receiverInitiate || ds[0].Initiate == tc.receiverInitiate {
				t.Errorf("receiver initiates %v, sender %v; want receiver %v", rs[0].Initiate, ds[0].Initiate, tc.receiverInitiate)
			}
			if rs[0].Role != api.RoleReceive || ds[0].Role != api.RoleSend || string(rs[0].Token) != string(ds[0].Token) {
				t.Error("roles or tokens do not match")
			}
		})
	}
}

// started sets up one transfer from a donor to a receiver and returns it.
func started(t *testing.T, donors int) (*harness, api.BoxID, []api.BoxID, []api.TransferStart) {
	h := newHarness(t)
	h.title("T", 40)
	var ds []api.BoxID
	for i := range donors {
		d := h.box("donor"+string(rune('1'+i)), boxOpts{up: 10_000})
		h.holds(d, "T")
		ds = append(ds, d)
	}
	r := h.box("viewer", boxOpts{down: 10_000})
	h.list(r, "T")
	h.tick()
	return h, r, ds, h.starts(r)
}

func lastCancel(bodies []api.Body) (api.TransferCancel, bool) {
	for i := len(bodies) - 1; i >= 0; i-- {
		if c, ok := bodies[i].(api.TransferCancel); ok {
			return c, true
		}
	}
	return api.TransferCancel{}, false
}

func (h *harness) transfer(id api.TransferID) schedstore.Transfer {
	h.t.Helper()
	tr, err := h.store.Transfer(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return tr
}

// TestFig15 covers the four ends of a transfer in the source design, and a
// whole-title hash that does not match the manifest.
func TestFig15(t *testing.T) {
	t.Run("A: both ends succeed and the title is confirmed against the manifest", func(t *testing.T) {
		h, r, ds, ts := started(t, 1)
		id := ts[0].Transfer
		for _, b := range []api.BoxID{r, ds[0]} {
			h.mustDeliver(b, api.TransferStarted{Transfer: id})
		}
		h.mustDeliver(r, api.TransferProgress{Transfer: id, Pieces: 20})
		h.mustDeliver(ds[0], api.TransferSucceeded{Transfer: id})
		hash := hashOf("T")
		h.mustDeliver(r, api.TransferSucceeded{Transfer: id, PayloadHash: hash[:]})
		var confirmed bool
		for _, b := range h.sent(r) {
			if c, ok := b.(api.TransferConfirmed); ok && c.Transfer == id {
				confirmed = true
			}
		}
		if !confirmed {
			t.Fatal("receiver not told its title is confirmed")
		}
		if tr := h.transfer(id); tr.State != schedstore.TransferDone {
			t.Errorf("transfer record %s", tr.State)
		}
		h.run(func(s *Scheduler) error {
			hd := s.st.holdingOf(s.st.boxByID[r], s.st.titleBy[h.titles["T"]])
			if hd == nil || !hd.complete {
				t.Error("receiver's copy not recorded as complete")
			}
			return nil
		})
	})
	t.Run("B: one end times out: it is put on hold and the portion goes to another donor", func(t *testing.T) {
		h, r, ds, ts := started(t, 2)
		if len(ts) != 1 {
			t.Fatalf("%d transfers, want 1 (the receiver's downlink fits one donor)", len(ts))
		}
		first := ts[0]
		h.mustDeliver(r, api.TransferStarted{Transfer: first.Transfer})
		h.advance(31 * time.Second) // the donor never said a word; the receiver keeps reporting
		h.mustDeliver(r, api.TransferProgress{Transfer: first.Transfer, Pieces: 3, Bytes: 3 << 20})
		h.tick()
		silent := first.Peer.Box
		toReceiver := h.sent(r)
		if c, ok := lastCancel(toReceiver); !ok || c.Transfer != first.Transfer || !strings.Contains(c.Reason, "timed out") {
			t.Errorf("receiver not cancelled for the timeout: %+v", c)
		}
		h.run(func(s *Scheduler) error {
			if !s.st.boxes[s.st.boxByID[silent]].hold {
				t.Error("the silent donor is not on hold")
			}
			return nil
		})
		var next []api.TransferStart
		for _, b := range toReceiver {
			if ts, ok := b.(api.TransferStart); ok {
				next = append(next, ts)
			}
		}
		other := ds[0]
		if other == silent {
			other = ds[1]
		}
		if len(next) != 1 || next[0].Peer.Box != other || next[0].Portions[0] != first.Portions[0] {
			t.Fatalf("portion not reassigned to the other donor: %+v", next)
		}
	})
	t.Run("C: both ends time out: both are cancelled and the job is reset", func(t *testing.T) {
		h, r, ds, ts := started(t, 1)
		id := ts[0].Transfer
		h.advance(31 * time.Second)
		h.tick()
		if c, ok := lastCancel(h.sent(r)); !ok || c.Transfer != id {
			t.Error("receiver not cancelled")
		}
		if c, ok := lastCancel(h.sent(ds[0])); !ok || c.Transfer != id {
			t.Error("sender not cancelled")
		}
		if tr := h.transfer(id); tr.State != schedstore.TransferFailed || !strings.Contains(tr.Outcome, "both ends timed out") {
			t.Errorf("transfer record %s %q", tr.State, tr.Outcome)
		}
		h.run(func(s *Scheduler) error {
			if len(s.st.jobs) != 0 {
				t.Errorf("%d jobs still open; the job must be reset", len(s.st.jobs))
			}
			return nil
		})
		h.tick()
		if again := h.starts(r); len(again) != 0 {
			t.Errorf("a box on hold was given work: %+v", again)
		}
		// Both come back: the job is planned anew.
		h.disconnect(r)
		h.disconnect(ds[0])
		h.connect(r)
		h.connect(ds[0])
		h.tick()
		if again := h.starts(r); len(again) != 1 || again[0].Transfer == id {
			t.Errorf("job not planned again: %+v", again)
		}
	})
	t.Run("D: the receiver reports failure: the sender is cancelled and the job retried elsewhere", func(t *testing.T) {
		h, r, ds, ts := started(t, 2)
		first := ts[0]
		h.mustDeliver(r, api.TransferFailed{Transfer: first.Transfer, Reason: "3 pieces failed their hash", BadPieces: 3})
		if c, ok := lastCancel(h.sent(first.Peer.Box)); !ok || c.Transfer != first.Transfer {
			t.Error("sender not cancelled")
		}
		next := h.starts(r)
		if len(next) != 1 || next[0].Peer.Box == first.Peer.Box {
			t.Fatalf("job not retried with another donor: %+v", next)
		}
		_ = ds
	})
	t.Run("whole-title hash mismatch: not confirmed, the copy is discarded, the job runs again", func(t *testing.T) {
		h, r, ds, ts := started(t, 1)
		id := ts[0].Transfer
		h.mustDeliver(ds[0], api.TransferSucceeded{Transfer: id})
		h.mustDeliver(r, api.TransferSucceeded{Transfer: id, PayloadHash: make([]byte, 32)})
		bodies := h.sent(r)
		for _, b := range bodies {
			if _, ok := b.(api.TransferConfirmed); ok {
				t.Fatal("a title with the wrong hash was confirmed")
			}
		}
		if c, ok := lastCancel(bodies); !ok || !strings.Contains(c.Reason, "hash mismatch") {
			t.Errorf("receiver not told to discard its copy: %+v", c)
		}
		h.tick()
		if again := h.starts(r); len(again) != 1 {
			t.Errorf("job not run again: %+v", again)
		}
	})
}

func TestShadowList(t *testing.T) {
	t.Run("at least MinCopies copies of every title", func(t *testing.T) {
		h := newHarness(t)
		h.title("rare", 10)
		srv := h.box("server", boxOpts{server: true, addr: "127.0.0.1:9", up: 100_000})
		h.holds(srv, "rare")
		var boxes []api.BoxID
		for i := range 6 {
			boxes = append(boxes, h.box("box"+string(rune('a'+i)), boxOpts{}))
		}
		h.s.shadowAt = 0
		h.tick()
		placed := 0
		h.run(func(s *Scheduler) error {
			placed = int(s.st.titles[s.st.titleBy[h.titles["rare"]]].shadowed)
			return nil
		})
		if placed != 3 {
			t.Errorf("%d boxes have the rare title on their shadow list, want MinCopies = 3", placed)
		}
		// One copy at a time leaves the server: the others come from the
		// boxes that hold it.
		var fetching []api.BoxID
		for _, b := range boxes {
			if len(h.starts(b)) > 0 {
				fetching = append(fetching, b)
			}
		}
		if len(fetching) != 1 {
			t.Fatalf("%d boxes fetch the rare title from the server at once, want 1", len(fetching))
		}
		h.holds(fetching[0], "rare")
		h.advance(retryGap * time.Millisecond) // the others were tried a moment ago
		h.tick()
		n := 0
		for _, b := range boxes {
			n += len(h.starts(b))
		}
		if n != 2 {
			t.Errorf("%d more boxes fetch it once a box holds it, want 2 (MinCopies = 3)", n)
		}
	})
	t.Run("a title about to be published is placed ahead of time", func(t *testing.T) {
		h := newHarness(t)
		h.title("premiere", 10)
		h.run(func(s *Scheduler) error {
			s.st.titles[s.st.titleBy[h.titles["premiere"]]].publishAt = h.now.Add(24 * time.Hour).UnixMilli()
			return nil
		})
		srv := h.box("server", boxOpts{server: true, addr: "127.0.0.1:9", up: 100_000})
		h.holds(srv, "premiere")
		b := h.box("box", boxOpts{})
		h.s.shadowAt = 0
		h.tick()
		if len(h.starts(b)) != 1 {
			t.Error("the upcoming title was not pre-positioned")
		}
	})
	t.Run("hot titles get more copies", func(t *testing.T) {
		h := newHarness(t)
		h.title("hot", 10)
		srv := h.box("server", boxOpts{server: true, addr: "127.0.0.1:9", up: 1_000_000})
		h.holds(srv, "hot")
		for _, f := range []string{"f1", "f2", "f3"} { // full lists, so short-list filling stays out
			h.title(f, 10)
		}
		var boxes []api.BoxID
		for i := range 60 {
			b := h.box("b"+num(i), boxOpts{})
			h.list(b, "f1", "f2", "f3")
			boxes = append(boxes, b)
		}
		h.run(func(s *Scheduler) error { // 48 lists name it, as if viewers added it
			s.st.titles[s.st.titleBy[h.titles["hot"]]].demand = 48
			return nil
		})
		h.s.shadowAt = 0
		h.s.cfg.MaxUploads = 100
		h.tick()
		placed := 0
		h.run(func(s *Scheduler) error {
			placed = int(s.st.titles[s.st.titleBy[h.titles["hot"]]].shadowed)
			return nil
		})
		if placed != 48/hotPerCopy {
			t.Errorf("%d copies placed for a title on 48 lists, want %d", placed, 48/hotPerCopy)
		}
		// No box holds it yet, so one copy leaves the server; the others
		// wait to come from the box receiving it.
		var first api.BoxID
		n := 0
		for _, b := range boxes {
			for _, ts := range h.starts(b) {
				if ts.Title == h.titles["hot"] && ts.Role == api.RoleReceive {
					n++
					first = b
					if ts.Peer.Box != srv {
						t.Errorf("the first copy comes from %s, want the server", h.name(ts.Peer.Box))
					}
				}
			}
		}
		if n != 1 {
			t.Fatalf("%d copies started from the server at once, want 1", n)
		}
		// Once the first receiver holds the title, the rest start from it.
		h.holds(first, "hot")
		h.advance(retryGap * time.Millisecond)
		h.tick()
		n = 0
		for _, b := range boxes {
			for _, ts := range h.starts(b) {
				if ts.Title == h.titles["hot"] && ts.Role == api.RoleReceive {
					n++
					if ts.Peer.Box == srv {
						t.Errorf("%s gets a later copy from the server", h.name(b))
					}
				}
			}
		}
		if n == 0 {
			t.Error("no copies started from the box that holds the title")
		}
	})
	t.Run("short lists are filled with the most wanted titles", func(t *testing.T) {
		h := newHarness(t)
		h.title("popular", 10)
		h.title("obscure", 10)
		srv := h.box("server", boxOpts{server: true, addr: "127.0.0.1:9", up: 1_000_000})
		h.holds(srv, "popular", "obscure")
		for i := range 4 {
			f := h.box("fan"+num(i), boxOpts{})
			h.holds(f, "popular", "obscure")
			h.list(f, "popular")
		}
		lazy := h.box("lazy", boxOpts{})
		h.s.shadowAt = 0
		h.tick()
		got := h.starts(lazy)
		if len(got) == 0 || got[0].Title != h.titles["popular"] {
			t.Errorf("box with an empty list got %+v, want the popular title first", got)
		}
	})
}

func num(i int) string { return string(rune('0'+i/10)) + string(rune('0'+i%10)) }

func TestDeletionApproval(t *testing.T) {
	h := newHarness(t)
	h.title("T", 10)
	var holders []api.BoxID
	for i := range 3 {
		b := h.box("holder"+num(i), boxOpts{})
		h.holds(b, "T")
		holders = append(holders, b)
	}
	spare := h.box("spare", boxOpts{})
	h.mustDeliver(holders[0], api.DeleteRequest{Title: h.titles["T"]})
	var answer api.DeleteAnswer
	for _, b := range h.sent(holders[0]) {
		if a, ok := b.(api.DeleteAnswer); ok {
			answer = a
		}
	}
	if answer.Approved || !strings.Contains(answer.Reason, "last copies") {
		t.Fatalf("deletion of one of the last 3 copies: %+v, want it deferred", answer)
	}
	h.tick()
	moves := h.starts(spare)
	if len(moves) != 1 {
		t.Fatalf("no copy moved to the spare box first: %+v", moves)
	}
	// The move completes; then the deletion is approved.
	id := moves[0].Transfer
	h.mustDeliver(moves[0].Peer.Box, api.TransferSucceeded{Transfer: id})
	hash := hashOf("T")
	h.mustDeliver(spare, api.TransferSucceeded{Transfer: id, PayloadHash: hash[:]})
	for _, b := range h.sent(holders[0]) {
		if a, ok := b.(api.DeleteAnswer); ok {
			answer = a
		}
	}
	if !answer.Approved {
		t.Errorf("deletion not approved after the copy moved: %+v", answer)
	}
}

func TestBadInput(t *testing.T) {
	h, r, ds, ts := started(t, 1)
	stranger := h.box("stranger", boxOpts{})
	h.sent(stranger)
	id := ts[0].Transfer
	h.sent(ds[0])
	before := h.snapshot()
	for _, tc := range []struct {
		name string
		box  api.BoxID
		body api.Body
		want error
	}{
		{"signal to a box without a transfer in common", stranger, api.Signal{Transfer: id, To: r, Kind: api.SignalOffer, Data: "v=0"}, ErrNotYourTransfer},
		{"signal naming another transfer", r, api.Signal{Transfer: id + 99, To: ds[0], Kind: api.SignalOffer, Data: "v=0"}, ErrNotYourTransfer},
		{"report on someone else's transfer", stranger, api.TransferFailed{Transfer: id, Reason: "x"}, ErrNotYourTransfer},
		{"a head-end message sent by a box", stranger, api.TransferStart{Transfer: 1, Role: api.RoleSend, Portions: []api.PieceRange{{First: 0, Last: 1}}, Token: []byte{1}}, ErrNotForBoxes},
		{"a stale priority list", r, api.PriorityList{Titles: nil, Version: 0}, ErrStaleList},
		{"a list naming an unknown title", r, api.PriorityList{Titles: []media.ID{{9}}, Version: 999}, ErrUnknownTitle},
	} {
		if err := h.deliver(tc.box, tc.body); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if got := h.sent(ds[0]); len(got) != 0 {
		t.Errorf("the donor was sent %d messages by rejected input", len(got))
	}
	if after := h.snapshot(); after != before {
		t.Errorf("state changed: %+v -> %+v", before, after)
	}
	// An unknown box and a message out of sequence.
	r1 := &request{kind: reqDeliver, box: api.BoxID{0xee}, seq: 1, body: api.DeleteRequest{}}
	h.iterate(r1)
	if !errors.Is(r1.err, ErrUnknownBox) {
		t.Errorf("unknown box: %v", r1.err)
	}
	r2 := &request{kind: reqDeliver, box: r, seq: h.seq[r] + 5, body: api.DeleteRequest{}}
	h.iterate(r2)
	if r2.err == nil || !strings.Contains(r2.err.Error(), "out of sequence") {
		t.Errorf("out of sequence: %v", r2.err)
	}
}

type snap struct{ jobs, legs, outbox int }

func (h *harness) snapshot() snap {
	var s snap
	h.run(func(sc *Scheduler) error {
		s.jobs, s.legs = len(sc.st.jobs), len(sc.st.legs)
		return nil
	})
	for id := range h.names {
		out, _ := h.store.Outbox(context.Background(), id, h.read[id])
		s.outbox += len(out)
	}
	return s
}

func TestSilentBox(t *testing.T) {
	t.Run("a box disconnected for OfflineAfter goes offline and its jobs are reset", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.ProgressTimeout = 10 * time.Minute; c.StartTimeout = 10 * time.Minute })
		h.title("T", 40)
		d := h.box("donor", boxOpts{})
		h.holds(d, "T")
		r := h.box("viewer", boxOpts{})
		h.list(r, "T")
		h.tick()
		ts := h.starts(r)
		if len(ts) != 1 {
			t.Fatalf("%d transfers", len(ts))
		}
		h.sent(d)
		h.disconnect(r)
		h.advance(60 * time.Second)
		h.tick()
		if on := h.online(r); !on {
			t.Fatal("offline before OfflineAfter: a box may come back")
		}
		h.advance(31 * time.Second)
		h.tick()
		if on := h.online(r); on {
			t.Error("a box disconnected for longer than OfflineAfter is still online")
		}
		if c, ok := lastCancel(h.sent(d)); !ok || c.Transfer != ts[0].Transfer || !strings.Contains(c.Reason, "offline") {
			t.Errorf("the donor was not told to stop: %+v", c)
		}
		h.run(func(s *Scheduler) error {
			if len(s.st.jobs) != 0 || len(s.st.legs) != 0 {
				t.Errorf("jobs %d, legs %d remain", len(s.st.jobs), len(s.st.legs))
			}
			return nil
		})
		// Back again: planned anew.
		h.connect(r)
		h.tick()
		if again := h.starts(r); len(again) != 1 || again[0].Transfer == ts[0].Transfer {
			t.Errorf("the returning box was not planned again: %+v", again)
		}
	})
	t.Run("a hold runs out for a box that stays connected but quiet", func(t *testing.T) {
		h, r, _, ts := started(t, 2)
		h.mustDeliver(r, api.TransferStarted{Transfer: ts[0].Transfer})
		h.advance(31 * time.Second)
		h.mustDeliver(r, api.TransferProgress{Transfer: ts[0].Transfer, Pieces: 3, Bytes: 3 << 20})
		h.tick()
		silent := ts[0].Peer.Box
		held := func() (on bool) {
			h.run(func(s *Scheduler) error { on = s.st.boxes[s.st.boxByID[silent]].hold; return nil })
			return on
		}
		if !held() {
			t.Fatal("the silent donor is not on hold")
		}
		h.advance(91 * time.Second)
		h.tick()
		if held() {
			t.Error("the hold did not run out")
		}
	})
}

func (h *harness) online(b api.BoxID) (on bool) {
	h.run(func(s *Scheduler) error { on = s.st.boxes[s.st.boxByID[b]].online; return nil })
	return on
}

func TestServerIngestsBeforeTitleIsAdded(t *testing.T) {
	h := newHarness(t)
	srv := h.box("server", boxOpts{server: true, addr: "127.0.0.1:9"})
	var early media.ID
	copy(early[:], "early")
	h.mustDeliver(srv, api.Inventory{Full: true, Titles: []api.TitleState{{Title: early, Complete: true}}})
	h.title("early", 10)
	v := h.box("viewer", boxOpts{})
	h.list(v, "early")
	h.tick()
	if ts := h.starts(v); len(ts) != 1 || ts[0].Peer.Box != srv {
		t.Errorf("the server's copy, reported before the title was added, was not used: %+v", ts)
	}
}

func TestPiecesSentOnAsSoonAsVerified(t *testing.T) {
	h := newHarness(t)
	h.title("T", 40)
	d := h.box("donor", boxOpts{up: 10_000})
	h.holds(d, "T")
	r1 := h.box("first", boxOpts{down: 10_000})
	h.list(r1, "T")
	h.tick()
	ts := h.starts(r1)
	if len(ts) != 1 {
		t.Fatalf("%d transfers to the first receiver", len(ts))
	}
	// The first receiver has verified pieces 0-7; the donor's uplink is
	// taken.
	have := make([]byte, 5)
	have[0] = 0xff
	h.mustDeliver(r1, api.TransferProgress{Transfer: ts[0].Transfer, Pieces: 8, Bytes: 8 << 20, Have: have})
	r2 := h.box("second", boxOpts{down: 10_000})
	h.list(r2, "T")
	h.tick()
	got := h.starts(r2)
	if len(got) != 1 || got[0].Peer.Box != r1 || !slices.Equal(got[0].Portions, []api.PieceRange{{First: 0, Last: 7}}) {
		t.Errorf("second receiver got %v, want pieces 0-7 from the first", h.describe(r2, got))
	}
}

func TestClusterPlacement(t *testing.T) {
	h := newHarness(t)
	h.title("T", 10)
	clusters := []string{"noc-a", "noc-b", "noc-c"}
	servers := map[string]api.BoxID{}
	for _, c := range clusters {
		servers[c] = h.box("server-"+c, boxOpts{server: true, addr: "127.0.0.1:9", cluster: c, up: 1_000_000})
	}
	h.holds(servers["noc-a"], "T") // ingested in one cluster only
	keep, err := placement.For(h.titles["T"], clusters, 2)
	if err != nil {
		t.Fatal(err)
	}
	h.s.shadowAt = 0
	h.tick()
	for _, c := range clusters {
		got := h.starts(servers[c])
		want := 0
		if slices.Contains(keep, c) && c != "noc-a" {
			want = 1
		}
		var receiving int
		for _, ts := range got {
			if ts.Role == api.RoleReceive {
				receiving++
			}
		}
		if receiving != want {
			t.Errorf("cluster %s (placement keeps T on %v): %d transfers to it, want %d", c, keep, receiving, want)
		}
	}
}

// TestTell checks that other services' answers reach a box's outbox, and
// that only messages the head-end sends, valid, to a known box do.
func TestTell(t *testing.T) {
	h := newHarness(t)
	box := h.box("viewer", boxOpts{})
	h.sent(box)
	refused := []struct {
		name string
		box  api.BoxID
		body api.Body
	}{
		{"a message boxes send", box, api.PassRequest{}},
		{"an invalid message", box, api.KeyResponse{Reason: strings.Repeat("x", 100_000)}},
	}
	for _, tc := range refused {
		// No loop runs here: a message that got past the checks would
		// wait for it until the deadline.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := h.s.Tell(ctx, tc.box, tc.body)
		cancel()
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: %v, want it refused", tc.name, err)
		}
	}
	var err error
	h.run(func(s *Scheduler) error { err = s.tell(api.BoxID{0xEE}, api.PassResponse{Reason: "x"}); return nil })
	if !errors.Is(err, ErrUnknownBox) {
		t.Errorf("an unknown box: %v, want ErrUnknownBox", err)
	}
	answer := api.PassResponse{Pass: []byte("pass"), Price: "3.99 EUR"}
	h.run(func(s *Scheduler) error { return s.tell(box, answer) })
	if got := h.sent(box); len(got) != 1 || got[0].Type() != answer.Type() {
		t.Errorf("the box is owed %v, want the pass response", got)
	}
}

// TestRestartedBox: a box that registers with a new instance has
// restarted and forgotten its transfers, which end at once, without
// putting anyone on hold; the title is planned again. A reconnection
// (the same instance) leaves them running.
func TestRestartedBox(t *testing.T) {
	for _, tc := range []struct {
		name     string
		who      func(r api.BoxID, ds []api.BoxID) api.BoxID
		instance uint64
		ends     bool
	}{
		{"the receiver reconnects", func(r api.BoxID, _ []api.BoxID) api.BoxID { return r }, 1, false},
		{"the receiver restarts", func(r api.BoxID, _ []api.BoxID) api.BoxID { return r }, 2, true},
		{"the donor restarts", func(_ api.BoxID, ds []api.BoxID) api.BoxID { return ds[0] }, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, r, ds, ts := started(t, 1)
			if len(ts) != 1 {
				t.Fatalf("%d transfers started, want 1", len(ts))
			}
			id := ts[0].Transfer
			h.mustDeliver(r, api.TransferStarted{Transfer: id})
			h.mustDeliver(ds[0], api.TransferStarted{Transfer: id})

			box := tc.who(r, ds)
			reg := h.regs[box]
			reg.Instance = 1
			h.regs[box] = reg
			h.connect(box) // the first instance the scheduler sees is no restart
			if tr := h.transfer(id); tr.State == schedstore.TransferFailed {
				t.Fatalf("the first registration with an instance ended the transfer: %s", tr.Outcome)
			}
			reg.Instance = tc.instance
			h.regs[box] = reg
			h.disconnect(box)
			h.connect(box)

			tr := h.transfer(id)
			if ended := tr.State == schedstore.TransferFailed; ended != tc.ends {
				t.Fatalf("transfer %s (%s), want ended %v", tr.State, tr.Outcome, tc.ends)
			}
			if tc.ends && !strings.Contains(tr.Outcome, "restarted") {
				t.Errorf("outcome %q, want it to say the box restarted", tr.Outcome)
			}
			h.run(func(s *Scheduler) error {
				for _, b := range []api.BoxID{r, ds[0]} {
					if s.st.boxes[s.st.boxByID[b]].hold {
						t.Errorf("%s is on hold", h.name(b))
					}
				}
				return nil
			})
			if tc.ends {
				h.tick()
				if again := h.starts(r); len(again) != 1 || again[0].Title != h.titles["T"] {
					t.Errorf("after the restart the title was not planned again: %v", h.describe(r, again))
				}
			}
		})
	}
}
