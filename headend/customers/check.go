package customers

import (
	"fmt"
	"time"
)

// MaxKeyLen bounds the strings records are found by: IDs, e-mail
// addresses, activation codes, throttle keys.
const MaxKeyLen = 1024

// CheckRecord refuses a record no backend may store: text that is not
// UTF-8 or holds a NUL, times outside the years 1 to 9999, or a missing
// key. Every backend calls it before it writes, so both refuse the same
// values.
func CheckRecord(rec any) error {
	var c checker
	switch r := rec.(type) {
	case Account:
		c.key("ID", string(r.ID))
		c.key("Email", r.Email)
		c.str("Name", r.Name)
		c.str("Street", r.Address.Street)
		c.str("City", r.Address.City)
		c.str("Postcode", r.Address.Postcode)
		c.str("Region", r.Address.Region)
		c.str("PasswordHash", r.PasswordHash)
		c.str("PaymentToken", r.PaymentToken)
		c.str("Status", string(r.Status))
		c.str("StatusReason", r.StatusReason)
		for _, id := range r.Catalogs {
			c.key("Catalogs", string(id))
		}
		c.time("Created", r.Created)
		c.time("Updated", r.Updated)
	case Session:
		c.key("Account", string(r.Account))
		c.str("CSRF", r.CSRF)
		c.str("Addr", r.Addr)
		c.time("Created", r.Created)
		c.time("Expires", r.Expires)
	case Throttle:
		c.key("Key", r.Key)
		c.time("Last", r.Last)
		c.time("Until", r.Until)
	case Box:
		c.key("Ref", string(r.Ref))
		c.key("Account", string(r.Account))
		c.key("Code", r.Code)
		c.str("Supplier", r.Supplier)
		c.str("Region", r.Region)
		c.time("Added", r.Added)
		c.time("Activated", r.Activated)
	case Catalog:
		c.key("ID", string(r.ID))
		c.str("Vendor", r.Vendor)
		c.str("Name", r.Name)
	case Title:
		c.key("Catalog", string(r.Catalog))
		c.str("Name", r.Name)
		c.str("Genre", r.Genre)
		c.strs("Actors", r.Actors)
		c.strs("Directors", r.Directors)
		c.strs("Producers", r.Producers)
		c.str("Language", r.Language)
		c.str("Rating", r.Rating)
		c.str("Rent.Currency", r.Rent.Currency)
		c.str("Buy.Currency", r.Buy.Currency)
		c.strs("Regions", r.Regions)
		c.time("PublishAt", r.PublishAt)
	case List:
		c.key("Box", string(r.Box))
		c.time("Updated", r.Updated)
	case Purchase:
		c.key("ID", string(r.ID))
		c.key("Account", string(r.Account))
		c.key("Box", string(r.Box))
		c.str("Kind", string(r.Kind))
		c.str("Price.Currency", r.Price.Currency)
		c.str("ChargeRef", r.ChargeRef)
		c.time("At", r.At)
		c.time("Expires", r.Expires)
	case Entry:
		c.key("Account", string(r.Account))
		if r.Seq == 0 {
			c.fail("Seq", "zero")
		}
		c.str("Kind", string(r.Kind))
		c.str("Amount.Currency", r.Amount.Currency)
		c.str("Purchase", string(r.Purchase))
		c.str("Box", string(r.Box))
		c.str("Memo", r.Memo)
		c.time("At", r.At)
	default:
		return fmt.Errorf("%w: %T is not a record", ErrInvalid, rec)
	}
	if c.err != nil {
		return fmt.Errorf("%w: %T: %w", ErrInvalid, rec, c.err)
	}
	return nil
}

type checker struct{ err error }

func (c *checker) fail(field, why string) {
	if c.err == nil {
		c.err = fmt.Errorf("%s %s", field, why)
	}
}

func (c *checker) str(field, s string) {
	if err := ValidText(s); err != nil {
		c.fail(field, err.Error())
	}
}

func (c *checker) strs(field string, ss []string) {
	for _, s := range ss {
		c.str(field, s)
	}
}

// key is a string that names or finds a record: not empty, and at most
// MaxKeyLen bytes (PostgreSQL's B-tree entries and bbolt's keys are
// bounded).
func (c *checker) key(field, s string) {
	if s == "" {
		c.fail(field, "empty")
	}
	if len(s) > MaxKeyLen {
		c.fail(field, fmt.Sprintf("longer than %d bytes", MaxKeyLen))
	}
	c.str(field, s)
}

func (c *checker) time(field string, t time.Time) {
	if err := ValidTime(t); err != nil {
		c.fail(field, err.Error())
	}
}
