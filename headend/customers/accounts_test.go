package customers_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/headend/customers/custtest"
)

func validSignUp() customers.SignUp {
	return customers.SignUp{
		Name: "Alice", Email: "  Alice@Example.COM ", Password: "correct horse alice",
		Address:      customers.Address{Street: "1 Main Street", City: "Town", Postcode: "12345", Region: "DE"},
		PaymentToken: custtest.TokenOK, Catalogs: []customers.CatalogID{"studio", "studio", "indie"}, Supplier: "Big Retailer",
	}
}

func TestSignUp(t *testing.T) {
	e := newEnv(t)
	e.catalog()
	a, b, err := e.svc.SignUp(ctx, validSignUp())
	must(t, err)
	if a.Email != "alice@example.com" || a.Status != customers.StatusActive || a.Address.Region != "DE" {
		t.Errorf("account %+v", a)
	}
	if got := a.Catalogs; len(got) != 2 || got[0] != "studio" || got[1] != "indie" {
		t.Errorf("subscriptions %v, want studio and indie once each", got)
	}
	if strings.Contains(a.PasswordHash, "correct horse") || !strings.HasPrefix(a.PasswordHash, "$argon2id$") {
		t.Errorf("password stored as %q", a.PasswordHash)
	}
	// The box's code is registered with the scheduler for this account.
	if acct, ok := e.act.Account(b.Code); !ok || acct != string(a.ID) {
		t.Errorf("code %q registered for %q (%v), want %s", b.Code, acct, ok, a.ID)
	}
	if b.Account != a.ID || b.Supplier != "Big Retailer" || b.Region != "DE" || b.Device != (api.BoxID{}) {
		t.Errorf("box %+v", b)
	}
	got, err := e.svc.Account(ctx, a.ID)
	must(t, err)
	if got.ID != a.ID || got.Email != a.Email {
		t.Errorf("stored account %+v", got)
	}

	// The e-mail address is taken, in any case.
	dup := validSignUp()
	dup.Email = "ALICE@example.com"
	_, _, err = e.svc.SignUp(ctx, dup)
	wantErr(t, "second sign-up", err, customers.ErrEmailTaken)
	if e.act.Len() != 1 {
		t.Errorf("%d codes registered after a refused sign-up, want 1", e.act.Len())
	}
}

