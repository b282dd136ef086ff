package schedclient

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

type stateImpl struct {
	name string
	open func(t *testing.T) State
}

var stateImpls = []stateImpl{
	{"MemState", func(*testing.T) State { return MemState() }},
	{"FileState", func(t *testing.T) State {
		s, err := FileState(filepath.Join(t.TempDir(), "state.json"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
}

type loaded struct {
	lastIn, lastOut uint64
	pending         []Outbound
}

func load(t *testing.T, s State) loaded {
	t.Helper()
	in, out, p, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	return loaded{in, out, p}
}

// TestStateRules holds every State to the same rules.
func TestStateRules(t *testing.T) {
	f := func(s string) []byte { return []byte(s) }
	for _, impl := range stateImpls {
		for _, tc := range []struct {
			name string
			ops  func(s State) error // the last op's error is checked
			fail bool
			want loaded
		}{
			{"empty", func(State) error { return nil }, false, loaded{}},
			{"append in order", func(s State) error {
				s.AppendOut(1, f("a"))
				return s.AppendOut(2, f("b"))
			}, false, loaded{0, 2, []Outbound{{1, f("a")}, {2, f("b")}}}},
			{"append may skip numbers", func(s State) error { return s.AppendOut(5, f("a")) }, false,
				loaded{0, 5, []Outbound{{5, f("a")}}}},
			{"append must go up", func(s State) error {
				s.AppendOut(2, f("a"))
				return s.AppendOut(2, f("b"))
			}, true, loaded{0, 2, []Outbound{{2, f("a")}}}},
			{"append refuses an empty frame", func(s State) error { return s.AppendOut(1, nil) }, true, loaded{}},
			{"ack drops up to seq", func(s State) error {
				s.AppendOut(1, f("a"))
				s.AppendOut(2, f("b"))
				s.AppendOut(3, f("c"))
				return s.AckOut(2)
			}, false, loaded{0, 3, []Outbound{{3, f("c")}}}},
			{"ack beyond lastOut raises it", func(s State) error {
				s.AppendOut(1, f("a"))
				return s.AckOut(7)
			}, false, loaded{0, 7, nil}},
			{"last in goes up", func(s State) error {
				s.SetLastIn(3)
				return s.SetLastIn(3)
			}, false, loaded{3, 0, nil}},
			{"last in never goes down", func(s State) error {
				s.SetLastIn(3)
				return s.SetLastIn(2)
			}, true, loaded{3, 0, nil}},
		} {
			t.Run(impl.name+"/"+tc.name, func(t *testing.T) {
				s := impl.open(t)
				err := tc.ops(s)
				if (err != nil) != tc.fail {
					t.Fatalf("error %v, want failure %v", err, tc.fail)
				}
				got := load(t, s)
				if len(got.pending) == 0 {
					got.pending = nil
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("state %+v, want %+v", got, tc.want)
				}
			})
		}
	}
}

// TestStateLoadReturnsCopies: what Load returns is the caller's; what
// AppendOut was given is the state's.
func TestStateLoadReturnsCopies(t *testing.T) {
	for _, impl := range stateImpls {
		s := impl.open(t)
		frame := []byte("frame")
		s.AppendOut(1, frame)
		frame[0] = 'X'
		_, _, p, _ := s.Load()
		p[0].Frame[1] = 'X'
		p[0].Seq = 9
		if got := load(t, s); got.pending[0].Seq != 1 || string(got.pending[0].Frame) != "frame" {
			t.Errorf("%s: state changed through a caller's slice: %+v", impl.name, got.pending[0])
		}
	}
}

func TestFileStateSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	s, err := FileState(path)
	if err != nil {
		t.Fatal(err)
	}
	s.AppendOut(1, []byte("a"))
	s.AppendOut(2, []byte("b"))
	s.AckOut(1)
	s.SetLastIn(41)
	again, err := FileState(path)
	if err != nil {
		t.Fatal(err)
	}
	want := loaded{41, 2, []Outbound{{2, []byte("b")}}}
	if got := load(t, again); !reflect.DeepEqual(got, want) {
		t.Errorf("reopened %+v, want %+v", got, want)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v", info.Mode().Perm())
	}
}

// TestFileStateRefusesDamage: a damaged file is an error naming it, and
// is left as it was for someone to look at.
func TestFileStateRefusesDamage(t *testing.T) {
	for _, tc := range []struct{ name, content, want string }{
		{"not JSON", `{"version":1,`, "unexpected EOF"},
		{"unknown field", `{"version":1,"last_in":0,"last_out":0,"pending":[],"x":1}`, `unknown field "x"`},
		{"other version", `{"version":2,"last_in":0,"last_out":0,"pending":[]}`, "format version 2"},
		{"pending out of order", `{"version":1,"last_in":0,"last_out":5,"pending":[{"seq":3,"frame":"YQ=="},{"seq":2,"frame":"YQ=="}]}`, "out of order"},
		{"pending beyond last out", `{"version":1,"last_in":0,"last_out":1,"pending":[{"seq":3,"frame":"YQ=="}]}`, "out of order"},
		{"trailing data", `{"version":1,"last_in":0,"last_out":0,"pending":[]} {}`, "data after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := FileState(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("FileState = %v, want an error naming the file and containing %q", err, tc.want)
			}
			if b, _ := os.ReadFile(path); !bytes.Equal(b, []byte(tc.content)) {
				t.Error("the damaged file was changed")
			}
		})
	}
}

// TestFileStateFailedWriteChangesNothing: when the file cannot be written,
// the change is refused, in memory too.
func TestFileStateFailedWriteChangesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	s, err := FileState(path)
	if err != nil {
		t.Fatal(err)
	}
	s.AppendOut(1, []byte("a"))
	before := load(t, s)
	// The temporary file's name taken by a folder: every save fails, even
	// for root.
	if err := os.Mkdir(path+".tmp", 0o700); err != nil {
		t.Fatal(err)
	}
	for _, op := range []func() error{
		func() error { return s.AppendOut(2, []byte("b")) },
		func() error { return s.AckOut(1) },
		func() error { return s.SetLastIn(5) },
	} {
		if err := op(); err == nil {
			t.Error("a change was accepted without being saved")
		}
	}
	if got := load(t, s); !reflect.DeepEqual(got, before) {
		t.Errorf("state %+v after failed writes, want %+v", got, before)
	}
	os.Remove(path + ".tmp")
	again, err := FileState(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := load(t, again); !reflect.DeepEqual(got, before) {
		t.Errorf("file holds %+v, want %+v", got, before)
	}
}
