package api

import (
	"errors"
	"fmt"
	"time"

	"github.com/boxswarm/boxswarm/media"
)

// Type names a message kind on the wire.
type Type string

// Limits on what a message may carry.
const (
	MaxTitles       = 4096 // in an inventory or a list
	MaxPortions     = 64   // piece ranges in one transfer
	MaxSignal       = 64 << 10
	MaxReason       = 512
	MaxActivateCode = 64
	// MaxCatalogItems bounds a catalog update so that one fits in a frame
	// (MaxFrame) with every text field at its longest and every character
	// escaped in JSON; a bulk update is sent as several.
	MaxCatalogItems = 32

	maxCatalogText = 1000 // a title's name
	maxCatalogTag  = 100  // genre, rating
	maxPrice       = 64
)

// Body is the content of a message. Validate reports the first thing wrong
// with it; a message that fails is rejected without effect.
type Body interface {
	Type() Type
	Validate() error
}

func checkReason(r string) error {
	if len(r) > MaxReason {
		return fmt.Errorf("reason of %d bytes exceeds %d", len(r), MaxReason)
	}
	return nil
}

// --- Session ---------------------------------------------------------------

// Hello opens every session, in both directions. LastSeq is the highest
// sequence number the sender has processed from its peer, so the peer can
// resend what was lost with the previous connection.
type Hello struct {
	Versions []int  `json:"versions"`
	LastSeq  uint64 `json:"last_seq"`
	Software string `json:"software,omitempty"`
}

// Ack acknowledges every message up to and including Seq.
type Ack struct {
	Seq uint64 `json:"seq"`
}

// Reject says a message was not processed, and why.
type Reject struct {
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
}

// Heartbeat says the box is alive; the head-end takes a box that sends
// nothing for a while offline.
type Heartbeat struct{}

func (Hello) Type() Type     { return "hello" }
func (Ack) Type() Type       { return "ack" }
func (Reject) Type() Type    { return "reject" }
func (Heartbeat) Type() Type { return "heartbeat" }

func (h Hello) Validate() error {
	if len(h.Versions) == 0 || len(h.Versions) > 16 {
		return errors.New("hello: 1 to 16 protocol versions")
	}
	if len(h.Software) > 128 {
		return errors.New("hello: software name too long")
	}
	return nil
}
func (Ack) Validate() error       { return nil }
func (r Reject) Validate() error  { return checkReason(r.Reason) }
func (Heartbeat) Validate() error { return nil }

// --- Activation and registration --------------------------------------------

// Activate asks for a device certificate for the box's identity key, with
// the activation code the viewer got at sign-up. It is the only message a
// box without a certificate may send.
type Activate struct {
	Code      string `json:"code"`
	PublicKey []byte `json:"public_key"` // Ed25519, 32 bytes
}

// Activated answers Activate with the box's ID and certificate (DER),
// issued by the head-end's device CA.
type Activated struct {
	Box         BoxID  `json:"box"`
	Certificate []byte `json:"certificate"`
}

// Register tells the head-end what the box is, after each connection.
type Register struct {
	Capacity int64    `json:"capacity"` // bytes the store may hold
	Free     int64    `json:"free"`
	UpKbps   int      `json:"up_kbps"`
	DownKbps int      `json:"down_kbps"`
	NAT      NATType  `json:"nat"`
	Location Location `json:"location"`
	Server   bool     `json:"server,omitempty"` // a media server: a peer that never plays
	Cluster  string   `json:"cluster,omitempty"`
	// PieceAddr is where this end's piece service accepts direct
	// connections (host:port), if it does: media servers and test agents.
	// Boxes behind NAT leave it empty and are reached through WebRTC.
	PieceAddr string `json:"piece_addr,omitempty"`
	// Instance is chosen at random each time the box's transfer engine
	// starts. A new one tells the scheduler the box restarted (a power cut,
	// a crash) rather than reconnected: the transfers it had in flight
	// are gone.
	Instance uint64 `json:"instance,omitempty"`
}

