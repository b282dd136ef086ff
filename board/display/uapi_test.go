package display

import (
	"reflect"
	"testing"
	"unsafe"
)

// The expected values were read from Linux 6.1's uapi headers as compiled
// for arm64 (aarch64-linux-gnu-gcc, sizeof and offsetof), the box's
// kernel; amd64 gives the same.
func TestStructLayouts(t *testing.T) {
	tests := []struct {
		name    string
		v       any
		size    uintptr
		offsets map[string]uintptr
	}{
		{"drm_get_cap", drmGetCap{}, 16, map[string]uintptr{"Value": 8}},
		{"drm_mode_card_res", drmModeCardRes{}, 64, map[string]uintptr{
			"CountFBs": 32, "CountCRTCs": 36, "CountConns": 40, "CountEncoders": 44, "MinWidth": 48, "MaxHeight": 60}},
		{"drm_mode_modeinfo", drmModeInfo{}, 68, map[string]uintptr{
			"HDisplay": 4, "VDisplay": 14, "VScan": 22, "VRefresh": 24, "Flags": 28, "Type": 32, "Name": 36}},
		{"drm_mode_crtc", drmModeCRTC{}, 104, map[string]uintptr{
			"CountConnectors": 8, "CRTCID": 12, "FBID": 16, "X": 20, "GammaSize": 28, "ModeValid": 32, "Mode": 36}},
		{"drm_mode_get_encoder", drmModeGetEncoder{}, 20, map[string]uintptr{"CRTCID": 8, "PossibleCRTCs": 12}},
		{"drm_mode_get_connector", drmModeGetConnector{}, 80, map[string]uintptr{
			"ModesPtr": 8, "CountModes": 32, "CountEncoders": 40, "EncoderID": 44, "ConnectorID": 48, "Connection": 60, "Pad": 76}},
		{"drm_mode_fb_cmd", drmModeFBCmd{}, 28, map[string]uintptr{"Pitch": 12, "Handle": 24}},
		{"drm_mode_fb_dirty_cmd", drmModeFBDirtyCmd{}, 24, map[string]uintptr{"NumClips": 12, "ClipsPtr": 16}},
		{"drm_mode_create_dumb", drmModeCreateDumb{}, 32, map[string]uintptr{"Handle": 16, "Pitch": 20, "Size": 24}},
		{"drm_mode_map_dumb", drmModeMapDumb{}, 16, map[string]uintptr{"Offset": 8}},
		{"drm_mode_destroy_dumb", drmModeDestroyDumb{}, 4, nil},
		{"fb_bitfield", fbBitfield{}, 12, nil},
		{"fb_var_screeninfo", fbVarScreenInfo{}, 160, map[string]uintptr{
			"XOffset": 16, "YOffset": 20, "BitsPerPixel": 24, "Red": 32, "Green": 44, "Blue": 56, "Transp": 68, "NonStd": 80, "Rotate": 136}},
		{"fb_fix_screeninfo", fbFixScreenInfo{}, 80, map[string]uintptr{
			"SMemStart": 16, "SMemLen": 24, "Type": 28, "Visual": 36, "XPanStep": 40, "LineLength": 48, "MMIOStart": 56, "MMIOLen": 64, "Capabilities": 72}},
	}
	for _, tt := range tests {
		typ := reflect.TypeOf(tt.v)
		if typ.Size() != tt.size {
			t.Errorf("struct %s: %d bytes, kernel has %d", tt.name, typ.Size(), tt.size)
		}
		for field, want := range tt.offsets {
			f, ok := typ.FieldByName(field)
			if !ok {
				t.Errorf("struct %s: no field %s", tt.name, field)
				continue
			}
			if f.Offset != want {
				t.Errorf("struct %s: %s at %d, kernel has %d", tt.name, field, f.Offset, want)
			}
		}
	}
	// Spot checks with unsafe, independent of reflection.
	if unsafe.Offsetof(drmModeCRTC{}.Mode) != 36 || unsafe.Sizeof(drmModeCRTC{}) != 104 {
		t.Error("drm_mode_crtc layout")
	}
	if unsafe.Offsetof(fbFixScreenInfo{}.LineLength) != 48 || unsafe.Sizeof(fbFixScreenInfo{}) != 80 {
		t.Error("fb_fix_screeninfo layout")
	}
}

// Each request number encodes direction, the 'd' type, a number and the
// argument size; the size must be that of the Go struct passed with it.
func TestIoctlNumbers(t *testing.T) {
	const rw = 3
	tests := []struct {
		name string
		req  uint32
		nr   uint32
		size uintptr
	}{
		{"GET_CAP", drmIoctlGetCap, 0x0c, unsafe.Sizeof(drmGetCap{})},
		{"MODE_GETRESOURCES", drmIoctlModeGetResource, 0xa0, unsafe.Sizeof(drmModeCardRes{})},
		{"MODE_GETCRTC", drmIoctlModeGetCRTC, 0xa1, unsafe.Sizeof(drmModeCRTC{})},
		{"MODE_SETCRTC", drmIoctlModeSetCRTC, 0xa2, unsafe.Sizeof(drmModeCRTC{})},
		{"MODE_GETENCODER", drmIoctlModeGetEncoder, 0xa6, unsafe.Sizeof(drmModeGetEncoder{})},
		{"MODE_GETCONNECTOR", drmIoctlModeGetConn, 0xa7, unsafe.Sizeof(drmModeGetConnector{})},
		{"MODE_ADDFB", drmIoctlModeAddFB, 0xae, unsafe.Sizeof(drmModeFBCmd{})},
		{"MODE_RMFB", drmIoctlModeRmFB, 0xaf, unsafe.Sizeof(uint32(0))},
		{"MODE_DIRTYFB", drmIoctlModeDirtyFB, 0xb1, unsafe.Sizeof(drmModeFBDirtyCmd{})},
		{"MODE_CREATE_DUMB", drmIoctlModeCreateDumb, 0xb2, unsafe.Sizeof(drmModeCreateDumb{})},
		{"MODE_MAP_DUMB", drmIoctlModeMapDumb, 0xb3, unsafe.Sizeof(drmModeMapDumb{})},
		{"MODE_DESTROY_DUMB", drmIoctlModeDestroyDumb, 0xb4, unsafe.Sizeof(drmModeDestroyDumb{})},
	}
	for _, tt := range tests {
		want := uint32(rw<<30 | tt.size<<16 | 'd'<<8 | uintptr(tt.nr))
		if tt.req != want {
			t.Errorf("DRM_IOCTL_%s = %#x, want %#x", tt.name, tt.req, want)
		}
	}
	if drmIoctlSetMaster != 'd'<<8|0x1e {
		t.Errorf("DRM_IOCTL_SET_MASTER = %#x", drmIoctlSetMaster)
	}
}
