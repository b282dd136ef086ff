// Package bake turns an image recipe into everything a board boots, without
// root privileges or loop devices: the board's kernel, the stage-one
// initramfs built with u-root, the second-stage initramfs and root
// filesystem (Debian packages, see images/debroot), the signed firmware
// image, the ROM stand-in and a GPT disk image with both slots,
// the boot-control record and the data partition.
//
// The steps are exported one by one so that tests can bake variants (an
// older version, another key, a broken daemon) from the same parts.
package bake

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	qemuarm64 "github.com/boxswarm/boxswarm/board/qemu-arm64"
	"github.com/boxswarm/boxswarm/board/qemu-arm64/rom"
	bootrom "github.com/boxswarm/boxswarm/boot/rom"
	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/firmware/bootctl"
	"github.com/boxswarm/boxswarm/images"
	"github.com/boxswarm/boxswarm/images/debroot"
)

// Options says what to bake and where.
type Options struct {
	// Root is the repository root (the folder holding go.mod).
	Root   string
	Recipe images.Recipe
	// Out receives the artifacts (out/<board>).
	Out  string
	Keys Keys
	// Stage1Tags are extra Go build tags for stage one; only measurements
	// use one (insecure_noverify).
	Stage1Tags []string
	Progress   *Progress
}

// Artifacts are the files a bake produced, all inside Options.Out, and
// what they were made from. Bake records them in bake.json.
type Artifacts struct {
	Kernel   string // the board's kernel Image (both stages)
	Stage1   string // u-root initramfs of the ROM
	Stage2   string // second-stage initramfs
	RootFS   string // second-stage root filesystem (squashfs); empty if the recipe has none
	BOM      string // bill of materials
	Firmware string // signed slot image
	ROM      rom.Artifacts
	Disk     string // disk image: slot A holds Firmware, slot B is empty
	KeyDir   string
	Recipe   images.Recipe
}

// ArtifactsFile is the record of a bake inside its output folder.
const ArtifactsFile = "bake.json"

// LoadArtifacts reads the record of an earlier bake.
func LoadArtifacts(dir string) (Artifacts, error) {
	b, err := os.ReadFile(filepath.Join(dir, ArtifactsFile))
	if err != nil {
		return Artifacts{}, fmt.Errorf("no baked images in %s (run make image): %w", dir, err)
	}
	var a Artifacts
	if err := json.Unmarshal(b, &a); err != nil {
		return Artifacts{}, fmt.Errorf("%s: %w", filepath.Join(dir, ArtifactsFile), err)
	}
	return a, nil
}

// File names inside Options.Out.
const (
	KernelFile   = "Image"
	Stage1File   = "stage1.cpio"
	Stage2File   = "stage2.cpio"
	BOMFile      = "bom.txt"
	FirmwareFile = "firmware.img"
	DiskFile     = "disk.img"
)

