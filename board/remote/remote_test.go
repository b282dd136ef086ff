package remote

import "testing"

func TestChar(t *testing.T) {
	tests := []struct {
		in     rune
		want   string
		digit  int
		isDig  bool
		isChar bool
	}{
		{'0', "0", 0, true, true},
		{'7', "7", 7, true, true},
		{'a', "A", 0, false, true},
		{'Z', "Z", 0, false, true},
		{'-', "None", 0, false, false},
		{'é', "None", 0, false, false},
		{' ', "None", 0, false, false},
	}
	for _, tt := range tests {
		k := Char(tt.in)
		if got := k.String(); got != tt.want {
			t.Errorf("Char(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
		if _, ok := k.Rune(); ok != tt.isChar {
			t.Errorf("Char(%q).Rune() ok = %v, want %v", tt.in, ok, tt.isChar)
		}
		d, ok := k.Digit()
		if ok != tt.isDig || d != tt.digit {
			t.Errorf("Char(%q).Digit() = %d, %v, want %d, %v", tt.in, d, ok, tt.digit, tt.isDig)
		}
		if k.Valid() != tt.isChar {
			t.Errorf("Char(%q).Valid() = %v", tt.in, k.Valid())
		}
	}
}

func TestFunctionKeys(t *testing.T) {
	seen := map[string]Key{}
	for k := Up; k < lastFunction; k++ {
		if !k.Valid() {
			t.Errorf("%d not valid", k)
		}
		s := k.String()
		if s == "" || s == "None" {
			t.Errorf("key %d has no name", k)
		}
		if o, dup := seen[s]; dup {
			t.Errorf("keys %d and %d are both named %q", o, k, s)
		}
		seen[s] = k
		if _, ok := k.Rune(); ok {
			t.Errorf("function key %s claims a rune", s)
		}
	}
	for _, k := range []Key{None, lastFunction, -1, charBase + 1} {
		if k.Valid() {
			t.Errorf("%v (%d) valid", k, int32(k))
		}
	}
	if got := Key(9999).String(); got != "Key(9999)" {
		t.Errorf("unknown key prints %q", got)
	}
}
