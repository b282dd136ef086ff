package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/boxswarm/boxswarm/firmware/slotdisk"
)

// DataDir is where the data partition is mounted: the daemons' stores,
// keys and state.
const DataDir = "/data"

// dataMapping is the device-mapper name the data partition is mounted
// through (see linearMapping).
const dataMapping = "data"

// dataVolatileMarker starts the console line of a box whose data does not
// survive a reboot.
const dataVolatileMarker = "stage2: DATA IS NOT PERSISTENT: "

// mountData mounts the disk's data partition (GPT label "data", see
// firmware/slotdisk) at DataDir as ext4. The baker formats it at the
// factory (images/bake FormatData); the second stage carries no mkfs, so a
// partition that is missing or does not mount as ext4 is never formatted
// here, where it could be a damaged file system still worth saving. The
// box then runs on a tmpfs instead, loudly, so that it still boots and
// shows the viewer the TV rather than nothing.
func mountData(ctx context.Context, console io.Writer, log *slog.Logger) error {
	if err := os.MkdirAll(DataDir, 0o755); err != nil {
		return err
	}
	part, err := findPartition(ctx, slotdisk.LabelData)
	var dev string
	if err == nil {
		dev, err = linearMapping(dataMapping, part)
	}
	if err == nil {
		flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME)
		if err = unix.Mount(dev, DataDir, "ext4", flags, ""); err == nil {
			log.Info("data partition mounted", "partition", part, "device", dev, "at", DataDir)
			return nil
		}
		err = fmt.Errorf("mount %s as ext4 on %s: %w", dev, DataDir, err)
	}
	fmt.Fprintf(console, "%s%v; %s is a tmpfs\n", dataVolatileMarker, err, DataDir)
	if err := unix.Mount("tmpfs", DataDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755"); err != nil {
		return fmt.Errorf("tmpfs on %s: %w", DataDir, err)
	}
	return nil
}

// findPartition waits until ctx ends for the kernel to list a partition
// with the GPT name label, and returns its device node.
func findPartition(ctx context.Context, label string) (string, error) {
	for {
		uevents, _ := filepath.Glob("/sys/class/block/*/uevent")
		for _, u := range uevents {
			if partName(u) == label {
				dev := "/dev/" + filepath.Base(filepath.Dir(u))
				if _, err := os.Stat(dev); err == nil {
					return dev, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no partition named %q", label)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// partName reads PARTNAME from a block device's uevent file.
func partName(uevent string) string {
	f, err := os.Open(uevent)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "PARTNAME="); ok {
			return v
		}
	}
	return ""
}
