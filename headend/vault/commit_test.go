package vault

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// queued waits until n writes wait behind the one in flight.
func (c *committer) queued(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		q := len(c.queue)
		c.mu.Unlock()
		if q >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCommitterGroups holds one write in flight while others queue, then
// checks that they shared one transaction, that a failing and a panicking
// write among them answer alone without spoiling the rest, and that every
// write that succeeded is in the file.
func TestCommitterGroups(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	bucket := []byte("b")
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(bucket); return err }); err != nil {
		t.Fatal(err)
	}
	c := &committer{db: db}
	const n = 20
	errBad := errors.New("refused")
	var (
		mu   sync.Mutex
		txOf = map[int]int{} // write → the transaction it last ran in
		runs = map[int]int{}
	)
	put := func(i int) func(*bolt.Tx) error {
		return func(tx *bolt.Tx) error {
			mu.Lock()
			txOf[i] = tx.ID()
			runs[i]++
			mu.Unlock()
			switch i {
			case 5:
				return errBad
			case 9:
				panic("boom")
			}
			return tx.Bucket(bucket).Put(binary.BigEndian.AppendUint32(nil, uint32(i)), nil)
		}
	}
	release := make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- c.update(func(tx *bolt.Tx) error { <-release; return put(0)(tx) })
	}()
	for !func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.busy }() {
		time.Sleep(time.Millisecond)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Go(func() { errs[i] = c.update(put(i)) })
	}
	c.queued(t, n-1)
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first write: %v", err)
	}
	wg.Wait()
	for i := 1; i < n; i++ {
		switch {
		case i == 5 && !errors.Is(errs[i], errBad):
			t.Errorf("failing write: %v, want its own error", errs[i])
		case i == 9 && (errs[i] == nil || !strings.Contains(errs[i].Error(), "panicked")):
			t.Errorf("panicking write: %v, want it reported as a panic", errs[i])
		case i != 5 && i != 9 && errs[i] != nil:
			t.Errorf("write %d: %v", i, errs[i])
		}
	}
	group := map[int]bool{}
	for i := 1; i < n; i++ {
		if i != 5 && i != 9 {
			group[txOf[i]] = true
		}
	}
	if len(group) != 1 || group[txOf[0]] {
		t.Errorf("the %d queued writes committed in transactions %v (the first in %d), want one shared one", n-3, group, txOf[0])
	}
	if runs[5] < 2 || runs[9] < 2 {
		t.Errorf("failing writes ran %d and %d times, want again alone", runs[5], runs[9])
	}
	err = db.View(func(tx *bolt.Tx) error {
		for i := range n {
			has := tx.Bucket(bucket).Get(binary.BigEndian.AppendUint32(nil, uint32(i))) != nil
			if has != (i != 5 && i != 9) {
				return fmt.Errorf("write %d stored: %v", i, has)
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.busy || len(c.queue) != 0 {
		t.Errorf("committer left busy %v with %d queued", c.busy, len(c.queue))
	}
}

// TestConcurrentReleases presents many passes at once, each several
// times: each is released exactly once, and the log holds one release per
// pass and one refusal per replay, every entry with its own sequence
// number.
func TestConcurrentReleases(t *testing.T) {
	e := newEnv(t)
	title, _ := e.put(t)
	const passes, tries = 16, 3
	ps := make([][]byte, passes)
	for i := range ps {
		ps[i] = e.issue(t, e.grant(title))
	}
	errs := make([][tries]error, passes)
	var wg sync.WaitGroup
	for i := range passes {
		for j := range tries {
			wg.Go(func() { _, errs[i][j] = e.v.Release(context.Background(), box, boxPub, ps[i]) })
		}
	}
	wg.Wait()
	for i := range passes {
		released := 0
		for _, err := range errs[i] {
			switch {
			case err == nil:
				released++
			case !errors.Is(err, ErrReplayed):
				t.Errorf("pass %d: %v, want ErrReplayed", i, err)
			}
		}
		if released != 1 {
			t.Errorf("pass %d released %d times", i, released)
		}
	}
	log, err := e.v.ReleaseLog(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[Outcome]int{}
	seqs := map[uint64]bool{}
	for _, le := range log {
		outcomes[le.Outcome]++
		if seqs[le.Seq] {
			t.Errorf("sequence number %d twice", le.Seq)
		}
		seqs[le.Seq] = true
	}
	if outcomes[Released] != passes || outcomes[RefusedReplayed] != passes*(tries-1) || len(log) != passes*tries {
		t.Errorf("release log: %v in %d entries, want %d released and %d replayed", outcomes, len(log), passes, passes*(tries-1))
	}
}
