// Command kernel builds a board's Linux kernel from Debian's linux-source
// tarball and caches the Image under a key made of everything that decides
// its bytes, so that image builds and tests share one build and never trust
// a stale one.
//
// Usage:
//
//	go run ./tools/kernel -board board/qemu-arm64            # build if needed, print Image path
//	go run ./tools/kernel -board board/qemu-arm64 -print-path # print path or exit 1, never build
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	crossCompile = "aarch64-linux-gnu-"
	kernelArch   = "arm64"
	// estimatedObjects stands in for the previous build's count on a first
	// build; measured on the qemu-arm64 fragment.
	estimatedObjects = 1540
	failedLogLines   = 40
)

// options are the command-line flags.
type options struct {
	board     string
	cache     string
	source    string
	jobs      int
	printPath bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr *os.File) int {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	opts, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	b, err := newBuilder(ctx, opts, log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "kernel: %v\n", err)
		return 1
	}
	img := b.imagePath()
	if _, err := os.Stat(img); err == nil {
		fmt.Fprintln(stdout, img)
		return 0
	}
	if opts.printPath {
		log.Info("no cached kernel for this configuration", "want", img)
		return 1
	}
	if err := b.build(ctx); err != nil {
		// Plain text: the error may list many options, one per line.
		fmt.Fprintf(stderr, "kernel: build failed: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, img)
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fl := flag.NewFlagSet("kernel", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var o options
	fl.StringVar(&o.board, "board", "board/qemu-arm64", "board folder holding kernel.config")
	fl.StringVar(&o.cache, "cache", defaultCache(), "cache folder")
	fl.StringVar(&o.source, "source", "/usr/src/linux-source-6.1.tar.xz", "kernel source tarball from a Debian linux-source package")
	fl.IntVar(&o.jobs, "jobs", runtime.NumCPU(), "parallel make jobs")
	fl.BoolVar(&o.printPath, "print-path", false, "only print the cached Image path if up to date; exit 1 otherwise")
	if err := fl.Parse(args); err != nil {
		return o, err
	}
	if fl.NArg() != 0 {
		fmt.Fprintf(stderr, "unexpected arguments: %q\n", fl.Args())
		return o, errors.New("unexpected arguments")
	}
	return o, nil
}

func defaultCache() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "boxswarm", "kernel")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "boxswarm", "kernel")
	}
	return filepath.Join(os.TempDir(), "boxswarm-kernel-cache")
}

// builder holds what one invocation resolved before building.
type builder struct {
	opts     options
	log      *slog.Logger
	stderr   *os.File
	fragment []byte
	srcVer   string
	key      string
}

func newBuilder(ctx context.Context, opts options, log *slog.Logger, stderr *os.File) (*builder, error) {
	fragPath := filepath.Join(opts.board, "kernel.config")
	frag, err := os.ReadFile(fragPath)
	if err != nil {
		return nil, fmt.Errorf("reading fragment: %w", err)
	}
	// Reject a malformed fragment before spending minutes on it.
	if _, err := parseConfig(strings.NewReader(string(frag))); err != nil {
		return nil, fmt.Errorf("fragment %s: %w", fragPath, err)
	}
	pkg := strings.TrimSuffix(filepath.Base(opts.source), ".tar.xz")
	srcVer, err := output(ctx, "dpkg-query", "-W", "-f=${Version}", pkg)
	if err != nil {
		return nil, fmt.Errorf("finding version of package %s (for %s): %w", pkg, opts.source, err)
	}
	ccVer, err := output(ctx, crossCompile+"gcc", "--version")
	if err != nil {
		return nil, fmt.Errorf("finding cross compiler version: %w", err)
	}
	ccVer, _, _ = strings.Cut(ccVer, "\n")
	abs, err := filepath.Abs(opts.cache)
	if err != nil {
		return nil, fmt.Errorf("resolving cache folder %s: %w", opts.cache, err)
	}
	opts.cache = abs
	return &builder{
		opts:     opts,
		log:      log,
		stderr:   stderr,
		fragment: frag,
		srcVer:   srcVer,
		key:      cacheKey(keyInputs{Fragment: frag, SourceVersion: srcVer, CompilerVersion: ccVer}),
	}, nil
}

