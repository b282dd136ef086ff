package storetest

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/media"
)

// HostileStrings are values a store must keep exactly and search for
// literally, however much they look like SQL, LIKE patterns, escapes or
// markup. None holds a NUL, which no store accepts.
var HostileStrings = []string{
	"",
	" ",
	"'",
	"''",
	`"`,
	`\`,
	`\\`,
	`\\'`,
	`\%`,
	`\_`,
	"%",
	"%%",
	"_",
	"__",
	"%_%",
	"50% off",
	"a_b",
	"[a-z]*",
	".*",
	"'; DROP TABLE cust_accounts; --",
	"'; DROP TABLE cust_titles; --",
	"\"; DROP TABLE cust_ledger; --",
	"x'); DELETE FROM cust_ledger; SELECT ('",
	"1 OR 1=1",
	"' OR '1'='1",
	"' OR 1=1 --",
	"$1",
	"$$ || pg_sleep(10) || $$",
	"E'\\x00'",
	"%s%d%n%%",
	"\\N",
	"\t\n\r\v\f",
	"\x01\x02\x1b[31mred\x1b[0m\x7f",
	"<script>alert(1)</script>",
	"../../../../etc/passwd",
	"ünïcödé — “quotes” ‘single’ « » ‹ ›",
	"ÜBER Straße İstanbul ΣΊΣΥΦΟΣ",
	"東京都 서울 Москва القاهرة",
	"🎬🍿📺👨‍👩‍👧‍👦🏳️‍🌈",
	"\u200b\u200c\u200d\u2028\u2029\ufeff\u202e",
	"\U0010ffff\ufffd\uffff",
	"a\u0301e\u0308",
	strings.Repeat("'", 3000),
	strings.Repeat("%", 500),
	strings.Repeat("x", 100000),
}

// base is a time with microseconds, in a zone other than UTC, so that
// backends show they keep the instant and return UTC.
var base = time.Date(2031, 5, 6, 7, 8, 9, 123456000, time.FixedZone("X", 5*3600+1800))

func mediaID(n uint64) media.ID {
	var id media.ID
	binary.BigEndian.PutUint64(id[:8], 0xC0FFEE)
	binary.BigEndian.PutUint64(id[8:], n)
	return id
}

func deviceID(n uint64) api.BoxID {
	var id api.BoxID
	binary.BigEndian.PutUint64(id[:8], 0xB0C5)
	binary.BigEndian.PutUint64(id[8:], n)
	return id
}

// SampleAccount returns an account with every field set, unique by n.
func SampleAccount(n int) customers.Account {
	return customers.Account{
		ID:    customers.AccountID(fmt.Sprintf("acct-%04d", n)),
		Email: fmt.Sprintf("viewer%d@example.com", n),
		Name:  fmt.Sprintf("Viewer %d", n),
		Address: customers.Address{
			Street: fmt.Sprintf("%d Long Street", n), City: "Springfield", Postcode: "12345", Region: "DE",
		},
		PasswordHash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		PaymentToken: fmt.Sprintf("tok_ok_%d", n),
		Status:       customers.StatusActive,
		StatusReason: "",
		Catalogs:     []customers.CatalogID{"studio", "indie"},
		Created:      base.Add(time.Duration(n) * time.Hour),
		Updated:      base.Add(time.Duration(n)*time.Hour + time.Minute),
	}
}

// SampleTitle returns a title with every field set, unique by n.
func SampleTitle(n uint64, catalog customers.CatalogID) customers.Title {
	return customers.Title{
		Media: mediaID(n), Catalog: catalog, Name: fmt.Sprintf("Title %d", n), Year: 1990 + int(n%30),
		Genre: "Drama", Actors: []string{"Ann Actor", fmt.Sprintf("Actor %d", n)}, Directors: []string{"Dee Director"},
		Producers: []string{"Pat Producer"}, Language: "en", Rating: "PG-13",
		Rent:   customers.Money{Amount: 399, Currency: "EUR"},
		Buy:    customers.Money{Amount: 1299, Currency: "EUR"},
		Window: 48 * time.Hour, Regions: []string{"DE", "AT"}, PublishAt: base.Add(-time.Duration(n) * time.Hour),
	}
}

