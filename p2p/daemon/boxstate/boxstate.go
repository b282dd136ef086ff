// Package boxstate is the box's replicated state from the head-end, in
// one bbolt file next to the media store (box.db): the catalog the box may
// show, item by item, and the viewer's priority list with its version.
//
// Guarantees:
//   - Every change is one transaction: a full catalog update replaces the
//     whole catalog at once or not at all, and an update that fails its
//     checks changes nothing that is stored.
//   - Lists from the head-end are taken when their version is at least
//     the one held (the head-end keeps its own list when versions tie, so
//     a tie means its list is the one that counts); the box's own edits
//     take the version after the one held, in the same transaction that
//     reads it.
package boxstate

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/internal/boltfile"
	"github.com/boxswarm/boxswarm/media"
	bolt "go.etcd.io/bbolt"
)

const formatVersion = 1

var (
	bucketMeta    = []byte("meta")
	bucketCatalog = []byte("catalog") // media ID → JSON api.CatalogItem
	bucketList    = []byte("list")    // keyList → JSON api.PriorityList
	keyList       = []byte("current")
)

// ErrInvalid is wrapped by the refusal of an update that fails the
// checks; nothing stored changed.
var ErrInvalid = errors.New("invalid update")

// DB is the box's state file. Its methods are safe for concurrent use.
type DB struct {
	db   *bolt.DB
	path string
}

// Open opens or creates the file at path. Another process holding it is
// waited for one second.
func Open(path string) (*DB, error) {
	db, _, err := boltfile.Open(path, boltfile.Layout{
		Kind: "box state", Version: formatVersion,
		Buckets: [][]byte{bucketMeta, bucketCatalog, bucketList},
	}, time.Second)
	if err != nil {
		return nil, err
	}
	return &DB{db: db, path: path}, nil
}

// Close closes the file.
func (d *DB) Close() error { return d.db.Close() }

// checkUpdate refuses what api's checks let through but the box cannot
// store sensibly: items without a title, and a title twice in one update.
func checkUpdate(u api.CatalogUpdate) error {
	if err := u.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	seen := make(map[media.ID]bool, len(u.Items))
	for _, it := range u.Items {
		if it.Title == (media.ID{}) {
			return fmt.Errorf("catalog update: an item without a title: %w", ErrInvalid)
		}
		if seen[it.Title] {
			return fmt.Errorf("catalog update: title %s twice: %w", it.Title, ErrInvalid)
		}
		seen[it.Title] = true
	}
	return nil
}

// ApplyCatalog stores an update from the head-end: a full one replaces the
// catalog with its items (the head-end sends the rest of a large catalog
// as updates that follow); otherwise each item replaces the stored one of
// its title, and an item marked Removed deletes it.
func (d *DB) ApplyCatalog(u api.CatalogUpdate) error {
	if err := checkUpdate(u); err != nil {
		return err
	}
	vals := make([][]byte, len(u.Items))
	for i, it := range u.Items {
		b, err := json.Marshal(it)
		if err != nil {
			return fmt.Errorf("catalog item %s: %w", it.Title, err)
		}
		vals[i] = b
	}
	err := d.db.Update(func(tx *bolt.Tx) error {
		if u.Full {
			if err := tx.DeleteBucket(bucketCatalog); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(bucketCatalog); err != nil {
				return err
			}
		}
		b := tx.Bucket(bucketCatalog)
		for i, it := range u.Items {
			var err error
			if it.Removed {
				err = b.Delete(it.Title[:])
			} else {
				err = b.Put(it.Title[:], vals[i])
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("box state %s: catalog update: %w", d.path, err)
	}
	return nil
}

// items returns every stored item.
func (d *DB) items() ([]api.CatalogItem, error) {
	var out []api.CatalogItem
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCatalog).ForEach(func(k, v []byte) error {
			var it api.CatalogItem
			if err := json.Unmarshal(v, &it); err != nil || !bytes.Equal(k, it.Title[:]) {
				return fmt.Errorf("catalog item %x is damaged", k)
			}
			out = append(out, it)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("box state %s: %w", d.path, err)
	}
	return out, nil
}

// Catalog returns the items published by now (PublishAt zero or not
// after now), sorted by name without regard to case, then by name, then
// by title.
func (d *DB) Catalog(now time.Time) ([]api.CatalogItem, error) {
	all, err := d.items()
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, it := range all {
		if !it.PublishAt.After(now) {
			out = append(out, it)
		}
	}
	slices.SortFunc(out, func(a, b api.CatalogItem) int {
		return cmp.Or(
			strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)),
			strings.Compare(a.Name, b.Name),
			bytes.Compare(a.Title[:], b.Title[:]))
	})
	return out, nil
}

// NextPublish returns the earliest publish time after now among the
// stored items, if any: when the catalog Catalog returns changes next.
func (d *DB) NextPublish(now time.Time) (time.Time, bool, error) {
	all, err := d.items()
	if err != nil {
		return time.Time{}, false, err
	}
	var next time.Time
	for _, it := range all {
		if it.PublishAt.After(now) && (next.IsZero() || it.PublishAt.Before(next)) {
			next = it.PublishAt
		}
	}
	return next, !next.IsZero(), nil
}

func getList(tx *bolt.Tx) (api.PriorityList, error) {
	var pl api.PriorityList
	v := tx.Bucket(bucketList).Get(keyList)
	if v == nil {
		return pl, nil
	}
	if err := json.Unmarshal(v, &pl); err != nil {
		return pl, fmt.Errorf("priority list is damaged: %w", err)
	}
	return pl, nil
}

func putList(tx *bolt.Tx, pl api.PriorityList) error {
	b, err := json.Marshal(pl)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketList).Put(keyList, b)
}

