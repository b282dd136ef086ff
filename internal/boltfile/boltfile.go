// Package boltfile opens the bbolt file of one of the head-end's stores:
// it waits a bounded time for another process holding the file, refuses
// a file that belongs to something else or has a layout this build does
// not read, and creates the store's buckets in a new file.
package boltfile

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Layout describes a store's file.
type Layout struct {
	// Kind names the store in errors ("schedule store").
	Kind string
	// Version is the layout of buckets and keys, kept in the bucket
	// Buckets[0] under the key "format".
	Version byte
	// Buckets are created in a new file; the first holds the version.
	Buckets [][]byte
}

// FormatKey is where, in the first bucket, the layout version is kept.
var FormatKey = []byte("format")

// Open opens or creates the file at path. It reports whether the file was
// new.
func Open(path string, l Layout, timeout time.Duration) (db *bolt.DB, created bool, err error) {
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout: timeout,
		// The map freelist stays fast as the file grows to gigabytes.
		FreelistType: bolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, false, fmt.Errorf("open %s: another process has it open (waited %v): %w", path, timeout, err)
	}
	if err != nil {
		return nil, false, fmt.Errorf("open %s: %w", path, err)
	}
	meta := l.Buckets[0]
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(meta)
		if b == nil {
			var other []byte
			_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error { other = name; return errStop })
			if other != nil {
				return fmt.Errorf("not a %s: it has a bucket %q but no %q", l.Kind, other, meta)
			}
			created = true
		} else if v := b.Get(FormatKey); len(v) != 1 || v[0] != l.Version {
			return fmt.Errorf("file layout %v, this build reads layout %d", v, l.Version)
		}
		for _, name := range l.Buckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		return tx.Bucket(meta).Put(FormatKey, []byte{l.Version})
	})
	if err != nil {
		_ = db.Close()
		return nil, false, fmt.Errorf("open %s: %w", path, err)
	}
	return db, created, nil
}

var errStop = errors.New("stop")
