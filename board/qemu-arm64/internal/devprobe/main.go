//go:build linux

// Command devprobe is a throwaway /init used only by the kernel boot test: it
// checks, from inside the guest, that every device and kernel feature the box
// relies on is there without loading anything, reports one console line per
// check, and powers the machine off.
//
// Output protocol, read by kernel_test.go:
//
//	DEVPROBE START uptime=<seconds since boot>
//	DEVPROBE OK <check>: <detail>
//	DEVPROBE FAIL <check>: <error>
//	DEVPROBE DONE ok=<n> failed=<m>
package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PanelLine is what the probe writes to the front-panel port; kernel_test.go
// holds the same text and looks for it in the file QEMU connects the port to.
const PanelLine = "boxswarm devprobe: front-panel ok"

// DiskMarker is what kernel_test.go writes at the start of the raw disk.
const DiskMarker = "BOXSWARM-DEVPROBE-DISK"

// deviceWait bounds how long a check waits for a device node: drivers are
// built in, but a probe can still be deferred until after init starts.
const deviceWait = 5 * time.Second

type check struct {
	name string
	run  func() (string, error)
}

func main() {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	fmt.Printf("DEVPROBE START uptime=%.2f\n", float64(ts.Nano())/1e9)

	if err := mountAll(); err != nil {
		fmt.Printf("DEVPROBE FAIL mounts: %v\n", err)
	}
	checks := []check{
		{"go-runtime", goRuntime},
		{"tpm0", tpm},
		{"vda", disk},
		{"drm", drm},
		{"fbdev", fbdev},
		{"keyboard", keyboard},
		{"front-panel", frontPanel},
		{"mapper-control", mapperControl},
		{"kexec_load", kexecLoad},
		{"dm-verity", verityTarget},
		{"hwrng", hwrng},
		{"rtc", rtc},
		{"gpio", gpio},
		{"filesystems", filesystems},
		{"sockets", sockets},
	}
	ok, failed := 0, 0
	for _, c := range checks {
		detail, err := c.run()
		if err != nil {
			failed++
			fmt.Printf("DEVPROBE FAIL %s: %v\n", c.name, err)
			continue
		}
		ok++
		fmt.Printf("DEVPROBE OK %s: %s\n", c.name, detail)
	}
	fmt.Printf("DEVPROBE DONE ok=%d failed=%d\n", ok, failed)
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Printf("DEVPROBE FAIL poweroff: %v\n", err)
	}
	// PID 1 must not return; the kernel would panic.
	select {}
}