func output(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

func (b *builder) entryDir() string  { return filepath.Join(b.opts.cache, b.key) }
func (b *builder) imagePath() string { return filepath.Join(b.entryDir(), "Image") }

// build produces the cache entry. Everything is written under a temporary
// folder in the cache and renamed into place, so an interrupted build leaves
// no entry that -print-path would accept.
func (b *builder) build(ctx context.Context) error {
	if err := os.MkdirAll(b.opts.cache, 0o755); err != nil {
		return fmt.Errorf("creating cache folder: %w", err)
	}
	src, err := b.ensureSource(ctx)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(b.opts.cache, "tmp-"+b.key[:12]+"-")
	if err != nil {
		return fmt.Errorf("creating build folder: %w", err)
	}
	defer os.RemoveAll(tmp)
	entry := filepath.Join(tmp, "entry")
	obj := filepath.Join(tmp, "build")
	for _, d := range []string{entry, obj} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	logPath := filepath.Join(entry, "build.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("creating build log: %w", err)
	}
	defer logf.Close()

	expected, guessed := b.previousObjects()
	start := time.Now()
	if err := b.compile(ctx, src, obj, logf, expected, guessed); err != nil {
		logf.Close()
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted, nothing cached: %w", context.Cause(ctx))
		}
		var ce *configError
		if errors.As(err, &ce) {
			// The list of options says it all; merge_config's chatter in
			// the log tail would only bury it.
			return b.keepConfig(ce, filepath.Join(obj, ".config"))
		}
		b.reportFailure(logPath)
		return err
	}
	if err := logf.Close(); err != nil {
		return fmt.Errorf("writing build log: %w", err)
	}
	for from, to := range map[string]string{
		filepath.Join(obj, "arch", kernelArch, "boot", "Image"): filepath.Join(entry, "Image"),
		filepath.Join(obj, ".config"):                           filepath.Join(entry, ".config"),
	} {
		if err := os.Rename(from, to); err != nil {
			return fmt.Errorf("moving %s into cache entry: %w", from, err)
		}
	}
	if err := os.Rename(entry, b.entryDir()); err != nil {
		// Another build of the same key finished first; its entry is as good.
		if _, serr := os.Stat(b.imagePath()); serr == nil {
			return nil
		}
		return fmt.Errorf("publishing cache entry %s: %w", b.entryDir(), err)
	}
	// Leftovers of earlier failed attempts at this key no longer apply.
	for _, ext := range []string{".failed.log", ".failed.config"} {
		_ = os.Remove(filepath.Join(b.opts.cache, b.key+ext))
	}
	b.log.Info("kernel built", "image", b.imagePath(), "took", time.Since(start).Round(time.Second))
	return nil
}

// ensureSource extracts the tarball once per package version; builds are
// out of tree, so every configuration shares it.
func (b *builder) ensureSource(ctx context.Context) (string, error) {
	dst := filepath.Join(b.opts.cache, "src-"+b.srcVer)
	if _, err := os.Stat(filepath.Join(dst, "Makefile")); err == nil {
		return dst, nil
	}
	b.log.Info("extracting kernel source", "tarball", b.opts.source, "to", dst)
	tmp, err := os.MkdirTemp(b.opts.cache, "src-tmp-")
	if err != nil {
		return "", fmt.Errorf("creating source folder: %w", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "tar", "-xf", b.opts.source, "-C", tmp, "--strip-components=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("extracting %s: %w: %s", b.opts.source, err, strings.TrimSpace(string(out)))
	}
	// MkdirTemp made it private; the tree is meant to be shared.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("opening up source folder: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		if _, serr := os.Stat(filepath.Join(dst, "Makefile")); serr == nil {
			return dst, nil
		}
		return "", fmt.Errorf("publishing source folder %s: %w", dst, err)
	}
	return dst, nil
}

// previousObjects returns the object count of the newest cached build, or
// the estimate with guessed set.
func (b *builder) previousObjects() (n int, guessed bool) {
	logs, _ := filepath.Glob(filepath.Join(b.opts.cache, "*", "build.log"))
	var newest string
	var newestTime time.Time
	for _, l := range logs {
		if fi, err := os.Stat(l); err == nil && fi.ModTime().After(newestTime) {
			newest, newestTime = l, fi.ModTime()
		}
	}
	if newest == "" {
		return estimatedObjects, true
	}
	f, err := os.Open(newest)
	if err != nil {
		return estimatedObjects, true
	}
	defer f.Close()
	n, err = countObjects(f)
	if err != nil || n == 0 {
		return estimatedObjects, true
	}
	return n, false
}

