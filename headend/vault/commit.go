package vault

import (
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// maxGroup bounds how many writes share one commit.
const maxGroup = 256

// committer is a group commit for the vault's writes: a write that
// arrives while a commit is in flight waits for it, and all that waited
// then share the next transaction and its fsync. A write that arrives
// when none is in flight commits at once, so a lone caller waits for
// nothing but its own commit (bbolt's DB.Batch would hold it for
// MaxBatchDelay).
//
// Each write's outcome is as if it had run alone: when one write in a
// group fails, the transaction is rolled back, that write runs again in
// a transaction of its own and answers with what happens there, and the
// rest commit together without it. A write function may therefore run
// more than once, each time in a transaction where its earlier runs left
// nothing; it must change nothing outside the transaction it is given
// that a later run does not set afresh.
type committer struct {
	db *bolt.DB

	mu    sync.Mutex
	busy  bool     // a leader is committing
	queue []*write // waiting for the next group
}

type write struct {
	fn   func(*bolt.Tx) error
	done chan error    // the outcome, once durable or failed
	lead chan []*write // or the group this write is to commit, itself among them
}

// update runs fn in a write transaction shared with concurrent writes and
// returns once that transaction is committed to disk (or fn's error).
func (c *committer) update(fn func(*bolt.Tx) error) error {
	w := &write{fn: fn, done: make(chan error, 1), lead: make(chan []*write, 1)}
	c.mu.Lock()
	if c.busy {
		c.queue = append(c.queue, w)
		c.mu.Unlock()
		select {
		case err := <-w.done:
			return err
		case group := <-w.lead:
			c.lead(group)
		}
	} else {
		c.busy = true
		c.mu.Unlock()
		c.lead([]*write{w})
	}
	return <-w.done
}

// lead commits a group, then hands the writes that queued meanwhile to
// the first of them to commit as the next group, so no caller commits
// more than its own group.
func (c *committer) lead(group []*write) {
	c.commit(group)
	c.mu.Lock()
	next := c.queue
	if len(next) > maxGroup {
		next = next[:maxGroup:maxGroup]
		c.queue = c.queue[maxGroup:]
	} else {
		c.queue = nil
	}
	if len(next) == 0 {
		c.busy = false
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	next[0].lead <- next
}

// commit runs the group's writes in one transaction and tells each its
// outcome.
func (c *committer) commit(group []*write) {
	for len(group) > 0 {
		failed := -1
		err := c.db.Update(func(tx *bolt.Tx) error {
			for i, w := range group {
				if err := call(w.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 || len(group) == 1 {
			for _, w := range group {
				w.done <- err
			}
			return
		}
		w := group[failed]
		group = append(group[:failed:failed], group[failed+1:]...)
		w.done <- c.db.Update(func(tx *bolt.Tx) error { return call(w.fn, tx) })
	}
}

// call runs fn, turning a panic into an error so that one write cannot
// strand the others waiting on its group.
func call(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("key vault: write panicked: %v", p)
		}
	}()
	return fn(tx)
}
