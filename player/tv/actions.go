package tv

import "time"

// Action is what the daemon must do after a key: a request to the head-end,
// the player or the list. HandleKey returns nil when a key only changed
// the screen.
type Action interface{ action() }

// Activate registers the box with the activation code the viewer typed, in
// the head-end's format (groups joined by '-'). The daemon answers with
// App.Activated or App.ActivationFailed.
type Activate struct{ Code string }

// AddToList puts a title on the priority list at Rank (1 is first), or at
// the end when Rank is 0.
type AddToList struct {
	Title string
	Rank  int
}

// Move gives a listed title a new rank (1 is first).
type Move struct {
	Title string
	Rank  int
}

// Remove takes a title off the priority list.
type Remove struct{ Title string }

// Buy rents a title at the price the viewer confirmed. On success the
// daemon starts playback and reports it with App.SetPlayback; on failure
// it calls App.PurchaseFailed.
type Buy struct {
	Title string
	Price Price
}

// Play starts a title the viewer may watch (a rental still viewable).
type Play struct{ Title string }

// Seek moves playback to a position.
type Seek struct{ To time.Duration }

// SetSpeed changes playback speed: 1 normal, 0 pause, ±2 to ±32 fast
// forward or rewind.
type SetSpeed struct{ Speed int }

// Stop ends playback.
type Stop struct{}

func (Activate) action()  {}
func (AddToList) action() {}
func (Move) action()      {}
func (Remove) action()    {}
func (Buy) action()       {}
func (Play) action()      {}
func (Seek) action()      {}
func (SetSpeed) action()  {}
func (Stop) action()      {}
