// Package evdev reads the remote control from a Linux input device
// (/dev/input/event*): it finds the device that can act as a remote, decodes
// the kernel's struct input_event records and turns key presses into
// remote.Key values. In QEMU a virtio keyboard stands in for the infrared
// receiver, so the mapping covers what QEMU's sendkey can type as well as the
// media keys of a real remote.
package evdev

import (
	"encoding/binary"
	"fmt"
	"time"
)

// EventSize is the size of struct input_event on a 64-bit kernel: a struct
// timeval (two 64-bit words), type and code (16 bits each) and a 32-bit
// value. 32-bit kernels use a smaller record; the box is 64-bit.
const EventSize = 24

// Event types and codes from include/uapi/linux/input-event-codes.h.
const (
	EvSyn = 0x00
	EvKey = 0x01
	EvMsc = 0x04
	EvRep = 0x14

	SynReport  = 0
	SynDropped = 3
)

// Key event values.
const (
	Release = 0
	Press   = 1
	Repeat  = 2
)

// Event is one struct input_event.
type Event struct {
	Time  time.Duration // since the epoch, as the kernel stamped it
	Type  uint16
	Code  uint16
	Value int32
}

func (e Event) String() string {
	return fmt.Sprintf("type %d code %d value %d", e.Type, e.Code, e.Value)
}

// Parse decodes whole input_event records in native byte order. The kernel
// only ever returns whole records from a read, so a trailing partial record
// means the bytes did not come from an event device.
func Parse(b []byte) ([]Event, error) {
	if len(b)%EventSize != 0 {
		return nil, fmt.Errorf("evdev: %d bytes is not a whole number of %d-byte events", len(b), EventSize)
	}
	evs := make([]Event, 0, len(b)/EventSize)
	for ; len(b) > 0; b = b[EventSize:] {
		sec := int64(binary.NativeEndian.Uint64(b[0:8]))
		usec := int64(binary.NativeEndian.Uint64(b[8:16]))
		evs = append(evs, Event{
			// Wrapping arithmetic is fine: the time is only ever logged.
			Time:  time.Duration(sec)*time.Second + time.Duration(usec)*time.Microsecond,
			Type:  binary.NativeEndian.Uint16(b[16:18]),
			Code:  binary.NativeEndian.Uint16(b[18:20]),
			Value: int32(binary.NativeEndian.Uint32(b[20:24])),
		})
	}
	return evs, nil
}

// Append encodes e as the kernel would and appends it to b (for tests and
// for tools that inject events through uinput).
func Append(b []byte, e Event) []byte {
	sec, usec := int64(e.Time/time.Second), int64(e.Time%time.Second/time.Microsecond)
	b = binary.NativeEndian.AppendUint64(b, uint64(sec))
	b = binary.NativeEndian.AppendUint64(b, uint64(usec))
	b = binary.NativeEndian.AppendUint16(b, e.Type)
	b = binary.NativeEndian.AppendUint16(b, e.Code)
	return binary.NativeEndian.AppendUint32(b, uint32(e.Value))
}
