package bootctl

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// memDev is an in-memory partition that can simulate a power cut: after
// budget more bytes have been written, further writes are dropped, and Sync
// fails, as if the box lost power mid-write.
type memDev struct {
	b      []byte
	budget int // bytes that may still be written; negative: unlimited
	syncs  int
}

func newDev(size int) *memDev { return &memDev{b: make([]byte, size), budget: -1} }

func (d *memDev) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(d.b)) {
		return 0, errors.New("offset out of range")
	}
	n := copy(p, d.b[off:])
	if n < len(p) {
		return n, errors.New("short read")
	}
	return n, nil
}

func (d *memDev) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(d.b)) {
		return 0, errors.New("offset out of range")
	}
	n := len(p)
	if d.budget >= 0 {
		n = min(n, d.budget)
		d.budget -= n
	}
	copy(d.b[off:], p[:n])
	if n < len(p) {
		return n, errors.New("power cut")
	}
	return n, nil
}

func (d *memDev) Sync() error {
	if d.budget == 0 {
		return errors.New("power cut")
	}
	d.syncs++
	return nil
}

const partOffset = 1 << 20 // the partition's place on the disk

func TestSlotText(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Slot
		ok   bool
	}{
		{"A", SlotA, true}, {"b", SlotB, true}, {"slot_a", SlotA, true}, {"SLOT_B", SlotB, true},
		{"", 0, false}, {"C", 0, false}, {"slot_c", 0, false},
	} {
		got, err := ParseSlot(c.in)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("ParseSlot(%q) = %v, %v", c.in, got, err)
		}
	}
	if SlotA.String() != "A" || SlotB.String() != "B" || Slot(7).String() != "Slot(7)" {
		t.Error("String")
	}
	if SlotA.Other() != SlotB || SlotB.Other() != SlotA {
		t.Error("Other")
	}
}

func st(a, b SlotState) State { return State{Slots: [2]SlotState{a, b}} }

func TestBootOrder(t *testing.T) {
	good := func(p uint8) SlotState { return SlotState{Priority: p, Successful: true} }
	trial := func(p, tries uint8) SlotState { return SlotState{Priority: p, TriesLeft: tries} }
	cases := []struct {
		name  string
		state State
		want  []Slot
	}{
		{"default", Default(), []Slot{SlotA, SlotB}},
		{"B higher", st(good(1), good(2)), []Slot{SlotB, SlotA}},
		{"tie A first", st(good(3), good(3)), []Slot{SlotA, SlotB}},
		{"tie A first even if B better off", st(trial(3, 1), good(3)), []Slot{SlotA, SlotB}},
		{"priority 0 never boots", st(SlotState{Priority: 0, Successful: true}, good(1)), []Slot{SlotB}},
		{"trial with tries", st(good(1), trial(2, 3)), []Slot{SlotB, SlotA}},
		{"trial out of tries", st(good(1), trial(2, 0)), []Slot{SlotA}},
		{"both bad", st(SlotState{}, SlotState{}), []Slot{}},
		{"both out of tries", st(trial(2, 0), trial(1, 0)), []Slot{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := c.state.BootOrder()
			if !slices.Equal(got, c.want) {
				t.Errorf("BootOrder() = %v, want %v", got, c.want)
			}
			a, ok := c.state.Active()
			if ok != (len(c.want) > 0) || (ok && a != c.want[0]) {
				t.Errorf("Active() = %v, %v", a, ok)
			}
		})
	}
}

