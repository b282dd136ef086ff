package customers

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/media"
)

var testPW = PasswordParams{Memory: 64, Time: 1, Threads: 1}

func TestPasswordHash(t *testing.T) {
	h1, err := hashPassword("correct horse battery", testPW)
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := hashPassword("correct horse battery", testPW)
	if h1 == h2 {
		t.Error("two hashes of one password are equal: no fresh salt")
	}
	if !strings.HasPrefix(h1, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("hash %q does not carry its parameters", h1)
	}
	cases := []struct {
		pw     string
		want   PasswordParams
		ok     bool
		stale  bool
		errStr string
	}{
		{"correct horse battery", testPW, true, false, ""},
		{"correct horse batterY", testPW, false, false, ""},
		{"", testPW, false, false, ""},
		{"correct horse battery", PasswordParams{Memory: 128, Time: 1, Threads: 1}, true, true, ""},
	}
	for _, tc := range cases {
		ok, stale, err := verifyPassword(tc.pw, h1, tc.want)
		if ok != tc.ok || stale != tc.stale || err != nil {
			t.Errorf("verify %q: ok %v stale %v err %v; want %v %v", tc.pw, ok, stale, err, tc.ok, tc.stale)
		}
	}
}

func TestPasswordHashMalformed(t *testing.T) {
	good, _ := hashPassword("pw", testPW)
	f := strings.Split(good, "$")
	for name, h := range map[string]string{
		"empty":            "",
		"bcrypt":           "$2a$10$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234",
		"argon2i":          strings.Replace(good, "argon2id", "argon2i", 1),
		"other version":    strings.Replace(good, "v=19", "v=16", 1),
		"huge memory":      strings.Replace(good, "m=64", "m=4294967295", 1),
		"huge time":        strings.Replace(good, "t=1", "t=1000000", 1),
		"zero threads":     strings.Replace(good, "p=1", "p=0", 1),
		"threads overflow": strings.Replace(good, "p=1", "p=257", 1),
		"params with junk": strings.Replace(good, "p=1", "p=1,x=2", 1),
		"leading zero":     strings.Replace(good, "m=64", "m=064", 1),
		"salt not base64":  strings.Join([]string{f[0], f[1], f[2], f[3], "!!!!", f[5]}, "$"),
		"short key":        strings.Join([]string{f[0], f[1], f[2], f[3], f[4], "AAAA"}, "$"),
		"missing field":    strings.Join(f[:5], "$"),
		"padded base64":    strings.Join([]string{f[0], f[1], f[2], f[3], f[4] + "==", f[5]}, "$"),
		"extra field":      good + "$x",
	} {
		start := time.Now()
		ok, _, err := verifyPassword("pw", h, testPW)
		if ok || !errors.Is(err, errBadHash) {
			t.Errorf("%s: ok %v, err %v; want errBadHash", name, ok, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: took %v: parameters from the record were used before checking", name, d)
		}
	}
}

func TestLockout(t *testing.T) {
	p := ThrottlePolicy{EmailFree: 3, AddrFree: 10, Base: time.Second, Max: 10 * time.Second, Forget: time.Hour}
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{
		{0, 0}, {1, 0}, {3, 0}, {4, time.Second}, {5, 2 * time.Second}, {6, 4 * time.Second},
		{7, 8 * time.Second}, {8, 10 * time.Second}, {100, 10 * time.Second}, {1 << 30, 10 * time.Second},
	} {
		if got := p.lockout(tc.n, p.EmailFree); got != tc.want {
			t.Errorf("lockout after %d failures: %v, want %v", tc.n, got, tc.want)
		}
	}
	bad := []ThrottlePolicy{
		{Base: 0, Max: time.Second, Forget: time.Hour},
		{Base: time.Second, Max: time.Millisecond, Forget: time.Hour},
		{Base: time.Second, Max: time.Hour, Forget: time.Minute},
		{EmailFree: -1, Base: time.Second, Max: time.Second, Forget: time.Second},
	}
	for _, p := range bad {
		if p.check() == nil {
			t.Errorf("policy %+v accepted", p)
		}
	}
}

func TestAddrKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.7:51234", "addr:192.0.2.7"},
		{"192.0.2.7", "addr:192.0.2.7"},
		{"[::ffff:192.0.2.7]:80", "addr:192.0.2.7"},
		{"[2001:db8:1:2:3:4:5:6]:443", "addr:2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "addr:2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:80", "addr:fe80::/64"},
		{"", ""},
		{"example.com:80", ""},
		{"'; DROP TABLE x; --", ""},
	} {
		got, err := addrKey(tc.in)
		if tc.want == "" {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("addrKey(%q) = %q, %v; want ErrInvalid", tc.in, got, err)
			}
			continue
		}
		if got != tc.want || err != nil {
			t.Errorf("addrKey(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func ids(ns ...int) []media.ID {
	var out []media.ID
	for _, n := range ns {
		out = append(out, media.ID{byte(n)})
	}
	return out
}

func TestListOps(t *testing.T) {
	id := func(n int) media.ID { return media.ID{byte(n)} }
	none := media.ID{}
	full := make([]media.ID, MaxListTitles)
	for i := range full {
		full[i] = media.ID{1, byte(i >> 8), byte(i)}
	}
	cases := []struct {
		name string
		op   func([]media.ID) ([]media.ID, error)
		in   []media.ID
		want []media.ID
		err  error
	}{
		{"add to empty", func(l []media.ID) ([]media.ID, error) { return listAdd(l, id(1), none) }, nil, ids(1), nil},
		{"add at end", func(l []media.ID) ([]media.ID, error) { return listAdd(l, id(3), none) }, ids(1, 2), ids(1, 2, 3), nil},
		{"add before first", func(l []media.ID) ([]media.ID, error) { return listAdd(l, id(3), id(1)) }, ids(1, 2), ids(3, 1, 2), nil},
		{"add before middle", func(l []media.ID) ([]media.ID, error) { return listAdd(l, id(3), id(2)) }, ids(1, 2), ids(1, 3, 2), nil},
		{"add twice", func(l []media.ID) ([]media.ID, error) { return listAdd(l, id(2), none) }, ids(1, 2), nil, ErrAlreadyListed},
		{"add before unlisted", func(l []media.ID) ([]media.ID, error) { return listAdd(l, id(3), id(9)) }, ids(1, 2), nil, ErrNotListed},
		{"add to full", func(l []media.ID) ([]media.ID, error) { return listAdd(l, id(3), none) }, full, nil, ErrListFull},
		{"move to end", func(l []media.ID) ([]media.ID, error) { return listMove(l, id(1), none) }, ids(1, 2, 3), ids(2, 3, 1), nil},
		{"move to front", func(l []media.ID) ([]media.ID, error) { return listMove(l, id(3), id(1)) }, ids(1, 2, 3), ids(3, 1, 2), nil},
		{"move down", func(l []media.ID) ([]media.ID, error) { return listMove(l, id(1), id(3)) }, ids(1, 2, 3), ids(2, 1, 3), nil},
		{"move before itself", func(l []media.ID) ([]media.ID, error) { return listMove(l, id(2), id(2)) }, ids(1, 2, 3), ids(1, 2, 3), nil},
		{"move before its successor", func(l []media.ID) ([]media.ID, error) { return listMove(l, id(1), id(2)) }, ids(1, 2, 3), ids(1, 2, 3), nil},
		{"move unlisted", func(l []media.ID) ([]media.ID, error) { return listMove(l, id(9), none) }, ids(1, 2), nil, ErrNotListed},
		{"move unlisted before itself", func(l []media.ID) ([]media.ID, error) { return listMove(l, id(9), id(9)) }, ids(1, 2), nil, ErrNotListed},
		{"move before unlisted", func(l []media.ID) ([]media.ID, error) { return listMove(l, id(1), id(9)) }, ids(1, 2), nil, ErrNotListed},
		{"remove", func(l []media.ID) ([]media.ID, error) { return listRemove(l, id(2)) }, ids(1, 2, 3), ids(1, 3), nil},
		{"remove last one", func(l []media.ID) ([]media.ID, error) { return listRemove(l, id(1)) }, ids(1), []media.ID{}, nil},
		{"remove unlisted", func(l []media.ID) ([]media.ID, error) { return listRemove(l, id(9)) }, ids(1), nil, ErrNotListed},
	}
	for _, tc := range cases {
		in := slices.Clone(tc.in)
		got, err := tc.op(in)
		if !errors.Is(err, tc.err) || tc.err == nil && !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, %v; want %v, %v", tc.name, got, err, tc.want, tc.err)
		}
		if !slices.Equal(in, tc.in) {
			t.Errorf("%s: changed its input", tc.name)
		}
	}
}

func TestFoldText(t *testing.T) {
	for in, want := range map[string]string{
		"":                   "",
		"  The   MATRIX\t\n": "the matrix",
		"ÜBER Straße":        "über straße",
		"50%_OFF\\":          "50%_off\\",
		"a\u00a0b":           "a b", // no-break space is space
		"line\nbreak":        "line break",
		"ΣΊΣΥΦΟΣ":            "σίσυφοσ",
		"\u2028 \u2029":      "",
	} {
		if got := FoldText(in); got != want {
			t.Errorf("FoldText(%q) = %q, want %q", in, got, want)
		}
	}
	key := SearchKey(Title{Name: "A  Film", Actors: []string{"Ann"}, Directors: []string{"Dee"}, Producers: []string{"Pat"}})
	if key != "a film\nann\ndee" {
		t.Errorf("SearchKey = %q", key)
	}
}

func TestMoneyString(t *testing.T) {
	for m, want := range map[Money]string{
		{}:                               "no price",
		{Amount: 399, Currency: "EUR"}:   "3.99 EUR",
		{Amount: 5, Currency: "USD"}:     "0.05 USD",
		{Amount: -1250, Currency: "GBP"}: "-12.50 GBP",
		{Amount: 0, Currency: "EUR"}:     "0.00 EUR",
	} {
		if got := m.String(); got != want {
			t.Errorf("%#v: %q, want %q", m, got, want)
		}
	}
}

func TestCheckRecord(t *testing.T) {
	ok := Account{ID: "a", Email: "a@example.com"}
	for name, rec := range map[string]any{
		"NUL":           Account{ID: "a", Email: "a@example.com", Name: "x\x00"},
		"bad UTF-8":     Title{Catalog: "c", Name: "\xc3"},
		"empty key":     Box{Ref: "", Account: "a", Code: "c"},
		"long key":      Catalog{ID: CatalogID(strings.Repeat("c", MaxKeyLen+1))},
		"year 0":        Session{Account: "a", Created: time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)},
		"zero seq":      Entry{Account: "a"},
		"NUL in a list": Title{Catalog: "c", Actors: []string{"ok", "\x00"}},
		"not a record":  42,
	} {
		if err := CheckRecord(rec); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if err := CheckRecord(ok); err != nil {
		t.Errorf("good account: %v", err)
	}
}

// TestEntryHash checks that every field of an entry is covered by its
// hash.
func TestEntryHash(t *testing.T) {
	e := Entry{Account: "a", Seq: 1, At: time.Unix(1, 0), Kind: EntryCharge, Amount: Money{Amount: 1, Currency: "EUR"},
		Purchase: "p", Box: "b", Title: media.ID{1}, Memo: "m", Prev: [32]byte{1}}
	h := EntryHash(e)
	v := reflect.ValueOf(&e).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		if name == "Hash" {
			continue
		}
		changed := e
		f := reflect.ValueOf(&changed).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Uint64:
			f.SetUint(f.Uint() + 1)
		case reflect.Array:
			f.Index(0).SetUint(f.Index(0).Uint() + 1)
		case reflect.Struct:
			switch x := f.Addr().Interface().(type) {
			case *time.Time:
				*x = x.Add(time.Microsecond)
			case *Money:
				x.Amount++
			default:
				t.Fatalf("field %s of type %T not covered by the test", name, x)
			}
		default:
			t.Fatalf("field %s of kind %v not covered by the test", name, f.Kind())
		}
		if EntryHash(changed) == h {
			t.Errorf("changing %s keeps the hash", name)
		}
	}
	// The currency alone too (a struct field inside Money).
	c := e
	c.Amount.Currency = "USD"
	if EntryHash(c) == h {
		t.Error("changing the currency keeps the hash")
	}
}
