package playback_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/headend/pass"
	"github.com/boxswarm/boxswarm/headend/vault"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/demux"
	"github.com/boxswarm/boxswarm/media/importer"
	"github.com/boxswarm/boxswarm/media/keywrap"
	"github.com/boxswarm/boxswarm/media/mediatest"
)

// refusals are the sentinels of the refusals the issue lists; each refusal
// must be its own and no other.
var refusals = []error{
	vault.ErrNoPass, pass.ErrExpired, vault.ErrWrongBox, vault.ErrReplayed,
	customers.ErrSuspended, customers.ErrRegionBlocked, customers.ErrRentalOver, pass.ErrBadSignature,
}

func reasonOf(b api.Body) string {
	switch r := b.(type) {
	case api.PassResponse:
		return r.Reason
	case api.KeyResponse:
		return r.Reason
	}
	return ""
}

// TestRefusals covers the refusal list: each is answered with a
// response a viewer can read and an error that says which refusal it was.
func TestRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		want   error
		reason string // the Reason contains it
		// refuse does what is to be refused, as box v.
		refuse func(t *testing.T, e *env, v viewer) (api.Body, error)
	}{
		{"no pass", vault.ErrNoPass, "No media pass was presented",
			func(t *testing.T, e *env, v viewer) (api.Body, error) {
				e.putKey(tRent)
				return e.keyFor(v, nil)
			}},
		{"expired pass", pass.ErrExpired, "has expired",
			func(t *testing.T, e *env, v viewer) (api.Body, error) {
				e.putKey(tRent)
				raw := e.mustPass(v, tRent)
				e.clock.Advance(pass.DefaultTTL + time.Second)
				return e.keyFor(v, raw)
			}},
		{"pass for another box", vault.ErrWrongBox, "issued to another box",
			func(t *testing.T, e *env, v viewer) (api.Body, error) {
				e.putKey(tRent)
				raw := e.mustPass(v, tRent)
				thief := e.signUp("mallory")
				resp, err := e.keyFor(thief, raw)
				// The refusal must not use the pass up for its box.
				if r, err := e.keyFor(v, raw); err != nil || len(r.WrappedKey) == 0 {
					t.Errorf("the rightful box after another presented its pass: %+v, %v", r, err)
				}
				return resp, err
			}},
		{"replayed nonce", vault.ErrReplayed, "already been used",
			func(t *testing.T, e *env, v viewer) (api.Body, error) {
				e.putKey(tRent)
				raw := e.mustPass(v, tRent)
				if r, err := e.keyFor(v, raw); err != nil || len(r.WrappedKey) == 0 {
					t.Fatalf("first release: %+v, %v", r, err)
				}
				return e.keyFor(v, raw)
			}},
		{"suspended account", customers.ErrSuspended, "suspended",
			func(t *testing.T, e *env, v viewer) (api.Body, error) {
				e.mustPass(v, tRent) // rented: the refusal is the suspension's alone
				must(t, e.cust.SetStatus(ctx, v.account, customers.StatusSuspended, "chargeback"))
				return e.passFor(v, tRent, true)
			}},
		{"blocked region", customers.ErrRegionBlocked, "not available in the region",
			func(t *testing.T, e *env, v viewer) (api.Body, error) {
				return e.passFor(v, tUS, true)
			}},
		{"rental window over", customers.ErrRentalOver, "rental of this title has ended",
			func(t *testing.T, e *env, v viewer) (api.Body, error) {
				e.mustPass(v, tRent)
				e.clock.Advance(customers.DefaultRentalWindow + time.Second)
				resp, err := e.passFor(v, tRent, false)
				if resp.Price != "3.99 EUR" || len(resp.Pass) != 0 {
					t.Errorf("after the rental: %+v, want the price to rent again and no pass", resp)
				}
				return resp, err
			}},
		{"tampered pass", pass.ErrBadSignature, "altered",
			func(t *testing.T, e *env, v viewer) (api.Body, error) {
				e.putKey(tRent)
				p, err := pass.Parse(e.mustPass(v, tRent))
				must(t, err)
				p.NotAfter = p.NotAfter.Add(30 * 24 * time.Hour) // a month for the price of a day
				return e.keyFor(v, p.Encode())
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.catalog()
			v := e.signUp("alice")
			charged := len(e.pay.Charges())
			body, err := tc.refuse(t, e, v)

			if got := isAny(err, refusals); len(got) != 1 || got[0] != tc.want {
				t.Errorf("error %v is %v, want %v alone", err, got, tc.want)
			}
			if err := body.Validate(); err != nil {
				t.Errorf("response does not validate: %v", err)
			}
			switch r := body.(type) {
			case api.PassResponse:
				if len(r.Pass) != 0 {
					t.Errorf("refused, yet a pass of %d bytes", len(r.Pass))
				}
			case api.KeyResponse:
				if len(r.WrappedKey) != 0 {
					t.Errorf("refused, yet a wrapped key of %d bytes", len(r.WrappedKey))
				}
			}
			reason := reasonOf(body)
			t.Logf("reason %q; error %v", reason, err)
			if !strings.Contains(reason, tc.reason) || !strings.HasSuffix(reason, ".") {
				t.Errorf("reason %q, want a sentence containing %q", reason, tc.reason)
			}
			for _, inside := range []string{v.box.String(), "playback:", "customers:", "vault", string(v.account)} {
				if strings.Contains(reason, inside) {
					t.Errorf("reason %q shows %q", reason, inside)
				}
			}
			// Every refusal here is after at most the one rental the case
			// made itself.
			if n := len(e.pay.Charges()); n-charged > 1 {
				t.Errorf("%d charges", n-charged)
			}
		})
	}
}

