package display

import (
	"errors"
	"fmt"
	"image"
	"io/fs"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// drm is a DRM card showing one dumb buffer on one connector.
type drm struct {
	fd     int
	path   string
	conn   uint32
	crtc   uint32
	mode   drmModeInfo
	fb     uint32
	handle uint32
	pitch  int
	mem    []byte
	saved  *drmModeCRTC // what the CRTC showed before, given back on Close
}

// ioctl runs a DRM ioctl, retrying when interrupted as libdrm does. The
// argument is pinned: the kernel follows the user pointers (uint64 fields)
// inside it too, whose targets the caller pins.
func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		switch errno {
		case 0:
			return nil
		case unix.EINTR, unix.EAGAIN:
			continue
		default:
			return errno
		}
	}
}

// ptr gives the kernel a user pointer to a slice's first element, pinned
// until p is unpinned; nil slices give 0.
func ptr[T any](p *runtime.Pinner, s []T) uint64 {
	if len(s) == 0 {
		return 0
	}
	p.Pin(&s[0])
	return uint64(uintptr(unsafe.Pointer(&s[0])))
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

func openDRM(path string, o Options) (d *drm, err error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("DRM %s: %w", path, &fs.PathError{Op: "open", Path: path, Err: err})
	}
	d = &drm{fd: fd, path: path}
	defer func() {
		if err != nil {
			d.Close()
			err = fmt.Errorf("DRM %s: %w", path, err)
		}
	}()
	// The first process to open a card is its master already; asking again
	// fails harmlessly when another master (a compositor) holds it, and the
	// mode set below then says so.
	_ = ioctl(fd, drmIoctlSetMaster, nil)

	capDumb := drmGetCap{Capability: drmCapDumbBuffer}
	if err := ioctl(fd, drmIoctlGetCap, unsafe.Pointer(&capDumb)); err != nil {
		return d, fmt.Errorf("DRM_IOCTL_GET_CAP(DUMB_BUFFER): %w", err)
	}
	if capDumb.Value == 0 {
		return d, errors.New("driver has no dumb buffers")
	}
	crtcs, conns, err := resources(fd)
	if err != nil {
		return d, err
	}
	var reasons []string
	for _, c := range conns {
		conn, modes, connEncs, err := connector(fd, c)
		if err != nil {
			return d, err
		}
		if conn.Connection != drmModeConnected || len(modes) == 0 {
			reasons = append(reasons, fmt.Sprintf("connector %d: not connected (state %d, %d modes)", c, conn.Connection, len(modes)))
			continue
		}
		encoders := map[uint32]drmModeGetEncoder{}
		for _, e := range append(connEncs, conn.EncoderID) {
			if e == 0 {
				continue
			}
			enc := drmModeGetEncoder{EncoderID: e}
			if err := ioctl(fd, drmIoctlModeGetEncoder, unsafe.Pointer(&enc)); err != nil {
				return d, fmt.Errorf("DRM_IOCTL_MODE_GETENCODER(%d): %w", e, err)
			}
			encoders[e] = enc
		}
		crtc, err := pickCRTC(conn.EncoderID, connEncs, encoders, crtcs)
		if err != nil {
			reasons = append(reasons, fmt.Sprintf("connector %d: %v", c, err))
			continue
		}
		d.conn, d.crtc, d.mode = c, crtc, pickMode(modes, o.Size)
		break
	}
	if d.conn == 0 {
		return d, fmt.Errorf("no usable connector among %d: %v", len(conns), reasons)
	}
	if err := d.setup(); err != nil {
		return d, err
	}
	return d, nil
}

// resources lists the card's CRTCs and connectors, asking again if a
// hotplug changed the counts between the two calls. Encoders are reached
// through connectors instead, and framebuffers are not needed.
func resources(fd int) (crtcs, conns []uint32, err error) {
	for range 5 {
		var res drmModeCardRes
		if err := ioctl(fd, drmIoctlModeGetResource, unsafe.Pointer(&res)); err != nil {
			return nil, nil, fmt.Errorf("DRM_IOCTL_MODE_GETRESOURCES: %w", err)
		}
		crtcs = make([]uint32, res.CountCRTCs)
		conns = make([]uint32, res.CountConns)
		var pin runtime.Pinner
		want := res
		// A zero count makes the kernel skip a list, so no pointer is needed.
		res.CountFBs, res.CountEncoders = 0, 0
		res.CRTCIDPtr, res.ConnectorIDPtr = ptr(&pin, crtcs), ptr(&pin, conns)
		err := ioctl(fd, drmIoctlModeGetResource, unsafe.Pointer(&res))
		pin.Unpin()
		if err != nil {
			return nil, nil, fmt.Errorf("DRM_IOCTL_MODE_GETRESOURCES: %w", err)
		}
		if res.CountCRTCs == want.CountCRTCs && res.CountConns == want.CountConns {
			if len(crtcs) == 0 || len(conns) == 0 {
				return nil, nil, fmt.Errorf("card has %d CRTCs and %d connectors", len(crtcs), len(conns))
			}
			return crtcs, conns, nil
		}
	}
	return nil, nil, errors.New("DRM_IOCTL_MODE_GETRESOURCES: counts keep changing")
}

