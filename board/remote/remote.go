// Package remote names the keys of the box's remote control. It is the
// vocabulary shared by the input drivers below (evdev today, an infrared
// receiver on real hardware) and the TV interface above, so that neither end
// depends on the other.
package remote

import (
	"context"
	"fmt"
	"unicode"
)

// Key is one key of the remote control: a function key (Up, OK, Play/Pause,
// ...) or a character key (a digit, or a letter from a keyboard standing in
// for the remote; see Char).
type Key int32

// Function keys.
const (
	None Key = iota
	Up
	Down
	Left
	Right
	OK
	Back
	PlayPause
	FastForward
	Rewind
	Stop
	Home
	Menu
	PageUp
	PageDown
	Delete
	Info
	lastFunction
)

// charBase keeps character keys clear of the function keys; a character key
// is charBase plus its rune.
const charBase Key = 0x10000

var names = [...]string{
	None:        "None",
	Up:          "Up",
	Down:        "Down",
	Left:        "Left",
	Right:       "Right",
	OK:          "OK",
	Back:        "Back",
	PlayPause:   "PlayPause",
	FastForward: "FastForward",
	Rewind:      "Rewind",
	Stop:        "Stop",
	Home:        "Home",
	Menu:        "Menu",
	PageUp:      "PageUp",
	PageDown:    "PageDown",
	Delete:      "Delete",
	Info:        "Info",
}

// Char returns the key that types r: a digit 0-9 or a letter A-Z (a lower
// case letter gives the upper case key, since the interface only ever
// shows upper case). Any other rune gives None.
func Char(r rune) Key {
	r = unicode.ToUpper(r)
	if ('0' <= r && r <= '9') || ('A' <= r && r <= 'Z') {
		return charBase + Key(r)
	}
	return None
}

// Rune returns the character a character key types.
func (k Key) Rune() (rune, bool) {
	if k > charBase {
		return rune(k - charBase), true
	}
	return 0, false
}

// Digit returns the value of a digit key.
func (k Key) Digit() (int, bool) {
	r, ok := k.Rune()
	if !ok || r < '0' || r > '9' {
		return 0, false
	}
	return int(r - '0'), true
}

// Valid reports whether k is a function key other than None or a character
// key Char returns.
func (k Key) Valid() bool {
	if r, ok := k.Rune(); ok {
		return Char(r) == k
	}
	return None < k && k < lastFunction
}

func (k Key) String() string {
	if r, ok := k.Rune(); ok && k.Valid() {
		return string(r)
	}
	if 0 <= k && k < lastFunction {
		return names[k]
	}
	return fmt.Sprintf("Key(%d)", int32(k))
}

// Reader delivers key presses from a remote control.
type Reader interface {
	// ReadKey blocks until a key is pressed (or repeats while held), ctx
	// ends, or the device fails.
	ReadKey(ctx context.Context) (Key, error)
}
