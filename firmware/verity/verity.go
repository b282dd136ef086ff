// Package verity computes dm-verity hash trees, so that images can be baked
// in pure Go and a root filesystem can be handed to the kernel with nothing
// but its root hash.
//
// The tree is the kernel's format 1 with SHA-256, 4096-byte data and hash
// blocks, the salt prepended to every hashed block, and no superblock: the
// levels are stored root-most first, each padded to whole blocks, exactly as
// `veritysetup format --no-superblock` writes them.
package verity

import (
	"crypto/sha256"
	"fmt"
	"io"
)

// BlockSize is the data and hash block size.
const BlockSize = 4096

const hashesPerBlock = BlockSize / sha256.Size

// levels returns the number of hash blocks per level, leaf level first. As
// in the kernel, a single data block has no tree: its hash is the root.
func levels(dataBlocks int64) []int64 {
	var ls []int64
	for n := dataBlocks; n > 1; {
		n = (n + hashesPerBlock - 1) / hashesPerBlock
		ls = append(ls, n)
	}
	return ls
}

// TreeSize returns the size in bytes of the hash tree for dataSize bytes of
// data, which must be a positive multiple of BlockSize. It is zero for a
// single block.
func TreeSize(dataSize int64) (int64, error) {
	if dataSize <= 0 || dataSize%BlockSize != 0 {
		return 0, fmt.Errorf("verity: data size %d is not a positive multiple of %d", dataSize, BlockSize)
	}
	var blocks int64
	for _, n := range levels(dataSize / BlockSize) {
		blocks += n
	}
	return blocks * BlockSize, nil
}

// Build hashes dataSize bytes read from data and returns the root hash and
// the tree.
func Build(data io.ReaderAt, dataSize int64, salt []byte) (root [32]byte, tree []byte, err error) {
	size, err := TreeSize(dataSize)
	if err != nil {
		return root, nil, err
	}
	ls := levels(dataSize / BlockSize)
	tree = make([]byte, size)
	// Level i (leaf = 0) starts after all levels above it.
	start := make([]int64, len(ls))
	var off int64
	for i := len(ls) - 1; i >= 0; i-- {
		start[i] = off
		off += ls[i] * BlockSize
	}
	h := sha256.New()
	sum := func(block []byte) []byte {
		h.Reset()
		h.Write(salt)
		h.Write(block)
		return h.Sum(nil)
	}
	block := make([]byte, BlockSize)
	if len(ls) == 0 {
		if _, err := data.ReadAt(block, 0); err != nil {
			return root, nil, fmt.Errorf("verity: read data block 0: %w", err)
		}
		copy(root[:], sum(block))
		return root, tree, nil
	}
	for i := int64(0); i < dataSize/BlockSize; i++ {
		if _, err := data.ReadAt(block, i*BlockSize); err != nil {
			return root, nil, fmt.Errorf("verity: read data block %d: %w", i, err)
		}
		copy(tree[start[0]+i*sha256.Size:], sum(block))
	}
	for l := 1; l < len(ls); l++ {
		for i := int64(0); i < ls[l-1]; i++ {
			below := tree[start[l-1]+i*BlockSize : start[l-1]+(i+1)*BlockSize]
			copy(tree[start[l]+i*sha256.Size:], sum(below))
		}
	}
	top := tree[start[len(ls)-1] : start[len(ls)-1]+BlockSize]
	copy(root[:], sum(top))
	return root, tree, nil
}