// TestEndToEnd signs up, activates a box, imports a real clip with the
// vault as key sink, and plays it: quote, confirm, pass, key, unwrap with
// the box's key and decrypt a frame of the package. A renewed play inside
// the rental window gets a new pass and a key, and costs nothing more.
func TestEndToEnd(t *testing.T) {
	e := newEnv(t)
	clip := mediatest.Make(t, e.dir, mediatest.TSH265)
	mediaKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x4d}, 32))
	out := filepath.Join(e.dir, "packages")
	m, err := importer.ImportFile(ctx, clip, importer.Options{Out: out, MediaKey: mediaKey, Keys: e.vault}, nil)
	must(t, err)
	e.catalog(m.ID)
	v := e.signUp("alice")
	want := firstFrame(t, clip)

	// play is the box: ask for a key with the pass, unwrap it, decrypt
	// the package's first frame and compare it with the source's.
	play := func(raw []byte) {
		t.Helper()
		resp, err := e.keyFor(v, raw)
		if err != nil || resp.Title != m.ID || resp.Validate() != nil {
			t.Fatalf("key: %+v, %v", resp, err)
		}
		key, _, err := keywrap.Unwrap(v.key, v.box, m.ID, resp.WrappedKey, e.clock.Now())
		must(t, err)
		defer key.Destroy()
		pkg, err := media.OpenPackage(filepath.Join(out, m.ID.String()), mediaKey.Public().(ed25519.PublicKey))
		must(t, err)
		defer pkg.Close()
		fc, err := media.NewFrameCipher(key.Bytes(), m.ID)
		must(t, err)
		fe := pkg.Manifest.Frame(0)
		sealed := make([]byte, fe.Size)
		_, err = pkg.Payload.ReadAt(sealed, int64(fe.Offset))
		must(t, err)
		got, err := fc.Open(nil, 0, fe.FrameMeta, sealed)
		must(t, err)
		if !bytes.Equal(got, want) {
			t.Fatalf("frame 0 decrypts to %d bytes unlike the source's %d", len(got), len(want))
		}
	}

	// Not confirmed: the price, and nothing charged.
	resp, err := e.passFor(v, m.ID, false)
	if !errors.Is(err, customers.ErrNotConfirmed) || !errors.Is(err, customers.ErrNotPurchased) {
		t.Fatalf("unconfirmed play: %v, want ErrNotConfirmed and ErrNotPurchased", err)
	}
	if resp.Price != "3.99 EUR" || resp.Offer != api.OfferRent || resp.WindowSeconds != 24*3600 || len(resp.Pass) != 0 || !strings.Contains(resp.Reason, "Confirm to rent") ||
		!strings.Contains(resp.Reason, "24 hours") {
		t.Fatalf("unconfirmed play: %+v", resp)
	}
	if n := len(e.charges(v.account)); n != 0 || len(e.pay.Charges()) != 0 {
		t.Fatalf("%d charges before confirming", n)
	}

	// Confirmed at a price the viewer never saw: refused, nothing charged.
	for _, price := range []string{"", "0.01 EUR", "3.99 USD"} {
		resp, err = e.svc.Pass(ctx, v.box, v.pub, api.PassRequest{Title: m.ID, Confirm: true, Price: price})
		if !errors.Is(err, customers.ErrPriceChanged) || resp.Price != "3.99 EUR" || len(resp.Pass) != 0 {
			t.Fatalf("confirmed at %q: %+v, %v; want ErrPriceChanged and the price", price, resp, err)
		}
	}
	if n := len(e.pay.Charges()); n != 0 {
		t.Fatalf("%d charges after confirming wrong prices", n)
	}

	// Confirmed: rented, and a pass bound to this box for the rental.
	resp, err = e.passFor(v, m.ID, true)
	if err != nil || resp.Title != m.ID || resp.Reason != "" || resp.Validate() != nil {
		t.Fatalf("confirmed play: %+v, %v", resp, err)
	}
	first := checkPass(t, e, v, resp.Pass, m.ID, start.Add(customers.DefaultRentalWindow))
	play(resp.Pass)

	// Two hours on: a new pass for the same rental, and no new charge.
	e.clock.Advance(2 * time.Hour)
	resp, err = e.passFor(v, m.ID, false)
	if err != nil || resp.Price != "" {
		t.Fatalf("renewed play: %+v, %v", resp, err)
	}
	second := checkPass(t, e, v, resp.Pass, m.ID, start.Add(customers.DefaultRentalWindow))
	if second.ID == first.ID {
		t.Fatal("the renewed play got the same pass ID")
	}
	play(resp.Pass)

	cs := e.charges(v.account)
	if len(cs) != 1 || cs[0].Amount != eur(399) || cs[0].Title != m.ID {
		t.Fatalf("ledger charges %+v, want one of 3.99 EUR", cs)
	}
	if pc := e.pay.Charges(); len(pc) != 1 || pc[0].Amount != eur(399) {
		t.Fatalf("payment provider charges %+v", pc)
	}
}