func sampleBox(n int, account customers.AccountID) customers.Box {
	return customers.Box{
		Ref: customers.BoxRef(fmt.Sprintf("box-%04d", n)), Account: account, Code: fmt.Sprintf("CODE-%04d", n),
		Device: deviceID(uint64(n)), Supplier: "Big Retailer", Region: "DE",
		Added: base.Add(time.Duration(n) * time.Minute), Activated: base.Add(time.Duration(n)*time.Minute + time.Second),
	}
}

func samplePurchase(n int, account customers.AccountID, box customers.BoxRef, title media.ID) customers.Purchase {
	return customers.Purchase{
		ID: customers.PurchaseID(fmt.Sprintf("p-%04d", n)), Account: account, Box: box, Title: title,
		Kind: customers.KindRent, Price: customers.Money{Amount: 399, Currency: "EUR"},
		At: base.Add(time.Duration(n) * time.Second), Expires: base.Add(24*time.Hour + time.Duration(n)*time.Second),
		ChargeRef: fmt.Sprintf("ch_%d", n),
	}
}

func sampleEntry(account customers.AccountID, seq uint64) customers.Entry {
	e := customers.Entry{
		Account: account, Seq: seq, At: base.Add(time.Duration(seq) * time.Second), Kind: customers.EntryCharge,
		Amount: customers.Money{Amount: int64(seq) * 100, Currency: "EUR"}, Purchase: customers.PurchaseID(fmt.Sprintf("p-%d", seq)),
		Box: "box-1", Title: mediaID(seq), Memo: "rent",
	}
	e.Prev[0], e.Hash[0] = byte(seq-1), byte(seq)
	return e
}

// stored is what a backend gives back for a record put: times in UTC,
// truncated to the microsecond.
func stored[T any](v T) T {
	walk(reflect.ValueOf(&v).Elem(), func(t time.Time) time.Time { return customers.StoreTime(t) })
	return v
}

// canonical makes equal values compare equal with reflect.DeepEqual: one
// representation per instant, nil for empty slices. It reports a time not
// in UTC.
func canonical[T any](t testing.TB, v T) T {
	t.Helper()
	var bad []string
	walk(reflect.ValueOf(&v).Elem(), func(x time.Time) time.Time {
		if x.Location() != time.UTC {
			bad = append(bad, x.String())
		}
		return time.Unix(x.Unix(), int64(x.Nanosecond())).UTC()
	})
	for _, b := range bad {
		t.Errorf("time %s came back not in UTC", b)
	}
	return v
}

var timeType = reflect.TypeOf(time.Time{})

// walk rewrites every time in v with fn and makes empty slices nil.
func walk(v reflect.Value, fn func(time.Time) time.Time) {
	switch {
	case v.Type() == timeType:
		v.Set(reflect.ValueOf(fn(v.Interface().(time.Time))))
	case v.Kind() == reflect.Struct:
		for i := range v.NumField() {
			walk(v.Field(i), fn)
		}
	case v.Kind() == reflect.Slice:
		if v.Len() == 0 {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		for i := range v.Len() {
			walk(v.Index(i), fn)
		}
	case v.Kind() == reflect.Pointer && !v.IsNil():
		walk(v.Elem(), fn)
	}
}

// same checks that got is what storing want gives back.
func same[T any](t testing.TB, what string, got, want T) {
	t.Helper()
	g, w := canonical(t, got), canonical(t, stored(want))
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %.600v\nwant %.600v", what, fmt.Sprintf("%+v", g), fmt.Sprintf("%+v", w))
	}
}
