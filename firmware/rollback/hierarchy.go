package rollback

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// phEnable is bit 0 of TPMA_STARTUP_CLEAR (TPM 2.0 Part 2, 8.11).
const phEnable = 1 << 0

// PlatformHierarchyEnabled reports whether the platform hierarchy is enabled
// (TPMA_STARTUP_CLEAR.phEnable). It is, after every TPM reset, until stage
// one's Lock; stage two can use it to check that stage one did lock.
func PlatformHierarchyEnabled(ctx context.Context, tpm transport.TPM) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("GetCapability TPM_PT_STARTUP_CLEAR: %w", err)
	}
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTStartupClear),
		PropertyCount: 1,
	}.Execute(tpm)
	if err != nil {
		return false, fmt.Errorf("GetCapability TPM_PT_STARTUP_CLEAR: %w", err)
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return false, fmt.Errorf("GetCapability TPM_PT_STARTUP_CLEAR: %w", err)
	}
	for _, p := range props.TPMProperty {
		if p.Property == tpm2.TPMPTStartupClear {
			return p.Value&phEnable != 0, nil
		}
	}
	return false, fmt.Errorf("GetCapability TPM_PT_STARTUP_CLEAR: property missing from response")
}

// DisablePlatformHierarchy sends TPM2_HierarchyControl(TPM_RH_PLATFORM,
// enable=TPM_RH_PLATFORM, state=NO) with the platform's empty password. Until
// the next TPM reset nothing can then use platform authorization: no NV
// write, undefine or define under it, and no re-enabling (only platform
// authorization could). Store.Lock calls it; it is exported for a stage one
// that must hand over (e.g. to a recovery shell) without a usable Store.
//
// go-tpm v0.9.8's tpm2 package has no HierarchyControl command and its
// command marshalling is unexported, so the command is built by hand here.
func DisablePlatformHierarchy(ctx context.Context, tpm transport.TPM) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("HierarchyControl disabling platform: %w", err)
	}
	if err := send(tpm, hierarchyControlCommand(tpm2.TPMRHPlatform, tpm2.TPMRHPlatform, false)); err != nil {
		return fmt.Errorf("HierarchyControl disabling platform: %w", err)
	}
	return nil
}

// hierarchyControlCommand encodes TPM2_HierarchyControl (Part 3, 24.2)
// authorised by auth's empty password.
func hierarchyControlCommand(auth, enable tpm2.TPMHandle, state bool) []byte {
	b := make([]byte, 0, 32)
	b = binary.BigEndian.AppendUint16(b, uint16(tpm2.TPMSTSessions))
	b = binary.BigEndian.AppendUint32(b, 0) // commandSize, patched below
	b = binary.BigEndian.AppendUint32(b, uint32(tpm2.TPMCCHierarchyControl))
	b = binary.BigEndian.AppendUint32(b, uint32(auth))
	// Authorization area: one TPMS_AUTH_COMMAND for a password session with
	// an empty nonce, no attributes and an empty password.
	b = binary.BigEndian.AppendUint32(b, 4+2+1+2) // authorizationSize
	b = binary.BigEndian.AppendUint32(b, uint32(tpm2.TPMRSPW))
	b = binary.BigEndian.AppendUint16(b, 0) // nonceCaller
	b = append(b, 0)                        // sessionAttributes
	b = binary.BigEndian.AppendUint16(b, 0) // hmac (the password)
	b = binary.BigEndian.AppendUint32(b, uint32(enable))
	if state {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	binary.BigEndian.PutUint32(b[2:6], uint32(len(b)))
	return b
}

// send runs a hand-built command and returns its response code as a
// tpm2.TPMRC error, so callers can use errors.Is as with go-tpm's commands.
func send(tpm transport.TPM, cmd []byte) error {
	rsp, err := tpm.Send(cmd)
	if err != nil {
		return err
	}
	if len(rsp) < 10 {
		return fmt.Errorf("response of %d bytes is shorter than a header", len(rsp))
	}
	if size := binary.BigEndian.Uint32(rsp[2:6]); int(size) != len(rsp) {
		return fmt.Errorf("response header says %d bytes, got %d", size, len(rsp))
	}
	if rc := tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])); rc != tpm2.TPMRCSuccess {
		return rc
	}
	return nil
}
