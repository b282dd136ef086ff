package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/media"
	schedclient "github.com/boxswarm/boxswarm/scheduler-client"
)

func TestRelay(t *testing.T) {
	var r relay[string]
	ctx := t.Context()
	one, two := media.ID{1}, media.ID{2}

	// Answers go to the request for their title, whatever the order.
	var wg sync.WaitGroup
	sent := make(chan media.ID, 4)
	got := map[media.ID]string{}
	var mu sync.Mutex
	for _, id := range []media.ID{one, two} {
		wg.Go(func() {
			v, err := r.do(ctx, id, func() error { sent <- id; return nil })
			if err != nil {
				t.Errorf("title %s: %v", id, err)
			}
			mu.Lock()
			got[id] = v
			mu.Unlock()
		})
	}
	<-sent
	<-sent
	if !r.answer(two, "for two") || !r.answer(one, "for one") {
		t.Fatal("an answer found nobody waiting")
	}
	wg.Wait()
	if got[one] != "for one" || got[two] != "for two" {
		t.Errorf("answers: %v", got)
	}

	// Two requests for one title take turns: the second is sent only
	// once the first has its answer.
	results := make(chan string, 2)
	for i := range 2 {
		wg.Go(func() {
			v, err := r.do(ctx, one, func() error { sent <- one; return nil })
			if err != nil {
				t.Errorf("request %d: %v", i, err)
			}
			results <- v
		})
	}
	<-sent
	select {
	case <-sent:
		t.Fatal("the second request for a title was sent while the first waited")
	case <-time.After(50 * time.Millisecond):
	}
	r.answer(one, "first")
	<-sent
	r.answer(one, "second")
	wg.Wait()
	if a, b := <-results, <-results; a+b != "firstsecond" && a+b != "secondfirst" {
		t.Errorf("results %q %q", a, b)
	}

	// An answer without a title goes to the oldest request waiting.
	for _, id := range []media.ID{two, one} {
		wg.Go(func() {
			v, _ := r.do(ctx, id, func() error { sent <- id; return nil })
			mu.Lock()
			got[id] = v
			mu.Unlock()
		})
		<-sent
	}
	r.answer(media.ID{}, "refused")
	r.answer(one, "for one")
	wg.Wait()
	if got[two] != "refused" || got[one] != "for one" {
		t.Errorf("an answer without a title: %v", got)
	}

	// A request that gives up leaves nothing behind; an answer that comes
	// later is dropped.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := r.do(short, one, func() error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("no answer: %v", err)
	}
	if r.answer(one, "late") {
		t.Error("a late answer found someone waiting")
	}
	// A request that cannot be sent does not wait.
	if _, err := r.do(ctx, one, func() error { return errors.New("outbox full") }); err == nil || !strings.Contains(err.Error(), "outbox full") {
		t.Errorf("send failed: %v", err)
	}
	r.mu.Lock()
	if len(r.turns) != 0 || len(r.waiting) != 0 {
		t.Errorf("left behind: %d turns, %d waiting", len(r.turns), len(r.waiting))
	}
	r.mu.Unlock()
}

func TestChanges(t *testing.T) {
	c := newChanges()
	ctx := t.Context()
	n, err := c.wait(ctx, 0)
	if err != nil || n < uint64(time.Now().Add(-time.Minute).UnixMicro()) {
		t.Fatalf("first number %d, %v: want one from the clock", n, err)
	}
	if m, _ := c.wait(ctx, n+1000); m != n {
		t.Errorf("a number from another life: %d, want %d at once", m, n)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := c.wait(short, n); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("no change: %v", err)
	}
	done := make(chan uint64)
	go func() {
		m, _ := c.wait(ctx, n)
		done <- m
	}()
	time.Sleep(10 * time.Millisecond)
	c.bump()
	c.bump()
	if m := <-done; m != n+1 && m != n+2 {
		t.Errorf("after changes: %d, was %d", m, n)
	}
}

func TestSessionTap(t *testing.T) {
	var out bytes.Buffer
	var noted []string
	log := slog.New(sessionTap{slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn}), func(s string) { noted = append(noted, s) }})
	log = log.With("box", "b1")
	log.Info(disconnectedMsg, "err", errors.New("connect to x: refused"), "retry_in", time.Second)
	log.Error(disconnectedMsg, "err", fmt.Errorf("activation: %w", schedclient.ErrRejected))
	log.Info("connected to the head-end")
	log.Debug("something else", "err", "not noted")
	if len(noted) != 2 || noted[0] != "connect to x: refused" || !strings.Contains(noted[1], "refused by the head-end") {
		t.Errorf("noted %q", noted)
	}
	if s := out.String(); strings.Count(s, "\n") != 1 || !strings.Contains(s, "level=ERROR") || !strings.Contains(s, "box=b1") {
		t.Errorf("passed on %q: want only the error, with its attributes", s)
	}
}

func TestRefusalReason(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"activate at 10.0.0.1:7443: activation refused: unknown activation code: refused by the head-end", "activation refused: unknown activation code"},
		{"activate at [::1]:7443: code used: refused by the head-end", "code used"},
		{"something else", "something else"},
	} {
		if got := refusalReason(errors.New(tc.in)); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
	}
}