// Registered accepts a registration and hands out STUN/TURN credentials.
type Registered struct {
	Box  BoxID          `json:"box"`
	ICE  ICECredentials `json:"ice"`
	Time time.Time      `json:"time"`
}

// ICECredentials are short-lived TURN credentials minted by the scheduler.
type ICECredentials struct {
	URLs     []string  `json:"urls"`
	Username string    `json:"username"`
	Password string    `json:"password"`
	Expires  time.Time `json:"expires"`
}

func (Activate) Type() Type   { return "activate" }
func (Activated) Type() Type  { return "activated" }
func (Register) Type() Type   { return "register" }
func (Registered) Type() Type { return "registered" }

func (a Activate) Validate() error {
	if a.Code == "" || len(a.Code) > MaxActivateCode {
		return fmt.Errorf("activate: code of %d bytes", len(a.Code))
	}
	if len(a.PublicKey) != 32 {
		return fmt.Errorf("activate: public key of %d bytes, want 32 (Ed25519)", len(a.PublicKey))
	}
	return nil
}
func (a Activated) Validate() error {
	if len(a.Certificate) == 0 || len(a.Certificate) > 8<<10 {
		return errors.New("activated: certificate missing or too large")
	}
	return nil
}
func (r Register) Validate() error {
	switch {
	case r.Capacity < 0 || r.Free < 0 || r.Free > r.Capacity:
		return fmt.Errorf("register: free %d of capacity %d", r.Free, r.Capacity)
	case r.UpKbps < 0 || r.DownKbps < 0 || r.UpKbps > 100_000_000 || r.DownKbps > 100_000_000:
		return errors.New("register: bandwidth out of range")
	case r.NAT.Reachability() == 0 && r.NAT != NATUnknown:
		return fmt.Errorf("register: unknown NAT type %q", r.NAT)
	case len(r.Location.Region) > 64 || len(r.Location.ISP) > 64 || len(r.Cluster) > 64 || len(r.PieceAddr) > 256:
		return errors.New("register: names too long")
	}
	return nil
}
func (Registered) Validate() error { return nil }

// --- What a box holds and wants ----------------------------------------------

// TitleState is what a box holds of one title.
type TitleState struct {
	Title    media.ID `json:"title"`
	Complete bool     `json:"complete"`
	// Have is the piece bitmap (bit 7 of byte 0 is piece 0) when the title
	// is not complete.
	Have []byte `json:"have,omitempty"`
}

// Inventory lists every title a box holds. Full replaces what the head-end
// knew; otherwise the entries update it.
type Inventory struct {
	Full   bool         `json:"full"`
	Titles []TitleState `json:"titles"`
}

// PriorityList is a viewer's ordered list. Version orders edits made on the
// TV and on the web: the higher version wins.
type PriorityList struct {
	Titles  []media.ID `json:"titles"`
	Version uint64     `json:"version"`
}

// DeleteRequest asks to delete a title; the head-end approves unless it is
// one of the last copies in the swarm.
type DeleteRequest struct {
	Title media.ID `json:"title"`
}

// DeleteAnswer approves or defers a deletion.
type DeleteAnswer struct {
	Title    media.ID `json:"title"`
	Approved bool     `json:"approved"`
	Reason   string   `json:"reason,omitempty"`
}

func (Inventory) Type() Type     { return "inventory" }
func (PriorityList) Type() Type  { return "priority_list" }
func (DeleteRequest) Type() Type { return "delete_request" }
func (DeleteAnswer) Type() Type  { return "delete_answer" }

