package keywrap

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
)

var (
	boxKey   = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0xb0}, 32))
	boxPub   = boxKey.Public().(ed25519.PublicKey)
	otherKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x0b}, 32))
	box      = api.BoxID{0xb0, 1}
	title    = media.ID{0x71, 2}
	expires  = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	content  = bytes.Repeat([]byte{0xc1}, media.ContentKeySize)
)

func wrapped(t testing.TB) []byte {
	t.Helper()
	w, err := Wrap(boxPub, Header{Title: title, Box: box, Expires: expires}, content)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestRoundTrip(t *testing.T) {
	w := wrapped(t)
	if len(w) != Size {
		t.Fatalf("wrapped key is %d bytes, want %d", len(w), Size)
	}
	if bytes.Contains(w, content) {
		t.Fatal("wrapped key contains the content key in the clear")
	}
	s, h, err := Unwrap(boxKey, box, title, w, expires.Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	if !bytes.Equal(s.Bytes(), content) {
		t.Fatalf("unwrapped %x, want %x", s.Bytes(), content)
	}
	if h != (Header{Title: title, Box: box, Expires: expires}) {
		t.Fatalf("header %+v", h)
	}
	// Two wraps of the same key differ: HPKE's ephemeral key is fresh.
	if bytes.Equal(w, wrapped(t)) {
		t.Fatal("two wraps gave the same bytes")
	}
}

func TestExpiryRoundsDown(t *testing.T) {
	w, err := Wrap(boxPub, Header{Title: title, Box: box, Expires: expires.Add(999 * time.Millisecond)}, content)
	if err != nil {
		t.Fatal(err)
	}
	h, err := Parse(w)
	if err != nil || !h.Expires.Equal(expires) {
		t.Fatalf("expiry %v, %v; want %v", h.Expires, err, expires)
	}
}

// TestKeyConversion checks that the public mapping and the private
// derivation land on the same X25519 key, for many Ed25519 keys.
func TestKeyConversion(t *testing.T) {
	for range 64 {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		xpub, err := X25519PublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		xpriv, err := x25519PrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		if !xpub.Equal(xpriv.PublicKey()) {
			t.Fatalf("Ed25519 key %x: public maps to %x, private derives %x", pub, xpub.Bytes(), xpriv.PublicKey().Bytes())
		}
	}
}

// TestKeyConversionKnownAnswer checks the conversion against the vector of
// libsodium's test/default/ed25519_convert.c (crypto_sign_ed25519_pk_to_
// curve25519 and crypto_sign_ed25519_sk_to_curve25519).
func TestKeyConversionKnownAnswer(t *testing.T) {
	seed, _ := hex.DecodeString("421151a459faeade3d247115f94aedae42318124095afabe4d1451a559faedee")
	priv := ed25519.NewKeyFromSeed(seed)
	pub, err := X25519PublicKey(priv.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	sk, err := x25519PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(pub.Bytes()); got != "f1814f0e8ff1043d8a44d25babff3cedcae6c22c3edaa48f857ae70de2baae50" {
		t.Errorf("X25519 public key %s", got)
	}
	if got := hex.EncodeToString(sk.Bytes()); got != "8052030376d47112be7f73ed7a019293dd12ad910b654455798b4667d73de166" {
		t.Errorf("X25519 private key %s", got)
	}
}

func TestBadPublicKeys(t *testing.T) {
	identity := make([]byte, 32)
	identity[0] = 1
	// y = p + 1 is a non-canonical encoding of y = 1.
	nonCanonical := bytes.Repeat([]byte{0xff}, 32)
	nonCanonical[0], nonCanonical[31] = 0xee, 0x7f
	// y = 0 is a point of order 4.
	order4 := make([]byte, 32)
	// y = 2 is not on the curve (x² would be a non-square).
	notOnCurve := make([]byte, 32)
	notOnCurve[0] = 2
	for name, pub := range map[string][]byte{
		"short":         boxPub[:31],
		"identity":      identity,
		"order 4":       order4,
		"non-canonical": nonCanonical,
		"not on curve":  notOnCurve,
	} {
		if _, err := Wrap(pub, Header{Title: title, Box: box, Expires: expires}, content); !errors.Is(err, ErrBadPublicKey) {
			t.Errorf("%s: Wrap = %v, want ErrBadPublicKey", name, err)
		}
	}
}

func TestWrapRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		h   Header
		key []byte
	}{
		"short key":   {Header{Title: title, Box: box, Expires: expires}, content[:16]},
		"no expiry":   {Header{Title: title, Box: box}, content},
		"before 1970": {Header{Title: title, Box: box, Expires: time.Unix(-5, 0)}, content},
		"year 10000":  {Header{Title: title, Box: box, Expires: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, content},
		"long key":    {Header{Title: title, Box: box, Expires: expires}, append(content, 0)},
	} {
		if _, err := Wrap(boxPub, tc.h, tc.key); err == nil {
			t.Errorf("%s: Wrap succeeded", name)
		}
	}
}

// TestUnwrapRefuses checks each refusal and its error.
func TestUnwrapRefuses(t *testing.T) {
	good := wrapped(t)
	before := expires.Add(-time.Second)
	// edit returns good with the clear field at off replaced, so that the
	// clear checks pass and only the seal can notice.
	edit := func(off int, b []byte) []byte {
		w := bytes.Clone(good)
		copy(w[off:], b)
		return w
	}
	const (
		offTitle   = len(Magic) + 4 + tlv6
		offBox     = offTitle + 16 + tlv6
		offExpires = offBox + 16 + tlv6
		offSealed  = offExpires + 8 + tlv6
	)
	otherTitle, otherBox := media.ID{9}, api.BoxID{9}
	later := binary.BigEndian.AppendUint64(nil, uint64(expires.Add(time.Hour).Unix()))
	v2 := bytes.Clone(good)
	binary.BigEndian.PutUint32(v2[len(Magic):], 2)
	flipped := bytes.Clone(good)
	flipped[offSealed+40] ^= 1
	for _, tc := range []struct {
		name  string
		w     []byte
		priv  ed25519.PrivateKey
		box   api.BoxID
		title media.ID
		now   time.Time
		want  error
	}{
		{"empty", nil, boxKey, box, title, before, ErrMalformed},
		{"bad magic", append([]byte("BXSWXKEY"), good[8:]...), boxKey, box, title, before, ErrMalformed},
		{"version 2", v2, boxKey, box, title, before, ErrUnsupportedVersion},
		{"truncated", good[:len(good)-1], boxKey, box, title, before, ErrMalformed},
		{"trailing byte", append(bytes.Clone(good), 0), boxKey, box, title, before, ErrMalformed},
		{"zero expiry", edit(offExpires, make([]byte, 8)), boxKey, box, title, before, ErrMalformed},
		{"another box", good, boxKey, otherBox, title, before, ErrWrongBox},
		{"another title", good, boxKey, box, otherTitle, before, ErrWrongTitle},
		{"expired", good, boxKey, box, title, expires, ErrExpired},
		{"long expired", good, boxKey, box, title, expires.Add(time.Hour), ErrExpired},
		{"another box's private key", good, otherKey, box, title, before, ErrAuth},
		{"sealed key changed", flipped, boxKey, box, title, before, ErrAuth},
		{"expiry extended", edit(offExpires, later), boxKey, box, title, before, ErrAuth},
		{"title rewritten", edit(offTitle, otherTitle[:]), boxKey, box, otherTitle, before, ErrAuth},
		{"box rewritten", edit(offBox, otherBox[:]), boxKey, otherBox, title, before, ErrAuth},
	} {
		s, _, err := Unwrap(tc.priv, tc.box, tc.title, tc.w, tc.now)
		if s != nil {
			s.Destroy()
			t.Errorf("%s: unwrapped", tc.name)
			continue
		}
		for _, e := range []error{ErrMalformed, ErrUnsupportedVersion, ErrWrongBox, ErrWrongTitle, ErrExpired, ErrAuth} {
			if errors.Is(err, e) != (e == tc.want) {
				t.Errorf("%s: Unwrap = %v, want %v", tc.name, err, tc.want)
				break
			}
		}
	}
}

// tlv6 is a field header's size, spelled out so the offsets above read as
// the layout in FORMAT.md.
const tlv6 = 6

func TestParse(t *testing.T) {
	h, err := Parse(wrapped(t))
	if err != nil {
		t.Fatal(err)
	}
	if h.Title != title || h.Box != box || !h.Expires.Equal(expires) {
		t.Fatalf("header %+v", h)
	}
}

func BenchmarkWrap(b *testing.B) {
	h := Header{Title: title, Box: box, Expires: expires}
	for b.Loop() {
		if _, err := Wrap(boxPub, h, content); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnwrap(b *testing.B) {
	w := wrapped(b)
	now := expires.Add(-time.Hour)
	for b.Loop() {
		s, _, err := Unwrap(boxKey, box, title, w, now)
		if err != nil {
			b.Fatal(err)
		}
		s.Destroy()
	}
}

// TestFixedWrapOpens keeps the fuzz seed honest: it must be a genuine wrap.
func TestFixedWrapOpens(t *testing.T) {
	w, _ := hex.DecodeString(goodWrap)
	s, _, err := Unwrap(boxKey, box, title, w, expires.Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	if !bytes.Equal(s.Bytes(), content) {
		t.Fatalf("fixed wrap holds %x", s.Bytes())
	}
}
