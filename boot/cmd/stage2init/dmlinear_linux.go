package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// linearMapping maps a partition through a device-mapper linear target
// named name, over its whole disk, and returns the new device's node.
//
// Why not mount the partition itself: stage one's dm-verity mapping holds
// the whole disk open exclusively, and the kernel refuses to open one of
// its partitions for a mount (EBUSY). Device-mapper devices share one
// holder, so a second mapping over the same disk is allowed.
func linearMapping(name, partition string) (string, error) {
	sys := filepath.Join("/sys/class/block", filepath.Base(partition))
	start, err := readUint(filepath.Join(sys, "start"))
	if err != nil {
		return "", err
	}
	size, err := readUint(filepath.Join(sys, "size"))
	if err != nil {
		return "", err
	}
	// The partition's folder sits inside its disk's.
	real, err := filepath.EvalSymlinks(sys)
	if err != nil {
		return "", err
	}
	diskDev, err := os.ReadFile(filepath.Join(filepath.Dir(real), "dev"))
	if err != nil {
		return "", fmt.Errorf("the disk of %s: %w", partition, err)
	}
	ctl, err := os.OpenFile("/dev/mapper/control", os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer ctl.Close()
	if err := dmIoctl(ctl, unix.DM_DEV_CREATE, name, nil); err != nil {
		return "", fmt.Errorf("create %s: %w", name, err)
	}
	table := fmt.Sprintf("%s %d", strings.TrimSpace(string(diskDev)), start)
	if err := dmIoctl(ctl, unix.DM_TABLE_LOAD, name, &dmTarget{length: size, kind: "linear", params: table}); err != nil {
		return "", fmt.Errorf("load %s (linear %s): %w", name, table, err)
	}
	if err := dmIoctl(ctl, unix.DM_DEV_SUSPEND, name, nil); err != nil { // without the suspend flag: resume
		return "", fmt.Errorf("resume %s: %w", name, err)
	}
	names, _ := filepath.Glob("/sys/block/dm-*/dm/name")
	for _, n := range names {
		if b, err := os.ReadFile(n); err == nil && strings.TrimSpace(string(b)) == name {
			return "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(n))), nil
		}
	}
	return "", fmt.Errorf("device-mapper device %s made but not listed", name)
}

type dmTarget struct {
	length uint64 // sectors
	kind   string
	params string
}

func dmIoctl(ctl *os.File, req uint, name string, t *dmTarget) error {
	// Backed by uint64s so the buffer meets struct dm_ioctl's alignment.
	buf := make([]uint64, 512)
	b := unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), len(buf)*8)
	hdr := (*unix.DmIoctl)(unsafe.Pointer(&buf[0]))
	hdr.Version = [3]uint32{unix.DM_VERSION_MAJOR, 0, 0}
	hdr.Data_size = uint32(len(b))
	hdr.Data_start = unix.SizeofDmIoctl
	copy(hdr.Name[:len(hdr.Name)-1], name)
	if t != nil {
		hdr.Target_count = 1
		spec := (*unix.DmTargetSpec)(unsafe.Pointer(&b[unix.SizeofDmIoctl]))
		spec.Length = t.length
		copy(spec.Target_type[:len(spec.Target_type)-1], t.kind)
		p := unix.SizeofDmIoctl + unix.SizeofDmTargetSpec
		copy(b[p:len(b)-1], t.params)
	}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, ctl.Fd(), uintptr(req), uintptr(unsafe.Pointer(&b[0]))); errno != 0 {
		return errno
	}
	return nil
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}
