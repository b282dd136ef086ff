package evdev

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/board/remote"
)

func TestParseRoundTrip(t *testing.T) {
	in := []Event{
		{Time: 1700000000*time.Second + 123456*time.Microsecond, Type: EvKey, Code: keyUp, Value: Press},
		{Time: 1700000000*time.Second + 123456*time.Microsecond, Type: EvSyn, Code: SynReport},
		{Time: 5 * time.Second, Type: EvMsc, Code: 4, Value: -7},
	}
	var b []byte
	for _, e := range in {
		b = Append(b, e)
	}
	if len(b) != len(in)*EventSize {
		t.Fatalf("encoded %d bytes, want %d", len(b), len(in)*EventSize)
	}
	out, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(out) != fmt.Sprint(in) {
		t.Fatalf("parsed %v, want %v", out, in)
	}
	for i := range in {
		if out[i].Time != in[i].Time {
			t.Errorf("event %d time %v, want %v", i, out[i].Time, in[i].Time)
		}
	}
	if _, err := Parse(b[:len(b)-1]); err == nil || !strings.Contains(err.Error(), "71 bytes") {
		t.Errorf("partial record: err = %v, want one naming 71 bytes", err)
	}
}

func TestKeyFor(t *testing.T) {
	tests := []struct {
		code uint16
		want remote.Key
	}{
		// What QEMU's sendkey types on a virtio keyboard.
		{103, remote.Up}, {108, remote.Down}, {105, remote.Left}, {106, remote.Right},
		{28, remote.OK}, {1, remote.Back}, {57, remote.PlayPause}, {14, remote.Delete},
		{2, remote.Char('1')}, {10, remote.Char('9')}, {11, remote.Char('0')},
		{16, remote.Char('Q')}, {25, remote.Char('P')}, {30, remote.Char('A')}, {38, remote.Char('L')},
		{44, remote.Char('Z')}, {50, remote.Char('M')},
		{59, remote.Home}, {60, remote.Menu}, {61, remote.Info},
		{63, remote.Rewind}, {64, remote.PlayPause}, {65, remote.FastForward}, {66, remote.Stop},
		{104, remote.PageUp}, {109, remote.PageDown}, {102, remote.Home}, {111, remote.Delete},
		// Keypad digits and a real remote's media keys.
		{82, remote.Char('0')}, {79, remote.Char('1')}, {73, remote.Char('9')}, {96, remote.OK},
		{0x160, remote.OK}, {158, remote.Back}, {164, remote.PlayPause}, {168, remote.Rewind},
		{208, remote.FastForward}, {128, remote.Stop}, {139, remote.Menu}, {172, remote.Home},
		{0x200, remote.Char('0')}, {0x209, remote.Char('9')}, {0x192, remote.PageUp},
	}
	for _, tt := range tests {
		got, ok := KeyFor(tt.code)
		if !ok || got != tt.want {
			t.Errorf("KeyFor(%d) = %v, %v, want %v", tt.code, got, ok, tt.want)
		}
	}
	// Modifiers, keypad operators, mouse buttons and out-of-range codes.
	for _, code := range []uint16{0, 12, 15, 26, 29, 42, 54, 56, 74, 78, 0x110, 0x2ff, 0xffff} {
		if k, ok := KeyFor(code); ok {
			t.Errorf("KeyFor(%d) = %v, want none", code, k)
		}
	}
}

// Every digit and letter must be typeable: activation codes use them all.
func TestEveryCharacterReachable(t *testing.T) {
	reach := map[remote.Key]bool{}
	for c := range maxCode + 1 {
		if k, ok := KeyFor(uint16(c)); ok {
			reach[k] = true
		}
	}
	for _, r := range "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ" {
		if !reach[remote.Char(r)] {
			t.Errorf("no key code types %c", r)
		}
	}
	for k := remote.Up; k.Valid() && k < remote.Key(100); k++ {
		if !reach[k] {
			t.Errorf("no key code gives %v", k)
		}
	}
}

func frame(evs ...Event) []Event { return append(evs, Event{Type: EvSyn, Code: SynReport}) }

func key(code uint16, v int32) Event { return Event{Type: EvKey, Code: code, Value: v} }

