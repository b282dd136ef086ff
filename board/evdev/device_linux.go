package evdev

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/boxswarm/boxswarm/board/remote"
)

// ioctl requests from include/uapi/linux/input.h (generic _IOC encoding,
// the same on arm64 and amd64).
const (
	eviocgname256 = 0x81004506 // EVIOCGNAME(256)
	eviocgrab     = 0x40044590 // EVIOCGRAB
)

// Device is an open input event device delivering remote keys. It is not
// safe for concurrent use.
type Device struct {
	f     *os.File
	path  string
	name  string
	tr    Translator
	buf   []byte
	carry []byte
	queue []remote.Key
}

var _ remote.Reader = (*Device)(nil)

// Open opens an event device node, checking that it is one.
func Open(path string) (*Device, error) {
	// O_RDONLY is enough to read events and to grab the device.
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("opening input device: %w", err)
	}
	name, err := deviceName(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is not an input event device: %w", path, err)
	}
	return newDevice(f, path, name), nil
}

// OpenRemote waits until ctx ends for the device Finder picks, and opens it.
func OpenRemote(ctx context.Context, find Finder) (*Device, error) {
	c, err := find.Wait(ctx)
	if err != nil {
		return nil, err
	}
	return Open(c.Path)
}

func newDevice(f *os.File, path, name string) *Device {
	return &Device{f: f, path: path, name: name, buf: make([]byte, 64*EventSize)}
}

func deviceName(f *os.File) (string, error) {
	var name [256]byte
	n, err := ioctl(f, eviocgname256, unsafe.Pointer(&name[0]))
	if err != nil {
		return "", fmt.Errorf("EVIOCGNAME: %w", err)
	}
	if n > 0 && name[n-1] == 0 {
		n--
	}
	return string(name[:min(n, len(name))]), nil
}

// ioctl runs one ioctl on f's descriptor without taking the file out of the
// runtime's poller (which f.Fd would do). arg stays an unsafe.Pointer up to
// the system call: captured by the closure it lives on the heap, where it
// cannot move, and KeepAlive holds it until the kernel is done.
func ioctl(f *os.File, req uintptr, arg unsafe.Pointer) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var r uintptr
	var errno unix.Errno
	if err := rc.Control(func(fd uintptr) {
		r, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(arg))
	}); err != nil {
		return 0, err
	}
	runtime.KeepAlive(arg)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// ioctlValue runs an ioctl whose argument is a plain value.
func ioctlValue(f *os.File, req, v uintptr) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno unix.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, req, v)
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// Path is the device node.
func (d *Device) Path() string { return d.path }

// Name is the kernel's name for the device.
func (d *Device) Name() string { return d.name }

// Grab takes the device for this process alone, so that keys meant for the
// TV interface do not also reach the kernel console.
func (d *Device) Grab() error {
	if err := ioctlValue(d.f, eviocgrab, 1); err != nil {
		return fmt.Errorf("EVIOCGRAB on %s: %w", d.path, err)
	}
	return nil
}

// ReadKey returns the next key pressed, or repeated while held for keys
// that move (see Translator).
func (d *Device) ReadKey(ctx context.Context) (remote.Key, error) {
	for len(d.queue) == 0 {
		if err := d.fill(ctx); err != nil {
			return remote.None, err
		}
	}
	k := d.queue[0]
	d.queue = d.queue[1:]
	return k, nil
}

// fill reads at least one event. The file is in the runtime's poller (event
// devices support poll), so a deadline interrupts a blocked read when ctx
// ends.
func (d *Device) fill(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := d.f.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("reading %s: %w", d.path, err)
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		_ = d.f.SetReadDeadline(time.Unix(1, 0))
	})
	n, err := d.f.Read(d.buf)
	if !stop() {
		// The deadline is being set; wait so it cannot leak into the next read.
		<-fired
		if err != nil || n == 0 {
			return ctx.Err()
		}
	}
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("reading %s: %w", d.path, err)
	}
	d.carry = append(d.carry, d.buf[:n]...)
	whole := len(d.carry) / EventSize * EventSize
	evs, err := Parse(d.carry[:whole])
	if err != nil {
		return fmt.Errorf("reading %s: %w", d.path, err)
	}
	d.carry = append(d.carry[:0], d.carry[whole:]...)
	for _, e := range evs {
		d.queue = append(d.queue, d.tr.Feed(e)...)
	}
	return nil
}

// Close releases the device (and a grab with it).
func (d *Device) Close() error {
	if err := d.f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", d.path, err)
	}
	return nil
}
