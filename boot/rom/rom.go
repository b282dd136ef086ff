// Package rom holds the facts burned into a box's ROM image at build time:
// the root public key that every firmware image must chain to, the board
// the ROM belongs to, and the lowest signing-key version it accepts.
//
// The values are set by the image baker with the linker
// (-X github.com/boxswarm/boxswarm/boot/rom.rootKey=<hex> and so on), so
// they live inside the signed stage-one binary and nothing on the disk can
// change them. A ROM built without them refuses to boot anything.
package rom

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"strconv"
)

// Set by the linker; see the package comment.
var (
	rootKey       string
	boardID       string
	minKeyVersion string
)

// Facts are the ROM's compiled-in values.
type Facts struct {
	RootKey       ed25519.PublicKey
	BoardID       string
	MinKeyVersion uint32
}

// Load decodes the compiled-in values.
func Load() (Facts, error) {
	return parse(rootKey, boardID, minKeyVersion)
}

func parse(key, board, minVersion string) (Facts, error) {
	k, err := hex.DecodeString(key)
	if err != nil || len(k) != ed25519.PublicKeySize {
		return Facts{}, fmt.Errorf("ROM root key %q is not a %d-byte hex Ed25519 key", key, ed25519.PublicKeySize)
	}
	if board == "" {
		return Facts{}, fmt.Errorf("ROM has no board ID")
	}
	f := Facts{RootKey: k, BoardID: board}
	if minVersion != "" {
		v, err := strconv.ParseUint(minVersion, 10, 32)
		if err != nil {
			return Facts{}, fmt.Errorf("ROM minimum key version %q: %w", minVersion, err)
		}
		f.MinKeyVersion = uint32(v)
	}
	return f, nil
}

// LinkerFlags returns the -X flags that compile f into a stage-one binary.
func LinkerFlags(f Facts) []string {
	const pkg = "github.com/boxswarm/boxswarm/boot/rom."
	return []string{
		"-X", pkg + "rootKey=" + hex.EncodeToString(f.RootKey),
		"-X", pkg + "boardID=" + f.BoardID,
		"-X", pkg + "minKeyVersion=" + strconv.FormatUint(uint64(f.MinKeyVersion), 10),
	}
}
