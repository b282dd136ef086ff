package images

import (
	"os"
	"path"
	"path/filepath"
	"slices"
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
		{"unknown compression", func(r *Recipe) { r.RootFS = &RootFS{Compression: "lz4", Debian: good.RootFS.Debian} }, "rootfs.compression"},
		{"rootfs without packages", func(r *Recipe) { r.RootFS = &RootFS{} }, "rootfs.debian is required"},
		{"rootfs program not absolute", func(r *Recipe) {
			d := *good.RootFS.Debian
			d.Programs = []string{"ffmpeg"}
			r.RootFS = &RootFS{Debian: &d}
		}, "rootfs.debian: program"},
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

func TestShippedRecipeDecodes(t *testing.T) {
	r, err := Load("qemu-arm64.json")
	if err != nil {
		t.Fatal(err)
	}
	if r.RootFS == nil || r.RootFS.Debian == nil {
		t.Fatal("the box has no root filesystem: the decoder (Debian's ffmpeg) lives there")
	}
	if r.RootFS.SquashfsCompression() != "zstd" || r.DebianArch() != "arm64" {
		t.Errorf("compression %q, architecture %q", r.RootFS.SquashfsCompression(), r.DebianArch())
	}
	d := r.RootFS.Debian
	if !slices.Contains(d.Packages, "ffmpeg") || !slices.Contains(d.Programs, "/usr/bin/ffmpeg") {
		t.Errorf("root filesystem %+v has no ffmpeg", d)
	}
	// The decoder's own libraries, and what ffmpeg calls as it starts
	// (found by running it: stubbing these ends it at once), stay real.
	for _, lib := range []string{"libavcodec.so.59", "libavformat.so.59", "libavutil.so.57", "libswscale.so.6",
		"libavdevice.so.59", "libc.so.6", "libstdc++.so.6", "libgnutls.so.30", "libaom.so.3", "libvpx.so.7",
		"libx265.so.199", "libgme.so.0", "libopenmpt.so.0"} {
		for _, p := range d.Stubs {
			if ok, _ := path.Match(p, lib); ok {
				t.Errorf("stub pattern %q covers %s, which the box's decoding needs", p, lib)
			}
		}
	}
}
