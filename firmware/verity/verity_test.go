package verity

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestTreeSize(t *testing.T) {
	for _, tc := range []struct {
		data, want int64
	}{
		{BlockSize, 0},
		{2 * BlockSize, BlockSize},
		{128 * BlockSize, BlockSize},
		{129 * BlockSize, 3 * BlockSize},
		{128 * 128 * BlockSize, 129 * BlockSize},
	} {
		got, err := TreeSize(tc.data)
		if err != nil || got != tc.want {
			t.Errorf("TreeSize(%d) = %d, %v; want %d", tc.data, got, err, tc.want)
		}
	}
	for _, bad := range []int64{0, -4096, 100, BlockSize + 1} {
		if _, err := TreeSize(bad); err == nil {
			t.Errorf("TreeSize(%d) succeeded, want an error", bad)
		}
	}
}

// TestMatchesVeritysetup checks the tree against the kernel project's own
// tool, so the root hash we sign is the one dm-verity will accept.
func TestMatchesVeritysetup(t *testing.T) {
	tool, err := exec.LookPath("veritysetup")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("veritysetup (Debian cryptsetup-bin) is missing; make deps installs it")
		}
		t.Skip("veritysetup not installed (Debian cryptsetup-bin); skipping the cross-check")
	}
	for _, blocks := range []int{1, 127, 128, 129, 16385} {
		data := make([]byte, blocks*BlockSize)
		rnd := rand.New(rand.NewPCG(uint64(blocks), 1))
		for i := range data {
			data[i] = byte(rnd.Uint32())
		}
		salt := []byte("0123456789abcdef0123456789abcdef")
		root, tree, err := Build(bytes.NewReader(data), int64(len(data)), salt)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		dataPath, hashPath := filepath.Join(dir, "data"), filepath.Join(dir, "hash")
		if err := os.WriteFile(dataPath, data, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(tool, "format", "--no-superblock", "--format=1", "--hash=sha256",
			"--data-block-size=4096", "--hash-block-size=4096", "--salt="+hex.EncodeToString(salt),
			dataPath, hashPath).CombinedOutput()
		if err != nil {
			t.Fatalf("veritysetup: %v\n%s", err, out)
		}
		var wantRoot string
		for _, line := range strings.Split(string(out), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "Root hash" {
				wantRoot = strings.TrimSpace(v)
			}
		}
		if got := hex.EncodeToString(root[:]); got != wantRoot {
			t.Errorf("%d blocks: root hash %s, veritysetup says %s", blocks, got, wantRoot)
		}
		wantTree, err := os.ReadFile(hashPath)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(tree, wantTree[:min(len(wantTree), len(tree))]) || len(wantTree) < len(tree) {
			t.Errorf("%d blocks: tree differs from veritysetup's (%d vs %d bytes)", blocks, len(tree), len(wantTree))
		}
	}
}
