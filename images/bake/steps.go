package bake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"

	bootrom "github.com/boxswarm/boxswarm/boot/rom"
	"github.com/boxswarm/boxswarm/images"
)

// Kernel builds (or finds in the cache) the board's kernel with
// tools/kernel and copies it to out.
func Kernel(ctx context.Context, root, boardDir, out string) error {
	cmd := exec.CommandContext(ctx, "go", "run", "./tools/kernel", "-board", boardDir)
	cmd.Dir = root
	cmd.Stderr = os.Stderr // the kernel tool draws its own progress
	path, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("kernel build (go run ./tools/kernel -board %s): %w", boardDir, err)
	}
	return copyFile(strings.TrimSpace(string(path)), out)
}

// Stage1 builds the ROM's u-root initramfs with the verifier as uinit, the
// ROM facts linked in, and no shell. The result is cached by everything
// that goes into it, because u-root rebuilds from scratch every time.
func Stage1(ctx context.Context, root string, r images.Recipe, facts bootrom.Facts, tags []string, out string) error {
	ldflags := append([]string{"-s", "-w", "-buildid="}, bootrom.LinkerFlags(facts)...)
	args := []string{
		"-o", "OUT", "-initcmd=init", "-uinitcmd=" + images.ProgramName(r.Stage1.Uinit), "-defaultsh=",
		"-go-extra-args=-ldflags=" + strings.Join(ldflags, " "),
	}
	for _, t := range tags {
		args = append(args, "-tags="+t)
	}
	args = append(args, "github.com/u-root/u-root/cmds/core/init", r.Stage1.Uinit)
	key, err := sourceKey(ctx, root, r.GOARCH(), tags, append([]string{r.Stage1.Uinit, "github.com/u-root/u-root/cmds/core/init"}, args...)...)
	if err != nil {
		return err
	}
	return cached(filepath.Join(cacheDir(), "stage1"), key, out, func(tmp string) error {
		uroot, err := hostTool(ctx, root, "github.com/u-root/u-root")
		if err != nil {
			return err
		}
		a := append([]string(nil), args...)
		a[1] = tmp
		cmd := exec.CommandContext(ctx, uroot, a...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOARCH="+r.GOARCH(), "GOOS=linux", "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("u-root: %w\n%s", err, lastLines(string(b), 20))
		}
		return nil
	})
}

// Stage2 builds the second-stage initramfs: process 1, the programs under
// /bin, the supervisor's configuration, the box configuration when the
// recipe has one (its head-end data folder resolved, see ResolveBox) and,
// when the recipe has a root filesystem, the links into it (RootFSLinks).
func Stage2(ctx context.Context, root string, r images.Recipe, out string) error {
	bin, err := os.MkdirTemp("", "stage2-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	build := func(pkg string) ([]byte, error) {
		dst := filepath.Join(bin, images.ProgramName(pkg))
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", dst, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOARCH="+r.GOARCH(), "GOOS=linux", "CGO_ENABLED=0")
		cmd.Env = append(cmd.Env, r.Stage2.BuildEnv[pkg]...)
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
		}
		return os.ReadFile(dst)
	}
	initBin, err := build(r.Stage2.Init)
	if err != nil {
		return err
	}
	cfg, err := json.MarshalIndent(r.Stage2.Supervisor, "", "  ")
	if err != nil {
		return err
	}
	recs := []cpio.Record{
		cpio.Directory("bin", 0o755), cpio.Directory("dev", 0o755), cpio.Directory("etc", 0o755),
		cpio.Directory("proc", 0o555), cpio.Directory("sys", 0o555), cpio.Directory("run", 0o755),
		cpio.Directory("tmp", 0o1777),
		// The kernel opens /dev/console for process 1 before anything
		// could mount devtmpfs.
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.StaticFile("init", string(initBin), 0o755),
		cpio.StaticFile("etc/supervisor.json", string(cfg)+"\n", 0o644),
	}
	if r.Box != nil {
		box, err := boxRecords(r.Box)
		if err != nil {
			return err
		}
		recs = append(recs, box...)
	}
	if r.RootFS != nil {
		for _, name := range slices.Sorted(maps.Keys(RootFSLinks)) {
			recs = append(recs, cpio.Symlink(name, RootFSLinks[name]))
		}
	}
	for _, p := range r.Stage2.Programs {
		b, err := build(p)
		if err != nil {
			return err
		}
		recs = append(recs, cpio.StaticFile("bin/"+images.ProgramName(p), string(b), 0o755))
	}
	cpio.MakeAllReproducible(recs)
	var buf bytes.Buffer
	w := cpio.Newc.Writer(&buf)
	if err := cpio.WriteRecordsAndDirs(w, recs); err != nil {
		return fmt.Errorf("stage two cpio: %w", err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return fmt.Errorf("stage two cpio: %w", err)
	}
	return WriteFileAtomic(out, buf.Bytes())
}

