package keys

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/boxswarm/boxswarm/media"
)

func TestDir(t *testing.T) {
	d := Dir(t.TempDir())
	id := media.ID{1}
	key := bytes.Repeat([]byte{0xc3}, 32)
	ctx := context.Background()
	if _, err := d.ContentKey(ctx, id); !errors.Is(err, ErrNoKey) {
		t.Fatalf("ContentKey before Put = %v", err)
	}
	if err := d.Put(ctx, id, key); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(string(d), id.String()+".key")); st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", st.Mode())
	}
	if err := d.Put(ctx, id, bytes.Repeat([]byte{1}, 32)); err == nil {
		t.Error("a second Put replaced the key")
	}
	s, err := d.ContentKey(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.Bytes(), key) {
		t.Fatal("key read back differs")
	}
	mem := s.Bytes()
	s.Destroy()
	s.Destroy()
	if s.Bytes() != nil {
		t.Error("Bytes after Destroy")
	}
	_ = mem // unmapped: touching it would fault, which is the point
	os.WriteFile(filepath.Join(string(d), media.ID{2}.String()+".key"), []byte("junk"), 0o600)
	if _, err := d.ContentKey(ctx, media.ID{2}); err == nil {
		t.Error("a damaged key file was accepted")
	}
	if err := d.Put(ctx, media.ID{3}, []byte("short")); err == nil {
		t.Error("a short key was accepted")
	}
}