// List returns the priority list held (the zero list if none).
func (d *DB) List() (api.PriorityList, error) {
	var pl api.PriorityList
	err := d.db.View(func(tx *bolt.Tx) error {
		var err error
		pl, err = getList(tx)
		return err
	})
	if err != nil {
		return pl, fmt.Errorf("box state %s: %w", d.path, err)
	}
	return pl, nil
}

// OfferList stores a list from the head-end if its version is at least
// the one held, and reports whether it did and whether the list held
// changed.
func (d *DB) OfferList(pl api.PriorityList) (taken, changed bool, err error) {
	if err := pl.Validate(); err != nil {
		return false, false, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	err = d.db.Update(func(tx *bolt.Tx) error {
		held, err := getList(tx)
		if err != nil {
			return err
		}
		if pl.Version < held.Version {
			return nil
		}
		taken = true
		changed = pl.Version != held.Version || !slices.Equal(pl.Titles, held.Titles)
		if !changed {
			return nil
		}
		return putList(tx, pl)
	})
	if err != nil {
		return false, false, fmt.Errorf("box state %s: list version %d: %w", d.path, pl.Version, err)
	}
	return taken, changed, nil
}

// EditList stores titles as the box's own edit, with the version after
// the one held, and returns the list stored and the one it replaced.
func (d *DB) EditList(titles []media.ID) (stored, was api.PriorityList, err error) {
	stored = api.PriorityList{Titles: slices.Clone(titles)}
	if err := stored.Validate(); err != nil {
		return stored, was, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	err = d.db.Update(func(tx *bolt.Tx) error {
		var err error
		if was, err = getList(tx); err != nil {
			return err
		}
		stored.Version = was.Version + 1
		return putList(tx, stored)
	})
	if err != nil {
		return stored, was, fmt.Errorf("box state %s: edit list: %w", d.path, err)
	}
	return stored, was, nil
}

// UndoEdit puts back the list an edit replaced, if the edit is still the
// list held: an edit that could not be sent.
func (d *DB) UndoEdit(edit, was api.PriorityList) error {
	err := d.db.Update(func(tx *bolt.Tx) error {
		held, err := getList(tx)
		if err != nil {
			return err
		}
		if held.Version != edit.Version || !slices.Equal(held.Titles, edit.Titles) {
			return nil // the head-end's list came meanwhile: it stays
		}
		return putList(tx, was)
	})
	if err != nil {
		return fmt.Errorf("box state %s: undo list edit: %w", d.path, err)
	}
	return nil
}