func (inv Inventory) Validate() error {
	if len(inv.Titles) > MaxTitles {
		return fmt.Errorf("inventory: %d titles exceeds %d", len(inv.Titles), MaxTitles)
	}
	seen := make(map[media.ID]bool, len(inv.Titles))
	for _, t := range inv.Titles {
		if seen[t.Title] {
			return fmt.Errorf("inventory: title %s listed twice", t.Title)
		}
		seen[t.Title] = true
		if t.Complete && len(t.Have) > 0 || len(t.Have) > media.MaxPieces/8 {
			return fmt.Errorf("inventory: title %s: bitmap of %d bytes", t.Title, len(t.Have))
		}
	}
	return nil
}
func (p PriorityList) Validate() error {
	if len(p.Titles) > MaxTitles {
		return fmt.Errorf("priority list: %d titles exceeds %d", len(p.Titles), MaxTitles)
	}
	seen := make(map[media.ID]bool, len(p.Titles))
	for _, t := range p.Titles {
		if seen[t] {
			return fmt.Errorf("priority list: title %s listed twice", t)
		}
		seen[t] = true
	}
	return nil
}
func (DeleteRequest) Validate() error  { return nil }
func (d DeleteAnswer) Validate() error { return checkReason(d.Reason) }

// --- Transfers ---------------------------------------------------------------

// Role says which end of a transfer a box is.
type Role string

// Roles.
const (
	RoleSend    Role = "send"
	RoleReceive Role = "receive"
)

// Peer is the other end of a transfer.
type Peer struct {
	Box    BoxID `json:"box"`
	Server bool  `json:"server,omitempty"`
	// Addr is where the peer's piece service listens, for transports that
	// dial directly (media servers; test agents). Boxes behind NAT have
	// none and are reached through WebRTC signalling.
	Addr string `json:"addr,omitempty"`
}

// TransferStart tells both ends of a transfer what to do.
type TransferStart struct {
	Transfer TransferID   `json:"transfer"`
	Title    media.ID     `json:"title"`
	Role     Role         `json:"role"`
	Peer     Peer         `json:"peer"`
	Initiate bool         `json:"initiate"` // this end opens the connection
	Portions []PieceRange `json:"portions"`
	// Token lets the sender check the receiver is the one the scheduler
	// chose (issued by the scheduler, bound to transfer, ends, title,
	// portions and expiry).
	Token   []byte    `json:"token"`
	Expires time.Time `json:"expires"`
	// ICE are STUN/TURN credentials fresh for this transfer, so that a
	// box whose session outlives those of Registered still gets through.
	ICE *ICECredentials `json:"ice,omitempty"`
}

// TransferStarted says the connection is up and data flows.
type TransferStarted struct {
	Transfer TransferID `json:"transfer"`
}

// TransferProgress reports pieces moved so far. The receiver adds the
// title's piece bitmap as its store holds it (bit 7 of byte 0 is piece 0),
// every piece verified: the scheduler may have those pieces sent on from
// it at once.
type TransferProgress struct {
	Transfer TransferID `json:"transfer"`
	Pieces   int        `json:"pieces"`
	Bytes    int64      `json:"bytes"`
	Have     []byte     `json:"have,omitempty"`
}

// TransferSucceeded ends a transfer. The receiver includes the SHA-256 of
// the whole payload once it holds the complete title, which the scheduler
// checks against the manifest.
type TransferSucceeded struct {
	Transfer    TransferID `json:"transfer"`
	PayloadHash []byte     `json:"payload_hash,omitempty"`
}

// TransferFailed ends a transfer in failure. BadPieces names pieces that
// failed their hash (the donor sent garbage).
type TransferFailed struct {
	Transfer  TransferID `json:"transfer"`
	Reason    string     `json:"reason"`
	BadPieces int        `json:"bad_pieces,omitempty"`
}

// TransferCancel stops a transfer.
type TransferCancel struct {
	Transfer TransferID `json:"transfer"`
	Reason   string     `json:"reason"`
}

// TransferConfirmed tells the receiver the scheduler checked the whole
// title: it may now offer it to others and show it as delivered.
type TransferConfirmed struct {
	Transfer TransferID `json:"transfer"`
	Title    media.ID   `json:"title"`
}