// connector asks for a connector's state, modes and encoders. The first call
// (with no room for modes) makes the driver probe the connector.
func connector(fd int, id uint32) (drmModeGetConnector, []drmModeInfo, []uint32, error) {
	for range 5 {
		c := drmModeGetConnector{ConnectorID: id}
		if err := ioctl(fd, drmIoctlModeGetConn, unsafe.Pointer(&c)); err != nil {
			return c, nil, nil, fmt.Errorf("DRM_IOCTL_MODE_GETCONNECTOR(%d): %w", id, err)
		}
		modes := make([]drmModeInfo, c.CountModes)
		encs := make([]uint32, c.CountEncoders)
		want := c
		var pin runtime.Pinner
		c.ModesPtr, c.EncodersPtr = ptr(&pin, modes), ptr(&pin, encs)
		c.CountProps, c.PropsPtr, c.PropValuesPtr = 0, 0, 0
		err := ioctl(fd, drmIoctlModeGetConn, unsafe.Pointer(&c))
		pin.Unpin()
		if err != nil {
			return c, nil, nil, fmt.Errorf("DRM_IOCTL_MODE_GETCONNECTOR(%d): %w", id, err)
		}
		if c.CountModes == want.CountModes && c.CountEncoders == want.CountEncoders {
			return c, modes, encs, nil
		}
	}
	return drmModeGetConnector{}, nil, nil, fmt.Errorf("DRM_IOCTL_MODE_GETCONNECTOR(%d): counts keep changing", id)
}

// pickCRTC keeps the CRTC the connector's encoder drives already, or takes
// the first CRTC one of its encoders can drive (possible_crtcs is a bit
// mask over the card's CRTC list).
func pickCRTC(current uint32, connEncs []uint32, encoders map[uint32]drmModeGetEncoder, crtcs []uint32) (uint32, error) {
	if e, ok := encoders[current]; ok && e.CRTCID != 0 {
		return e.CRTCID, nil
	}
	for _, id := range connEncs {
		e := encoders[id]
		for i, c := range crtcs {
			if i < 32 && e.PossibleCRTCs&(1<<i) != 0 {
				return c, nil
			}
		}
	}
	return 0, fmt.Errorf("none of encoders %v can drive any of CRTCs %v", connEncs, crtcs)
}

// pickMode takes the mode of the wanted size (highest refresh first), else
// the one the screen prefers, else the first.
func pickMode(modes []drmModeInfo, want image.Point) drmModeInfo {
	best := -1
	for i, m := range modes {
		if int(m.HDisplay) == want.X && int(m.VDisplay) == want.Y && (best < 0 || m.VRefresh > modes[best].VRefresh) {
			best = i
		}
	}
	if best >= 0 {
		return modes[best]
	}
	for _, m := range modes {
		if m.Type&drmModeTypePreferred != 0 {
			return m
		}
	}
	return modes[0]
}

