package demo

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/boxswarm/boxswarm/firmware/keyfile"
	"github.com/boxswarm/boxswarm/firmware/slotdisk"
	"github.com/boxswarm/boxswarm/images/bake"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/store"
)

// storeInPartition is where transferd keeps its title store, relative to
// the data partition's root (the recipe's -store /data/transferd/store).
const storeInPartition = "/transferd/store"

// StoreCheck is what a box's title store held, as its disk was when
// checked: the data partition copied out of the disk image, its journal
// replayed and checked by e2fsck, the store folder copied out with
// debugfs, and opened on the host with the box's own store code.
type StoreCheck struct {
	// Fsck is e2fsck's exit status on the copy: 0 clean, 1 errors
	// corrected (a replayed journal counts as none); 4 and above are
	// refused by CheckStore.
	Fsck   int
	Titles map[media.ID]TitleCheck
}

// TitleCheck is one title in a store.
type TitleCheck struct {
	Pieces  int // in the manifest
	Present int // pieces the store counts present
	Have    store.Bitmap
	// Bad are present pieces whose bytes do not match the signed
	// manifest, found by hashing every present piece again.
	Bad []int
}

// CheckStore opens the title store on the data partition of a disk image
// that is at rest (the box powered off or its QEMU killed) and hashes
// every piece it counts present against the title's signed manifest.
func (s *System) CheckStore(ctx context.Context, disk string) (StoreCheck, error) {
	t, _, err := bake.DiskLayout(s.art.Recipe.Disk)
	if err != nil {
		return StoreCheck{}, err
	}
	p, err := t.Find(slotdisk.LabelData)
	if err != nil {
		return StoreCheck{}, fmt.Errorf("demo: the data partition of %s: %w", disk, err)
	}
	dir, err := os.MkdirTemp(s.cfg.Dir, "storecheck-")
	if err != nil {
		return StoreCheck{}, err
	}
	defer os.RemoveAll(dir)
	part := filepath.Join(dir, "data.img")
	if err := copyRange(disk, part, p.Offset(), p.Size()); err != nil {
		return StoreCheck{}, fmt.Errorf("demo: copy the data partition of %s: %w", disk, err)
	}
	var res StoreCheck
	// -y on a copy: the journal is replayed as the box's next mount would.
	out, err := exec.CommandContext(ctx, "e2fsck", "-f", "-y", part).CombinedOutput()
	if x := (*exec.ExitError)(nil); errors.As(err, &x) {
		res.Fsck = x.ExitCode()
	} else if err != nil {
		return StoreCheck{}, fmt.Errorf("demo: e2fsck on the data partition of %s: %w", disk, err)
	}
	if res.Fsck >= 4 {
		return res, fmt.Errorf("demo: e2fsck found errors it did not correct on the data partition of %s (exit %d):\n%s", disk, res.Fsck, out)
	}
	dst := filepath.Join(dir, "store")
	if err := os.Mkdir(dst, 0o700); err != nil {
		return StoreCheck{}, err
	}
	// rdump copies the folder into dst, under its own name.
	if out, err := exec.CommandContext(ctx, "debugfs", "-R", "rdump "+storeInPartition+" "+dst, part).CombinedOutput(); err != nil ||
		strings.Contains(string(out), "File not found") {
		return StoreCheck{}, fmt.Errorf("demo: debugfs rdump %s from %s: %v\n%s", storeInPartition, disk, err, out)
	}
	pub, err := keyfile.ReadPublicKey(filepath.Join(s.data, "media.pub"))
	if err != nil {
		return StoreCheck{}, err
	}
	st, err := store.Open(filepath.Join(dst, filepath.Base(storeInPartition)), store.Options{
		MediaKeys: []ed25519.PublicKey{ed25519.PublicKey(pub)}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return StoreCheck{}, fmt.Errorf("demo: open the store of %s: %w", disk, err)
	}
	defer st.Close()
	titles, err := st.Titles()
	if err != nil {
		return StoreCheck{}, err
	}
	res.Titles = map[media.ID]TitleCheck{}
	for _, ti := range titles {
		have, err := st.Have(ti.ID)
		if err != nil {
			return StoreCheck{}, err
		}
		bad, err := st.Verify(ctx, ti.ID)
		if err != nil {
			return StoreCheck{}, fmt.Errorf("demo: verify %s in the store of %s: %w", ti.ID, disk, err)
		}
		res.Titles[ti.ID] = TitleCheck{Pieces: ti.Pieces, Present: ti.Present, Have: have, Bad: bad}
	}
	return res, nil
}

// copyRange copies n bytes at off of from into a new file to.
func copyRange(from, to string, off, n int64) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, io.NewSectionReader(in, off, n)); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