// TestPurchaseWindow: a title that cannot be rented is quoted for purchase,
// and each pass for it covers PassWindow from the request.
func TestPurchaseWindow(t *testing.T) {
	e := newEnv(t)
	e.catalog()
	v := e.signUp("alice")

	resp, err := e.passFor(v, tBuy, false)
	if !errors.Is(err, customers.ErrNotConfirmed) || resp.Price != "9.99 EUR" || resp.Offer != api.OfferBuy || resp.WindowSeconds != 0 ||
		!strings.Contains(resp.Reason, "Buying") {
		t.Fatalf("unconfirmed: %+v, %v", resp, err)
	}
	checkPass(t, e, v, e.mustPass(v, tBuy), tBuy, start.Add(4*time.Hour))

	e.clock.Advance(30 * 24 * time.Hour)
	resp, err = e.passFor(v, tBuy, false)
	must(t, err)
	checkPass(t, e, v, resp.Pass, tBuy, e.clock.Now().Add(4*time.Hour))
	if cs := e.charges(v.account); len(cs) != 1 || cs[0].Amount != eur(999) {
		t.Fatalf("ledger charges %+v, want one of 9.99 EUR", cs)
	}
}

// TestRentAgain: after a rental ends, confirming rents the title again.
func TestRentAgain(t *testing.T) {
	e := newEnv(t)
	e.catalog()
	v := e.signUp("alice")
	e.mustPass(v, tRent)
	e.clock.Advance(customers.DefaultRentalWindow + time.Minute)
	resp, err := e.passFor(v, tRent, true)
	must(t, err)
	checkPass(t, e, v, resp.Pass, tRent, e.clock.Now().Add(customers.DefaultRentalWindow))
	if cs := e.charges(v.account); len(cs) != 2 {
		t.Fatalf("%d charges, want two rentals", len(cs))
	}
}

// TestPassRefusalsNotListed covers refusals outside the list that
// the pass path passes on: an unknown box, a declined payment.
func TestPassRefusalsNotListed(t *testing.T) {
	e := newEnv(t)
	e.catalog()
	v := e.signUp("alice")

	stranger := v
	stranger.box[0] ^= 0xff
	resp, err := e.passFor(stranger, tRent, true)
	if !errors.Is(err, customers.ErrNotYourBox) || !strings.Contains(resp.Reason, "not registered") {
		t.Errorf("unknown box: %+v, %v", resp, err)
	}

	must(t, e.store.Update(ctx, func(tx customers.Tx) error {
		a, err := tx.Account(v.account)
		if err != nil {
			return err
		}
		a.PaymentToken = "tok_declined_alice"
		return tx.PutAccount(a)
	}))
	resp, err = e.passFor(v, tRent, true)
	if !errors.Is(err, customers.ErrPaymentDeclined) || !strings.Contains(resp.Reason, "declined") || len(resp.Pass) != 0 {
		t.Errorf("declined payment: %+v, %v", resp, err)
	}
	if cs := e.charges(v.account); len(cs) != 0 {
		t.Errorf("charges after a decline: %+v", cs)
	}
}

// checkPass verifies a pass as the vault would and checks what it binds.
func checkPass(t *testing.T, e *env, v viewer, raw []byte, title media.ID, notAfter time.Time) *pass.Pass {
	t.Helper()
	p, err := pass.Verify(raw, []ed25519.PublicKey{passKey.Public().(ed25519.PublicKey)}, e.clock.Now())
	must(t, err)
	if p.Box != v.box || !p.BoxKey.Equal(v.pub) || p.Title != title || p.Account != string(v.account) ||
		!p.NotAfter.Equal(notAfter.Truncate(time.Second)) || !p.NotBefore.Equal(e.clock.Now().Truncate(time.Second)) {
		t.Fatalf("pass %+v, want box %s, title %s, account %s, window %s..%s",
			p, v.box, title, v.account, e.clock.Now(), notAfter)
	}
	return p
}

// firstFrame demuxes the clip's first frame, what the package's first
// frame must decrypt to.
func firstFrame(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	st, err := f.Stat()
	must(t, err)
	src, err := demux.Open(f, st.Size())
	must(t, err)
	fr, err := src.Next()
	must(t, err)
	return bytes.Clone(fr.Data)
}
