package evdev

import "github.com/boxswarm/boxswarm/board/remote"

// Linux key codes (include/uapi/linux/input-event-codes.h) that the box
// understands.
const (
	keyEsc         = 1
	keyBackspace   = 14
	keyEnter       = 28
	keySpace       = 57
	keyF1          = 59
	keyF2          = 60
	keyF3          = 61
	keyF4          = 62
	keyF5          = 63
	keyF6          = 64
	keyF7          = 65
	keyF8          = 66
	keyKPEnter     = 96
	keyHome        = 102
	keyUp          = 103
	keyPageUp      = 104
	keyLeft        = 105
	keyRight       = 106
	keyDown        = 108
	keyPageDown    = 109
	keyDelete      = 111
	keyPause       = 119
	keyCompose     = 127
	keyStop        = 128
	keyMenu        = 139
	keyBack        = 158
	keyPlayPause   = 164
	keyStopCD      = 166
	keyRewind      = 168
	keyHomePage    = 172
	keyExit        = 174
	keyPlayCD      = 200
	keyPauseCD     = 201
	keyPlay        = 207
	keyFastForward = 208
	keyOK          = 0x160
	keySelect      = 0x161
	keyInfo        = 0x166
	keyChannelUp   = 0x192
	keyChannelDown = 0x193
	keyNumeric0    = 0x200
	keyNumeric9    = 0x209
)

// Keyboard rows in Linux code order: KEY_1 is 2 ... KEY_0 is 11, KEY_Q is 16
// ... KEY_P is 25, KEY_A is 30 ... KEY_L is 38, KEY_Z is 44 ... KEY_M is 50.
var rows = []struct {
	first uint16
	chars string
}{
	{2, "1234567890"},
	{16, "QWERTYUIOP"},
	{30, "ASDFGHJKL"},
	{44, "ZXCVBNM"},
}

// Keypad digits: KEY_KP7 is 71 ... KEY_KP0 is 82, with the operators
// between them left out.
var keypad = map[uint16]rune{71: '7', 72: '8', 73: '9', 75: '4', 76: '5', 77: '6', 79: '1', 80: '2', 81: '3', 82: '0'}

// functions maps Linux codes to the remote's function keys. Each remote
// key has a media-key code a real remote sends and a keyboard code that
// QEMU's sendkey can type (in parentheses: the sendkey name):
//
//	Up Down Left Right    arrows (up down left right)
//	OK                    enter (ret), KEY_OK, KEY_SELECT
//	Back                  esc (esc), KEY_BACK, KEY_EXIT
//	Delete                backspace (backspace), delete (delete)
//	Play/Pause            space (spc), F6 (f6), KEY_PLAYPAUSE, KEY_PLAY, KEY_PAUSE
//	Rewind                F5 (f5), KEY_REWIND
//	Fast forward          F7 (f7), KEY_FASTFORWARD
//	Stop                  F8 (f8), KEY_STOP
//	Home (My List)        F1 (f1), home (home), KEY_HOMEPAGE
//	Menu (Catalog)        F2 (f2), KEY_MENU, compose (menu)
//	Info                  F3 (f3), KEY_INFO
//	Page up / down        pgup pgdn, KEY_CHANNELUP / KEY_CHANNELDOWN
var functions = map[uint16]remote.Key{
	keyUp: remote.Up, keyDown: remote.Down, keyLeft: remote.Left, keyRight: remote.Right,
	keyEnter: remote.OK, keyKPEnter: remote.OK, keyOK: remote.OK, keySelect: remote.OK,
	keyEsc: remote.Back, keyBack: remote.Back, keyExit: remote.Back,
	keyBackspace: remote.Delete, keyDelete: remote.Delete,
	keySpace: remote.PlayPause, keyF6: remote.PlayPause, keyPlayPause: remote.PlayPause,
	keyPlay: remote.PlayPause, keyPause: remote.PlayPause, keyPlayCD: remote.PlayPause, keyPauseCD: remote.PlayPause,
	keyF5: remote.Rewind, keyRewind: remote.Rewind,
	keyF7: remote.FastForward, keyFastForward: remote.FastForward,
	keyF8: remote.Stop, keyStop: remote.Stop, keyStopCD: remote.Stop,
	keyF1: remote.Home, keyHome: remote.Home, keyHomePage: remote.Home,
	keyF2: remote.Menu, keyMenu: remote.Menu, keyCompose: remote.Menu,
	keyF3: remote.Info, keyInfo: remote.Info,
	keyPageUp: remote.PageUp, keyChannelUp: remote.PageUp,
	keyPageDown: remote.PageDown, keyChannelDown: remote.PageDown,
}

// KeyFor returns the remote key a Linux key code stands for, and false for
// codes the box ignores (modifiers, mouse buttons, ...).
func KeyFor(code uint16) (remote.Key, bool) {
	if k, ok := functions[code]; ok {
		return k, true
	}
	for _, r := range rows {
		if code >= r.first && int(code-r.first) < len(r.chars) {
			return remote.Char(rune(r.chars[code-r.first])), true
		}
	}
	if r, ok := keypad[code]; ok {
		return remote.Char(r), true
	}
	if keyNumeric0 <= code && code <= keyNumeric9 {
		return remote.Char(rune('0' + code - keyNumeric0)), true
	}
	return remote.None, false
}

// repeats reports whether holding k down should act again and again. Only
// movement does: a held OK or Play must not buy or toggle twice.
func repeats(k remote.Key) bool {
	switch k {
	case remote.Up, remote.Down, remote.Left, remote.Right, remote.PageUp, remote.PageDown, remote.Delete:
		return true
	}
	return false
}

// remoteKeys are the codes whose presence makes a device usable as the
// remote: it must be able to move and select.
var remoteKeys = []uint16{keyUp, keyDown, keyLeft, keyRight}
var selectKeys = []uint16{keyEnter, keyOK, keySelect}