func TestRules(t *testing.T) {
	cases := []struct {
		name  string
		start State
		do    func(*State)
		want  State
	}{
		{"attempt on successful slot uses no try", st(SlotState{2, 3, true}, SlotState{}),
			func(s *State) { s.BeginAttempt(SlotA) }, st(SlotState{2, 3, true}, SlotState{})},
		{"attempt on trial uses a try", st(SlotState{2, 3, false}, SlotState{}),
			func(s *State) { s.BeginAttempt(SlotA) }, st(SlotState{2, 2, false}, SlotState{})},
		{"attempt with no tries stays at 0", st(SlotState{}, SlotState{2, 0, false}),
			func(s *State) { s.BeginAttempt(SlotB) }, st(SlotState{}, SlotState{2, 0, false})},
		{"mark bad", st(SlotState{2, 3, true}, SlotState{1, 0, true}),
			func(s *State) { s.MarkBad(SlotA) }, st(SlotState{}, SlotState{1, 0, true})},
		{"mark good", st(SlotState{2, 3, false}, SlotState{1, 0, true}),
			func(s *State) { s.MarkGood(SlotA) }, st(SlotState{2, 3, true}, SlotState{1, 0, true})},
		{"trial on B demotes A", Default(),
			func(s *State) { s.SetTrial(SlotB, 3) }, st(SlotState{1, 0, true}, SlotState{2, 3, false})},
		{"trial keeps a bad other slot bad", st(SlotState{2, 0, true}, SlotState{}),
			func(s *State) { s.SetTrial(SlotA, 2) }, st(SlotState{2, 2, false}, SlotState{})},
		{"trial priorities never grow", st(SlotState{200, 0, true}, SlotState{255, 0, true}),
			func(s *State) { s.SetTrial(SlotA, 1); s.SetTrial(SlotB, 1); s.SetTrial(SlotA, 1) },
			st(SlotState{2, 1, false}, SlotState{1, 1, false})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := c.start
			c.do(&s)
			if s != c.want {
				t.Errorf("got %v, want %v", s, c.want)
			}
		})
	}
}

// TestScenarios plays whole update stories: what stage one, the
// supervisor and the updater do boot after boot.
func TestScenarios(t *testing.T) {
	// boot is one power-on: stage one picks and counts, then the image
	// either reports healthy (supervisor marks good) or does not.
	boot := func(s *State, healthy bool) (Slot, bool) {
		slot, ok := s.Active()
		if !ok {
			return 0, false
		}
		s.BeginAttempt(slot)
		if healthy {
			s.MarkGood(slot)
		}
		return slot, true
	}
	t.Run("trial never healthy rolls back", func(t *testing.T) {
		s := Default()
		s.SetTrial(SlotB, 3)
		for i := range 3 {
			if got, _ := boot(&s, false); got != SlotB {
				t.Fatalf("boot %d: %v, want B on trial", i, got)
			}
		}
		if got := s.BootOrder(); !slices.Equal(got, []Slot{SlotA}) {
			t.Fatalf("after tries ran out: %v, want [A]", got)
		}
		if got, _ := boot(&s, true); got != SlotA {
			t.Fatalf("fallback boot: %v", got)
		}
	})
	t.Run("healthy trial stays first", func(t *testing.T) {
		s := Default()
		s.SetTrial(SlotB, 3)
		boot(&s, false)
		boot(&s, true)
		for i := range 10 {
			if got, _ := boot(&s, false); got != SlotB {
				t.Fatalf("boot %d after healthy: %v", i, got)
			}
		}
		if s.Slots[SlotB].TriesLeft != 1 {
			t.Errorf("tries left %d, want 1 (no tries used once successful)", s.Slots[SlotB].TriesLeft)
		}
	})
	t.Run("both bad", func(t *testing.T) {
		s := Default()
		s.MarkBad(SlotA)
		s.MarkBad(SlotB)
		if _, ok := boot(&s, true); ok {
			t.Fatal("booted with both slots bad")
		}
		if len(s.BootOrder()) != 0 {
			t.Fatal(s.BootOrder())
		}
	})
	t.Run("update while the previous trial is fallback", func(t *testing.T) {
		s := Default()
		s.SetTrial(SlotB, 2)
		boot(&s, true) // B good
		s.SetTrial(SlotA, 2)
		boot(&s, false)
		boot(&s, false)
		if got := s.BootOrder(); !slices.Equal(got, []Slot{SlotB}) {
			t.Fatalf("%v, want [B]", got)
		}
	})
}

