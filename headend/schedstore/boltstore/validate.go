package boltstore

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/boxswarm/boxswarm/headend/schedstore"
)

// The values refused here are those the PostgreSQL backend cannot store
// (text without NUL, in UTF-8; timestamps it can round-trip); bbolt could
// keep them, but a store that accepted them would stop being portable to
// the other backend. storetest holds both to the same rules.

// maxCodeLen bounds activation codes, which are keys.
const maxCodeLen = 1024

var (
	errNotUTF8   = errors.New("not valid UTF-8")
	errNUL       = errors.New("contains a NUL byte")
	errTimeRange = errors.New("outside the years 1 to 9999")
)

func checkString(s string) error {
	if !utf8.ValidString(s) {
		return errNotUTF8
	}
	if strings.IndexByte(s, 0) >= 0 {
		return errNUL
	}
	return nil
}

func checkTime(t time.Time) error {
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
			err = checkTime(f.t)
		} else {
			err = checkString(f.s)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	return nil
}

func checkBox(b schedstore.Box) error {
	return checkFields(str("account", b.Account), str("cluster", b.Cluster), str("NAT", string(b.NAT)),
		str("region", b.Location.Region), str("ISP", b.Location.ISP), str("piece address", b.PieceAddr),
		tm("activated", b.Activated), tm("last seen", b.LastSeen))
}

func checkTransfer(t schedstore.Transfer) error {
	if _, ok := stateCodes[t.State]; !ok {
		return fmt.Errorf("state %q unknown", t.State)
	}
	return checkFields(str("outcome", t.Outcome), tm("created", t.Created), tm("updated", t.Updated))
}

// checkCode checks a code being added; a code being used that fails it is
// simply unknown.
func checkCode(code string) error {
	if code == "" {
		return errors.New("empty")
	}
	if len(code) > maxCodeLen {
		return fmt.Errorf("%d bytes, more than %d", len(code), maxCodeLen)
	}
	return checkString(code)
}
