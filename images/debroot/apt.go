package debroot

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// apt runs apt-get against a private state for one architecture: its own
// package lists, package cache and an empty dpkg status, so that the
// resolution is the same on any build machine and never touches its own
// apt state. The sources are the machine's (/etc/apt/sources.list*).
type apt struct {
	dir  string // <cache>/debian-<arch>
	arch string
	log  io.Writer
}

func newApt(dir, arch string, log io.Writer) *apt {
	if log == nil {
		log = io.Discard
	}
	return &apt{dir: dir, arch: arch, log: log}
}

func (a *apt) debs() string { return filepath.Join(a.dir, "debs") }

// args are the options every apt-get call gets.
func (a *apt) args() []string {
	s := filepath.Join(a.dir, "apt")
	args := []string{
		"-q",
		"-o", "APT::Architecture=" + a.arch,
		"-o", "APT::Architectures=" + a.arch,
		"-o", "Dir::State=" + s,
		"-o", "Dir::State::Lists=" + filepath.Join(s, "lists"),
		"-o", "Dir::State::status=" + filepath.Join(s, "status"),
		"-o", "Dir::Cache=" + filepath.Join(s, "cache"),
		"-o", "Dir::Cache::archives=" + a.debs(),
		"-o", "Debug::NoLocking=1",
		"-o", "Acquire::Languages=none",
		"-o", "APT::Install-Recommends=false",
	}
	if os.Geteuid() == 0 {
		// As root apt downloads as _apt, which cannot write into a cache
		// under root's home; it would fall back with a warning anyway.
		args = append(args, "-o", "APT::Sandbox::User=root")
	}
	return args
}

func (a *apt) prepare() error {
	s := filepath.Join(a.dir, "apt")
	for _, d := range []string{filepath.Join(s, "lists", "partial"), filepath.Join(s, "cache"), filepath.Join(a.debs(), "partial")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	st := filepath.Join(s, "status")
	if _, err := os.Stat(st); os.IsNotExist(err) {
		return os.WriteFile(st, nil, 0o644)
	}
	return nil
}

func (a *apt) run(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "apt-get", append(a.args(), args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("apt-get %s: %w\n%s%s", strings.Join(args, " "), err, lastLines(string(out), 10), lastLines(stderr.String(), 10))
	}
	return out, nil
}

func (a *apt) update(ctx context.Context) error {
	fmt.Fprintf(a.log, "debroot: apt-get update (%s)\n", a.arch)
	_, err := a.run(ctx, a.dir, "update")
	return err
}

func (a *apt) haveLists() bool {
	m, _ := filepath.Glob(filepath.Join(a.dir, "apt", "lists", "*_Packages*"))
	return len(m) > 0
}

// resolve returns the packages to unpack for names, from the cached
// resolution unless refresh is set or there is none.
func (a *apt) resolve(ctx context.Context, names []string, refresh bool) ([]Package, error) {
	if err := a.prepare(); err != nil {
		return nil, err
	}
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	rec := resolvedPath(a, names)
	if !refresh {
		if b, err := os.ReadFile(rec); err == nil {
			var pkgs []Package
			if err := json.Unmarshal(b, &pkgs); err == nil && len(pkgs) > 0 {
				return pkgs, nil
			}
		}
	}
	if refresh || !a.haveLists() {
		if err := a.update(ctx); err != nil {
			return nil, err
		}
	}
	// An installation simulated against an empty status lists every
	// package the names need, as apt would choose them.
	out, err := a.run(ctx, a.dir, append([]string{"-s", "install"}, sorted...)...)
	if err != nil {
		return nil, err
	}
	versions, err := parseSimulation(out)
	if err != nil {
		return nil, err
	}
	want := make([]string, 0, len(versions))
	for _, v := range versions {
		want = append(want, v.Name+"="+v.Version)
	}
	uris, err := a.run(ctx, a.dir, append([]string{"--print-uris", "download"}, want...)...)
	if err != nil {
		return nil, err
	}
	pkgs, err := parseURIs(uris, versions)
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(pkgs, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(rec), 0o755); err != nil {
		return nil, err
	}
	if err := writeAtomic(rec, b); err != nil {
		return nil, err
	}
	fmt.Fprintf(a.log, "debroot: %s resolve to %d packages\n", strings.Join(sorted, " "), len(pkgs))
	return pkgs, nil
}

// resolvedPath is where the resolution of a set of package names is kept.
func resolvedPath(a *apt, names []string) string {
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	sum := sha256.Sum256([]byte(a.arch + "\x00" + strings.Join(sorted, "\x00")))
	return filepath.Join(a.dir, "resolved", hex.EncodeToString(sum[:16])+".json")
}

// parseSimulation reads "Inst name (version release [arch])" lines.
func parseSimulation(out []byte) ([]Package, error) {
	var pkgs []Package
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Inst ")
		if !ok {
			continue
		}
		name, rest, _ := strings.Cut(rest, " ")
		if strings.HasPrefix(rest, "[") { // an upgrade: "[old] (new ...)"
			_, rest, _ = strings.Cut(rest, " ")
		}
		rest, ok = strings.CutPrefix(rest, "(")
		ver, _, _ := strings.Cut(rest, " ")
		if !ok || ver == "" || name == "" {
			return nil, fmt.Errorf("apt-get -s install: cannot read %q", sc.Text())
		}
		pkgs = append(pkgs, Package{Name: name, Version: ver})
	}
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("apt-get -s install installs nothing:\n%s", lastLines(string(out), 10))
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	return pkgs, nil
}

