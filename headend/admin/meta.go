package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/media"
)

// TitleMeta is what customer management shows and sells of a title: the
// "meta" of POST /v1/titles, and the import tool's -meta file.
//
//	{"catalog": "studio-a", "name": "The Film", "year": 2024, "genre": "Drama",
//	 "actors": ["A. Actor"], "directors": ["D. Rector"], "producers": [],
//	 "language": "en", "rating": "PG-13", "rent": "3.99 EUR", "buy": "12.99 EUR",
//	 "window": "48h", "regions": ["DE", "AT"]}
//
// Prices are an amount with two decimals and an ISO 4217 code; an empty
// price means not offered that way. The window is a Go duration (empty:
// customers.DefaultRentalWindow). Regions are codes such as "DE" or
// "US-CA", or "*" for everywhere. The catalog must exist (PUT
// /v1/catalogs/{id}).
type TitleMeta struct {
	Catalog   string   `json:"catalog"`
	Name      string   `json:"name"`
	Year      int      `json:"year,omitempty"`
	Genre     string   `json:"genre,omitempty"`
	Actors    []string `json:"actors,omitempty"`
	Directors []string `json:"directors,omitempty"`
	Producers []string `json:"producers,omitempty"`
	Language  string   `json:"language,omitempty"`
	Rating    string   `json:"rating,omitempty"`
	Rent      Price    `json:"rent,omitzero"`
	Buy       Price    `json:"buy,omitzero"`
	Window    Duration `json:"window,omitzero"`
	Regions   []string `json:"regions"`
}

// Limits of a title's metadata, the same as customer management's.
const (
	maxMetaFile  = 1 << 20
	maxMetaText  = 1000
	maxCatalogID = 100
	maxShortText = 100
	maxPeople    = 200
	maxRegions   = 1000
	maxWindow    = 10 * 365 * 24 * time.Hour
)

// ParseTitleMeta reads a title's metadata from JSON: one object, no
// unknown fields, nothing after it, then checked with Check.
func ParseTitleMeta(b []byte) (TitleMeta, error) {
	var m TitleMeta
	if len(b) > maxMetaFile {
		return m, fmt.Errorf("title metadata of %d bytes exceeds %d", len(b), maxMetaFile)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&m); err != nil {
		return TitleMeta{}, fmt.Errorf("title metadata: %w", err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return TitleMeta{}, errors.New("title metadata: more after the object")
	}
	if err := m.Check(); err != nil {
		return TitleMeta{}, err
	}
	return m, nil
}

// Check reports every problem with the metadata at once.
func (m TitleMeta) Check() error {
	errs := []error{
		checkText("catalog", m.Catalog, 1, maxCatalogID),
		checkText("name", m.Name, 1, maxMetaText),
		checkText("genre", m.Genre, 0, maxShortText),
		checkText("language", m.Language, 0, maxShortText),
		checkText("rating", m.Rating, 0, maxShortText),
	}
	for _, p := range []struct {
		name   string
		people []string
	}{{"actors", m.Actors}, {"directors", m.Directors}, {"producers", m.Producers}} {
		if len(p.people) > maxPeople {
			errs = append(errs, fmt.Errorf("%d %s, at most %d", len(p.people), p.name, maxPeople))
			continue
		}
		for i, s := range p.people {
			errs = append(errs, checkText(fmt.Sprintf("%s[%d]", p.name, i), s, 1, maxMetaText))
		}
	}
	if m.Year < 0 || m.Year > 9999 {
		errs = append(errs, fmt.Errorf("year %d: want 0 (unknown) to 9999", m.Year))
	}
	if m.Window < 0 || time.Duration(m.Window) > maxWindow {
		errs = append(errs, fmt.Errorf("rental window %s: want 0 (the default) to %s", time.Duration(m.Window), maxWindow))
	}
	switch {
	case len(m.Regions) == 0:
		errs = append(errs, errors.New("no regions: the title could be sold nowhere"))
	case len(m.Regions) > maxRegions:
		errs = append(errs, fmt.Errorf("%d regions, at most %d", len(m.Regions), maxRegions))
	default:
		for _, r := range m.Regions {
			if r != customers.WildcardRegion && !validRegion(r) {
				errs = append(errs, fmt.Errorf("region %q: want upper-case letters, digits and hyphens such as DE or US-CA, or *", r))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("title metadata: %w", err)
	}
	return nil
}

func checkText(name, s string, minLen, maxLen int) error {
	if err := customers.ValidText(s); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if len(strings.TrimSpace(s)) < minLen {
		return fmt.Errorf("%s is empty", name)
	}
	if len(s) > maxLen {
		return fmt.Errorf("%s is longer than %d bytes", name, maxLen)
	}
	return nil
}

func validRegion(r string) bool {
	ok := len(r) >= 1 && len(r) <= 16
	for _, c := range []byte(r) {
		ok = ok && (c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-')
	}
	return ok
}

// Title is the catalog entry for title id, published at publishAt.
func (m TitleMeta) Title(id media.ID, publishAt time.Time) customers.Title {
	return customers.Title{
		Media: id, Catalog: customers.CatalogID(m.Catalog), Name: m.Name, Year: m.Year, Genre: m.Genre,
		Actors: m.Actors, Directors: m.Directors, Producers: m.Producers, Language: m.Language, Rating: m.Rating,
		Rent: customers.Money(m.Rent), Buy: customers.Money(m.Buy), Window: time.Duration(m.Window),
		Regions: m.Regions, PublishAt: publishAt,
	}
}

// Price is customers.Money written as text: "3.99 EUR" (the amount with
// exactly two decimals, or none, then a space and an ISO 4217 code).
type Price customers.Money

// IsZero reports "not offered".
func (p Price) IsZero() bool { return customers.Money(p).IsZero() }

// maxAmount keeps amounts (in cents) far from overflow.
const maxAmount = 1e15

// MarshalText writes "3.99 EUR".
func (p Price) MarshalText() ([]byte, error) {
	if p.IsZero() {
		return []byte{}, nil
	}
	if p.Amount < 0 {
		return nil, fmt.Errorf("price %d %s is negative", p.Amount, p.Currency)
	}
	return fmt.Appendf(nil, "%d.%02d %s", p.Amount/100, p.Amount%100, p.Currency), nil
}

// UnmarshalText reads "3.99 EUR", "4 EUR" or "" (not offered).
func (p *Price) UnmarshalText(b []byte) error {
	s := string(b)
	if s == "" {
		*p = Price{}
		return nil
	}
	num, cur, ok := strings.Cut(s, " ")
	bad := fmt.Errorf("price %q: want an amount and a currency code, such as \"3.99 EUR\"", s)
	if !ok || len(cur) != 3 || strings.Trim(cur, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		return bad
	}
	whole, cents, dot := strings.Cut(num, ".")
	if whole == "" || len(whole) > 13 || strings.Trim(whole, "0123456789") != "" ||
		dot && (len(cents) != 2 || strings.Trim(cents, "0123456789") != "") {
		return bad
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return bad
	}
	amount := w * 100
	if dot {
		c, _ := strconv.ParseInt(cents, 10, 64)
		amount += c
	}
	if amount >= maxAmount {
		return bad
	}
	*p = Price{Amount: amount, Currency: cur}
	return nil
}

// Duration is a time.Duration written as Go writes it ("48h", "90m").
type Duration time.Duration

// MarshalText writes the duration as time.Duration.String does.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(time.Duration(d).String()), nil
}

// UnmarshalText reads what time.ParseDuration reads; "" is zero.
func (d *Duration) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w", b, err)
	}
	*d = Duration(v)
	return nil
}
