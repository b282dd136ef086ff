// Package images holds the declarative recipes the image baker turns into
// everything a board boots: which kernel configuration, which stage-one
// program goes into the ROM, which programs and daemons the second stage
// carries, and how the disk is laid out. A recipe is a JSON file named after
// its board (qemu-arm64.json); unknown fields are errors, so a typo never
// silently bakes a different image.
package images

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/boxswarm/boxswarm/boot/supervisor"
	"github.com/boxswarm/boxswarm/images/debroot"
)

// Recipe describes one board's images.
type Recipe struct {
	// Description says what the image is for; shown by the baker and
	// recorded in the firmware's build string.
	Description string `json:"description"`
	Board       string `json:"board"`
	// ImageVersion is the firmware's rollback index.
	ImageVersion uint64 `json:"image_version"`
	// KernelConfig is the kernel configuration fragment, relative to the
	// repository root; the same kernel boots both stages.
	KernelConfig string `json:"kernel_config"`
	Stage1       Stage1 `json:"stage1"`
	Stage2       Stage2 `json:"stage2"`
	// RootFS is the second stage's optional root filesystem.
	RootFS *RootFS `json:"rootfs,omitempty"`
	Disk   Disk    `json:"disk"`
	// Box is the operator's configuration the baker writes into the
	// second stage (images/boxconfig); nil: none.
	Box *Box `json:"box,omitempty"`
}

// Box is how the box finds and trusts its head-end: operator facts the
// manufacturer bakes into the signed second stage as boxconfig.Path, with
// the keys and the CA certificate next to it in /etc/boxswarm, so the
// image's signature covers them.
type Box struct {
	// HeadEnd is the gateway's address as the box reaches it, host:port
	// (10.0.2.2 is the host, seen through QEMU's user networking).
	HeadEnd string `json:"headend"`
	// HeadEndData is the data folder of the head-end the boxes belong to
	// (headend serve -data), relative to the repository root: the baker
	// takes ca/ca.crt, scheduler.pub and media.pub from it. A head-end
	// makes these on its first start, so an image for a running head-end
	// is baked with tools/bake -headend-data DIR. Empty: development
	// stand-ins made once in the key folder (headend/), which no real
	// head-end matches: such a box shows its activation screen but never
	// activates.
	HeadEndData string `json:"headend_data,omitempty"`
}

// Files in Box.HeadEndData, as headend serve lays them out.
const (
	HeadEndCAFile           = "ca/ca.crt"
	HeadEndSchedulerKeyFile = "scheduler.pub"
	HeadEndMediaKeyFile     = "media.pub"
)

// RootFS is a read-only squashfs image signed into the slot and mounted
// through dm-verity: stage one never reads it, the kernel checks every
// block it reads against the root hash in the signed manifest. The second
// stage mounts it at /rootfs, and its initramfs links /usr and /lib there,
// so programs in it run at their usual paths (/usr/bin/ffmpeg) with the
// usual dynamic loader (/lib/ld-linux-aarch64.so.1).
type RootFS struct {
	// Compression is the squashfs compressor: "zstd" (the default), "xz"
	// or "gzip"; the board's kernel must have it (SQUASHFS_ZSTD, ...).
	Compression string `json:"compression,omitempty"`
	// Debian is a tree made from Debian's binary packages for the board's
	// architecture: the packages, the programs kept from them with the
	// libraries they need, and the libraries replaced by stubs (see
	// images/debroot).
	Debian *debroot.Spec `json:"debian"`
}

// Compressions are the squashfs compressors a recipe may ask for.
var Compressions = []string{"zstd", "xz", "gzip"}

// SquashfsCompression is the compressor to use, the default filled in.
func (r RootFS) SquashfsCompression() string {
	if r.Compression == "" {
		return "zstd"
	}
	return r.Compression
}

// Stage1 is the ROM's first stage.
type Stage1 struct {
	// Uinit is the Go package of the verifier, run by u-root's init.
	Uinit string `json:"uinit"`
	// BootArgs is the first-stage kernel command line the ROM passes.
	BootArgs string `json:"boot_args"`
	// MinKeyVersion is the lowest signing-key version the ROM accepts.
	MinKeyVersion uint32 `json:"min_key_version"`
}

// Stage2 is the signed second stage on the disk.
type Stage2 struct {
	// Init is the Go package of process 1.
	Init string `json:"init"`
	// Programs are Go packages installed as /bin/<last path element>.
	Programs []string `json:"programs"`
	// Cmdline is the signed second-stage kernel command line.
	Cmdline string `json:"cmdline"`
	// Supervisor lists the daemons process 1 keeps running.
	Supervisor supervisor.Config `json:"supervisor"`
	// BuildEnv adds environment variables to the build of some programs,
	// keyed by package: GOEXPERIMENT=runtimesecret for the player, so
	// that key material is erased from registers and stacks.
	BuildEnv map[string][]string `json:"build_env,omitempty"`
}

