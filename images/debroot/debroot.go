// Package debroot builds a small root filesystem tree from Debian's binary
// packages for another architecture (the box's arm64), the way a firmware
// build needs it: without root, without dpkg's database and without running
// any maintainer script.
//
// A Spec names packages and the programs the tree exists for. Build
// resolves the packages with their dependencies through apt (with a private
// package list and an empty dpkg status, so the build machine's own packages
// and architecture never leak in), downloads the .debs, unpacks them with
// dpkg-deb, and keeps only each program, the shared libraries it needs (the
// closure of DT_NEEDED, found by file name in the loader's default folders
// and by soname elsewhere, which covers libraries Debian only reaches
// through update-alternatives), the dynamic loader, and the copyright file
// of every package something was kept from. Documentation, locales, manual
// pages, configuration and everything else are left behind.
//
// Libraries named in Spec.Stubs are replaced by stubs: a shared object with
// the same soname and symbol versions that defines exactly the symbols the
// kept objects import from it, each of which, if ever called, prints its
// name and ends the process. Debian's ffmpeg links every codec, filter and
// device library Debian has; a box that only decodes H.264, H.265 and AAC
// and draws through fbdev never calls most of them, and the stubs cut the
// tree to a fraction. A stub that is called is a loud failure, never a
// silent one.
//
// Which libraries can be stubs is found by running the program on the
// tree (qemu-aarch64 -L <tree> <tree>/usr/bin/ffmpeg ..., or on the box):
// a stub that is called names itself. For Debian's ffmpeg 5.1 some
// libraries nothing decodes with must stay real because ffmpeg calls them
// as it starts: libaom, libvpx and libx265 (their codecs' static
// initialisation asks the library for its capabilities), libgme and
// libopenmpt (their demuxers probe every input), and libstdc++ (a static
// constructor in libavfilter).
//
// Everything is cached (see Options.Cache): the package lists, the .debs,
// the resolution of a Spec and the finished tree. Once a Spec has been
// built, building it again needs no network; Options.Refresh resolves the
// packages again against the current archive.
package debroot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Spec describes a tree.
type Spec struct {
	// Packages are Debian package names, installed with what they depend
	// on (Depends and Pre-Depends, not Recommends).
	Packages []string `json:"packages"`
	// Programs are absolute paths inside the packages (/usr/bin/ffmpeg):
	// each is kept with its interpreter and the libraries it needs.
	Programs []string `json:"programs"`
	// Stubs are shell patterns (path.Match) on library file names, such as
	// "libx265.so.*": a library they match is replaced by a stub, and the
	// libraries only it needed are left out.
	Stubs []string `json:"stub_libraries,omitempty"`
}

// Check reports the first thing wrong with the spec.
func (s Spec) Check() error {
	var errs []error
	if len(s.Packages) == 0 {
		errs = append(errs, errors.New("no packages"))
	}
	for _, p := range s.Packages {
		if p == "" || strings.ContainsAny(p, " =/\t") || strings.HasPrefix(p, "-") {
			errs = append(errs, fmt.Errorf("package %q is not a plain package name", p))
		}
	}
	if len(s.Programs) == 0 {
		errs = append(errs, errors.New("no programs"))
	}
	for _, p := range s.Programs {
		if !path.IsAbs(p) || path.Clean(p) != p {
			errs = append(errs, fmt.Errorf("program %q is not a clean absolute path", p))
		}
	}
	for _, p := range s.Stubs {
		if _, err := path.Match(p, ""); err != nil || strings.Contains(p, "/") {
			errs = append(errs, fmt.Errorf("stub pattern %q is not a file name pattern", p))
		}
	}
	return errors.Join(errs...)
}

// Options says where and for which architecture to build.
type Options struct {
	Spec Spec
	// Arch is the Debian architecture (arm64).
	Arch string
	// Cache holds apt's lists, the .debs, resolutions and finished trees;
	// DefaultCache() if empty.
	Cache string
	// Refresh resolves the packages again (apt-get update first) instead
	// of reusing an earlier resolution.
	Refresh bool
	// Log receives progress lines; nothing is written if nil.
	Log io.Writer
}

// Package is one resolved .deb.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	File    string `json:"file"` // file name in the cache's debs folder
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
	// Kept is true when a file of the package is in the tree.
	Kept bool `json:"kept,omitempty"`
}

// Tree is a finished root filesystem tree. Dir belongs to the cache:
// read it, never change it.
type Tree struct {
	Dir      string
	Key      string // what the cache entry is named after
	Packages []Package
	// Files are the tree's regular files, slash-separated and relative,
	// sorted; Stubbed the sonames replaced by stubs.
	Files   []string
	Stubbed []string
}

// FormatVersion changes whenever the same inputs would give another tree,
// so that old cache entries are never reused for a new layout.
const FormatVersion = 1

// DefaultCache is the folder shared with the board's kernel build.
func DefaultCache() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "boxswarm")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "boxswarm")
	}
	return filepath.Join(os.TempDir(), "boxswarm-cache")
}

// Build returns the tree for o.Spec, from the cache when it holds it.
func Build(ctx context.Context, o Options) (*Tree, error) {
	if err := o.Spec.Check(); err != nil {
		return nil, fmt.Errorf("debroot spec: %w", err)
	}
	if o.Arch == "" {
		return nil, errors.New("debroot: no architecture")
	}
	if o.Cache == "" {
		o.Cache = DefaultCache()
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	a := newApt(filepath.Join(o.Cache, "debian-"+o.Arch), o.Arch, o.Log)
	pkgs, err := a.resolve(ctx, o.Spec.Packages, o.Refresh)
	if err != nil {
		return nil, err
	}
	key := treeKey(o, pkgs)
	dir := filepath.Join(a.dir, "trees", key)
	if t, err := loadTree(dir, key); err == nil {
		return t, nil
	}
	if err := a.fetch(ctx, pkgs); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Log, "debroot: unpacking %d packages\n", len(pkgs))
	return assemble(ctx, a, o.Spec, pkgs, dir, key)
}

// treeKey names a tree after everything that decides its bytes.
func treeKey(o Options, pkgs []Package) string {
	h := sha256.New()
	spec, _ := json.Marshal(o.Spec)
	fmt.Fprintf(h, "debroot %d\x00%s\x00%s\x00", FormatVersion, o.Arch, spec)
	for _, p := range pkgs {
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00", p.Name, p.Version, p.SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// treeRecord is written next to a finished tree.
const treeRecord = ".debroot.json"

func loadTree(dir, key string) (*Tree, error) {
	b, err := os.ReadFile(filepath.Join(dir, treeRecord))
	if err != nil {
		return nil, err
	}
	var t Tree
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, err
	}
	t.Dir, t.Key = dir, key
	return &t, nil
}

// saveTree writes the record into the staging folder and moves it into
// place, so that a tree is either complete or absent.
func saveTree(t *Tree, staging string) error {
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(staging, treeRecord), b, 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(t.Dir), 0o755); err != nil {
		return err
	}
	if err := os.Rename(staging, t.Dir); err != nil {
		if _, serr := os.Stat(filepath.Join(t.Dir, treeRecord)); serr == nil {
			// Another build of the same key finished first.
			return os.RemoveAll(staging)
		}
		return err
	}
	return nil
}

// matchAny reports whether name matches one of the patterns.
func matchAny(patterns []string, name string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool {
		ok, _ := path.Match(p, name)
		return ok
	})
}