// Measurement reports throughput and latency seen with a peer.
type Measurement struct {
	Peer     BoxID `json:"peer"`
	Kbps     int   `json:"kbps"`
	RTTMilli int   `json:"rtt_ms"`
}

func (TransferStart) Type() Type     { return "transfer_start" }
func (TransferStarted) Type() Type   { return "transfer_started" }
func (TransferProgress) Type() Type  { return "transfer_progress" }
func (TransferSucceeded) Type() Type { return "transfer_succeeded" }
func (TransferFailed) Type() Type    { return "transfer_failed" }
func (TransferCancel) Type() Type    { return "transfer_cancel" }
func (TransferConfirmed) Type() Type { return "transfer_confirmed" }
func (Measurement) Type() Type       { return "measurement" }

func (t TransferStart) Validate() error {
	if t.Role != RoleSend && t.Role != RoleReceive {
		return fmt.Errorf("transfer start: role %q", t.Role)
	}
	if len(t.Portions) == 0 || len(t.Portions) > MaxPortions {
		return fmt.Errorf("transfer start: %d portions", len(t.Portions))
	}
	for _, p := range t.Portions {
		if p.First < 0 || p.Last < p.First || p.Last >= media.MaxPieces {
			return fmt.Errorf("transfer start: portion %d-%d", p.First, p.Last)
		}
	}
	if len(t.Token) == 0 || len(t.Token) > 1024 {
		return errors.New("transfer start: token missing or too long")
	}
	return nil
}
func (TransferStarted) Validate() error { return nil }
func (p TransferProgress) Validate() error {
	if p.Pieces < 0 || p.Bytes < 0 {
		return errors.New("transfer progress: negative counts")
	}
	if len(p.Have) > media.MaxPieces/8 {
		return fmt.Errorf("transfer progress: piece bitmap of %d bytes", len(p.Have))
	}
	return nil
}
func (s TransferSucceeded) Validate() error {
	if len(s.PayloadHash) != 0 && len(s.PayloadHash) != 32 {
		return fmt.Errorf("transfer succeeded: payload hash of %d bytes", len(s.PayloadHash))
	}
	return nil
}
func (f TransferFailed) Validate() error {
	if f.BadPieces < 0 {
		return errors.New("transfer failed: negative bad pieces")
	}
	return checkReason(f.Reason)
}
func (c TransferCancel) Validate() error  { return checkReason(c.Reason) }
func (TransferConfirmed) Validate() error { return nil }
func (m Measurement) Validate() error {
	if m.Kbps < 0 || m.RTTMilli < 0 {
		return errors.New("measurement: negative values")
	}
	return nil
}

// --- WebRTC signalling, relayed by the scheduler -----------------------------

// SignalKind is a WebRTC signalling message kind.
type SignalKind string

// Signal kinds.
const (
	SignalOffer     SignalKind = "offer"
	SignalAnswer    SignalKind = "answer"
	SignalCandidate SignalKind = "candidate"
)

// Signal carries WebRTC signalling between the two ends of a transfer. The
// scheduler relays it only between boxes that share that transfer; From is
// set by the scheduler, never trusted from the sender.
type Signal struct {
	Transfer TransferID `json:"transfer"`
	To       BoxID      `json:"to"`
	From     BoxID      `json:"from,omitempty"`
	Kind     SignalKind `json:"kind"`
	Data     string     `json:"data"`
}

func (Signal) Type() Type { return "signal" }

func (s Signal) Validate() error {
	switch s.Kind {
	case SignalOffer, SignalAnswer, SignalCandidate:
	default:
		return fmt.Errorf("signal: kind %q", s.Kind)
	}
	if len(s.Data) == 0 || len(s.Data) > MaxSignal {
		return fmt.Errorf("signal: %d bytes of data", len(s.Data))
	}
	return nil
}

// --- Catalog, media passes and keys (answered by later services) ------------

