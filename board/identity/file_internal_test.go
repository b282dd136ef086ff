package identity

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWriteLeavesNoCopy: a write leaves only the identity file, and
// sweeps the temporary files an earlier write cut short left behind,
// but not one another writer may be using now.
func TestWriteLeavesNoCopy(t *testing.T) {
	dir := t.TempDir()
	old, young := filepath.Join(dir, ".identity-1"), filepath.Join(dir, ".identity-2")
	for _, p := range []string{old, young} {
		if err := os.WriteFile(p, []byte("seed"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	if ok, err := writeFile(filepath.Join(dir, "identity"), []byte("blob"), false); !ok || err != nil {
		t.Fatalf("writeFile = %v, %v", ok, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, filepath.Join(dir, e.Name()))
	}
	want := map[string]bool{filepath.Join(dir, "identity"): true, young: true}
	if len(got) != len(want) {
		t.Fatalf("files after the write: %v, want the identity and the young temporary file", got)
	}
	for _, g := range got {
		if !want[g] {
			t.Errorf("left behind: %s", g)
		}
	}
}
