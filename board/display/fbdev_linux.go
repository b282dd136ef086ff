package display

import (
	"errors"
	"fmt"
	"image"
	"io/fs"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fbdev is a legacy frame buffer device.
type fbdev struct {
	fd     int
	path   string
	size   image.Point
	format Format
	stride int
	mem    []byte // the whole mapping
	view   []byte // from the visible panning offset on
}

func openFB(path string) (f *fbdev, err error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("fbdev %s: %w", path, &fs.PathError{Op: "open", Path: path, Err: err})
	}
	f = &fbdev{fd: fd, path: path}
	defer func() {
		if err != nil {
			f.Close()
			err = fmt.Errorf("fbdev %s: %w", path, err)
		}
	}()
	var v fbVarScreenInfo
	if err := ioctl(fd, fbioGetVScreenInfo, unsafe.Pointer(&v)); err != nil {
		return f, fmt.Errorf("FBIOGET_VSCREENINFO: %w", err)
	}
	var fix fbFixScreenInfo
	if err := ioctl(fd, fbioGetFScreenInfo, unsafe.Pointer(&fix)); err != nil {
		return f, fmt.Errorf("FBIOGET_FSCREENINFO: %w", err)
	}
	format, stride, offset, err := fbLayout(v, fix)
	if err != nil {
		return f, err
	}
	mem, err := unix.Mmap(fd, 0, int(fix.SMemLen), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return f, fmt.Errorf("mapping %d bytes: %w", fix.SMemLen, err)
	}
	f.mem, f.view = mem, mem[offset:]
	f.size, f.format, f.stride = image.Pt(int(v.XRes), int(v.YRes)), format, stride
	return f, nil
}

// fbLayout reads the pixel format and where the visible picture starts
// from the two screen-info records, refusing layouts it cannot draw.
func fbLayout(v fbVarScreenInfo, fix fbFixScreenInfo) (Format, int, int, error) {
	if fix.Type != fbTypePackedPixels || (fix.Visual != fbVisualTrueColor && fix.Visual != fbVisualDirect) {
		return Format{}, 0, 0, fmt.Errorf("type %d visual %d: not packed true colour", fix.Type, fix.Visual)
	}
	if v.Grayscale != 0 || v.NonStd != 0 {
		return Format{}, 0, 0, errors.New("grayscale or non-standard pixel format")
	}
	ch := func(b fbBitfield) Channel { return Channel{Offset: int(b.Offset), Length: int(b.Length)} }
	f := Format{BitsPerPixel: int(v.BitsPerPixel), Red: ch(v.Red), Green: ch(v.Green), Blue: ch(v.Blue), Alpha: ch(v.Transp)}
	if err := f.Check(); err != nil {
		return Format{}, 0, 0, err
	}
	if v.Red.MSBRight|v.Green.MSBRight|v.Blue.MSBRight != 0 {
		return Format{}, 0, 0, errors.New("bit-reversed colour channels")
	}
	stride := int(fix.LineLength)
	offset := int(v.YOffset)*stride + int(v.XOffset)*f.BitsPerPixel/8
	if v.XRes == 0 || v.YRes == 0 || stride < int(v.XRes)*f.BitsPerPixel/8 {
		return Format{}, 0, 0, fmt.Errorf("%dx%d pixels at %d bytes a line", v.XRes, v.YRes, stride)
	}
	if end := offset + stride*int(v.YRes); end > int(fix.SMemLen) {
		return Format{}, 0, 0, fmt.Errorf("visible area ends at byte %d, past the %d-byte buffer", end, fix.SMemLen)
	}
	return f, stride, offset, nil
}

func (f *fbdev) Size() image.Point { return f.size }

func (f *fbdev) Show(img *image.RGBA) error {
	if f.view == nil {
		return fmt.Errorf("fbdev %s: closed", f.path)
	}
	if err := Convert(f.view, f.stride, f.format, f.size, img); err != nil {
		return fmt.Errorf("fbdev %s: %w", f.path, err)
	}
	return nil
}

func (f *fbdev) Close() error {
	if f.fd < 0 {
		return nil
	}
	var errs []error
	if f.mem != nil {
		if err := unix.Munmap(f.mem); err != nil {
			errs = append(errs, err)
		}
		f.mem, f.view = nil, nil
	}
	if err := unix.Close(f.fd); err != nil {
		errs = append(errs, err)
	}
	f.fd = -1
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing fbdev %s: %w", f.path, err)
	}
	return nil
}
