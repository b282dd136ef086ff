// Package firmware defines the signed firmware image a box boots from one of
// its two disk slots, and the checks that decide whether it may run.
//
// A slot holds a fixed 16-byte header (magic, envelope format, envelope
// length), the signed envelope, and the components (kernel, initramfs,
// optional device tree, command line, optional dm-verity root filesystem)
// at block-aligned offsets after the first ReservedSize bytes. The envelope
// carries a signing-key certificate signed by the ROM root key, and a
// manifest signed by that signing key. The manifest names the board, the
// image version (the rollback index), the signing key and its version, and
// every component's offset, size and SHA-256, plus the hash of the build's
// bill of materials. FORMAT.md in this folder is the byte-level description.
//
// Guarantees:
//   - Every record has exactly one encoding; parsing refuses unknown format
//     versions and fields, repeated or reordered fields, wrong lengths and
//     trailing bytes, and checks every length against a fixed limit before
//     allocating.
//   - LoadSlot reads each byte of a slot once and returns only bytes it has
//     hashed in memory, so a disk that answers differently on a second read
//     cannot change what runs.
//   - A leaked signing key is retired by raising the minimum key version,
//     never by changing the ROM root key.
//   - Every refusal wraps one of the Err* reasons.
package firmware