func (b *builder) compile(ctx context.Context, src, obj string, logf io.Writer, expected int, guessed bool) error {
	fragPath := filepath.Join(obj, "fragment.config")
	if err := os.WriteFile(fragPath, b.fragment, 0o644); err != nil {
		return fmt.Errorf("writing fragment copy: %w", err)
	}
	mk := func(targets ...string) []string {
		return append([]string{"make", "-C", src, "O=" + obj, "ARCH=" + kernelArch, "CROSS_COMPILE=" + crossCompile}, targets...)
	}
	steps := []struct {
		what string
		argv []string
	}{
		{"tinyconfig", mk("tinyconfig")},
		// -m: merge only; olddefconfig below resolves the result, and the
		// check after it replaces merge_config's warnings with an error.
		{"merge fragment", []string{filepath.Join(src, "scripts", "kconfig", "merge_config.sh"), "-m", "-O", obj, filepath.Join(obj, ".config"), fragPath}},
		{"olddefconfig", mk("olddefconfig")},
	}
	for _, s := range steps {
		b.log.Info("configuring", "step", s.what)
		if err := b.runLogged(ctx, obj, s.argv, logf, nil); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	if err := checkConfigFile(b.fragment, filepath.Join(obj, ".config")); err != nil {
		return &configError{err}
	}

	var done atomic.Int64
	p := newProgress(b.stderr, expected, guessed, &done)
	p.start()
	err := b.runLogged(ctx, obj, mk(fmt.Sprintf("-j%d", b.opts.jobs), "Image"), logf, func(line string) {
		if isObjectLine(line) {
			done.Add(1)
		}
	})
	p.stop()
	if err != nil {
		return fmt.Errorf("compiling Image: %w", err)
	}
	return nil
}

// runLogged runs argv in dir with its output going to logf, line by line
// through onLine if set. The command gets its own process group so that
// cancelling stops make's compiler children too.
func (b *builder) runLogged(ctx context.Context, dir string, argv []string, logf io.Writer, onLine func(string)) error {
	fmt.Fprintf(logf, "$ %s\n", strings.Join(argv, " "))
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	// Fixed build identity: the same key must give the same Image bytes.
	cmd.Env = append(os.Environ(),
		"ARCH="+kernelArch, "CROSS_COMPILE="+crossCompile,
		"KBUILD_BUILD_USER=boxswarm", "KBUILD_BUILD_HOST=boxswarm",
		"KBUILD_BUILD_TIMESTAMP=1970-01-01", "KBUILD_BUILD_VERSION=1",
		"LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("creating pipe for %s: %w", argv[0], err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return fmt.Errorf("starting %s: %w", argv[0], err)
	}
	pw.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if onLine != nil {
				onLine(line)
			}
		}
		// Drain whatever a too-long line left so the writer never blocks.
		_, _ = io.Copy(logf, pr)
		pr.Close()
	}()
	werr := cmd.Wait()
	wg.Wait()
	if werr != nil {
		return fmt.Errorf("%s: %w", strings.Join(argv, " "), werr)
	}
	return nil
}

// configError is a fragment that Kconfig did not honour.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// keepConfig saves the rejected .config next to the cache entries, since the
// build folder is about to be removed, and says where it is.
func (b *builder) keepConfig(ce *configError, config string) error {
	keep := filepath.Join(b.opts.cache, b.key+".failed.config")
	data, err := os.ReadFile(config)
	if err == nil {
		err = os.WriteFile(keep, data, 0o644)
	}
	if err != nil {
		return fmt.Errorf("%w (saving the resulting .config failed: %v)", ce, err)
	}
	return fmt.Errorf("%w\nthe resulting .config is kept at %s", ce, keep)
}

func (b *builder) reportFailure(logPath string) {
	data, err := os.ReadFile(logPath)
	if err != nil {
		b.log.Error("reading build log", "err", err)
		return
	}
	// The temp folder goes away; keep the full log next to the entries.
	keep := filepath.Join(b.opts.cache, b.key+".failed.log")
	if err := os.WriteFile(keep, data, 0o644); err != nil {
		b.log.Error("saving build log", "err", err)
	}
	fmt.Fprintf(b.stderr, "---- last %d lines of %s ----\n", failedLogLines, keep)
	for _, l := range lastLines(data, failedLogLines) {
		fmt.Fprintln(b.stderr, l)
	}
	fmt.Fprintln(b.stderr, "----")
}
