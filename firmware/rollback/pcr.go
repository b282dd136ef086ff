package rollback

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// ManifestPCR is the PCR stage one extends with the SHA-256 digest of the
// verified manifest it is about to boot. PCRs 0-7 belong to the firmware
// before us (U-Boot's measured boot uses them); 8-15 are the OS loader's and
// OS's in the PC Client convention, and of those 8 is the one GRUB uses for
// "what the boot loader decided", which is our role. Others are taken on a
// typical Linux: 10 by IMA, 11-13 by systemd-stub, 15 by systemd. Like every
// PCR below 16 it can be reset only by a TPM reset, so stage two cannot undo
// the measurement (16 and 23 are resettable from locality 0).
const ManifestPCR = 8

// maxPCR is the highest PCR index a PC Client-style TPM must have.
const maxPCR = 23

// Extend extends PCR pcr's SHA-256 bank with digest. Only that bank is
// extended: on a TPM that also has a SHA-1 bank allocated, the SHA-1 value of
// the PCR stays at its reset value, so attestation must quote the SHA-256
// bank.
func Extend(ctx context.Context, tpm transport.TPM, pcr uint32, digest [32]byte) error {
	if pcr > maxPCR {
		return fmt.Errorf("PCR_Extend PCR %d: index above %d", pcr, maxPCR)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("PCR_Extend PCR %d: %w", pcr, err)
	}
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{
			{HashAlg: tpm2.TPMAlgSHA256, Digest: digest[:]},
		}},
	}.Execute(tpm)
	if err != nil {
		return fmt.Errorf("PCR_Extend PCR %d SHA-256: %w", pcr, err)
	}
	return nil
}

// ReadPCR returns the SHA-256 bank value of PCR pcr.
func ReadPCR(ctx context.Context, tpm transport.TPM, pcr uint32) ([32]byte, error) {
	var out [32]byte
	if pcr > maxPCR {
		return out, fmt.Errorf("PCR_Read PCR %d: index above %d", pcr, maxPCR)
	}
	if err := ctx.Err(); err != nil {
		return out, fmt.Errorf("PCR_Read PCR %d: %w", pcr, err)
	}
	sel := tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash:      tpm2.TPMAlgSHA256,
		PCRSelect: tpm2.PCClientCompatible.PCRs(uint(pcr)),
	}}}
	rsp, err := tpm2.PCRRead{PCRSelectionIn: sel}.Execute(tpm)
	if err != nil {
		return out, fmt.Errorf("PCR_Read PCR %d SHA-256: %w", pcr, err)
	}
	// The TPM silently drops what it cannot return (e.g. a bank that is not
	// allocated), so check that the answer is for what we asked.
	got := rsp.PCRSelectionOut.PCRSelections
	if len(got) != 1 || got[0].Hash != tpm2.TPMAlgSHA256 || !bytes.Equal(trimZeros(got[0].PCRSelect), trimZeros(sel.PCRSelections[0].PCRSelect)) ||
		len(rsp.PCRValues.Digests) != 1 {
		return out, fmt.Errorf("PCR_Read PCR %d SHA-256: TPM returned another selection (is the SHA-256 bank allocated?)", pcr)
	}
	d := rsp.PCRValues.Digests[0].Buffer
	if len(d) != len(out) {
		return out, fmt.Errorf("PCR_Read PCR %d SHA-256: digest of %d bytes", pcr, len(d))
	}
	copy(out[:], d)
	return out, nil
}

func trimZeros(b []byte) []byte {
	return bytes.TrimRight(b, "\x00")
}

// ExpectedPCR returns the value a SHA-256 PCR that held initial has after
// being extended with digests in order: PCR = SHA-256(PCR || digest) for
// each. A PCR below 16 starts at all zeros after a TPM reset.
func ExpectedPCR(initial [32]byte, digests ...[32]byte) [32]byte {
	pcr := initial
	for _, d := range digests {
		h := sha256.New()
		h.Write(pcr[:])
		h.Write(d[:])
		h.Sum(pcr[:0])
	}
	return pcr
}
