package piece

import (
	"errors"

	"github.com/boxswarm/boxswarm/api"
)

// Errors of a session, wrapped with the transfer and the peer they
// concern.
var (
	// ErrUnauthorized: the sender refused the receiver's Hello (a bad,
	// expired or foreign token, or a transfer the sender does not know).
	ErrUnauthorized = errors.New("not authorized")
	// ErrRefused: the sender refused for another reason (the title is not
	// available, or the version).
	ErrRefused = errors.New("refused by the sender")
	// ErrNotGranted: the receiver asked for pieces outside its grant.
	ErrNotGranted = errors.New("request outside the grant")
	// ErrMissing: the sender does not have a piece it was asked for.
	ErrMissing = errors.New("donor lacks a requested piece")
	// ErrProtocol: the peer sent something out of place or out of bounds.
	ErrProtocol = errors.New("piece protocol violation")
	// ErrPeerCancelled: the peer cancelled.
	ErrPeerCancelled = errors.New("cancelled by the peer")
	// ErrPeerError: the peer ended the connection with an Error.
	ErrPeerError = errors.New("peer reported an error")
	// ErrTimeout: nothing moved on the connection for the idle timeout.
	ErrTimeout = errors.New("connection idle too long")
)

// Result is what a session moved.
type Result struct {
	Peer      api.BoxID // the donor (Fetch) or the receiver (Serve)
	Pieces    int       // stored (Fetch) or sent (Serve)
	Bytes     int64
	BadPieces int // received pieces that failed their hash (Fetch)
}

// covers reports whether every piece from first to last lies in one of the
// portions.
func covers(portions []api.PieceRange, first, last int) bool {
	for i := first; i <= last; {
		next := -1
		for _, p := range portions {
			if p.First <= i && i <= p.Last {
				next = max(next, p.Last+1)
			}
		}
		if next < 0 {
			return false
		}
		i = next
	}
	return true
}

// violation is a protocol breach by the peer, to be answered with an
// Error frame.
type violation struct {
	code   ErrorCode
	reason string
	err    error // ErrProtocol, ErrNotGranted, ErrMissing...
}

func (v *violation) Error() string { return v.reason }
func (v *violation) Unwrap() error { return v.err }
