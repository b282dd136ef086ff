package schedstore

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// The Check functions refuse the values a backend must not store: text
// that is not UTF-8 or holds a NUL, and times outside the years 1 to 9999.
// PostgreSQL cannot store the first or round-trip the second; bbolt could,
// but a store that accepted them would not be portable to the other
// backend. Every backend calls them before it writes, and storetest holds
// them all to it.

// MaxCodeLen bounds activation codes, which are keys.
const MaxCodeLen = 1024

var (
	errNotUTF8   = errors.New("not valid UTF-8")
	errNUL       = errors.New("contains a NUL byte")
	errTimeRange = errors.New("outside the years 1 to 9999")
)

// CheckString checks text a backend stores.
func CheckString(s string) error {
	if !utf8.ValidString(s) {
		return errNotUTF8
	}
	if strings.IndexByte(s, 0) >= 0 {
		return errNUL
	}
	return nil
}

// CheckTime checks a time a backend stores.
func CheckTime(t time.Time) error {
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return errTimeRange
	}
	return nil
}

// field is a value to check, named for the error.
type field struct {
	name string
	s    string
	t    time.Time
	isT  bool
}

func str(name, s string) field          { return field{name: name, s: s} }
func tm(name string, t time.Time) field { return field{name: name, t: t, isT: true} }

func checkFields(fs ...field) error {
	for _, f := range fs {
		var err error
		if f.isT {
			err = CheckTime(f.t)
		} else {
			err = CheckString(f.s)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	return nil
}

// CheckBox checks a box record.
func CheckBox(b Box) error {
	return checkFields(str("account", b.Account), str("cluster", b.Cluster), str("NAT", string(b.NAT)),
		str("region", b.Location.Region), str("ISP", b.Location.ISP), str("piece address", b.PieceAddr),
		tm("activated", b.Activated), tm("last seen", b.LastSeen))
}

// CheckTitle checks a title record.
func CheckTitle(t Title) error { return checkFields(tm("publish at", t.PublishAt)) }

// CheckMeasurement checks a measurement record.
func CheckMeasurement(m Measurement) error { return checkFields(tm("at", m.At)) }

// CheckTransfer checks a transfer record.
func CheckTransfer(t Transfer) error {
	switch t.State {
	case TransferRequested, TransferRunning, TransferDone, TransferFailed:
	default:
		return fmt.Errorf("state %q unknown", t.State)
	}
	return checkFields(str("outcome", t.Outcome), tm("created", t.Created), tm("updated", t.Updated))
}

// CheckCode checks an activation code being added; a code being used that
// fails it is simply unknown.
func CheckCode(code string) error {
	if code == "" {
		return errors.New("empty")
	}
	if len(code) > MaxCodeLen {
		return fmt.Errorf("%d bytes, more than %d", len(code), MaxCodeLen)
	}
	return CheckString(code)
}
