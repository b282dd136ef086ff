package evdev

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Candidate is an event device that can serve as the remote.
type Candidate struct {
	Path  string // the device node, such as /dev/input/event0
	Name  string // the kernel's name for it, such as "QEMU Virtio Keyboard"
	Score int    // how many of the box's keys it has
}

// ErrNoRemote says no input device has the keys a remote needs.
var ErrNoRemote = errors.New("no input device with arrow and select keys")

// Finder looks for the remote among input devices through sysfs, which
// describes every device's name and capabilities without opening it.
type Finder struct {
	SysDir string // /sys/class/input if empty
	DevDir string // /dev/input if empty
}

// Find returns the device best suited as the remote: among those with all
// four arrows and a select key (enter, OK or select), the one with the most
// keys the box understands, the lowest event number on a tie. Mice, power
// buttons and the like lack the arrows and are never chosen.
func (f Finder) Find() (Candidate, error) {
	sys, dev := f.SysDir, f.DevDir
	if sys == "" {
		sys = "/sys/class/input"
	}
	if dev == "" {
		dev = "/dev/input"
	}
	events, err := filepath.Glob(filepath.Join(sys, "event*"))
	if err != nil {
		return Candidate{}, fmt.Errorf("listing %s: %w", sys, err)
	}
	sort.Slice(events, func(i, j int) bool { return eventNumber(events[i]) < eventNumber(events[j]) })
	var best Candidate
	var reasons []string
	for _, ev := range events {
		c, err := candidate(ev)
		if err != nil {
			reasons = append(reasons, fmt.Sprintf("%s: %v", filepath.Base(ev), err))
			continue
		}
		if c.Score > best.Score {
			c.Path = filepath.Join(dev, filepath.Base(ev))
			best = c
		}
	}
	if best.Path == "" {
		if len(reasons) == 0 {
			return Candidate{}, fmt.Errorf("%w: no event devices in %s", ErrNoRemote, sys)
		}
		return Candidate{}, fmt.Errorf("%w: %s", ErrNoRemote, strings.Join(reasons, "; "))
	}
	return best, nil
}

// Wait calls Find until a device appears or ctx ends: at boot the input
// devices are probed while the daemons already start.
func (f Finder) Wait(ctx context.Context) (Candidate, error) {
	for {
		c, err := f.Find()
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return Candidate{}, fmt.Errorf("waiting for the remote: %w (last: %w)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func eventNumber(path string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(path), "event"))
	if err != nil {
		return 1 << 30
	}
	return n
}

// candidate reads one event device's description: dir/device is the input
// device, holding its name and capability bitmaps.
func candidate(dir string) (Candidate, error) {
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, "device", name))
		return strings.TrimSpace(string(b)), err
	}
	name, err := read("name")
	if err != nil {
		return Candidate{}, err
	}
	evText, err := read("capabilities/ev")
	if err != nil {
		return Candidate{}, err
	}
	ev, err := ParseBitmap(evText)
	if err != nil {
		return Candidate{}, fmt.Errorf("%q: capabilities/ev: %w", name, err)
	}
	if !ev.Has(EvKey) {
		return Candidate{}, fmt.Errorf("%q has no keys", name)
	}
	keyText, err := read("capabilities/key")
	if err != nil {
		return Candidate{}, err
	}
	keys, err := ParseBitmap(keyText)
	if err != nil {
		return Candidate{}, fmt.Errorf("%q: capabilities/key: %w", name, err)
	}
	score, err := Score(keys)
	if err != nil {
		return Candidate{}, fmt.Errorf("%q: %w", name, err)
	}
	return Candidate{Name: name, Score: score}, nil
}

// Score counts the keys of a capability bitmap the box understands, or says
// why the device cannot be the remote.
func Score(keys Bitmap) (int, error) {
	for _, c := range remoteKeys {
		if !keys.Has(int(c)) {
			return 0, fmt.Errorf("no arrow key %d", c)
		}
	}
	selectable := false
	for _, c := range selectKeys {
		selectable = selectable || keys.Has(int(c))
	}
	if !selectable {
		return 0, errors.New("no enter, OK or select key")
	}
	n := 0
	for c := range maxCode + 1 {
		if _, ok := KeyFor(uint16(c)); ok && keys.Has(c) {
			n++
		}
	}
	return n, nil
}

// maxCode is KEY_MAX: no key code is higher.
const maxCode = 0x2ff

// Bitmap is a capability bitmap, bit n set when the device has code n.
type Bitmap []uint64

// Has reports whether bit n is set.
func (b Bitmap) Has(n int) bool {
	if n < 0 || n/64 >= len(b) {
		return false
	}
	return b[n/64]&(1<<(n%64)) != 0
}

// ParseBitmap reads a bitmap as sysfs prints it: hexadecimal words of the
// kernel's long (64 bits on the box), most significant first, separated by
// spaces, with leading zero words left out.
func ParseBitmap(s string) (Bitmap, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return nil, errors.New("empty bitmap")
	}
	// More words than KEY_MAX needs means it is not a capability bitmap.
	if len(fields) > (maxCode+1)/64 {
		return nil, fmt.Errorf("bitmap of %d words, at most %d expected", len(fields), (maxCode+1)/64)
	}
	b := make(Bitmap, len(fields))
	for i, f := range fields {
		w, err := strconv.ParseUint(f, 16, 64)
		if err != nil {
			return nil, fmt.Errorf("bitmap word %d %q: %w", i, f, err)
		}
		b[len(fields)-1-i] = w
	}
	return b, nil
}
