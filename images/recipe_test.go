package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestShippedRecipesLoad(t *testing.T) {
	files, _ := filepath.Glob("*.json")
	if len(files) == 0 {
		t.Fatal("no recipes found")
	}
	for _, f := range files {
		r, err := Load(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if r.Board+".json" != f {
			t.Errorf("%s describes board %q; recipes are named after their board", f, r.Board)
		}
		if _, err := os.Stat(filepath.Join("..", r.KernelConfig)); err != nil {
			t.Errorf("%s: kernel config: %v", f, err)
		}
	}
}

func TestCheckRefuses(t *testing.T) {
	good, err := Load("qemu-arm64.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Recipe)
		want   string
	}{
		{"no version", func(r *Recipe) { r.ImageVersion = 0 }, "image_version"},
		{"absolute package", func(r *Recipe) { r.Stage2.Init = "/usr/bin/init" }, "stage2.init"},
		{"daemon without program", func(r *Recipe) { r.Stage2.Supervisor.Daemons[0].Path = "/bin/missing" }, "not one of the stage2 programs"},
		{"disk too small", func(r *Recipe) { r.Disk.SizeMiB = 100 }, "no room"},
	} {
		r := good
		r.Stage2.Supervisor.Daemons = append(r.Stage2.Supervisor.Daemons[:0:0], good.Stage2.Supervisor.Daemons...)
		tc.mutate(&r)
		if err := r.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Check() = %v, want an error about %q", tc.name, err, tc.want)
		}
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "typo.json")
	os.WriteFile(p, []byte(`{"bord": "x"}`), 0o600)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "bord") {
		t.Errorf("Load with a misspelt field = %v", err)
	}
}