// Bake runs every step.
func Bake(ctx context.Context, o Options) (Artifacts, error) {
	if o.Progress == nil {
		o.Progress = NewProgress(nil)
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return Artifacts{}, err
	}
	var err error
	if o.Recipe, err = ResolveBox(o.Recipe, o.Root, o.Keys.Dir); err != nil {
		return Artifacts{}, err
	}
	a := Artifacts{
		Kernel:   filepath.Join(o.Out, KernelFile),
		Stage1:   filepath.Join(o.Out, Stage1File),
		Stage2:   filepath.Join(o.Out, Stage2File),
		BOM:      filepath.Join(o.Out, BOMFile),
		Firmware: filepath.Join(o.Out, FirmwareFile),
		Disk:     filepath.Join(o.Out, DiskFile),
		KeyDir:   o.Keys.Dir,
		Recipe:   o.Recipe,
	}
	r := o.Recipe
	p := o.Progress
	p.Total(6)
	if r.RootFS != nil {
		p.Total(7)
	}
	if err := p.Step("kernel (cached by configuration)", func() error {
		return Kernel(ctx, o.Root, filepath.Dir(r.KernelConfig), a.Kernel)
	}); err != nil {
		return Artifacts{}, err
	}
	facts := bootrom.Facts{RootKey: o.Keys.Root, BoardID: r.Board, MinKeyVersion: r.Stage1.MinKeyVersion}
	if err := p.Step("stage one initramfs (u-root)", func() error {
		return Stage1(ctx, o.Root, r, facts, o.Stage1Tags, a.Stage1)
	}); err != nil {
		return Artifacts{}, err
	}
	if err := p.Step("second-stage initramfs", func() error {
		return Stage2(ctx, o.Root, r, a.Stage2)
	}); err != nil {
		return Artifacts{}, err
	}
	parts := []string{a.Kernel, a.Stage1, a.Stage2}
	var debs []debroot.Package
	if r.RootFS != nil {
		a.RootFS = filepath.Join(o.Out, RootFSFile)
		parts = append(parts, a.RootFS)
		if err := p.Step("root filesystem (Debian packages, cached)", func() error {
			var err error
			debs, err = RootFS(ctx, r, a.RootFS, p)
			return err
		}); err != nil {
			return Artifacts{}, err
		}
	}
	if err := p.Step("sign firmware image", func() error {
		bom, err := BillOfMaterials(ctx, o.Root, r, parts...)
		if err != nil {
			return err
		}
		for _, d := range debs {
			bom = fmt.Appendf(bom, "debian-%s %s %s sha256:%s\n", r.DebianArch(), d.Name, d.Version, d.SHA256)
		}
		if err := WriteFileAtomic(a.BOM, bom); err != nil {
			return err
		}
		spec, err := Spec(r, r.ImageVersion, a.Kernel, a.Stage2, bom)
		if err != nil {
			return err
		}
		if a.RootFS != "" {
			if err := AddRootFS(&spec, a.RootFS); err != nil {
				return err
			}
		}
		img, m, err := firmware.BuildImage(spec, o.Keys.Signer)
		if err != nil {
			return err
		}
		if err := WriteFileAtomic(a.Firmware, img); err != nil {
			return err
		}
		p.Note("image version %d, key %s v%d, manifest sha256 %x, %.1f MiB of a %d MiB slot",
			m.ImageVersion, m.KeyID, m.KeyVersion, m.Digest(), float64(len(img))/(1<<20), r.Disk.SlotMiB)
		return nil
	}); err != nil {
		return Artifacts{}, err
	}
	if err := p.Step("ROM stand-in (U-Boot + signed FIT)", func() error {
		var err error
		a.ROM, err = rom.Build(ctx, rom.Options{
			Kernel: a.Kernel, Initramfs: a.Stage1, KeyDir: o.Keys.Dir, KeyName: ROMKeyName,
			OutDir: filepath.Join(o.Out, "rom"), BootArgs: r.Stage1.BootArgs,
			Machine: qemuarm64.Machine{TPMSocket: "present"},
		})
		return err
	}); err != nil {
		return Artifacts{}, err
	}
	if err := p.Step("disk image", func() error {
		img, err := os.ReadFile(a.Firmware)
		if err != nil {
			return err
		}
		if err := WriteDisk(a.Disk, r.Disk, img, nil, FactoryState()); err != nil {
			return err
		}
		return FormatData(ctx, a.Disk, r.Disk)
	}); err != nil {
		return Artifacts{}, err
	}
	rec, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return Artifacts{}, err
	}
	return a, WriteFileAtomic(filepath.Join(o.Out, ArtifactsFile), rec)
}

// FactoryState is the boot-control record of a freshly baked disk: slot A
// holds a proven image, slot B is empty.
func FactoryState() bootctl.State {
	var st bootctl.State
	st.Slots[bootctl.SlotA] = bootctl.SlotState{Priority: 1, Successful: true}
	return st
}

// Sign builds the signed slot image from a kernel and second-stage
// initramfs on disk.
func Sign(s firmware.Signer, r images.Recipe, version uint64, kernel, stage2 string, bom []byte) ([]byte, *firmware.Manifest, error) {
	spec, err := Spec(r, version, kernel, stage2, bom)
	if err != nil {
		return nil, nil, err
	}
	return firmware.BuildImage(spec, s)
}

// Spec is what Sign signs, for callers that add to it (a root filesystem).
func Spec(r images.Recipe, version uint64, kernel, stage2 string, bom []byte) (firmware.ImageSpec, error) {
	k, err := os.ReadFile(kernel)
	if err != nil {
		return firmware.ImageSpec{}, err
	}
	i, err := os.ReadFile(stage2)
	if err != nil {
		return firmware.ImageSpec{}, err
	}
	return firmware.ImageSpec{
		BoardID:      r.Board,
		ImageVersion: version,
		Build:        buildString(r, version),
		BOM:          bom,
		Kernel:       k,
		Initramfs:    i,
		Cmdline:      r.Stage2.Cmdline,
	}, nil
}

func buildString(r images.Recipe, version uint64) string {
	s := fmt.Sprintf("%s v%d", r.Board, version)
	if d := strings.TrimSpace(r.Description); d != "" {
		if i := strings.IndexAny(d, ".\n"); i > 0 {
			d = d[:i]
		}
		s += ": " + d
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// WriteFileAtomic writes through a temporary file in the same folder, so an
// interrupted run never leaves a truncated artifact under its final name.
func WriteFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