func (d *drm) setup() error {
	w, h := uint32(d.mode.HDisplay), uint32(d.mode.VDisplay)
	cd := drmModeCreateDumb{Width: w, Height: h, BPP: 32}
	if err := ioctl(d.fd, drmIoctlModeCreateDumb, unsafe.Pointer(&cd)); err != nil {
		return fmt.Errorf("DRM_IOCTL_MODE_CREATE_DUMB(%dx%d): %w", w, h, err)
	}
	d.handle, d.pitch = cd.Handle, int(cd.Pitch)
	fb := drmModeFBCmd{Width: w, Height: h, Pitch: cd.Pitch, BPP: 32, Depth: 24, Handle: cd.Handle}
	if err := ioctl(d.fd, drmIoctlModeAddFB, unsafe.Pointer(&fb)); err != nil {
		return fmt.Errorf("DRM_IOCTL_MODE_ADDFB: %w", err)
	}
	d.fb = fb.FBID
	md := drmModeMapDumb{Handle: cd.Handle}
	if err := ioctl(d.fd, drmIoctlModeMapDumb, unsafe.Pointer(&md)); err != nil {
		return fmt.Errorf("DRM_IOCTL_MODE_MAP_DUMB: %w", err)
	}
	mem, err := unix.Mmap(d.fd, int64(md.Offset), int(cd.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mapping the %d-byte dumb buffer: %w", cd.Size, err)
	}
	d.mem = mem
	clear(d.mem)

	saved := drmModeCRTC{CRTCID: d.crtc}
	if ioctl(d.fd, drmIoctlModeGetCRTC, unsafe.Pointer(&saved)) == nil && saved.FBID != 0 {
		d.saved = &saved
	}
	conns := []uint32{d.conn}
	var pin runtime.Pinner
	set := drmModeCRTC{
		SetConnectorsPtr: ptr(&pin, conns), CountConnectors: 1,
		CRTCID: d.crtc, FBID: d.fb, ModeValid: 1, Mode: d.mode,
	}
	err = ioctl(d.fd, drmIoctlModeSetCRTC, unsafe.Pointer(&set))
	pin.Unpin()
	if err != nil {
		return fmt.Errorf("DRM_IOCTL_MODE_SETCRTC(crtc %d, connector %d, %s): %w", d.crtc, d.conn, modeName(d.mode), err)
	}
	return nil
}

func modeName(m drmModeInfo) string {
	return fmt.Sprintf("%dx%d@%d", m.HDisplay, m.VDisplay, m.VRefresh)
}

func (d *drm) Size() image.Point { return image.Pt(int(d.mode.HDisplay), int(d.mode.VDisplay)) }

func (d *drm) Show(img *image.RGBA) error {
	if d.mem == nil {
		return fmt.Errorf("DRM %s: closed", d.path)
	}
	if err := Convert(d.mem, d.pitch, XRGB8888, d.Size(), img); err != nil {
		return fmt.Errorf("DRM %s: %w", d.path, err)
	}
	// Drivers that keep the picture elsewhere (virtio-gpu copies it to the
	// host) only look at the buffer when told it changed; the others have
	// no dirty hook and say ENOSYS.
	dirty := drmModeFBDirtyCmd{FBID: d.fb}
	if err := ioctl(d.fd, drmIoctlModeDirtyFB, unsafe.Pointer(&dirty)); err != nil && err != unix.ENOSYS {
		return fmt.Errorf("DRM %s: DRM_IOCTL_MODE_DIRTYFB: %w", d.path, err)
	}
	return nil
}

func (d *drm) Close() error {
	if d.fd < 0 {
		return nil
	}
	var errs []error
	if d.saved != nil {
		conns := []uint32{d.conn}
		var pin runtime.Pinner
		d.saved.SetConnectorsPtr, d.saved.CountConnectors = ptr(&pin, conns), 1
		if err := ioctl(d.fd, drmIoctlModeSetCRTC, unsafe.Pointer(d.saved)); err != nil {
			errs = append(errs, fmt.Errorf("restoring the CRTC: %w", err))
		}
		pin.Unpin()
	}
	if d.mem != nil {
		if err := unix.Munmap(d.mem); err != nil {
			errs = append(errs, fmt.Errorf("unmapping: %w", err))
		}
		d.mem = nil
	}
	if d.fb != 0 {
		fb := d.fb
		if err := ioctl(d.fd, drmIoctlModeRmFB, unsafe.Pointer(&fb)); err != nil {
			errs = append(errs, fmt.Errorf("DRM_IOCTL_MODE_RMFB: %w", err))
		}
	}
	if d.handle != 0 {
		dd := drmModeDestroyDumb{Handle: d.handle}
		if err := ioctl(d.fd, drmIoctlModeDestroyDumb, unsafe.Pointer(&dd)); err != nil {
			errs = append(errs, fmt.Errorf("DRM_IOCTL_MODE_DESTROY_DUMB: %w", err))
		}
	}
	if err := unix.Close(d.fd); err != nil {
		errs = append(errs, err)
	}
	d.fd = -1
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing DRM %s: %w", d.path, err)
	}
	return nil
}