func TestEncoding(t *testing.T) {
	s := State{Slots: [2]SlotState{{7, 3, false}, {255, 255, true}}, Seq: 0xDEADBEEF}
	b, err := s.MarshalBinary()
	if err != nil || len(b) != RecordSize {
		t.Fatal(len(b), err)
	}
	// Pinned: stage one and the updater may be built from different
	// versions, so the format must not drift unnoticed.
	if got, want := fmt.Sprintf("%x", b), "4258424301000000 efbeadde 07030000 ffff0100 0000000000000000 27dee0f5"; got != strings.ReplaceAll(want, " ", "") {
		t.Errorf("encoding %s", got)
	}
	var back State
	if err := back.UnmarshalBinary(b); err != nil || back != s {
		t.Fatalf("decoded %v, %v", back, err)
	}
	corrupt := []struct {
		name string
		f    func(b []byte)
		want string
	}{
		{"short", nil, "31 bytes"},
		{"magic", func(b []byte) { b[0] = 'X' }, "magic"},
		{"crc", func(b []byte) { b[31] ^= 1 }, "CRC32C"},
		{"any bit", func(b []byte) { b[13] ^= 0x10 }, "CRC32C"},
		{"version", func(b []byte) { b[4] = 2; fixCRC(b) }, "format version 2"},
		{"reserved", func(b []byte) { b[22] = 1; fixCRC(b) }, "reserved"},
		{"slot reserved", func(b []byte) { b[19] = 1; fixCRC(b) }, "reserved"},
		{"flags", func(b []byte) { b[14] = 0x81; fixCRC(b) }, "slot A: unknown flags 0x81"},
	}
	for _, c := range corrupt {
		t.Run(c.name, func(t *testing.T) {
			b, _ := s.MarshalBinary()
			if c.f == nil {
				b = b[:31]
			} else {
				c.f(b)
			}
			var got State
			err := got.UnmarshalBinary(b)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

func fixCRC(b []byte) {
	c := checksum(b[:28])
	b[28], b[29], b[30], b[31] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
}

func TestLoadSave(t *testing.T) {
	dev := newDev(partOffset + 1<<20)
	got, err := Load(dev, partOffset)
	if !errors.Is(err, ErrNoValidRecord) || got != Default() {
		t.Fatalf("blank partition: %v, %v", got, err)
	}
	t.Log(err)

	want := Default()
	var wrote []int // which copy each save went to
	for i := range 5 {
		want.SetTrial(Slot(i%2), uint8(i))
		if err := Save(dev, partOffset, want); err != nil {
			t.Fatal(err)
		}
		got, err := Load(dev, partOffset)
		if err != nil {
			t.Fatal(err)
		}
		if got.Slots != want.Slots || got.Seq != want.Seq+1 {
			t.Fatalf("save %d: loaded %v, want %v with seq %d", i, got, want, want.Seq+1)
		}
		if bytes.Equal(dev.b[partOffset:partOffset+RecordSize], mustMarshal(got)) {
			wrote = append(wrote, 0)
		} else {
			wrote = append(wrote, 1)
		}
		want = got
	}
	if !slices.Equal(wrote, []int{0, 1, 0, 1, 0}) || dev.syncs != 5 {
		t.Errorf("copies written %v, syncs %d; want alternating and one sync each", wrote, dev.syncs)
	}

	// A stale State (older Seq) still saves as the newest record.
	stale := Default()
	if err := Save(dev, partOffset, stale); err != nil {
		t.Fatal(err)
	}
	if got, _ := Load(dev, partOffset); got.Seq != want.Seq+1 || got.Slots != stale.Slots {
		t.Errorf("stale save: loaded %v, want seq %d", got, want.Seq+1)
	}

	// One damaged copy: the other is used, silently.
	dev.b[partOffset+CopyStride+5] ^= 0xFF
	dev.b[partOffset+5] ^= 0xFF
	if _, err := Load(dev, partOffset); !errors.Is(err, ErrNoValidRecord) {
		t.Errorf("both damaged: %v", err)
	}
	dev.b[partOffset+5] ^= 0xFF
	if got, err := Load(dev, partOffset); err != nil || got != want {
		t.Errorf("newest copy damaged: loaded %v, %v; want the one before, %v", got, err, want)
	}
}

func mustMarshal(s State) []byte {
	b, err := s.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

func TestSeqWrap(t *testing.T) {
	dev := newDev(2 * CopyStride)
	s := Default()
	s.Seq = 0xFFFFFFFE
	for i := range 4 {
		s.SetTrial(Slot(i%2), uint8(i+1))
		if err := Save(dev, 0, s); err != nil {
			t.Fatal(err)
		}
		got, err := Load(dev, 0)
		if err != nil || got.Slots != s.Slots || got.Seq != s.Seq+1 {
			t.Fatalf("save %d: loaded %v, %v; want %v seq %d", i, got, err, s, s.Seq+1)
		}
		s = got
	}
	if s.Seq != 2 {
		t.Errorf("seq %d after wrapping, want 2", s.Seq)
	}
}

// TestPowerCut cuts the power after every possible number of bytes of a
// Save, from nothing written to all written but not synced, over devices
// whose two copies hold every mix of valid, blank and damaged records, and
// checks that Load then returns the old or the new state, nothing else.
func TestPowerCut(t *testing.T) {
	old := Default()
	old.SetTrial(SlotB, 3)
	next := old
	next.BeginAttempt(SlotB)
	next.MarkGood(SlotB)

	type setup struct {
		name string
		prep func(d *memDev)
	}
	setups := []setup{
		{"blank", func(d *memDev) {}},
		{"one save", func(d *memDev) { mustSave(t, d, old) }},
		{"two saves", func(d *memDev) { mustSave(t, d, Default()); mustSave(t, d, old) }},
		{"three saves", func(d *memDev) { mustSave(t, d, Default()); mustSave(t, d, Default()); mustSave(t, d, old) }},
		{"other copy damaged", func(d *memDev) {
			mustSave(t, d, Default())
			mustSave(t, d, old)
			d.b[partOffset+10] ^= 0xFF
		}},
		{"other copy foreign", func(d *memDev) {
			mustSave(t, d, old)
			copy(d.b[partOffset+CopyStride:], bytes.Repeat([]byte{0xA5}, RecordSize))
		}},
	}
	for _, su := range setups {
		t.Run(su.name, func(t *testing.T) {
			base := newDev(partOffset + 2*CopyStride)
			su.prep(base)
			before, loadErr := Load(base, partOffset)
			if loadErr != nil && before != Default() {
				t.Fatalf("setup: %v %v", before, loadErr)
			}
			for cut := 0; cut <= RecordSize; cut++ {
				d := &memDev{b: bytes.Clone(base.b), budget: cut}
				err := Save(d, partOffset, next)
				if err == nil && cut < RecordSize {
					t.Fatalf("cut at %d: Save returned %v", cut, err)
				}
				got, _ := Load(d, partOffset)
				switch {
				case got.Slots == before.Slots && got.Seq == before.Seq:
				case got.Slots == next.Slots && newer(got.Seq, before.Seq):
				default:
					t.Fatalf("cut at byte %d: loaded %v, want %v or %v", cut, got, before, next)
				}
				if cut == 0 && got != before {
					t.Fatalf("nothing written but loaded %v", got)
				}
				if cut == RecordSize && got.Slots != next.Slots {
					t.Fatalf("all written but loaded %v", got)
				}
			}
		})
	}
}

func mustSave(t *testing.T, d *memDev, s State) {
	t.Helper()
	if err := Save(d, partOffset, s); err != nil {
		t.Fatal(err)
	}
}

// TestPowerCutSuffix covers devices that write the end of a buffer
// before its start (a torn write can keep any part): the record's CRC is
// at the end, so this is the harder order.
func TestPowerCutSuffix(t *testing.T) {
	old := Default()
	next := old
	next.SetTrial(SlotA, 2)
	base := newDev(partOffset + 2*CopyStride)
	mustSave(t, base, Default())
	mustSave(t, base, old)
	before, _ := Load(base, partOffset)
	for keep := 0; keep <= RecordSize; keep++ {
		d := &memDev{b: bytes.Clone(base.b), budget: -1}
		if err := Save(d, partOffset, next); err != nil {
			t.Fatal(err)
		}
		// Undo all but the last keep bytes of what Save wrote.
		for _, co := range []int{0, CopyStride} {
			o := partOffset + co
			if !bytes.Equal(d.b[o:o+RecordSize], base.b[o:o+RecordSize]) {
				copy(d.b[o:o+RecordSize-keep], base.b[o:o+RecordSize-keep])
			}
		}
		got, _ := Load(d, partOffset)
		if got != before && (got.Slots != next.Slots || got.Seq != before.Seq+1) {
			t.Fatalf("keeping last %d bytes: loaded %v, want %v or %v", keep, got, before, next)
		}
	}
}