func mountAll() error {
	for _, m := range []struct{ fstype, dir string }{
		{"proc", "/proc"}, {"sysfs", "/sys"}, {"devtmpfs", "/dev"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", m.dir, err)
		}
		if err := unix.Mount(m.fstype, m.dir, m.fstype, 0, ""); err != nil {
			return fmt.Errorf("mounting %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	return nil
}

// goRuntime exercises what a static Go program needs beyond starting:
// goroutines parked on futexes, timers, and signal delivery.
func goRuntime() (string, error) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	defer signal.Stop(sig)
	if err := unix.Kill(os.Getpid(), unix.SIGUSR1); err != nil {
		return "", fmt.Errorf("sending SIGUSR1 to self: %w", err)
	}
	select {
	case <-sig:
	case <-time.After(2 * time.Second):
		return "", errors.New("SIGUSR1 not delivered within 2s")
	}
	done := make(chan struct{})
	go func() { time.Sleep(10 * time.Millisecond); close(done) }()
	<-done
	return "signals, timers and goroutines work", nil
}

// waitFor waits for path to appear and returns its mode.
func waitFor(path string) (fs.FileMode, error) {
	deadline := time.Now().Add(deviceWait)
	for {
		fi, err := os.Stat(path)
		if err == nil {
			return fi.Mode(), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("waiting %s for %s: %w", deviceWait, path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitForChar(path string) error {
	mode, err := waitFor(path)
	if err != nil {
		return err
	}
	if mode&fs.ModeCharDevice == 0 {
		return fmt.Errorf("%s is %v, not a character device", path, mode)
	}
	return nil
}

// tpm sends raw TPM2 commands: Startup(CLEAR), which the kernel driver has
// normally sent already (TPM_RC_INITIALIZE), then GetRandom(8).
func tpm() (string, error) {
	const path = "/dev/tpm0"
	if err := waitForChar(path); err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	const (
		rcSuccess    = 0x000
		rcInitialize = 0x100
	)
	startup := []byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0}
	rc, _, err := tpmCommand(f, startup)
	if err != nil {
		return "", fmt.Errorf("TPM2_Startup: %w", err)
	}
	if rc != rcSuccess && rc != rcInitialize {
		return "", fmt.Errorf("TPM2_Startup: response code %#x", rc)
	}
	getRandom := []byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8}
	grc, body, err := tpmCommand(f, getRandom)
	if err != nil {
		return "", fmt.Errorf("TPM2_GetRandom: %w", err)
	}
	if grc != rcSuccess || len(body) < 2 {
		return "", fmt.Errorf("TPM2_GetRandom: response code %#x, %d body bytes", grc, len(body))
	}
	n := int(binary.BigEndian.Uint16(body))
	if n != 8 || len(body) < 2+n {
		return "", fmt.Errorf("TPM2_GetRandom: got %d random bytes in a %d-byte body, want 8", n, len(body))
	}
	return fmt.Sprintf("Startup rc=%#x, GetRandom -> %x", rc, body[2:2+n]), nil
}

func tpmCommand(f *os.File, cmd []byte) (rc uint32, body []byte, err error) {
	if _, err := f.Write(cmd); err != nil {
		return 0, nil, fmt.Errorf("writing command: %w", err)
	}
	resp := make([]byte, 4096)
	n, err := f.Read(resp)
	if err != nil {
		return 0, nil, fmt.Errorf("reading response: %w", err)
	}
	if n < 10 {
		return 0, nil, fmt.Errorf("short response: %d bytes", n)
	}
	return binary.BigEndian.Uint32(resp[6:10]), resp[10:n], nil
}

func disk() (string, error) {
	const path = "/dev/vda"
	mode, err := waitFor(path)
	if err != nil {
		return "", err
	}
	if mode&fs.ModeDevice == 0 || mode&fs.ModeCharDevice != 0 {
		return "", fmt.Errorf("%s is %v, not a block device", path, mode)
	}
	sectors, err := os.ReadFile("/sys/block/vda/size")
	if err != nil {
		return "", fmt.Errorf("reading disk size: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	head := make([]byte, 512)
	if _, err := f.ReadAt(head, 0); err != nil {
		return "", fmt.Errorf("reading first sector of %s: %w", path, err)
	}
	if !bytes.HasPrefix(head, []byte(DiskMarker)) {
		return "", fmt.Errorf("first sector of %s does not start with %q", path, DiskMarker)
	}
	return fmt.Sprintf("block device, %s sectors, marker read back", strings.TrimSpace(string(sectors))), nil
}

// drm asks card0 for its driver with DRM_IOCTL_VERSION, which proves the
// node answers and that it is virtio-gpu rather than some other card.
func drm() (string, error) {
	const path = "/dev/dri/card0"
	if err := waitForChar(path); err != nil {
		return "", err
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", path, err)
	}
	defer unix.Close(fd)
	// struct drm_version from include/uapi/drm/drm.h on a 64-bit kernel.
	type drmVersion struct {
		Major, Minor, Patch int32
		_                   int32
		NameLen             uint64
		Name                *byte
		DateLen             uint64
		Date                *byte
		DescLen             uint64
		Desc                *byte
	}
	// DRM_IOCTL_VERSION = _IOWR('d', 0x00, struct drm_version)
	req := uintptr(3<<30 | unsafe.Sizeof(drmVersion{})<<16 | 'd'<<8)
	name := make([]byte, 64)
	var p runtime.Pinner
	p.Pin(&name[0])
	defer p.Unpin()
	v := drmVersion{NameLen: uint64(len(name)), Name: &name[0]}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(&v))); errno != 0 {
		return "", fmt.Errorf("DRM_IOCTL_VERSION on %s: %w", path, errno)
	}
	drv := string(name[:min(int(v.NameLen), len(name))])
	if drv != "virtio_gpu" {
		return "", fmt.Errorf("%s is driven by %q, want virtio_gpu", path, drv)
	}
	return fmt.Sprintf("%s, DRM driver %s %d.%d.%d", path, drv, v.Major, v.Minor, v.Patch), nil
}

// fbdev checks the frame buffer the DRM driver emulates, which is where
// Debian's ffmpeg draws (-f fbdev /dev/fb0).
func fbdev() (string, error) {
	const path = "/dev/fb0"
	if err := waitForChar(path); err != nil {
		return "", err
	}
	name, err := os.ReadFile("/sys/class/graphics/fb0/name")
	if err != nil {
		return "", err
	}
	size, err := os.ReadFile("/sys/class/graphics/fb0/virtual_size")
	if err != nil {
		return "", err
	}
	n := strings.TrimSpace(string(name))
	if !strings.Contains(n, "virtio") {
		return "", fmt.Errorf("%s is %q, want the virtio-gpu DRM driver's emulation", path, n)
	}
	return fmt.Sprintf("%s %s %s", path, n, strings.TrimSpace(string(size))), nil
}

// keyboard finds the virtio keyboard among input devices and asks its evdev
// node for its name, which proves the node answers.
func keyboard() (string, error) {
	deadline := time.Now().Add(deviceWait)
	for {
		evs, _ := filepath.Glob("/sys/class/input/event*")
		for _, ev := range evs {
			name, err := os.ReadFile(filepath.Join(ev, "device", "name"))
			if err != nil || !strings.Contains(strings.ToLower(string(name)), "virtio keyboard") {
				continue
			}
			dev := "/dev/input/" + filepath.Base(ev)
			got, err := evdevName(dev)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%s %q", dev, got), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no virtio keyboard among %d event devices", len(evs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func evdevName(dev string) (string, error) {
	if err := waitForChar(dev); err != nil {
		return "", err
	}
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", dev, err)
	}
	defer unix.Close(fd)
	buf := make([]byte, 256)
	// EVIOCGNAME(len) = _IOC(_IOC_READ, 'E', 0x06, len)
	req := uintptr(2<<30 | len(buf)<<16 | 'E'<<8 | 0x06)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
		return "", fmt.Errorf("EVIOCGNAME on %s: %w", dev, errno)
	}
	return string(bytes.TrimRight(buf, "\x00")), nil
}

func frontPanel() (string, error) {
	deadline := time.Now().Add(deviceWait)
	for {
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err != nil || strings.TrimSpace(string(b)) != "front-panel" {
				continue
			}
			dev := "/dev/" + filepath.Base(filepath.Dir(n))
			if err := waitForChar(dev); err != nil {
				return "", err
			}
			f, err := os.OpenFile(dev, os.O_WRONLY, 0)
			if err != nil {
				return "", fmt.Errorf("opening %s: %w", dev, err)
			}
			if _, err := f.WriteString(PanelLine + "\n"); err != nil {
				f.Close()
				return "", fmt.Errorf("writing %s: %w", dev, err)
			}
			if err := f.Close(); err != nil {
				return "", fmt.Errorf("closing %s: %w", dev, err)
			}
			return fmt.Sprintf("%s, wrote %q", dev, PanelLine), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no virtio port named front-panel among %d ports", len(names))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mapperControl() (string, error) {
	const path = "/dev/mapper/control"
	if err := waitForChar(path); err != nil {
		return "", err
	}
	return path + " is a character device", nil
}

// kexecLoad calls kexec_load with more segments than the kernel allows: a
// kernel with KEXEC rejects it with EINVAL, one without answers ENOSYS.
func kexecLoad() (string, error) {
	const tooManySegments = 1000
	_, _, errno := unix.Syscall6(unix.SYS_KEXEC_LOAD, 0, tooManySegments, 0, 0, 0, 0)
	switch errno {
	case unix.ENOSYS:
		return "", errors.New("kexec_load: ENOSYS, kernel built without KEXEC")
	case 0:
		return "", errors.New("kexec_load accepted an invalid segment count")
	}
	return fmt.Sprintf("syscall present (invalid call -> %s)", unix.ErrnoName(errno)), nil
}

// verityTarget lists the registered device-mapper targets through the
// DM_LIST_VERSIONS ioctl and looks for "verity".
func verityTarget() (string, error) {
	const path = "/dev/mapper/control"
	if err := waitForChar(path); err != nil {
		return "", err
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", path, err)
	}
	defer unix.Close(fd)
	// Backed by uint64s so the buffer meets struct dm_ioctl's alignment.
	words := make([]uint64, 2048)
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
	hdr := (*unix.DmIoctl)(unsafe.Pointer(&buf[0]))
	hdr.Version = [3]uint32{unix.DM_VERSION_MAJOR, 0, 0}
	hdr.Data_size = uint32(len(buf))
	hdr.Data_start = unix.SizeofDmIoctl
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.DM_LIST_VERSIONS, uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
		return "", fmt.Errorf("DM_LIST_VERSIONS: %w", errno)
	}
	if hdr.Flags&unix.DM_BUFFER_FULL_FLAG != 0 {
		return "", errors.New("DM_LIST_VERSIONS: result buffer too small")
	}
	var targets []string
	verity := ""
	end := int(hdr.Data_size)
	for off := int(hdr.Data_start); off+16 <= end; {
		next := binary.NativeEndian.Uint32(buf[off:])
		name, _, _ := bytes.Cut(buf[off+16:end], []byte{0})
		v := [3]uint32{
			binary.NativeEndian.Uint32(buf[off+4:]),
			binary.NativeEndian.Uint32(buf[off+8:]),
			binary.NativeEndian.Uint32(buf[off+12:]),
		}
		targets = append(targets, string(name))
		if string(name) == "verity" {
			verity = fmt.Sprintf("v%d.%d.%d", v[0], v[1], v[2])
		}
		if next == 0 {
			break
		}
		off += int(next)
	}
	if verity == "" {
		return "", fmt.Errorf("no verity target among %v", targets)
	}
	return fmt.Sprintf("DM_LIST_VERSIONS lists verity %s (targets: %s)", verity, strings.Join(targets, ",")), nil
}

func hwrng() (string, error) {
	const path = "/dev/hwrng"
	if err := waitForChar(path); err != nil {
		return "", err
	}
	cur, err := os.ReadFile("/sys/class/misc/hw_random/rng_current")
	if err != nil {
		return "", fmt.Errorf("reading current hwrng: %w", err)
	}
	if !strings.HasPrefix(string(cur), "virtio_rng") {
		return "", fmt.Errorf("current hwrng is %q, want virtio_rng", strings.TrimSpace(string(cur)))
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	b := make([]byte, 8)
	if _, err := f.Read(b); err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return fmt.Sprintf("%s from %s -> %x", path, strings.TrimSpace(string(cur)), b), nil
}

func rtc() (string, error) {
	const path = "/dev/rtc0"
	if err := waitForChar(path); err != nil {
		return "", err
	}
	name, err := os.ReadFile("/sys/class/rtc/rtc0/name")
	if err != nil {
		return "", fmt.Errorf("reading rtc0 name: %w", err)
	}
	// RTC_HCTOSYS should have set the clock from the PL031 before init.
	if y := time.Now().Year(); y < 2020 {
		return "", fmt.Errorf("system clock says year %d: RTC not read at boot", y)
	}
	return fmt.Sprintf("%s %q, time %s", path, strings.TrimSpace(string(name)), time.Now().UTC().Format(time.RFC3339)), nil
}

func gpio() (string, error) {
	const path = "/dev/gpiochip0"
	if err := waitForChar(path); err != nil {
		return "", err
	}
	label, err := os.ReadFile("/sys/bus/gpio/devices/gpiochip0/of_node/compatible")
	if err != nil {
		return "", fmt.Errorf("reading gpiochip0 compatible: %w", err)
	}
	return fmt.Sprintf("%s, %s", path, strings.ReplaceAll(strings.TrimRight(string(label), "\x00"), "\x00", ",")), nil
}

func filesystems() (string, error) {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return "", fmt.Errorf("reading /proc/filesystems: %w", err)
	}
	have := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			have[f[len(f)-1]] = true
		}
	}
	want := []string{"ext4", "squashfs", "tmpfs", "devtmpfs"}
	var missing []string
	for _, w := range want {
		if !have[w] {
			missing = append(missing, w)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("missing from /proc/filesystems: %v", missing)
	}
	return strings.Join(want, ","), nil
}

// sockets opens the socket families DHCP and the box's services need.
func sockets() (string, error) {
	fams := []struct {
		name        string
		domain, typ int
		proto       int
	}{
		{"unix", unix.AF_UNIX, unix.SOCK_STREAM, 0},
		{"inet", unix.AF_INET, unix.SOCK_DGRAM, 0},
		{"inet6", unix.AF_INET6, unix.SOCK_DGRAM, 0},
		{"packet", unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL))},
	}
	var names []string
	for _, f := range fams {
		fd, err := unix.Socket(f.domain, f.typ|unix.SOCK_CLOEXEC, f.proto)
		if err != nil {
			return "", fmt.Errorf("socket(%s): %w", f.name, err)
		}
		unix.Close(fd)
		names = append(names, f.name)
	}
	return "opened " + strings.Join(names, ","), nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
