package playback_test

import (
	"context"
	"sync"
	"testing"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/gateway"
	"github.com/boxswarm/boxswarm/headend/playback"
)

// scheduler stands in for the gateway's Handler behind Sessions: it
// records what was passed on and what was told.
type scheduler struct {
	gateway.Handler // nil: only Deliver is called
	mu              sync.Mutex
	delivered       []api.Body
	told            map[api.BoxID][]api.Body
}

func (s *scheduler) Deliver(_ context.Context, _ api.BoxID, _ uint64, b api.Body) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delivered = append(s.delivered, b)
	return nil
}

func (s *scheduler) tell(_ context.Context, box api.BoxID, b api.Body) error {
	if err := b.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.told[box] = append(s.told[box], b)
	return nil
}

// TestSessions checks that passes and keys asked on a box's session are
// answered through the scheduler's outbox, bound to the key of the
// session's certificate, and that everything else goes on to the
// scheduler.
func TestSessions(t *testing.T) {
	e := newEnv(t)
	e.catalog()
	e.putKey(tRent)
	alice, mallory := e.signUp("alice"), e.signUp("mallory")
	sched := &scheduler{told: map[api.BoxID][]api.Body{}}
	s := playback.NewSessions(sched, e.svc, sched.tell, quiet)
	session := func(v viewer) context.Context { return gateway.WithDeviceKey(ctx, v.pub) }

	must(t, s.Deliver(session(alice), alice.box, 1, api.PassRequest{Title: tRent, Confirm: true, Price: "3.99 EUR"}))
	must(t, s.Deliver(session(alice), alice.box, 2, api.Inventory{Full: true}))
	s.Wait()
	if len(sched.delivered) != 1 || sched.delivered[0].Type() != (api.Inventory{}).Type() {
		t.Fatalf("passed on to the scheduler: %v, want the inventory alone", sched.delivered)
	}
	told := sched.told[alice.box]
	if len(told) != 1 {
		t.Fatalf("told alice %v, want one pass response", told)
	}
	pr, ok := told[0].(api.PassResponse)
	if !ok || len(pr.Pass) == 0 {
		t.Fatalf("told alice %+v, want a pass", told[0])
	}

	// Mallory's session presents alice's pass: the vault sees mallory's
	// box and key, from the session, and refuses.
	must(t, s.Deliver(session(mallory), mallory.box, 1, api.KeyRequest{Pass: pr.Pass}))
	must(t, s.Deliver(session(alice), alice.box, 3, api.KeyRequest{Pass: pr.Pass}))
	s.Wait()
	if kr, ok := sched.told[mallory.box][0].(api.KeyResponse); !ok || len(kr.WrappedKey) != 0 || kr.Reason == "" {
		t.Errorf("told mallory %+v, want a refusal", sched.told[mallory.box])
	}
	if kr, ok := sched.told[alice.box][1].(api.KeyResponse); !ok || len(kr.WrappedKey) == 0 {
		t.Errorf("told alice %+v, want her wrapped key", sched.told[alice.box][1])
	}

	// A session without a device key gets nothing.
	if err := s.Deliver(ctx, alice.box, 4, api.PassRequest{Title: tRent}); err == nil {
		t.Error("a pass request without the session's device key was taken")
	}
}
