package boltstore

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/headend/customers/storetest"
	"github.com/boxswarm/boxswarm/internal/boltfile"
)

var (
	quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))
	quiet    = WithLogger(quietLog)
)

// backend gives each test a new file; reopening opens the same file.
func backend(tb testing.TB) func(testing.TB) customers.Store {
	path := filepath.Join(tb.TempDir(), "customers.db")
	return func(tb testing.TB) customers.Store {
		s, err := Open(path, quiet)
		if err != nil {
			tb.Fatal(err)
		}
		return s
	}
}

func TestConformance(t *testing.T) { storetest.Run(t, backend) }

// BenchmarkGenres measures Genres over 15,000 titles, and the paging
// through SearchTitles it replaced.
func BenchmarkGenres(b *testing.B) { storetest.BenchGenres(b, backend, 15000) }

func TestSecondOpenerFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "customers.db")
	s, err := Open(path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	if _, err := Open(path, quiet, WithTimeout(100*time.Millisecond)); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second Open: %v, want it refused as held", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second Open took %v", d)
	}
}

func TestRefusesForeignFiles(t *testing.T) {
	cases := []struct {
		name  string
		setup func(*bolt.Tx) error
		want  string
	}{
		{"newer layout", func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket(bMeta)
			if err != nil {
				return err
			}
			return b.Put(boltfile.FormatKey, []byte{formatVersion + 1})
		}, "layout"},
		{"another program's file", func(tx *bolt.Tx) error {
			_, err := tx.CreateBucket([]byte("boxes"))
			return err
		}, "not a customer store"},
	}
	for _, tc := range cases {
		path := filepath.Join(t.TempDir(), "x.db")
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(tc.setup); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if s, err := Open(path, quiet); err == nil {
			s.Close()
			t.Errorf("%s: opened", tc.name)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want it to say %q", tc.name, err, tc.want)
		}
	}
}

// TestCorruptRecord checks that a damaged value is reported, not misread.
func TestCorruptRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "customers.db")
	s, err := Open(path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	a := storetest.SampleAccount(1)
	ctx := context.Background()
	if err := s.Update(ctx, func(tx customers.Tx) error { return tx.CreateAccount(a) }); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{nil, {recordVersion + 1, '{', '}'}, {recordVersion, '{'}, {recordVersion, '{', '"', 'X', '"', ':', '1', '}'}} {
		if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bAccounts).Put([]byte(a.ID), bad) }); err != nil {
			t.Fatal(err)
		}
		err := s.View(ctx, func(tx customers.ReadTx) error { _, err := tx.Account(a.ID); return err })
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("record %q: %v, want ErrCorrupt", bad, err)
		}
	}
	s.Close()
}

// TestCorruptTitle checks that search and genres report a damaged title.
// The title index is built from the file at the first search after Open,
// so the damage is done with the store closed, as another program would.
func TestCorruptTitle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "customers.db")
	s, err := Open(path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	ctx := context.Background()
	ti := storetest.SampleTitle(1, "studio")
	if err := s.Update(ctx, func(tx customers.Tx) error { return tx.PutTitle(ti) }); err != nil {
		t.Fatal(err)
	}
	q := customers.TitleQuery{Catalogs: []customers.CatalogID{"studio"}, Region: "DE", Now: ti.PublishAt}
	if g, err := s.Genres(ctx, q); err != nil || len(g) != 1 {
		t.Fatalf("genres of the sound title: %q, %v", g, err)
	}
	for _, bad := range [][]byte{nil, {recordVersion + 1, '{', '}'}, {recordVersion, '{'}, {recordVersion, '{', '"', 'G', 'e', 'n', 'r', 'e', '"', ':', '1', '}'}} {
		s.Close()
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bTitles).Put(ti.Media[:], bad) }); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if s, err = Open(path, quiet); err != nil {
			t.Fatal(err)
		}
		// Twice: a failed build must not leave an index behind.
		for range 2 {
			if _, err := s.SearchTitles(ctx, q); !errors.Is(err, ErrCorrupt) {
				t.Errorf("search over %q: %v, want ErrCorrupt", bad, err)
			}
			if _, err := s.Genres(ctx, q); !errors.Is(err, ErrCorrupt) {
				t.Errorf("genres over %q: %v, want ErrCorrupt", bad, err)
			}
		}
	}
	// Putting the title again through the store mends it.
	if err := s.Update(ctx, func(tx customers.Tx) error { return tx.PutTitle(ti) }); err != nil {
		t.Fatal(err)
	}
	if p, err := s.SearchTitles(ctx, q); err != nil || p.Total != 1 {
		t.Errorf("search after the title was put again: %d titles, %v", p.Total, err)
	}
}
