package bake

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/boxswarm/boxswarm/firmware/keyfile"
	"github.com/boxswarm/boxswarm/images"
	"github.com/boxswarm/boxswarm/images/boxconfig"
)

func TestBoxRecords(t *testing.T) {
	keys := t.TempDir()
	r := images.Recipe{Box: &images.Box{HeadEnd: "10.0.2.2:7443"}}
	if _, err := boxRecords(r.Box); err == nil {
		t.Fatal("an unresolved head-end data folder was accepted")
	}
	r, err := ResolveBox(r, "/repo", keys)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(keys, DevHeadEndDir); r.Box.HeadEndData != want {
		t.Fatalf("head-end data %q, want the development stand-ins in %q", r.Box.HeadEndData, want)
	}
	ca1, _ := os.ReadFile(filepath.Join(r.Box.HeadEndData, images.HeadEndCAFile))
	if _, err := ResolveBox(images.Recipe{Box: &images.Box{HeadEnd: "x:1"}}, "/repo", keys); err != nil {
		t.Fatal(err)
	}
	if ca2, _ := os.ReadFile(filepath.Join(r.Box.HeadEndData, images.HeadEndCAFile)); !bytes.Equal(ca1, ca2) || len(ca1) == 0 {
		t.Error("the development head-end CA was not made once and kept")
	}
	if rel, _ := ResolveBox(images.Recipe{Box: &images.Box{HeadEnd: "x:1", HeadEndData: "he"}}, "/repo", keys); rel.Box.HeadEndData != "/repo/he" {
		t.Errorf("relative head-end data resolved to %q, want /repo/he", rel.Box.HeadEndData)
	}

	recs, err := boxRecords(r.Box)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, rec := range recs {
		if rec.ReaderAt != nil {
			b := make([]byte, rec.FileSize)
			if _, err := rec.ReadAt(b, 0); err != nil && int(rec.FileSize) != 0 {
				t.Fatal(err)
			}
			files["/"+rec.Name] = b
		}
	}
	var cfg boxconfig.Config
	if err := json.Unmarshal(files[boxconfig.Path], &cfg); err != nil {
		t.Fatalf("%s: %v", boxconfig.Path, err)
	}
	if err := cfg.Check(); err != nil || cfg.HeadEnd != "10.0.2.2:7443" {
		t.Fatalf("box configuration %+v: %v", cfg, err)
	}
	if !bytes.Equal(files[cfg.CA], ca1) {
		t.Errorf("the image's CA %s is not the head-end's", cfg.CA)
	}
	for _, k := range append([]string{cfg.SchedulerKey}, cfg.MediaKeys...) {
		p := filepath.Join(t.TempDir(), "k.pub")
		if err := os.WriteFile(p, files[k], 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := keyfile.ReadPublicKey(p); err != nil {
			t.Errorf("%s in the image: %v", k, err)
		}
	}
}

func TestFormatData(t *testing.T) {
	if _, err := exec.LookPath("mke2fs"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mke2fs missing")
		}
		t.Skip("mke2fs missing (apt install e2fsprogs)")
	}
	d := images.Disk{SizeMiB: 40, SlotMiB: 8, BootctlMiB: 1}
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := WriteDisk(path, d, []byte("slot a"), nil, FactoryState()); err != nil {
		t.Fatal(err)
	}
	if err := FormatData(t.Context(), path, d); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(path)
	tbl, _, err := DiskLayout(d)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tbl.Find("data")
	if err != nil {
		t.Fatal(err)
	}
	sb := first[p.Offset()+1024 : p.Offset()+2048]
	if magic := binary.LittleEndian.Uint16(sb[56:]); magic != 0xef53 {
		t.Fatalf("no ext4 superblock in the data partition (magic %#x)", magic)
	}
	const compatJournal, incompatExtents = 0x4, 0x40
	if binary.LittleEndian.Uint32(sb[92:])&compatJournal == 0 || binary.LittleEndian.Uint32(sb[96:])&incompatExtents == 0 {
		t.Errorf("the data file system lacks a journal or extents: not ext4")
	}
	if !bytes.HasPrefix(first[tbl.Partitions[0].Offset():], []byte("slot a")) {
		t.Error("formatting the data partition damaged slot A")
	}
	if err := WriteDisk(path, d, []byte("slot a"), nil, FactoryState()); err != nil {
		t.Fatal(err)
	}
	if err := FormatData(t.Context(), path, d); err != nil {
		t.Fatal(err)
	}
	if second, _ := os.ReadFile(path); !bytes.Equal(first, second) {
		t.Error("the same disk formatted twice differs: not reproducible")
	}
}