func TestTranslator(t *testing.T) {
	tests := []struct {
		name string
		in   []Event
		want []remote.Key
	}{
		{"press then release", append(frame(key(keyDown, Press)), frame(key(keyDown, Release))...), []remote.Key{remote.Down}},
		{"nothing before the frame ends", []Event{key(keyDown, Press)}, nil},
		{"held arrow repeats", append(frame(key(keyDown, Press)), append(frame(key(keyDown, Repeat)), frame(key(keyDown, Repeat))...)...),
			[]remote.Key{remote.Down, remote.Down, remote.Down}},
		{"held OK does not", append(frame(key(keyEnter, Press)), frame(key(keyEnter, Repeat))...), []remote.Key{remote.OK}},
		{"scan codes and modifiers ignored", frame(Event{Type: EvMsc, Code: 4, Value: 0x70028}, key(42, Press), key(30, Press)),
			[]remote.Key{remote.Char('A')}},
		{"two keys in one frame", frame(key(2, Press), key(3, Press)), []remote.Key{remote.Char('1'), remote.Char('2')}},
		{"dropped frame discarded", append(
			[]Event{key(keyUp, Press), {Type: EvSyn, Code: SynDropped}, key(keyEnter, Press)},
			append(frame(key(keyDown, Press)), frame(key(keyLeft, Press))...)...),
			[]remote.Key{remote.Left}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr Translator
			var got []remote.Key
			for _, e := range tt.in {
				got = append(got, tr.Feed(e)...)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("keys %v, want %v", got, tt.want)
			}
		})
	}
}

// A PC keyboard's key capabilities as sysfs prints them.
const atKeyboard = "402000000 3803078f800d001 feffffdfffefffff fffffffffffffffe"

func TestParseBitmap(t *testing.T) {
	b, err := ParseBitmap(atKeyboard + "\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []int{1, 2, 28, 30, 57, 103, 108, 105, 106} {
		if !b.Has(c) {
			t.Errorf("bit %d not set", c)
		}
	}
	for _, c := range []int{0, 0x110, 0x2ff, -1, 100000} {
		if b.Has(c) {
			t.Errorf("bit %d set", c)
		}
	}
	if n, err := Score(b); err != nil || n < 60 {
		t.Errorf("Score(AT keyboard) = %d, %v; want at least 60 keys", n, err)
	}
	for _, bad := range []string{"", "  ", "xyz", "1 2 3 4 5 6 7 8 9 10 11 12 13", "10000000000000000"} {
		if _, err := ParseBitmap(bad); err == nil {
			t.Errorf("ParseBitmap(%q) accepted", bad)
		}
	}
}

// bitmap formats codes the way sysfs does.
func bitmap(codes ...int) string {
	words := make([]uint64, 1)
	for _, c := range codes {
		for c/64 >= len(words) {
			words = append(words, 0)
		}
		words[c/64] |= 1 << (c % 64)
	}
	var parts []string
	for i := len(words) - 1; i >= 0; i-- {
		parts = append(parts, fmt.Sprintf("%x", words[i]))
	}
	return strings.Join(parts, " ")
}

type fakeDev struct {
	event      string
	name       string
	ev, keys   string
	brokenName bool
}

