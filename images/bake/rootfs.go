package bake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/images"
	"github.com/boxswarm/boxswarm/images/debroot"
)

// RootFSFile is the second stage's root filesystem inside Options.Out.
const RootFSFile = "rootfs.sqsh"

// ReleaseFile is where the root filesystem names itself; stage2init logs
// it after mounting, which shows the mount worked.
const ReleaseFile = "etc/boxswarm-release"

// RootFSLinks are the second-stage initramfs's links into the mounted root
// filesystem (stage2init mounts it at /rootfs): programs in it find the
// dynamic loader and their libraries at the paths they were built for.
var RootFSLinks = map[string]string{"usr": "rootfs/usr", "lib": "rootfs/lib"}

// RootFS builds the recipe's root filesystem (a squashfs image) at out and
// returns the Debian packages it holds files of. Both the tree (see
// images/debroot) and the image are cached: after the first build this
// needs neither the network nor much time.
func RootFS(ctx context.Context, r images.Recipe, out string, p *Progress) ([]debroot.Package, error) {
	if r.RootFS == nil {
		return nil, fmt.Errorf("recipe %s has no root filesystem", r.Board)
	}
	var log strings.Builder
	t, err := debroot.Build(ctx, debroot.Options{Spec: *r.RootFS.Debian, Arch: r.DebianArch(), Log: &log})
	for _, l := range strings.Split(strings.TrimSpace(log.String()), "\n") {
		if l != "" && p != nil {
			p.Note("%s", l)
		}
	}
	if err != nil {
		return nil, err
	}
	var kept []debroot.Package
	for _, pkg := range t.Packages {
		if pkg.Kept {
			kept = append(kept, pkg)
		}
	}
	release := fmt.Sprintf("%s v%d rootfs debian-%s %s\n", r.Board, r.ImageVersion, r.DebianArch(), t.Key)
	mksq, _ := exec.CommandContext(ctx, "mksquashfs", "-version").Output()
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s", t.Key, release, r.RootFS.SquashfsCompression(), firstLine(string(mksq)))
	key := hex.EncodeToString(h.Sum(nil))
	err = cached(filepath.Join(cacheDir(), "rootfs"), key, out, func(tmp string) error {
		return squashfs(ctx, t.Dir, release, r.RootFS.SquashfsCompression(), tmp)
	})
	if err != nil {
		return nil, err
	}
	if p != nil {
		st, _ := os.Stat(out)
		p.Note("%d packages kept (of %d), %d files, %d libraries stubbed; %s squashfs %.1f MiB",
			len(kept), len(t.Packages), len(t.Files), len(t.Stubbed), r.RootFS.SquashfsCompression(), float64(st.Size())/(1<<20))
	}
	return kept, nil
}

// squashfs packs the tree and the release file into a reproducible image:
// every file owned by root, every time stamp zero.
func squashfs(ctx context.Context, tree, release, comp, out string) error {
	// The tree belongs to the cache: the image's source is a copy made of
	// hard links, with the release file added.
	src, err := os.MkdirTemp(filepath.Dir(out), ".rootfs-src-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	err = filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(tree, p)
		if rel == "." || strings.HasPrefix(rel, ".") {
			return nil
		}
		dst := filepath.Join(src, rel)
		switch {
		case d.IsDir():
			return os.Mkdir(dst, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		default:
			if os.Link(p, dst) == nil {
				return nil
			}
			// Another file system: copy, keeping the execute bits.
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			return os.WriteFile(dst, b, info.Mode().Perm())
		}
	})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(src, "etc"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, filepath.FromSlash(ReleaseFile)), []byte(release), 0o644); err != nil {
		return err
	}
	if err := os.Remove(out); err != nil && !os.IsNotExist(err) {
		return err
	}
	cmd := exec.CommandContext(ctx, "mksquashfs", src, out, "-noappend", "-quiet", "-no-progress", "-comp", comp,
		"-all-root", "-no-xattrs", "-mkfs-time", "0", "-all-time", "0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mksquashfs (Debian squashfs-tools): %w\n%s", err, lastLines(string(b), 20))
	}
	return nil
}

// AddRootFS puts a root filesystem image into an image spec, with a
// dm-verity salt derived from the image itself so that the same inputs
// give the same signed image.
func AddRootFS(spec *firmware.ImageSpec, path string) error {
	fs, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	salt := sha256.Sum256(append([]byte("boxswarm verity salt\x00"), fs...))
	spec.RootFS, spec.VeritySalt = fs, salt[:]
	return nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