// BillOfMaterials lists what went into an image: the recipe, the exact Go
// toolchain and module versions, the Debian packages used, and the SHA-256
// of each part.
func BillOfMaterials(ctx context.Context, root string, r images.Recipe, parts ...string) ([]byte, error) {
	var b bytes.Buffer
	recipe, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(&b, "recipe %s sha256:%x\n", r.Board, sha256.Sum256(recipe))
	gover, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return nil, fmt.Errorf("go env: %w", err)
	}
	fmt.Fprintf(&b, "go %s", gover)
	mods := exec.CommandContext(ctx, "go", "list", "-m", "all")
	mods.Dir = root
	list, err := mods.Output()
	if err != nil {
		return nil, fmt.Errorf("go list -m all: %w", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(list)), "\n") {
		fmt.Fprintf(&b, "module %s\n", line)
	}
	pkgs, _ := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Package} ${Version}\n",
		"linux-source-6.1", "gcc-aarch64-linux-gnu", "binutils-aarch64-linux-gnu", "u-boot-qemu", "u-boot-tools", "squashfs-tools").Output()
	for _, line := range strings.Split(strings.TrimSpace(string(pkgs)), "\n") {
		if line != "" {
			fmt.Fprintf(&b, "debian %s\n", line)
		}
	}
	for _, p := range parts {
		sum, err := fileSHA256(p)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "file %s sha256:%s\n", filepath.Base(p), sum)
	}
	return b.Bytes(), nil
}

// sourceKey hashes every input of a cross-compiled Go build: the Go
// version, go.sum, the source files of every package involved, and extra
// strings such as flags.
func sourceKey(ctx context.Context, root, goarch string, tags []string, extra ...string) (string, error) {
	h := sha256.New()
	for _, e := range extra {
		fmt.Fprintf(h, "%s\x00", e)
	}
	pkgs := []string{}
	for _, e := range extra {
		if strings.HasPrefix(e, "./") || strings.HasPrefix(e, "github.com/") {
			pkgs = append(pkgs, e)
		}
	}
	args := append([]string{"list", "-deps", "-f", "{{.Dir}}", "-tags=" + strings.Join(tags, ",")}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOARCH="+goarch, "GOOS=linux", "CGO_ENABLED=0")
	dirs, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list %v: %w", pkgs, err)
	}
	gover, _ := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	h.Write(gover)
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		return "", err
	}
	h.Write(sum)
	var files []string
	for _, d := range strings.Fields(string(dirs)) {
		if !strings.HasPrefix(d, root) {
			continue // module cache contents are pinned by go.sum
		}
		matches, _ := filepath.Glob(filepath.Join(d, "*.go"))
		files = append(files, matches...)
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", strings.TrimPrefix(f, root), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// cached produces out with make unless the cache already holds the result
// for key.
func cached(dir, key, out string, make func(tmp string) error) error {
	hit := filepath.Join(dir, key)
	if _, err := os.Stat(hit); err == nil {
		return copyFile(hit, out)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".build-*")
	if err != nil {
		return err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if err := make(tmp.Name()); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), hit); err != nil {
		return err
	}
	return copyFile(hit, out)
}

// cacheDir is where built artifacts are kept between runs.
func cacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "boxswarm")
	}
	if d, err := os.UserHomeDir(); err == nil {
		return filepath.Join(d, ".cache", "boxswarm")
	}
	return filepath.Join(os.TempDir(), "boxswarm-cache")
}

// hostTool builds a Go tool pinned in go.mod for the host.
func hostTool(ctx context.Context, root, pkg string) (string, error) {
	out := filepath.Join(cacheDir(), "tools", filepath.Base(pkg))
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOARCH=", "GOOS=", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return WriteFileAtomic(to, b)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
