// Package stage1 is the first-stage verifier (B1): the logic of the u-root
// initramfs in the ROM that decides what the box runs.
//
// Run finds the firmware slots on the disk, picks one by the A/B boot-control
// record, reads its image once into memory, verifies it against the ROM root
// key, the board and the TPM's rollback floors, moves the floors forward for
// an image that has proven itself, measures the manifest into a PCR, locks the
// TPM's rollback index, and hands exactly the verified bytes to the second
// stage. It never executes, mounts or trusts anything from the disk that it
// has not verified, and it returns only to say why nothing could be booted.
package stage1

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/firmware/bootctl"
	"github.com/boxswarm/boxswarm/firmware/rollback"
	"github.com/boxswarm/boxswarm/firmware/slotdisk"
)

// Handover is what the second stage receives: verified bytes and the
// command line stage one built for it.
type Handover struct {
	Kernel, Initramfs, DTB []byte
	Cmdline                string
}

// Config is everything stage one needs; the ROM build fixes the first three.
type Config struct {
	RootKey       ed25519.PublicKey
	BoardID       string
	MinKeyVersion uint32

	Disk slotdisk.Device
	// DiskDevice is the disk's device node as the second stage's kernel
	// will name it, for the dm-verity mapping of a root filesystem.
	DiskDevice string
	TPM        transport.TPM
	// Execute starts the second stage. On success it does not return.
	Execute func(context.Context, Handover) error
	Log     *slog.Logger
}

// Refusal says why no slot could be booted.
type Refusal struct {
	Slots []SlotError // each slot tried, in boot order
	Err   error       // a failure before any slot could be tried
}

// SlotError is why one slot was rejected.
type SlotError struct {
	Slot bootctl.Slot
	Err  error
}

func (r *Refusal) Error() string {
	if r.Err != nil {
		return r.Err.Error()
	}
	if len(r.Slots) == 0 {
		return "no slot is marked bootable"
	}
	parts := make([]string, len(r.Slots))
	for i, s := range r.Slots {
		parts[i] = fmt.Sprintf("slot %s: %v", s.Slot, s.Err)
	}
	return strings.Join(parts, "; ")
}

func (r *Refusal) Unwrap() []error {
	if r.Err != nil {
		return []error{r.Err}
	}
	errs := make([]error, len(r.Slots))
	for i, s := range r.Slots {
		errs[i] = s.Err
	}
	return errs
}

// Run boots the first slot in boot order that verifies. It returns only if
// none does, or if the hand-over itself failed; the error is then a
// *Refusal.
func Run(ctx context.Context, c Config) error {
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if firmware.VerificationDisabled {
		log.Warn("THIS BUILD DOES NOT VERIFY FIRMWARE: for measurements only, never for a real box")
	}
	refuse := func(format string, args ...any) error {
		return &Refusal{Err: fmt.Errorf(format, args...)}
	}
	if len(c.RootKey) != ed25519.PublicKeySize {
		return refuse("ROM has no valid root key (%d bytes)", len(c.RootKey))
	}
	if c.TPM == nil {
		return refuse("no TPM: rollback protection cannot be enforced")
	}
	store := rollback.New(c.TPM, rollback.WithLogger(log))
	if err := store.Ensure(ctx); err != nil {
		return refuse("TPM rollback index: %w", err)
	}
	floors, err := store.Read(ctx)
	if err != nil {
		return refuse("TPM rollback index: %w", err)
	}
	policy := firmware.Policy{
		RootKey:         c.RootKey,
		BoardID:         c.BoardID,
		MinKeyVersion:   max(c.MinKeyVersion, floors.KeyVersion),
		MinImageVersion: floors.ImageVersion,
	}
	log.Info("policy", "root_key", firmware.KeyIDOf(c.RootKey), "board", c.BoardID,
		"min_key_version", policy.MinKeyVersion, "min_image_version", policy.MinImageVersion)

	layout, err := slotdisk.ReadLayout(c.Disk, c.Disk.Size())
	if err != nil {
		return refuse("disk: %w", err)
	}
	state, err := layout.LoadState(c.Disk)
	if err != nil {
		// The record only orders the attempts; verification decides.
		log.Warn("boot control record unreadable, trying every slot", "err", err)
	}
	// The record orders the attempts; a slot it rules out is still tried
	// last, because the record is not trusted and verification decides.
	order := state.BootOrder()
	for _, s := range []bootctl.Slot{bootctl.SlotA, bootctl.SlotB} {
		if !slices.Contains(order, s) {
			order = append(order, s)
		}
	}
	log.Info("boot order", "slots", fmt.Sprint(order))

	refusal := &Refusal{}
	for _, slot := range order {
		trial := !state.Slots[slot].Successful
		if trial {
			state.BeginAttempt(slot)
			if err := layout.SaveState(c.Disk, state); err != nil {
				// Without a recorded attempt a bad trial image could be
				// retried forever; refuse it rather than loop.
				refusal.Slots = append(refusal.Slots, SlotError{slot, fmt.Errorf("cannot record trial attempt: %w", err)})
				continue
			}
		}
		part := layout.Slots[slot]
		started := time.Now()
		v, err := firmware.LoadSlot(layout.Slot(c.Disk, slot), part.Size(), policy)
		if err != nil {
			log.Error("slot rejected", "slot", slot, "err", err)
			refusal.Slots = append(refusal.Slots, SlotError{slot, err})
			state.MarkBad(slot)
			if err := layout.SaveState(c.Disk, state); err != nil {
				log.Warn("could not record bad slot", "slot", slot, "err", err)
			}
			continue
		}
		log.Info("slot verified", "slot", slot, "image_version", v.Manifest.ImageVersion,
			"key", v.Manifest.KeyID, "key_version", v.Manifest.KeyVersion, "trial", trial,
			"manifest_sha256", hex.EncodeToString(v.Digest[:]), "took", time.Since(started).Round(time.Millisecond))
		if err := seal(ctx, c.TPM, store, v, !trial, log); err != nil {
			return refuse("TPM: %w", err)
		}
		h := Handover{Kernel: v.Kernel, Initramfs: v.Initramfs, DTB: v.DTB,
			Cmdline: Cmdline(v, slot, trial, c.DiskDevice, part.Offset())}
		log.Info("handing over", "slot", slot, "cmdline", h.Cmdline)
		if err := c.Execute(ctx, h); err != nil {
			return refuse("hand-over to slot %s failed: %w", slot, err)
		}
		return refuse("hand-over to slot %s returned", slot)
	}
	return refusal
}

// seal records what is about to run in the TPM: floors forward for a proven
// image, the manifest measured, and the rollback index locked so nothing
// after stage one can change it before the next reset.
func seal(ctx context.Context, tpm transport.TPM, store *rollback.Store, v *firmware.Verified, proven bool, log *slog.Logger) error {
	if proven {
		to := rollback.Floors{ImageVersion: v.Manifest.ImageVersion, KeyVersion: v.Manifest.KeyVersion}
		floors, err := store.Raise(ctx, to)
		if err != nil {
			return fmt.Errorf("raise rollback floors to image %d key %d: %w", to.ImageVersion, to.KeyVersion, err)
		}
		log.Info("rollback floors", "image_version", floors.ImageVersion, "key_version", floors.KeyVersion)
	}
	if err := rollback.Extend(ctx, tpm, rollback.ManifestPCR, v.Digest); err != nil {
		return fmt.Errorf("measure manifest: %w", err)
	}
	if err := store.Lock(ctx); err != nil {
		return fmt.Errorf("lock rollback index: %w", err)
	}
	return nil
}