// parseURIs reads "'uri' file size SHA256:hex" lines into the packages.
func parseURIs(out []byte, pkgs []Package) ([]Package, error) {
	byName := map[string]int{}
	for i, p := range pkgs {
		byName[p.Name] = i
	}
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || !strings.HasPrefix(f[0], "'") {
			continue
		}
		name, _, _ := strings.Cut(f[1], "_")
		i, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("apt-get --print-uris: unexpected %s", f[1])
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		hash, ok := strings.CutPrefix(f[3], "SHA256:")
		if err != nil || !ok || len(hash) != 64 {
			return nil, fmt.Errorf("apt-get --print-uris: cannot read %q", sc.Text())
		}
		pkgs[i].File, pkgs[i].Size, pkgs[i].SHA256 = f[1], size, hash
		found++
	}
	for _, p := range pkgs {
		if p.File == "" {
			return nil, fmt.Errorf("apt-get --print-uris: no file for %s %s", p.Name, p.Version)
		}
	}
	return pkgs, nil
}

// fetch makes sure every package's .deb is in the cache with its hash.
func (a *apt) fetch(ctx context.Context, pkgs []Package) error {
	var missing []string
	for _, p := range pkgs {
		if ok, _ := hasHash(filepath.Join(a.debs(), p.File), p.SHA256); !ok {
			missing = append(missing, p.Name+"="+p.Version)
		}
	}
	if len(missing) > 0 {
		if !a.haveLists() {
			if err := a.update(ctx); err != nil {
				return err
			}
		}
		fmt.Fprintf(a.log, "debroot: downloading %d packages\n", len(missing))
		if _, err := a.run(ctx, a.debs(), append([]string{"download"}, missing...)...); err != nil {
			return fmt.Errorf("%w(if the archive no longer has these versions, resolve again: go run ./tools/debroot -refresh)", err)
		}
	}
	for _, p := range pkgs {
		ok, err := hasHash(filepath.Join(a.debs(), p.File), p.SHA256)
		if !ok {
			return fmt.Errorf("%s %s: %s does not have the archive's SHA-256 %s (%v); delete it, or resolve again with -refresh if the archive moved on", p.Name, p.Version, p.File, p.SHA256, err)
		}
	}
	return nil
}

func hasHash(file, want string) (bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, err
	}
	return hex.EncodeToString(h.Sum(nil)) == want, nil
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	out := strings.Join(lines, "\n")
	if out != "" {
		out += "\n"
	}
	return out
}
