package debroot

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// unpacked is every package unpacked into one folder per package, with
// the paths normalised to a merged /usr (Debian 12 ships files under both
// /lib and /usr/lib; a box only has /usr/lib).
type unpacked struct {
	root  string            // <staging>/pkgs
	owner map[string]string // normalised path -> package
	where map[string]string // normalised path -> file on disk
	pkgs  []Package
}

// mergedUsr lists the top-level folders Debian 12 merges into /usr.
var mergedUsr = []string{"bin", "sbin", "lib", "lib64"}

func normalise(rel string) string {
	rel = path.Clean("/" + filepath.ToSlash(rel))
	for _, d := range mergedUsr {
		if rel == "/"+d || strings.HasPrefix(rel, "/"+d+"/") {
			return "/usr" + rel
		}
	}
	return rel
}

func unpack(ctx context.Context, a *apt, pkgs []Package, root string) (*unpacked, error) {
	for _, p := range pkgs {
		dir := filepath.Join(root, p.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, "dpkg-deb", "-x", filepath.Join(a.debs(), p.File), dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("dpkg-deb -x %s: %w\n%s", p.File, err, out)
		}
	}
	return index(root, pkgs)
}

// index lists the files of packages unpacked into root/<package>.
func index(root string, pkgs []Package) (*unpacked, error) {
	u := &unpacked{root: root, owner: map[string]string{}, where: map[string]string{}, pkgs: pkgs}
	for _, p := range pkgs {
		dir := filepath.Join(root, p.Name)
		err := filepath.WalkDir(dir, func(file string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(dir, file)
			n := normalise(rel)
			if _, dup := u.where[n]; !dup { // the first package in name order wins, as no two should collide
				u.where[n], u.owner[n] = file, p.Name
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return u, nil
}

// resolve follows symbolic links inside the unpacked tree (never into the
// build machine's own files) and returns the normalised path of the
// regular file name leads to.
func (u *unpacked) resolve(name string) (string, error) {
	name = normalise(name)
	for hops := 0; hops < 40; hops++ {
		file, ok := u.where[name]
		if !ok {
			// A folder on the way may be a link (usr/share/doc/<pkg> to
			// the doc folder of another package of the same source).
			linked := false
			for dir := path.Dir(name); dir != "/"; dir = path.Dir(dir) {
				if f, ok := u.where[dir]; ok {
					target, err := os.Readlink(f)
					if err != nil {
						break
					}
					if !path.IsAbs(target) {
						target = path.Join(path.Dir(dir), target)
					}
					name = normalise(path.Join(target, strings.TrimPrefix(name, dir+"/")))
					linked = true
					break
				}
			}
			if linked {
				continue
			}
			return "", fmt.Errorf("%s: %w", name, fs.ErrNotExist)
		}
		st, err := os.Lstat(file)
		if err != nil {
			return "", err
		}
		if st.Mode().IsRegular() {
			return name, nil
		}
		if st.Mode()&fs.ModeSymlink == 0 {
			return "", fmt.Errorf("%s is neither a file nor a link", name)
		}
		target, err := os.Readlink(file)
		if err != nil {
			return "", err
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(name), target)
		}
		name = normalise(target)
	}
	return "", fmt.Errorf("%s: too many links", name)
}

// libDirs are the dynamic loader's default folders on a merged-/usr
// Debian system, in its search order (glibc's system directories).
func libDirs(triplet string) []string {
	return []string{"/usr/lib/" + triplet, "/usr/lib"}
}

// triplets maps Debian architectures to their multiarch folder.
var triplets = map[string]string{"arm64": "aarch64-linux-gnu", "amd64": "x86_64-linux-gnu", "armhf": "arm-linux-gnueabihf"}

// object is one ELF file of the closure.
type object struct {
	name   string // the normalised path it is found at in the tree
	file   string // the regular file on disk
	owner  string // package
	needed []string
	interp string
	stub   bool
}

// closure walks DT_NEEDED from the programs. A needed library is looked
// up by file name in the loader's folders, and else by soname anywhere in
// the packages (alternatives such as libblas.so.3 live in a subfolder and
// are only linked into place by a maintainer script). A library matching a
// stub pattern is recorded but not followed.
func (u *unpacked) closure(arch string, programs, stubs []string) ([]*object, error) {
	triplet, ok := triplets[arch]
	if !ok {
		return nil, fmt.Errorf("no multiarch triplet known for %s", arch)
	}
	var sonames map[string][]string // built on first need
	bySoname := func(n string) (string, bool) {
		if sonames == nil {
			sonames = u.sonameIndex()
		}
		c := sonames[n]
		if len(c) == 0 {
			return "", false
		}
		return c[0], true
	}
	var objs []*object
	seen := map[string]bool{}
	var add func(name, from string, asLib bool) error
	add = func(name, from string, asLib bool) error {
		if seen[name] {
			return nil
		}
		seen[name] = true
		var real string
		if asLib {
			for _, d := range libDirs(triplet) {
				if r, err := u.resolve(path.Join(d, name)); err == nil {
					real = r
					break
				}
			}
			if real == "" {
				r, ok := bySoname(name)
				if !ok {
					return fmt.Errorf("%s needs %s, which no package provides", from, name)
				}
				real = r
			}
		} else {
			r, err := u.resolve(name)
			if err != nil {
				return fmt.Errorf("%s: %w", from, err)
			}
			real = r
		}
		o := &object{name: name, file: u.where[real], owner: u.owner[real]}
		if asLib {
			o.name = path.Join(libDirs(triplet)[0], name)
			o.stub = matchAny(stubs, name)
		}
		f, err := elf.Open(o.file)
		if err != nil {
			return fmt.Errorf("%s (%s): %w", name, real, err)
		}
		defer f.Close()
		if o.needed, err = f.ImportedLibraries(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				b, err := io.ReadAll(p.Open())
				if err != nil {
					return fmt.Errorf("%s: interpreter: %w", name, err)
				}
				o.interp = strings.TrimRight(string(b), "\x00")
			}
		}
		objs = append(objs, o)
		if o.stub {
			return nil
		}
		if o.interp != "" && !seen[o.interp] {
			seen[o.interp] = true
			r, err := u.resolve(o.interp)
			if err != nil {
				return fmt.Errorf("%s: interpreter: %w", name, err)
			}
			objs = append(objs, &object{name: normalise(o.interp), file: u.where[r], owner: u.owner[r]})
		}
		for _, n := range o.needed {
			if err := add(n, name, true); err != nil {
				return err
			}
		}
		return nil
	}
	for _, p := range programs {
		if err := add(p, p, false); err != nil {
			return nil, err
		}
	}
	return objs, nil
}

// sonameIndex maps sonames to the regular files that carry them, in
// path order.
func (u *unpacked) sonameIndex() map[string][]string {
	idx := map[string][]string{}
	names := make([]string, 0, len(u.where))
	for n := range u.where {
		if strings.HasPrefix(n, "/usr/lib/") && strings.Contains(path.Base(n), ".so") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		st, err := os.Lstat(u.where[n])
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		f, err := elf.Open(u.where[n])
		if err != nil {
			continue
		}
		if s, err := f.DynString(elf.DT_SONAME); err == nil && len(s) == 1 {
			idx[s[0]] = append(idx[s[0]], n)
		}
		f.Close()
	}
	return idx
}

// assemble unpacks the packages, computes the closure, writes the tree
// into a staging folder and moves it into the cache.
func assemble(ctx context.Context, a *apt, spec Spec, pkgs []Package, dir, key string) (*Tree, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(filepath.Dir(dir), ".work-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	u, err := unpack(ctx, a, pkgs, filepath.Join(work, "pkgs"))
	if err != nil {
		return nil, err
	}
	return u.tree(ctx, a.arch, spec, filepath.Join(work, "tree"), dir, key)
}

// tree writes the closure of spec's programs into staging and moves it to
// dir.
func (u *unpacked) tree(ctx context.Context, arch string, spec Spec, staging, dir, key string) (*Tree, error) {
	objs, err := u.closure(arch, spec.Programs, spec.Stubs)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return nil, err
	}
	t := &Tree{Dir: dir, Key: key}
	kept := map[string]bool{}
	var stubbed []*object
	for _, o := range objs {
		if o.stub {
			stubbed = append(stubbed, o)
			continue
		}
		if err := copyInto(staging, o.name, o.file); err != nil {
			return nil, err
		}
		kept[o.owner] = true
	}
	if len(stubbed) > 0 {
		if err := writeStubs(ctx, arch, staging, objs, stubbed); err != nil {
			return nil, err
		}
		for _, o := range stubbed {
			t.Stubbed = append(t.Stubbed, path.Base(o.name))
		}
		sort.Strings(t.Stubbed)
	}
	// The loader's path is /lib/ld-linux-*.so.1: /lib is /usr/lib, as on
	// any merged-/usr system.
	if err := os.Symlink("usr/lib", filepath.Join(staging, "lib")); err != nil {
		return nil, err
	}
	// The licences of what is distributed travel with it.
	for owner := range kept {
		name := "/usr/share/doc/" + owner + "/copyright"
		real, err := u.resolve(name)
		if err != nil {
			return nil, fmt.Errorf("package %s has no copyright file: %w", owner, err)
		}
		if err := copyInto(staging, name, u.where[real]); err != nil {
			return nil, err
		}
	}
	for _, p := range u.pkgs {
		p.Kept = kept[p.Name]
		t.Packages = append(t.Packages, p)
	}
	err = filepath.WalkDir(staging, func(file string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(staging, file)
			t.Files = append(t.Files, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(t.Files)
	if err := saveTree(t, staging); err != nil {
		return nil, err
	}
	return t, nil
}

// copyInto copies a file to name (a normalised absolute path) inside
// root, keeping only the execute bits of its mode.
func copyInto(root, name, from string) error {
	dst := filepath.Join(root, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	st, err := os.Stat(from)
	if err != nil {
		return err
	}
	mode := fs.FileMode(0o644)
	if st.Mode()&0o111 != 0 {
		mode = 0o755
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // one file reached under two names
		}
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
