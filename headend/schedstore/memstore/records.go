package memstore

import (
	"cmp"
	"encoding/binary"
	"slices"
	"time"
	"unique"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/media"
)

// Records are kept in compact forms of their own, not as the schedstore
// structs: at a million boxes every byte of a box is a megabyte. Times are
// microseconds since 1970 (8 bytes instead of 24, and already truncated as
// storetest wants them), byte slices are strings (the conversion is the
// copy the caller's memory needs anyway, and a string header is 8 bytes
// shorter), the text fields that repeat across boxes (cluster, NAT, region,
// ISP) are interned, so a million boxes share a handful of them, and the
// title IDs in holdings and priority lists are numbers in the Memory's
// table of titles (titleTable), 4 bytes instead of 16, fifty times a box.

// boxRec is everything stored under one box ID. It exists while any of it
// is set; the outbox mark alone keeps it, because the numbers of an outbox
// acknowledged to the end stay spent until DeleteBox.
type boxRec struct {
	box         boxVal
	holdings    []holding // by title ID
	list        []titleRef
	listVersion uint64
	outbox      []outMsg // by Seq
	in, out     uint64   // the recorded sequence numbers
	appended    uint64   // the highest Seq ever appended since the last DeleteBox
	hasBox      bool
	hasList     bool
}

func (r *boxRec) empty() bool {
	return !r.hasBox && !r.hasList && len(r.holdings) == 0 && len(r.outbox) == 0 &&
		r.in == 0 && r.out == 0 && r.appended == 0
}

// boxVal is a Box without its ID.
type boxVal struct {
	account, pieceAddr        string
	cluster, nat, region, isp unique.Handle[string]
	capacity, free            int64
	up, down                  int
	activated, lastSeen       int64
	cert                      [32]byte
	server                    bool
}

func packBox(b schedstore.Box) boxVal {
	return boxVal{
		account:   b.Account,
		pieceAddr: b.PieceAddr,
		cluster:   unique.Make(b.Cluster),
		nat:       unique.Make(string(b.NAT)),
		region:    unique.Make(b.Location.Region),
		isp:       unique.Make(b.Location.ISP),
		capacity:  b.Capacity,
		free:      b.Free,
		up:        b.UpKbps,
		down:      b.DownKbps,
		activated: micros(b.Activated),
		lastSeen:  micros(b.LastSeen),
		cert:      b.CertSHA256,
		server:    b.Server,
	}
}

func (v *boxVal) unpack(id api.BoxID) schedstore.Box {
	return schedstore.Box{
		ID:         id,
		Account:    v.account,
		CertSHA256: v.cert,
		Server:     v.server,
		Cluster:    v.cluster.Value(),
		Capacity:   v.capacity,
		Free:       v.free,
		UpKbps:     v.up,
		DownKbps:   v.down,
		NAT:        api.NATType(v.nat.Value()),
		Location:   api.Location{Region: v.region.Value(), ISP: v.isp.Value()},
		PieceAddr:  v.pieceAddr,
		Activated:  fromMicros(v.activated),
		LastSeen:   fromMicros(v.lastSeen),
	}
}

// titleRef is a title ID's number in a titleTable.
type titleRef uint32

// titleTable numbers the title IDs that holdings and lists name. Numbers
// are never given back: the table grows with the catalog, titles ever
// seen, not with boxes.
type titleTable struct {
	ids  []media.ID
	refs map[media.ID]titleRef
}

// ref returns id's number, giving it one if it has none. The caller holds
// the Memory's write lock.
func (tt *titleTable) ref(id media.ID) titleRef {
	if r, ok := tt.refs[id]; ok {
		return r
	}
	// A table of 2^32 titles would take 64 GiB of IDs alone: the
	// conversion cannot wrap in a process that is still running.
	r := titleRef(len(tt.ids))
	tt.ids = append(tt.ids, id)
	tt.refs[id] = r
	return r
}

func (tt *titleTable) id(r titleRef) media.ID { return tt.ids[r] }

// holding is a Holding without its box.
type holding struct {
	have     string
	title    titleRef
	complete bool
}

// outMsg is an Outbound without its box.
type outMsg struct {
	seq   uint64
	frame string
}

// titleVal is a Title without its ID.
type titleVal struct {
	pieces, pieceSize int
	payloadSize       int64
	publishAt         int64
	hash              [32]byte
}

