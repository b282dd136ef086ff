// Package schedstore is the scheduler's durable state: boxes, what each
// holds, viewers' priority lists, titles, transfers, measured performance
// between pairs, and the messages owed to each box. One interface, two
// backends: bbolt (the embedded default, one file in the head-end's data
// folder) and PostgreSQL (for operators who outgrow one machine), both held
// to the same conformance suite (storetest).
//
// The scheduler keeps its working state in memory and uses the store to
// survive restarts: it loads everything once with the Load* methods, and
// writes each loop iteration's changes in one Update, which is atomic: all
// of a batch is stored, or none of it.
package schedstore

import (
	"context"
	"errors"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
)

// Box is a registered box or media server.
type Box struct {
	ID      api.BoxID
	Account string // the customer account the box was activated for (a reserved one for media servers)
	// CertSHA256 is the SHA-256 of the box's device certificate (DER); a
	// connection must present exactly this certificate.
	CertSHA256 [32]byte
	Server     bool
	Cluster    string // media servers: the cluster they belong to
	Capacity   int64
	Free       int64
	UpKbps     int
	DownKbps   int
	NAT        api.NATType
	Location   api.Location
	PieceAddr  string // where its piece service accepts direct connections, if it does
	Activated  time.Time
	LastSeen   time.Time
}

// Holding is what one box holds of one title: complete, or the pieces in
// Have (bit 7 of byte 0 is piece 0).
type Holding struct {
	Box      api.BoxID
	Title    media.ID
	Complete bool
	Have     []byte
}

// PriorityList is a viewer's ordered list, as the box and the web share it.
type PriorityList struct {
	Box     api.BoxID
	Titles  []media.ID
	Version uint64
}

// Title is what the scheduler knows of a media package.
type Title struct {
	ID          media.ID
	Pieces      int
	PieceSize   int
	PayloadSize int64
	PayloadHash [32]byte
	// PublishAt is when the title becomes visible to viewers; titles are
	// imported inactive.
	PublishAt time.Time
}

// TransferState is where a transfer stands.
type TransferState string

// Transfer states.
const (
	TransferRequested TransferState = "requested" // messages sent, waiting for both ends
	TransferRunning   TransferState = "running"   // data is flowing
	TransferDone      TransferState = "done"      // confirmed against the manifest
	TransferFailed    TransferState = "failed"    // failed or cancelled; the job was reset
)

// Transfer is one sender giving one receiver some pieces of one title.
type Transfer struct {
	ID        api.TransferID
	Title     media.ID
	Receiver  api.BoxID
	Sender    api.BoxID
	Portions  []api.PieceRange
	Initiator api.BoxID // the end that opens the connection
	State     TransferState
	Outcome   string // why it ended, for failed transfers
	Pieces    int    // pieces reported moved
	Created   time.Time
	Updated   time.Time
}

// Measurement is throughput and latency seen from one box to another.
type Measurement struct {
	From, To api.BoxID
	Kbps     int
	RTTMilli int
	At       time.Time
}

// BoxSeqs are a box's recorded sequence numbers: the highest processed
// from it and the highest assigned to it.
type BoxSeqs struct {
	Box     api.BoxID
	In, Out uint64
}

// Outbound is a message owed to a box, kept until the box acknowledges it.
type Outbound struct {
	Box   api.BoxID
	Seq   uint64
	Frame []byte // the encoded api frame
}

// Errors.
var (
	ErrNotFound    = errors.New("not found")
	ErrCodeUsed    = errors.New("activation code already used")
	ErrCodeUnknown = errors.New("unknown activation code")
)

// Store is the scheduler's durable state.
type Store interface {
	// Load* call fn for every stored record, in no particular order,
	// stopping at the first error fn returns. LoadTransfers returns only
	// transfers not yet done or failed.
	LoadBoxes(ctx context.Context, fn func(Box) error) error
	LoadHoldings(ctx context.Context, fn func(Holding) error) error
	LoadPriorityLists(ctx context.Context, fn func(PriorityList) error) error
	LoadTitles(ctx context.Context, fn func(Title) error) error
	LoadTransfers(ctx context.Context, fn func(Transfer) error) error
	LoadMeasurements(ctx context.Context, fn func(Measurement) error) error
	// LoadSeqs returns the sequence numbers of every box that has any (in
	// or out not zero): the scheduler loads them all at start rather than
	// read a box's at each of a million reconnections.
	LoadSeqs(ctx context.Context, fn func(BoxSeqs) error) error

	// Outbox returns the messages owed to a box with Seq > after, in order.
	Outbox(ctx context.Context, box api.BoxID, after uint64) ([]Outbound, error)

	// Transfer returns one transfer, done or not (ErrNotFound if none).
	Transfer(ctx context.Context, id api.TransferID) (Transfer, error)
	// TransfersOf returns the transfers a box received or sent, newest
	// first, at most limit of them: the transfer records.
	TransfersOf(ctx context.Context, box api.BoxID, limit int) ([]Transfer, error)

	// Update runs fn in one atomic transaction: everything fn wrote is
	// stored when Update returns nil, nothing is if it returns an error.
	// Updates behave as if run one after another. fn may run more than
	// once (a backend retries on a serialization failure), so it must
	// only write through the Tx. A Tx error other than ErrCodeUsed and
	// ErrCodeUnknown fails the whole Update, even if fn carries on.
	Update(ctx context.Context, fn func(Tx) error) error

	Close() error
}

// Tx is one batch of writes. Put* replace the record with the same key.
// A backend may hold writes and send them later, so a refused write can
// be reported by Update rather than by the call that made it; either way
// the Update fails.
type Tx interface {
	PutBox(Box) error
	DeleteBox(api.BoxID) error // and its holdings, list, outbox and seqs
	PutHolding(Holding) error
	DeleteHolding(box api.BoxID, title media.ID) error
	PutPriorityList(PriorityList) error
	PutTitle(Title) error
	PutTransfer(Transfer) error
	PutMeasurement(Measurement) error

	// AppendOutbox stores a message owed to a box; Seq must be above every
	// Seq ever appended for it (acknowledged or not) since the box was
	// last deleted: a box drops numbers it has seen.
	AppendOutbox(Outbound) error
	// AckOutbox drops the box's messages with Seq <= seq.
	AckOutbox(box api.BoxID, seq uint64) error
	// SetSeqs records the highest sequence numbers processed from and
	// assigned to a box.
	SetSeqs(box api.BoxID, in, out uint64) error

	// NextTransferID returns a transfer ID never returned before.
	NextTransferID() (api.TransferID, error)

	// AddActivationCode stores a code for an account; UseActivationCode
	// consumes it once (ErrCodeUnknown, ErrCodeUsed).
	AddActivationCode(code, account string) error
	UseActivationCode(code string) (account string, err error)
}