func TestSignUpRefused(t *testing.T) {
	cases := []struct {
		name string
		edit func(*customers.SignUp)
		want error
	}{
		{"no name", func(s *customers.SignUp) { s.Name = "  " }, customers.ErrInvalid},
		{"long name", func(s *customers.SignUp) { s.Name = strings.Repeat("n", 201) }, customers.ErrInvalid},
		{"NUL in name", func(s *customers.SignUp) { s.Name = "a\x00b" }, customers.ErrInvalid},
		{"bad e-mail", func(s *customers.SignUp) { s.Email = "not an address" }, customers.ErrInvalid},
		{"display name", func(s *customers.SignUp) { s.Email = "Alice <alice@example.com>" }, customers.ErrInvalid},
		{"two addresses", func(s *customers.SignUp) { s.Email = "a@example.com, b@example.com" }, customers.ErrInvalid},
		{"short password", func(s *customers.SignUp) { s.Password = "short" }, customers.ErrInvalid},
		{"huge password", func(s *customers.SignUp) { s.Password = strings.Repeat("p", customers.MaxPassword+1) }, customers.ErrInvalid},
		{"password is e-mail", func(s *customers.SignUp) { s.Password = "alice@example.com" }, customers.ErrInvalid},
		{"no street", func(s *customers.SignUp) { s.Address.Street = "" }, customers.ErrInvalid},
		{"bad region", func(s *customers.SignUp) { s.Address.Region = "de" }, customers.ErrInvalid},
		{"wildcard region", func(s *customers.SignUp) { s.Address.Region = "*" }, customers.ErrInvalid},
		{"bad box region", func(s *customers.SignUp) { s.BoxRegion = "'; DROP" }, customers.ErrInvalid},
		{"no payment token", func(s *customers.SignUp) { s.PaymentToken = "" }, customers.ErrInvalid},
		{"no supplier", func(s *customers.SignUp) { s.Supplier = "" }, customers.ErrInvalid},
		{"declined card", func(s *customers.SignUp) { s.PaymentToken = custtest.TokenDeclined }, customers.ErrPaymentDeclined},
		{"unknown catalog", func(s *customers.SignUp) { s.Catalogs = []customers.CatalogID{"nope"} }, customers.ErrUnknownCatalog},
	}
	e := newEnv(t)
	e.catalog()
	for _, tc := range cases {
		req := validSignUp()
		tc.edit(&req)
		if _, _, err := e.svc.SignUp(ctx, req); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if e.act.Len() != 0 {
		t.Errorf("%d activation codes registered by refused sign-ups", e.act.Len())
	}
	// Nothing was stored: the address is still free.
	if _, _, err := e.svc.SignUp(ctx, validSignUp()); err != nil {
		t.Errorf("sign-up after the refusals: %v", err)
	}
}

func TestSignUpActivatorDown(t *testing.T) {
	e := newEnv(t)
	e.catalog()
	down := errors.New("scheduler unreachable")
	e.act.FailWith(down)
	_, _, err := e.svc.SignUp(ctx, validSignUp())
	wantErr(t, "sign-up with the scheduler down", err, down)
	e.act.FailWith(nil)
	if _, _, err := e.svc.SignUp(ctx, validSignUp()); err != nil {
		t.Errorf("sign-up once the scheduler is back: %v", err)
	}
}

func TestBoxes(t *testing.T) {
	e := newEnv(t)
	e.catalog()
	a, first := e.signUp("alice", "DE")
	e.clock.Advance(time.Second) // BoxesOf orders by when each was added
	second, err := e.svc.AddBox(ctx, a.ID, "Operator Shop", "AT")
	must(t, err)
	if second.Code == first.Code || second.Ref == first.Ref || second.Region != "AT" || second.Supplier != "Operator Shop" {
		t.Errorf("second box %+v, first %+v", second, first)
	}
	if acct, ok := e.act.Account(second.Code); !ok || acct != string(a.ID) {
		t.Errorf("second code registered for %q", acct)
	}
	bs, err := e.svc.Boxes(ctx, a.ID)
	must(t, err)
	if len(bs) != 2 || bs[0].Ref != first.Ref || bs[1].Ref != second.Ref {
		t.Fatalf("boxes %+v, want first then second", bs)
	}

	dev := api.BoxID{7}
	got, err := e.svc.BoxActivated(ctx, first.Code, dev)
	must(t, err)
	if got.Device != dev || !got.Activated.Equal(e.clock.Now()) {
		t.Errorf("activated box %+v", got)
	}
	again, err := e.svc.BoxActivated(ctx, first.Code, dev)
	if err != nil || again.Activated != got.Activated {
		t.Errorf("activating again with the same device: %+v, %v", again, err)
	}
	_, err = e.svc.BoxActivated(ctx, first.Code, api.BoxID{8})
	wantErr(t, "code reused by another device", err, customers.ErrExists)
	_, err = e.svc.BoxActivated(ctx, second.Code, dev)
	wantErr(t, "device activated twice", err, customers.ErrExists)
	_, err = e.svc.BoxActivated(ctx, "NOPE-NOPE-NOPE-NOPE", api.BoxID{9})
	wantErr(t, "unknown code", err, customers.ErrNotFound)
	_, err = e.svc.BoxActivated(ctx, second.Code, api.BoxID{})
	wantErr(t, "zero device", err, customers.ErrInvalid)

	_, err = e.svc.AddBox(ctx, a.ID, "", "")
	wantErr(t, "box without a supplier", err, customers.ErrInvalid)
	_, err = e.svc.AddBox(ctx, "nobody", "Shop", "")
	wantErr(t, "box for nobody", err, customers.ErrUnknownAccount)
	must(t, e.svc.SetStatus(ctx, a.ID, customers.StatusSuspended, "unpaid"))
	_, err = e.svc.AddBox(ctx, a.ID, "Shop", "")
	wantErr(t, "box for a suspended account", err, customers.ErrSuspended)
}

func TestProfileAndStatus(t *testing.T) {
	e := newEnv(t)
	e.catalog()
	a, _ := e.signUp("alice", "DE")
	p := customers.Profile{Name: "Alice B.", Address: customers.Address{Street: "2 Side St", City: "City", Region: "AT"}}
	got, err := e.svc.UpdateProfile(ctx, a.ID, p)
	must(t, err)
	if got.Name != "Alice B." || got.Address.Region != "AT" || got.PaymentToken != a.PaymentToken {
		t.Errorf("profile %+v", got)
	}
	p.PaymentToken = custtest.TokenDeclined
	_, err = e.svc.UpdateProfile(ctx, a.ID, p)
	wantErr(t, "declined new card", err, customers.ErrPaymentDeclined)
	p.PaymentToken = "tok_ok_new"
	got, err = e.svc.UpdateProfile(ctx, a.ID, p)
	if err != nil || got.PaymentToken != "tok_ok_new" {
		t.Errorf("new card: %q, %v", got.PaymentToken, err)
	}

	must(t, e.svc.SetStatus(ctx, a.ID, customers.StatusSuspended, "chargeback"))
	got, err = e.svc.Account(ctx, a.ID)
	if err != nil || got.Status != customers.StatusSuspended || got.StatusReason != "chargeback" {
		t.Errorf("suspended account %+v, %v", got, err)
	}
	wantErr(t, "unknown status", e.svc.SetStatus(ctx, a.ID, "banished", ""), customers.ErrInvalid)
	wantErr(t, "status of nobody", e.svc.SetStatus(ctx, "nobody", customers.StatusActive, ""), customers.ErrUnknownAccount)
}