// CatalogUpdate replicates catalog entries to a box, item by item or in
// bulk.
type CatalogUpdate struct {
	Full  bool          `json:"full"`
	Items []CatalogItem `json:"items"`
}

// CatalogItem is what a box shows about a title.
type CatalogItem struct {
	Title   media.ID `json:"title"`
	Name    string   `json:"name"`
	Year    int      `json:"year,omitempty"`
	Genre   string   `json:"genre,omitempty"`
	Minutes int      `json:"minutes,omitempty"`
	Rating  string   `json:"rating,omitempty"` // the age rating, such as "PG-13"
	// PublishAt is when the box may start showing the title; the box
	// holds items sent ahead of it until then.
	PublishAt time.Time `json:"publish_at,omitzero"`
	Removed   bool      `json:"removed,omitempty"`
}

// PassRequest asks for a media pass to play a title.
type PassRequest struct {
	Title   media.ID `json:"title"`
	Confirm bool     `json:"confirm"` // the viewer confirmed the price
	// Price is the price the viewer confirmed, exactly as a PassResponse
	// showed it. A confirmation at another price than the current one is
	// refused with the new price, so nobody pays what they did not see.
	Price string `json:"price,omitempty"`
}

// PassResponse carries a media pass or says why there is none.
type PassResponse struct {
	Title media.ID `json:"title"`
	Pass  []byte   `json:"pass,omitempty"`
	Price string   `json:"price,omitempty"`
	// Offer says what the price buys, with Price: "rent" (for
	// WindowSeconds) or "buy".
	Offer         string `json:"offer,omitempty"`
	WindowSeconds int64  `json:"window_seconds,omitempty"`
	Reason        string `json:"reason,omitempty"`
}

// What a price offers.
const (
	OfferRent = "rent"
	OfferBuy  = "buy"
)

// KeyRequest presents a media pass to the key vault.
type KeyRequest struct {
	Pass []byte `json:"pass"`
}

// KeyResponse carries the content key wrapped to the box's key.
type KeyResponse struct {
	Title      media.ID `json:"title"`
	WrappedKey []byte   `json:"wrapped_key,omitempty"`
	Reason     string   `json:"reason,omitempty"`
}

func (CatalogUpdate) Type() Type { return "catalog_update" }
func (PassRequest) Type() Type   { return "pass_request" }
func (PassResponse) Type() Type  { return "pass_response" }
func (KeyRequest) Type() Type    { return "key_request" }
func (KeyResponse) Type() Type   { return "key_response" }

func (c CatalogUpdate) Validate() error {
	if len(c.Items) > MaxCatalogItems {
		return fmt.Errorf("catalog update: %d items exceeds %d", len(c.Items), MaxCatalogItems)
	}
	for _, it := range c.Items {
		if len(it.Name) > maxCatalogText || len(it.Genre) > maxCatalogTag || len(it.Rating) > maxCatalogTag {
			return fmt.Errorf("catalog update: title %s: name over %d bytes, or genre or rating over %d", it.Title, maxCatalogText, maxCatalogTag)
		}
	}
	return nil
}
func (p PassRequest) Validate() error {
	if len(p.Price) > maxPrice {
		return fmt.Errorf("pass request: price of %d bytes exceeds %d", len(p.Price), maxPrice)
	}
	return nil
}
func (p PassResponse) Validate() error {
	switch {
	case p.Offer != "" && p.Offer != OfferRent && p.Offer != OfferBuy:
		return fmt.Errorf("pass response: offer %q", p.Offer)
	case p.WindowSeconds < 0 || len(p.Price) > maxPrice:
		return errors.New("pass response: bad price or window")
	}
	return checkReason(p.Reason)
}
func (k KeyRequest) Validate() error {
	if len(k.Pass) == 0 || len(k.Pass) > 8<<10 {
		return errors.New("key request: pass missing or too large")
	}
	return nil
}
func (k KeyResponse) Validate() error { return checkReason(k.Reason) }