// Disk is the partition layout, sizes in MiB; the data partition takes the
// rest.
type Disk struct {
	SizeMiB    int `json:"size_mib"`
	SlotMiB    int `json:"slot_mib"`
	BootctlMiB int `json:"bootctl_mib"`
}

// Load reads and checks a recipe file.
func Load(path string) (Recipe, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Recipe{}, err
	}
	var r Recipe
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Recipe{}, fmt.Errorf("recipe %s: %w", path, err)
	}
	if err := r.Check(); err != nil {
		return Recipe{}, fmt.Errorf("recipe %s: %w", path, err)
	}
	return r, nil
}

// RepoRoot finds the repository root (the folder holding go.mod) from the
// working directory up, so the tools work from any subfolder.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the repository (no go.mod found)")
		}
		dir = parent
	}
}

// ForBoard loads the recipe of a board from the images folder of the
// repository at root.
func ForBoard(root, board string) (Recipe, error) {
	return Load(filepath.Join(root, "images", board+".json"))
}

// Check reports the first thing wrong with the recipe.
func (r Recipe) Check() error {
	var errs []error
	need := func(ok bool, format string, args ...any) bool {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
		return ok
	}
	need(r.Board != "", "board is required")
	need(r.ImageVersion > 0, "image_version must be 1 or more")
	need(r.KernelConfig != "", "kernel_config is required")
	need(isPackage(r.Stage1.Uinit), "stage1.uinit %q is not a ./ package path", r.Stage1.Uinit)
	need(isPackage(r.Stage2.Init), "stage2.init %q is not a ./ package path", r.Stage2.Init)
	names := map[string]bool{}
	for _, p := range r.Stage2.Programs {
		need(isPackage(p), "stage2 program %q is not a ./ package path", p)
		need(!names[ProgramName(p)], "two stage2 programs are named %q", ProgramName(p))
		names[ProgramName(p)] = true
	}
	for pkg, env := range r.Stage2.BuildEnv {
		need(slices.Contains(r.Stage2.Programs, pkg), "stage2.build_env names %q, which is not one of the stage2 programs", pkg)
		for _, kv := range env {
			need(strings.Contains(kv, "=") && !strings.HasPrefix(kv, "GOARCH=") && !strings.HasPrefix(kv, "GOOS="),
				"stage2.build_env %q for %s: want NAME=value, and not GOARCH or GOOS", kv, pkg)
		}
	}
	if b := r.Box; b != nil {
		need(b.HeadEnd != "" && strings.Contains(b.HeadEnd, ":"), "box.headend %q is not host:port", b.HeadEnd)
	}
	for _, d := range r.Stage2.Supervisor.Daemons {
		need(strings.HasPrefix(d.Path, "/bin/") && names[strings.TrimPrefix(d.Path, "/bin/")],
			"daemon %q runs %q, which is not one of the stage2 programs", d.Name, d.Path)
	}
	if fs := r.RootFS; fs != nil {
		need(slices.Contains(Compressions, fs.SquashfsCompression()), "rootfs.compression %q is not one of %v", fs.Compression, Compressions)
		if need(fs.Debian != nil, "rootfs.debian is required") {
			if err := fs.Debian.Check(); err != nil {
				errs = append(errs, fmt.Errorf("rootfs.debian: %w", err))
			}
		}
	}
	need(r.Disk.SlotMiB > 0 && r.Disk.BootctlMiB > 0, "disk slot_mib and bootctl_mib must be positive")
	need(r.Disk.SizeMiB > 2*r.Disk.SlotMiB+r.Disk.BootctlMiB+2, "disk size_mib %d leaves no room for data", r.Disk.SizeMiB)
	return errors.Join(errs...)
}

func isPackage(p string) bool { return strings.HasPrefix(p, "./") && !strings.Contains(p, "..") }

// ProgramName is the file name a program package is installed under.
func ProgramName(pkg string) string { return filepath.Base(pkg) }

// GOARCH is the Go architecture of a board.
func (r Recipe) GOARCH() string {
	if strings.HasSuffix(r.Board, "-arm64") {
		return "arm64"
	}
	return runtime.GOARCH
}

// DebianArch is the Debian architecture of a board's packages.
func (r Recipe) DebianArch() string {
	if a := r.GOARCH(); a != "arm" {
		return a // arm64, amd64: the same names in Go and Debian
	}
	return "armhf"
}
