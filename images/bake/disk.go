package bake

import (
	"context"
	"fmt"
	"os"
	"os/exec"

	"github.com/boxswarm/boxswarm/firmware/bootctl"
	"github.com/boxswarm/boxswarm/firmware/gpt"
	"github.com/boxswarm/boxswarm/firmware/slotdisk"
	"github.com/boxswarm/boxswarm/images"
)

var (
	typeSlot    = gpt.MustParseGUID(gpt.TypeBoxswarmSlot)
	typeBootctl = gpt.MustParseGUID(gpt.TypeBoxswarmBootctl)
	typeData    = gpt.MustParseGUID(gpt.TypeLinuxData)
)

// DiskLayout returns the partition table the recipe asks for.
func DiskLayout(d images.Disk) (*gpt.Table, int64, error) {
	const mib = 1 << 20
	size := int64(d.SizeMiB) * mib
	t, err := gpt.Layout("boxswarm", size, []gpt.Spec{
		{Name: slotdisk.LabelSlotA, Size: int64(d.SlotMiB) * mib, Type: typeSlot},
		{Name: slotdisk.LabelSlotB, Size: int64(d.SlotMiB) * mib, Type: typeSlot},
		{Name: slotdisk.LabelBootctl, Size: int64(d.BootctlMiB) * mib, Type: typeBootctl},
		{Name: slotdisk.LabelData, Type: typeData},
	})
	return t, size, err
}

// WriteDisk writes a sparse disk image: the partition table, the slot
// images (nil leaves a slot empty) and the boot-control record. It replaces
// any file at path only once the new image is complete.
func WriteDisk(path string, d images.Disk, slotA, slotB []byte, st bootctl.State) error {
	t, size, err := DiskLayout(d)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	err = func() error {
		if err := f.Truncate(size); err != nil {
			return err
		}
		if err := gpt.Write(f, size, t); err != nil {
			return err
		}
		l, err := slotdisk.ReadLayout(f, size)
		if err != nil {
			return fmt.Errorf("reading back the new table: %w", err)
		}
		for s, img := range [][]byte{slotA, slotB} {
			if img == nil {
				continue
			}
			p := l.Slots[s]
			if int64(len(img)) > p.Size() {
				return fmt.Errorf("slot %s: image of %d bytes does not fit the %d-byte slot", bootctl.Slot(s), len(img), p.Size())
			}
			if _, err := f.WriteAt(img, p.Offset()); err != nil {
				return err
			}
		}
		return l.SaveState(f, st)
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("disk image %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

// FormatData makes an empty ext4 file system in the data partition of the
// disk image at path, with the host's mke2fs, as the factory would: the
// second stage carries no mkfs, and mounts the partition at /data. The
// file system's UUID, hash seed and times are fixed, so the same recipe
// gives the same disk.
func FormatData(ctx context.Context, path string, d images.Disk) error {
	t, size, err := DiskLayout(d)
	if err != nil {
		return err
	}
	p, err := t.Find(slotdisk.LabelData)
	if err != nil {
		return fmt.Errorf("disk image %s: %w", path, err)
	}
	if p.Offset()+p.Size() > size {
		return fmt.Errorf("disk image %s: data partition beyond the disk", path)
	}
	mkfs, err := exec.LookPath("mke2fs")
	if err != nil {
		return fmt.Errorf("formatting the data partition needs mke2fs (apt install e2fsprogs): %w", err)
	}
	const fixedUUID = "b0c5a4a0-da7a-4d00-8000-000000000001"
	cmd := exec.CommandContext(ctx, mkfs, "-q", "-F", "-t", "ext4", "-L", slotdisk.LabelData, "-U", fixedUUID,
		// The features spelled out: the host's mke2fs.conf is not read,
		// so that another host bakes the same file system.
		"-b", "4096", "-I", "256", "-O", "has_journal,extent,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize,sparse_super,large_file,filetype,dir_index,^resize_inode",
		"-E", fmt.Sprintf("offset=%d,hash_seed=%s,root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1", p.Offset(), fixedUUID),
		path, fmt.Sprintf("%dk", p.Size()/1024))
	cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME=1", "MKE2FS_CONFIG=/dev/null")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mke2fs on the data partition of %s: %w\n%s", path, err, b)
	}
	return nil
}
