package boltstore

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/boxswarm/boxswarm/headend/schedstore"
	"github.com/boxswarm/boxswarm/headend/schedstore/storetest"
	"github.com/boxswarm/boxswarm/internal/boltfile"
)

var quiet = WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))

// backend gives each test a new file; reopening opens the same file.
func backend(tb testing.TB) func(testing.TB) schedstore.Store {
	path := filepath.Join(tb.TempDir(), "sched.db")
	return func(tb testing.TB) schedstore.Store {
		s, err := Open(path, quiet)
		if err != nil {
			tb.Fatal(err)
		}
		return s
	}
}

func TestConformance(t *testing.T) { storetest.Run(t, backend) }

func BenchmarkBulk(b *testing.B) { storetest.Bench(b, backend) }

func TestSecondOpenerFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sched.db")
	s, err := Open(path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	_, err = Open(path, quiet, WithTimeout(200*time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), "another process has it open") {
		t.Fatalf("second Open: %v, want it refused as held", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second Open took %v", d)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, quiet)
	if err != nil {
		t.Fatalf("Open after the first closed: %v", err)
	}
	s2.Close()
}

// TestRefusesForeignFiles checks Open against files it did not write.
func TestRefusesForeignFiles(t *testing.T) {
	cases := []struct {
		name  string
		setup func(path string) error
		want  string
	}{
		{"newer layout", func(path string) error {
			return withBolt(path, func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket(bMeta)
				if err != nil {
					return err
				}
				return b.Put(boltfile.FormatKey, []byte{formatVersion + 1})
			})
		}, "layout"},
		{"other bolt file", func(path string) error {
			return withBolt(path, func(tx *bolt.Tx) error {
				_, err := tx.CreateBucket([]byte("someone else's"))
				return err
			})
		}, "not a schedule store"},
		{"not bolt", func(path string) error {
			return os.WriteFile(path, []byte(strings.Repeat("not a database ", 1000)), 0o600)
		}, "open"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sched.db")
			if err := tc.setup(path); err != nil {
				t.Fatal(err)
			}
			s, err := Open(path, quiet)
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func withBolt(path string, fn func(*bolt.Tx) error) error {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	if err := db.Update(fn); err != nil {
		db.Close()
		return err
	}
	return db.Close()
}

// TestCorruptRecords checks that damaged values are reported, not
// misread: every Load* and lookup names the record and wraps ErrCorrupt.
func TestCorruptRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sched.db")
	s, err := Open(path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	box := storetest.SampleBox(1)
	err = s.Update(context.Background(), func(tx schedstore.Tx) error {
		if err := tx.PutBox(box); err != nil {
			return err
		}
		return tx.PutTransfer(schedstore.Transfer{ID: 7, Receiver: box.ID, State: schedstore.TransferRunning})
	})
	if err != nil {
		t.Fatal(err)
	}
	damage := func(bucket, key []byte, v []byte) {
		t.Helper()
		if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(key, v) }); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	nop := func(schedstore.Box) error { return nil }
	for _, v := range [][]byte{nil, {9}, {recordV1}, append(encodeBox(box), 0), encodeBox(box)[:40]} {
		damage(bBoxes, box.ID[:], v)
		if err := s.LoadBoxes(ctx, nop); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "box") {
			t.Errorf("loading box stored as %x: %v, want ErrCorrupt", v, err)
		}
	}
	damage(bTransfers, transferKey(7), []byte{recordV1, 1, 2, 3})
	if _, err := s.Transfer(ctx, 7); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Transfer of a damaged record: %v, want ErrCorrupt", err)
	}
	if err := s.LoadTransfers(ctx, func(schedstore.Transfer) error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Errorf("LoadTransfers of a damaged record: %v, want ErrCorrupt", err)
	}
	// Replacing a damaged transfer fails rather than leave its index
	// entries behind.
	err = s.Update(ctx, func(tx schedstore.Tx) error {
		return tx.PutTransfer(schedstore.Transfer{ID: 7, State: schedstore.TransferDone})
	})
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("replacing a damaged transfer: %v, want ErrCorrupt", err)
	}
	s.Close()
}

