// Package handoff is the contract between the two boot stages: the facts
// stage one established about the image it verified, passed to the second
// stage on the kernel command line it built.
package handoff

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/boxswarm/boxswarm/firmware/bootctl"
)

// Command-line parameter names.
const (
	paramSlot       = "boxswarm.slot"
	paramVersion    = "boxswarm.version"
	paramKeyVersion = "boxswarm.keyversion"
	paramTrial      = "boxswarm.trial"
	paramManifest   = "boxswarm.manifest"
	paramRootFS     = "boxswarm.rootfs"
)

// Params are what stage one tells the second stage.
type Params struct {
	Slot       bootctl.Slot
	Version    uint64   // image version
	KeyVersion uint32   // signing-key version
	Trial      bool     // the image has not yet reported a healthy boot
	Manifest   [32]byte // SHA-256 of the manifest, as measured into the PCR
	RootFS     string   // device-mapper name of the dm-verity root filesystem, if any
}

// Args renders the parameters as kernel command-line arguments.
func (p Params) Args() []string {
	trial := "0"
	if p.Trial {
		trial = "1"
	}
	a := []string{
		paramSlot + "=" + p.Slot.String(),
		paramVersion + "=" + strconv.FormatUint(p.Version, 10),
		paramKeyVersion + "=" + strconv.FormatUint(uint64(p.KeyVersion), 10),
		paramTrial + "=" + trial,
		paramManifest + "=" + hex.EncodeToString(p.Manifest[:]),
	}
	if p.RootFS != "" {
		a = append(a, paramRootFS+"="+p.RootFS)
	}
	return a
}

// Parse reads the parameters from a kernel command line. Every parameter
// except the root filesystem is required: a second stage started by
// anything but stage one has no business running.
func Parse(cmdline string) (Params, error) {
	vals := map[string]string{}
	for _, f := range strings.Fields(cmdline) {
		if k, v, ok := strings.Cut(f, "="); ok && strings.HasPrefix(k, "boxswarm.") {
			if _, dup := vals[k]; dup {
				return Params{}, fmt.Errorf("hand-over parameter %s given twice", k)
			}
			vals[k] = v
		}
	}
	get := func(k string) (string, error) {
		v, ok := vals[k]
		if !ok {
			return "", fmt.Errorf("hand-over parameter %s missing: not started by stage one?", k)
		}
		return v, nil
	}
	var p Params
	var err error
	var s string
	if s, err = get(paramSlot); err != nil {
		return Params{}, err
	}
	if p.Slot, err = bootctl.ParseSlot(s); err != nil {
		return Params{}, fmt.Errorf("%s: %w", paramSlot, err)
	}
	if s, err = get(paramVersion); err != nil {
		return Params{}, err
	}
	if p.Version, err = strconv.ParseUint(s, 10, 64); err != nil {
		return Params{}, fmt.Errorf("%s: %w", paramVersion, err)
	}
	if s, err = get(paramKeyVersion); err != nil {
		return Params{}, err
	}
	kv, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return Params{}, fmt.Errorf("%s: %w", paramKeyVersion, err)
	}
	p.KeyVersion = uint32(kv)
	if s, err = get(paramTrial); err != nil {
		return Params{}, err
	}
	switch s {
	case "0":
	case "1":
		p.Trial = true
	default:
		return Params{}, fmt.Errorf("%s=%q: want 0 or 1", paramTrial, s)
	}
	if s, err = get(paramManifest); err != nil {
		return Params{}, err
	}
	if b, err := hex.DecodeString(s); err != nil || len(b) != len(p.Manifest) {
		return Params{}, fmt.Errorf("%s=%q: want %d hex bytes", paramManifest, s, len(p.Manifest))
	} else {
		copy(p.Manifest[:], b)
	}
	p.RootFS = vals[paramRootFS]
	return p, nil
}