func packTitle(t schedstore.Title) titleVal {
	return titleVal{pieces: t.Pieces, pieceSize: t.PieceSize, payloadSize: t.PayloadSize,
		publishAt: micros(t.PublishAt), hash: t.PayloadHash}
}

func (v *titleVal) unpack(id media.ID) schedstore.Title {
	return schedstore.Title{ID: id, Pieces: v.pieces, PieceSize: v.pieceSize, PayloadSize: v.payloadSize,
		PayloadHash: v.hash, PublishAt: fromMicros(v.publishAt)}
}

// transferVal is a Transfer without its ID.
type transferVal struct {
	title                       media.ID
	receiver, sender, initiator api.BoxID
	portions                    []api.PieceRange
	outcome                     string
	pieces                      int
	created, updated            int64
	state                       uint8
}

func packTransfer(t schedstore.Transfer) transferVal {
	return transferVal{
		title:     t.Title,
		receiver:  t.Receiver,
		sender:    t.Sender,
		initiator: t.Initiator,
		portions:  cloneOrNil(t.Portions),
		outcome:   t.Outcome,
		pieces:    t.Pieces,
		created:   micros(t.Created),
		updated:   micros(t.Updated),
		state:     stateCode(t.State),
	}
}

func (v *transferVal) unpack(id api.TransferID) schedstore.Transfer {
	return schedstore.Transfer{
		ID:        id,
		Title:     v.title,
		Receiver:  v.receiver,
		Sender:    v.sender,
		Portions:  cloneOrNil(v.portions),
		Initiator: v.initiator,
		State:     stateOf(v.state),
		Outcome:   v.outcome,
		Pieces:    v.pieces,
		Created:   fromMicros(v.created),
		Updated:   fromMicros(v.updated),
	}
}

// open reports whether the transfer is requested or running.
func (v *transferVal) open() bool { return v.state == stateRequested || v.state == stateRunning }

// Transfer states as stored; schedstore.CheckTransfer refuses any other
// before a record is packed.
const (
	stateRequested uint8 = 1 + iota
	stateRunning
	stateDone
	stateFailed
)

func stateCode(s schedstore.TransferState) uint8 {
	switch s {
	case schedstore.TransferRequested:
		return stateRequested
	case schedstore.TransferRunning:
		return stateRunning
	case schedstore.TransferDone:
		return stateDone
	case schedstore.TransferFailed:
		return stateFailed
	}
	return 0
}

func stateOf(c uint8) schedstore.TransferState {
	switch c {
	case stateRequested:
		return schedstore.TransferRequested
	case stateRunning:
		return schedstore.TransferRunning
	case stateDone:
		return schedstore.TransferDone
	case stateFailed:
		return schedstore.TransferFailed
	}
	return ""
}

// measVal is a Measurement without its pair.
type measVal struct {
	kbps, rtt int
	at        int64
}

// codeVal is an activation code's record.
type codeVal struct {
	account string
	used    bool
}

// tref places a transfer in a box's history, ordered by creation time and
// then ID, as TransfersOf lists them (backwards).
type tref struct {
	created int64
	id      api.TransferID
}

func cmpTref(a, b tref) int {
	if c := cmp.Compare(a.created, b.created); c != 0 {
		return c
	}
	return cmp.Compare(a.id, b.id)
}

// micros is t truncated to the microsecond, as microseconds since 1970;
// schedstore.CheckTime has kept t to years that fit.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// bytesOf returns a fresh copy of s, nil when empty.
func bytesOf(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

// cloneOrNil copies s, returning nil for an empty s so that stored
// records do not keep empty arrays.
func cloneOrNil[S ~[]E, E any](s S) S {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

// cmpID orders 16-byte IDs as their bytes do, two words at a time: sorting
// a million box IDs byte by byte takes noticeably longer.
func cmpID(a, b [16]byte) int {
	if x, y := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(b[:8]); x != y {
		if x < y {
			return -1
		}
		return 1
	}
	x, y := binary.BigEndian.Uint64(a[8:]), binary.BigEndian.Uint64(b[8:])
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

func cmpPair(a, b [2]api.BoxID) int {
	if c := cmpID(a[0], b[0]); c != 0 {
		return c
	}
	return cmpID(a[1], b[1])
}
