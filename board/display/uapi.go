package display

// Kernel interface structures and ioctl requests, from
// include/uapi/drm/drm.h, include/uapi/drm/drm_mode.h and
// include/uapi/linux/fb.h, laid out as on a 64-bit kernel (the box is
// arm64; amd64 lays them out the same). The tests check every size and
// the offsets that matter against values the kernel headers give.

// DRM ioctl requests (_IOWR('d', nr, struct) unless noted).
const (
	drmIoctlSetMaster       = 0x0000641e // _IO('d', 0x1e)
	drmIoctlGetCap          = 0xc010640c // struct drm_get_cap
	drmIoctlModeGetResource = 0xc04064a0 // struct drm_mode_card_res
	drmIoctlModeGetCRTC     = 0xc06864a1 // struct drm_mode_crtc
	drmIoctlModeSetCRTC     = 0xc06864a2 // struct drm_mode_crtc
	drmIoctlModeGetEncoder  = 0xc01464a6 // struct drm_mode_get_encoder
	drmIoctlModeGetConn     = 0xc05064a7 // struct drm_mode_get_connector
	drmIoctlModeAddFB       = 0xc01c64ae // struct drm_mode_fb_cmd
	drmIoctlModeRmFB        = 0xc00464af // unsigned int
	drmIoctlModeDirtyFB     = 0xc01864b1 // struct drm_mode_fb_dirty_cmd
	drmIoctlModeCreateDumb  = 0xc02064b2 // struct drm_mode_create_dumb
	drmIoctlModeMapDumb     = 0xc01064b3 // struct drm_mode_map_dumb
	drmIoctlModeDestroyDumb = 0xc00464b4 // struct drm_mode_destroy_dumb
)

// fbdev ioctl requests.
const (
	fbioGetVScreenInfo = 0x4600
	fbioGetFScreenInfo = 0x4602
)

const (
	drmCapDumbBuffer     = 0x1
	drmModeConnected     = 1
	drmModeTypePreferred = 1 << 3
	drmDisplayModeLen    = 32

	fbTypePackedPixels = 0
	fbVisualTrueColor  = 2
	fbVisualDirect     = 4
)

// struct drm_get_cap
type drmGetCap struct {
	Capability uint64
	Value      uint64
}

// struct drm_mode_card_res
type drmModeCardRes struct {
	FBIDPtr        uint64
	CRTCIDPtr      uint64
	ConnectorIDPtr uint64
	EncoderIDPtr   uint64
	CountFBs       uint32
	CountCRTCs     uint32
	CountConns     uint32
	CountEncoders  uint32
	MinWidth       uint32
	MaxWidth       uint32
	MinHeight      uint32
	MaxHeight      uint32
}

// struct drm_mode_modeinfo
type drmModeInfo struct {
	Clock      uint32
	HDisplay   uint16
	HSyncStart uint16
	HSyncEnd   uint16
	HTotal     uint16
	HSkew      uint16
	VDisplay   uint16
	VSyncStart uint16
	VSyncEnd   uint16
	VTotal     uint16
	VScan      uint16
	VRefresh   uint32
	Flags      uint32
	Type       uint32
	Name       [drmDisplayModeLen]byte
}

// struct drm_mode_crtc
type drmModeCRTC struct {
	SetConnectorsPtr uint64
	CountConnectors  uint32
	CRTCID           uint32
	FBID             uint32
	X                uint32
	Y                uint32
	GammaSize        uint32
	ModeValid        uint32
	Mode             drmModeInfo
}

// struct drm_mode_get_encoder
type drmModeGetEncoder struct {
	EncoderID      uint32
	EncoderType    uint32
	CRTCID         uint32
	PossibleCRTCs  uint32
	PossibleClones uint32
}

// struct drm_mode_get_connector
type drmModeGetConnector struct {
	EncodersPtr     uint64
	ModesPtr        uint64
	PropsPtr        uint64
	PropValuesPtr   uint64
	CountModes      uint32
	CountProps      uint32
	CountEncoders   uint32
	EncoderID       uint32
	ConnectorID     uint32
	ConnectorType   uint32
	ConnectorTypeID uint32
	Connection      uint32
	MMWidth         uint32
	MMHeight        uint32
	Subpixel        uint32
	Pad             uint32
}

// struct drm_mode_fb_cmd
type drmModeFBCmd struct {
	FBID   uint32
	Width  uint32
	Height uint32
	Pitch  uint32
	BPP    uint32
	Depth  uint32
	Handle uint32
}

// struct drm_mode_fb_dirty_cmd
type drmModeFBDirtyCmd struct {
	FBID     uint32
	Flags    uint32
	Color    uint32
	NumClips uint32
	ClipsPtr uint64
}

// struct drm_mode_create_dumb
type drmModeCreateDumb struct {
	Height uint32
	Width  uint32
	BPP    uint32
	Flags  uint32
	Handle uint32
	Pitch  uint32
	Size   uint64
}

// struct drm_mode_map_dumb
type drmModeMapDumb struct {
	Handle uint32
	Pad    uint32
	Offset uint64
}

// struct drm_mode_destroy_dumb
type drmModeDestroyDumb struct {
	Handle uint32
}

// struct fb_bitfield
type fbBitfield struct {
	Offset   uint32
	Length   uint32
	MSBRight uint32
}

// struct fb_var_screeninfo
type fbVarScreenInfo struct {
	XRes, YRes               uint32
	XResVirtual, YResVirtual uint32
	XOffset, YOffset         uint32
	BitsPerPixel             uint32
	Grayscale                uint32
	Red, Green, Blue, Transp fbBitfield
	NonStd                   uint32
	Activate                 uint32
	Height, Width            uint32
	AccelFlags               uint32
	PixClock                 uint32
	LeftMargin, RightMargin  uint32
	UpperMargin, LowerMargin uint32
	HSyncLen, VSyncLen       uint32
	Sync                     uint32
	VMode                    uint32
	Rotate                   uint32
	Colorspace               uint32
	Reserved                 [4]uint32
}

// struct fb_fix_screeninfo; the implicit padding after YWrapStep and
// LineLength is the C compiler's too.
type fbFixScreenInfo struct {
	ID           [16]byte
	SMemStart    uint64 // unsigned long
	SMemLen      uint32
	Type         uint32
	TypeAux      uint32
	Visual       uint32
	XPanStep     uint16
	YPanStep     uint16
	YWrapStep    uint16
	LineLength   uint32
	MMIOStart    uint64 // unsigned long
	MMIOLen      uint32
	Accel        uint32
	Capabilities uint16
	Reserved     [2]uint16
}
