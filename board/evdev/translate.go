package evdev

import "github.com/boxswarm/boxswarm/board/remote"

// Translator turns a stream of input events into remote key presses.
//
// The kernel groups events into frames ended by SYN_REPORT; a SYN_DROPPED
// says its buffer overflowed and the events up to the next SYN_REPORT are
// incomplete, so they are thrown away rather than half-applied. Keys are
// delivered when their frame ends.
type Translator struct {
	pending  []remote.Key
	dropping bool
}

// Feed takes the next event and returns the keys of a frame it completes.
func (t *Translator) Feed(e Event) []remote.Key {
	switch e.Type {
	case EvSyn:
		switch e.Code {
		case SynReport:
			if t.dropping {
				t.dropping = false
				t.pending = t.pending[:0]
				return nil
			}
			out := t.pending
			t.pending = nil
			return out
		case SynDropped:
			t.dropping = true
			t.pending = t.pending[:0]
		}
	case EvKey:
		if t.dropping {
			return nil
		}
		k, ok := KeyFor(e.Code)
		if !ok {
			return nil
		}
		if e.Value == Press || (e.Value == Repeat && repeats(k)) {
			t.pending = append(t.pending, k)
		}
	}
	return nil
}
