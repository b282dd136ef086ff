package api

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/media"
)

func TestRoundTrip(t *testing.T) {
	for _, b := range []Body{
		Hello{Versions: []int{1}, LastSeq: 9},
		Register{Capacity: 100, Free: 50, UpKbps: 10000, DownKbps: 50000, NAT: NATPortRestricted, Location: Location{Region: "eu", ISP: "AS3320"}},
		Inventory{Full: true, Titles: []TitleState{{Title: media.ID{1}, Complete: true}, {Title: media.ID{2}, Have: []byte{0xf0}}}},
		TransferStart{Transfer: 7, Title: media.ID{3}, Role: RoleSend, Peer: Peer{Box: BoxID{9}}, Initiate: true,
			Portions: []PieceRange{{0, 9}}, Token: []byte("t"), Expires: time.Unix(100, 0).UTC()},
		Signal{Transfer: 7, To: BoxID{9}, Kind: SignalOffer, Data: "v=0"},
		Heartbeat{},
	} {
		frame, err := Encode(42, b)
		if err != nil {
			t.Fatalf("%T: %v", b, err)
		}
		m, err := ReadMessage(bytes.NewReader(frame))
		if err != nil {
			t.Fatalf("%T: %v", b, err)
		}
		if m.Seq != 42 || m.Body.Type() != b.Type() {
			t.Fatalf("%T: got %+v", b, m)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		want       error
	}{
		{"not JSON", `{"v":1,`, ErrMalformed},
		{"unknown type", `{"v":1,"seq":1,"type":"nuke","body":{}}`, ErrMalformed},
		{"unknown field", `{"v":1,"seq":1,"type":"heartbeat","body":{"x":1}}`, ErrMalformed},
		{"unknown envelope field", `{"v":1,"seq":1,"type":"heartbeat","body":{},"admin":true}`, ErrMalformed},
		{"trailing data", `{"v":1,"seq":1,"type":"heartbeat","body":{}} {}`, ErrMalformed},
		{"other version", `{"v":2,"seq":1,"type":"heartbeat","body":{}}`, ErrVersion},
		{"invalid value", `{"v":1,"seq":1,"type":"register","body":{"capacity":1,"free":5}}`, ErrMalformed},
		{"bad box ID", `{"v":1,"seq":1,"type":"signal","body":{"transfer":1,"to":"zz","kind":"offer","data":"x"}}`, ErrMalformed},
		{"duplicate title", `{"v":1,"seq":1,"type":"priority_list","body":{"titles":["01000000000000000000000000000000","01000000000000000000000000000000"]}}`, ErrMalformed},
	} {
		if _, err := Decode([]byte(tc.json)); !errors.Is(err, tc.want) {
			t.Errorf("%s: Decode = %v, want %v", tc.name, err, tc.want)
		}
	}
	var big [4]byte
	binary.BigEndian.PutUint32(big[:], MaxFrame+1)
	if _, err := ReadFrame(bytes.NewReader(big[:])); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized frame: %v", err)
	}
	if _, err := Encode(1, Signal{Kind: SignalOffer, Data: strings.Repeat("x", MaxSignal+1)}); err == nil {
		t.Error("encoded an invalid message")
	}
}

// FuzzDecode checks that no input makes the decoder panic and that anything
// it accepts validates and encodes again.
func FuzzDecode(f *testing.F) {
	for _, b := range []Body{Heartbeat{}, Hello{Versions: []int{1}}, Ack{Seq: 3},
		TransferProgress{Transfer: 1, Pieces: 2, Bytes: 3},
		Inventory{Titles: []TitleState{{Title: media.ID{1}, Have: []byte{1}}}}} {
		frame, _ := Encode(1, b)
		f.Add(frame[4:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		if err := m.Body.Validate(); err != nil {
			t.Fatalf("accepted an invalid body: %v", err)
		}
		if _, err := Encode(m.Seq, m.Body); err != nil {
			t.Fatalf("accepted message does not encode: %v", err)
		}
	})
}

func TestToken(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	now := time.Unix(1000, 0)
	g := Grant{Transfer: 5, Sender: BoxID{1}, Receiver: BoxID{2}, Title: media.ID{3}, Portions: []PieceRange{{0, 9}, {20, 29}}, Expires: now.Add(time.Minute)}
	tok := g.Sign(key)
	if err := g.Verify(pub, tok, now); err != nil {
		t.Fatal(err)
	}
	if !g.Covers(25) || g.Covers(15) {
		t.Error("Covers")
	}
	for name, bad := range map[string]Grant{
		"other receiver": {Transfer: 5, Sender: BoxID{1}, Receiver: BoxID{7}, Title: media.ID{3}, Portions: g.Portions, Expires: g.Expires},
		"more pieces":    {Transfer: 5, Sender: BoxID{1}, Receiver: BoxID{2}, Title: media.ID{3}, Portions: []PieceRange{{0, 29}}, Expires: g.Expires},
		"other title":    {Transfer: 5, Sender: BoxID{1}, Receiver: BoxID{2}, Title: media.ID{4}, Portions: g.Portions, Expires: g.Expires},
	} {
		if err := bad.Verify(pub, tok, now); !errors.Is(err, ErrToken) {
			t.Errorf("%s: Verify = %v", name, err)
		}
	}
	if err := g.Verify(pub, tok, now.Add(time.Hour)); !errors.Is(err, ErrToken) {
		t.Errorf("expired token: %v", err)
	}
}

func TestHolePunchable(t *testing.T) {
	kinds := []NATType{NATOpen, NATFullCone, NATRestricted, NATPortRestricted, NATSymmetric}
	relayed := map[[2]NATType]bool{
		{NATSymmetric, NATSymmetric}: true, {NATSymmetric, NATPortRestricted}: true, {NATPortRestricted, NATSymmetric}: true,
	}
	for _, a := range kinds {
		for _, b := range kinds {
			if got := HolePunchable(a, b); got == relayed[[2]NATType{a, b}] {
				t.Errorf("HolePunchable(%s, %s) = %v", a, b, got)
			}
		}
	}
}