// TestEncodings round-trips each record through its codec, and checks
// that every truncation of a valid value is refused.
func TestEncodings(t *testing.T) {
	box := storetest.SampleBox(3)
	h := storetest.SampleHolding(3, 1)
	l := storetest.SampleList(3, 5, 9)
	cases := []struct {
		name   string
		k, v   []byte
		decode func(k, v []byte) (any, error)
		want   any
	}{
		{"box", box.ID[:], encodeBox(box), func(k, v []byte) (any, error) { return decodeBox(k, v) }, box},
		{"holding", holdingKey(h.Box, h.Title), encodeHolding(h), func(k, v []byte) (any, error) { return decodeHolding(k, v) }, h},
		{"list", l.Box[:], encodeList(l), func(k, v []byte) (any, error) { return decodeList(k, v) }, l},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.decode(tc.k, tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if !sameRecord(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			for n := range len(tc.v) {
				if tc.name == "holding" && n >= 2 {
					continue // a bitmap may end anywhere
				}
				if _, err := tc.decode(tc.k, tc.v[:n]); !errors.Is(err, ErrCorrupt) {
					t.Errorf("%d of %d bytes: %v, want ErrCorrupt", n, len(tc.v), err)
				}
			}
			if _, err := tc.decode(append(tc.k, 0), tc.v); !errors.Is(err, ErrCorrupt) {
				t.Errorf("long key: %v, want ErrCorrupt", err)
			}
		})
	}
}

func sameRecord(got, want any) bool {
	if b, ok := want.(schedstore.Box); ok {
		b.Activated, b.LastSeen = b.Activated.Truncate(time.Microsecond).UTC(), b.LastSeen.Truncate(time.Microsecond).UTC()
		want = b
	}
	return reflect.DeepEqual(got, want)
}

// FuzzDecode feeds arbitrary values to every decoder: none may panic, and
// what one accepts must encode back to the same bytes.
func FuzzDecode(f *testing.F) {
	box := storetest.SampleBox(1)
	f.Add(uint8(0), encodeBox(box))
	f.Add(uint8(1), encodeTransfer(schedstore.Transfer{State: schedstore.TransferDone, Outcome: "x"}))
	f.Add(uint8(2), encodeList(storetest.SampleList(1, 3, 1)))
	f.Add(uint8(3), encodeTitle(schedstore.Title{Pieces: 3}))
	f.Add(uint8(4), encodeSeqs(seqs{1, 2, 3}))
	f.Add(uint8(5), encodeCode(codeRecord{account: "a", used: true}))
	f.Fuzz(func(t *testing.T, kind uint8, v []byte) {
		var re []byte
		switch kind % 6 {
		case 0:
			if r, err := decodeBox(make([]byte, 16), v); err == nil {
				re = encodeBox(r)
			}
		case 1:
			if r, err := decodeTransfer(make([]byte, 8), v); err == nil {
				re = encodeTransfer(r)
			}
		case 2:
			if r, err := decodeList(make([]byte, 16), v); err == nil {
				re = encodeList(r)
			}
		case 3:
			if r, err := decodeTitle(make([]byte, 16), v); err == nil {
				re = encodeTitle(r)
			}
		case 4:
			if r, err := decodeSeqs(v); err == nil {
				re = encodeSeqs(r)
			}
		case 5:
			if r, err := decodeCode(v); err == nil {
				re = encodeCode(r)
			}
		}
		if re != nil && string(re) != string(v) {
			// Varints have one shortest form; a longer one decodes to
			// the same value and may re-encode shorter. Anything else
			// is a codec bug.
			if _, err := decodeAny(kind%6, re); err != nil {
				t.Fatalf("re-encoding of an accepted value does not decode: %v", err)
			}
		}
	})
}

func decodeAny(kind uint8, v []byte) (any, error) {
	switch kind {
	case 0:
		return decodeBox(make([]byte, 16), v)
	case 1:
		return decodeTransfer(make([]byte, 8), v)
	case 2:
		return decodeList(make([]byte, 16), v)
	case 3:
		return decodeTitle(make([]byte, 16), v)
	case 4:
		return decodeSeqs(v)
	}
	return decodeCode(v)
}