func fakeSysfs(t *testing.T, devs []fakeDev) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range devs {
		caps := filepath.Join(dir, d.event, "device", "capabilities")
		if err := os.MkdirAll(caps, 0o755); err != nil {
			t.Fatal(err)
		}
		write := func(p, s string) {
			if err := os.WriteFile(p, []byte(s+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if !d.brokenName {
			write(filepath.Join(dir, d.event, "device", "name"), d.name)
		}
		write(filepath.Join(caps, "ev"), d.ev)
		write(filepath.Join(caps, "key"), d.keys)
	}
	return dir
}

func TestFinder(t *testing.T) {
	power := fakeDev{event: "event0", name: "Power Button", ev: bitmap(EvSyn, EvKey), keys: bitmap(116)}
	mouse := fakeDev{event: "event1", name: "QEMU Virtio Tablet", ev: bitmap(EvSyn, EvKey, 3), keys: bitmap(0x110, 0x111, 0x112)}
	kbd := fakeDev{event: "event10", name: "QEMU Virtio Keyboard", ev: bitmap(EvSyn, EvKey, EvMsc, 0x11, EvRep), keys: atKeyboard}
	arrowsOnly := fakeDev{event: "event2", name: "Gamepad", ev: bitmap(EvKey), keys: bitmap(keyUp, keyDown, keyLeft, keyRight)}
	smallRemote := fakeDev{event: "event3", name: "gpio-ir remote", ev: bitmap(EvKey), keys: bitmap(keyUp, keyDown, keyLeft, keyRight, keyOK, keyBack)}
	broken := fakeDev{event: "event4", brokenName: true, ev: "1", keys: "1"}

	tests := []struct {
		name     string
		devs     []fakeDev
		wantPath string
		wantName string
		wantErr  string
	}{
		{"keyboard among others", []fakeDev{power, mouse, kbd, arrowsOnly, broken}, "event10", "QEMU Virtio Keyboard", ""},
		{"bigger keyboard beats small remote", []fakeDev{smallRemote, kbd}, "event10", "QEMU Virtio Keyboard", ""},
		{"small remote alone", []fakeDev{power, smallRemote}, "event3", "gpio-ir remote", ""},
		{"no remote", []fakeDev{power, mouse, arrowsOnly}, "", "", "no enter, OK or select key"},
		{"nothing at all", nil, "", "", "no event devices"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := Finder{SysDir: fakeSysfs(t, tt.devs), DevDir: "/dev/input"}
			c, err := f.Find()
			if tt.wantErr != "" {
				if !errors.Is(err, ErrNoRemote) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrNoRemote mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Path != "/dev/input/"+tt.wantPath || c.Name != tt.wantName {
				t.Fatalf("found %+v, want %s %q", c, tt.wantPath, tt.wantName)
			}
		})
	}
}

func TestFinderWaitGivesUp(t *testing.T) {
	f := Finder{SysDir: t.TempDir()}
	ctx, cancel := contextWithTimeout(t, 150*time.Millisecond)
	defer cancel()
	_, err := f.Wait(ctx)
	if !errors.Is(err, ErrNoRemote) || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("err = %v", err)
	}
}

func contextWithTimeout(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), d)
}

func FuzzEvents(f *testing.F) {
	var b []byte
	for _, e := range frame(key(keyDown, Press), key(keyDown, Repeat), key(30, Press)) {
		b = Append(b, e)
	}
	f.Add(b)
	f.Add(b[:30])
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, err := Parse(data)
		if err != nil {
			if len(data)%EventSize == 0 {
				t.Fatalf("rejected %d bytes: %v", len(data), err)
			}
			return
		}
		if len(evs) != len(data)/EventSize {
			t.Fatalf("%d events from %d bytes", len(evs), len(data))
		}
		var tr Translator
		for i, e := range evs {
			// Type, code and value come back byte for byte.
			again := Append(nil, e)
			if !bytes.Equal(again[16:], data[i*EventSize+16:(i+1)*EventSize]) {
				t.Fatalf("event %d re-encodes as %x", i, again)
			}
			for _, k := range tr.Feed(e) {
				if !k.Valid() {
					t.Fatalf("translator produced invalid key %v from %v", k, e)
				}
			}
		}
	})
}

func FuzzBitmap(f *testing.F) {
	f.Add(atKeyboard)
	f.Add("120013")
	f.Add("0")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseBitmap(s)
		if err != nil {
			return
		}
		for c := -1; c <= maxCode+1; c++ {
			_ = b.Has(c)
		}
		var codes []int
		for c := range len(b) * 64 {
			if b.Has(c) {
				codes = append(codes, c)
			}
		}
		again, err := ParseBitmap(bitmap(codes...))
		if err != nil {
			t.Fatalf("re-parsing %q: %v", bitmap(codes...), err)
		}
		for c := range len(b) * 64 {
			if again.Has(c) != b.Has(c) {
				t.Fatalf("bit %d differs after a round trip of %q", c, s)
			}
		}
		_, _ = Score(b)
	})
}
