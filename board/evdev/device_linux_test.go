package evdev

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/board/remote"
)

// pipeDevice stands a pipe in for an event device: both are pollable, so the
// same deadline-driven reads are exercised.
func pipeDevice(t *testing.T) (*Device, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	d := newDevice(r, "pipe", "test remote")
	t.Cleanup(func() { d.Close(); w.Close() })
	return d, w
}

func TestDeviceReadsKeys(t *testing.T) {
	d, w := pipeDevice(t)
	var b []byte
	for _, e := range frame(key(keyDown, Press)) {
		b = Append(b, e)
	}
	for _, e := range frame(key(keyDown, Release)) {
		b = Append(b, e)
	}
	for _, e := range frame(key(30, Press), key(keyEnter, Press)) {
		b = Append(b, e)
	}
	// Split mid-record: a device never does, but a reader must not lose sync.
	go func() {
		w.Write(b[:37])
		time.Sleep(10 * time.Millisecond)
		w.Write(b[37:])
	}()
	ctx, cancel := contextWithTimeout(t, 5*time.Second)
	defer cancel()
	var got []remote.Key
	for range 3 {
		k, err := d.ReadKey(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, k)
	}
	want := []remote.Key{remote.Down, remote.Char('A'), remote.OK}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("keys %v, want %v", got, want)
		}
	}
}

func TestDeviceReadEndsWithContext(t *testing.T) {
	d, w := pipeDevice(t)
	ctx, cancel := context.WithCancel(t.Context())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	start := time.Now()
	if _, err := d.ReadKey(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("cancel took %v", el)
	}
	// The device still works afterwards: the deadline did not stick.
	var b []byte
	for _, e := range frame(key(keyUp, Press)) {
		b = Append(b, e)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := contextWithTimeout(t, 5*time.Second)
	defer cancel2()
	if k, err := d.ReadKey(ctx2); err != nil || k != remote.Up {
		t.Fatalf("after a cancel: %v, %v", k, err)
	}
}

func TestDeviceReportsEOF(t *testing.T) {
	d, w := pipeDevice(t)
	w.Close()
	_, err := d.ReadKey(t.Context())
	if err == nil || !strings.Contains(err.Error(), "reading pipe") {
		t.Fatalf("err = %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open("/nonexistent/event7"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing node: %v", err)
	}
	p := filepath.Join(t.TempDir(), "event0")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(p)
	if err == nil || !strings.Contains(err.Error(), "not an input event device") {
		t.Errorf("regular file: %v", err)
	}
	ctx, cancel := contextWithTimeout(t, 100*time.Millisecond)
	defer cancel()
	if _, err := OpenRemote(ctx, Finder{SysDir: t.TempDir()}); !errors.Is(err, ErrNoRemote) {
		t.Errorf("OpenRemote without devices: %v", err)
	}
}
