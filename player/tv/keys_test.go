package tv

import "github.com/boxswarm/boxswarm/board/remote"

var (
	up, down, left, right = remote.Up, remote.Down, remote.Left, remote.Right
	ok, back, menu, home  = remote.OK, remote.Back, remote.Menu, remote.Home
	playPause, ff, rew    = remote.PlayPause, remote.FastForward, remote.Rewind
	stop, del, info       = remote.Stop, remote.Delete, remote.Info
	pgUp, pgDown          = remote.PageUp, remote.PageDown
)

func char(r rune) remote.Key { return remote.Char(r) }

func keys(ks ...remote.Key) []remote.Key { return ks }
