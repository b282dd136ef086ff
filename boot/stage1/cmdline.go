package stage1

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/boxswarm/boxswarm/boot/handoff"
	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/firmware/bootctl"
)

// RootFSName is the device-mapper name of the verified root filesystem.
const RootFSName = "vroot"

// Cmdline returns the second stage's command line: the signed one from the
// manifest, then the hand-over parameters, then, for an image with a root
// filesystem, the dm-verity mapping the kernel sets up before any of it is
// read. diskDev is the whole-disk device ("/dev/vda") and slotOffset the
// slot partition's byte offset on it.
func Cmdline(v *firmware.Verified, slot bootctl.Slot, trial bool, diskDev string, slotOffset int64) string {
	p := handoff.Params{
		Slot:       slot,
		Version:    v.Manifest.ImageVersion,
		KeyVersion: v.Manifest.KeyVersion,
		Trial:      trial,
		Manifest:   v.Digest,
	}
	args := []string{strings.TrimSpace(v.Cmdline)}
	if c, ok := v.Manifest.Component(firmware.RootFS); ok {
		p.RootFS = RootFSName
		args = append(args, verityArgs(c, diskDev, slotOffset))
	}
	return strings.Join(append(args, p.Args()...), " ")
}

// verityArgs maps the root filesystem's data with dm-linear (verity wants
// its data to start at block 0 of a device) and stacks dm-verity on it,
// reading the hash tree straight from the disk.
func verityArgs(c firmware.Component, diskDev string, slotOffset int64) string {
	const sector = 512
	dataStart := (slotOffset + int64(c.Offset)) / sector
	sectors := int64(c.Size) / sector
	blocks := int64(c.Size) / firmware.BlockSize
	hashStart := (slotOffset + int64(c.Verity.HashOffset)) / firmware.BlockSize
	salt := "-"
	if len(c.Verity.Salt) > 0 {
		salt = hex.EncodeToString(c.Verity.Salt)
	}
	linear := fmt.Sprintf("vdata,,,ro,0 %d linear %s %d", sectors, diskDev, dataStart)
	verity := fmt.Sprintf("%s,,,ro,0 %d verity 1 /dev/dm-0 %s %d %d %d %d sha256 %s %s",
		RootFSName, sectors, diskDev, firmware.BlockSize, firmware.BlockSize, blocks, hashStart,
		hex.EncodeToString(c.Verity.RootHash[:]), salt)
	return fmt.Sprintf("dm-mod.create=%q", linear+";"+verity)
}
