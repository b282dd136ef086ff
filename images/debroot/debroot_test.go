package debroot

import (
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSpecCheck(t *testing.T) {
	good := Spec{Packages: []string{"ffmpeg"}, Programs: []string{"/usr/bin/ffmpeg"}, Stubs: []string{"libx265.so.*"}}
	if err := good.Check(); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Spec)
		want   string
	}{
		{"no packages", func(s *Spec) { s.Packages = nil }, "no packages"},
		{"version pinned", func(s *Spec) { s.Packages = []string{"ffmpeg=5.1"} }, "plain package name"},
		{"option", func(s *Spec) { s.Packages = []string{"-o"} }, "plain package name"},
		{"relative program", func(s *Spec) { s.Programs = []string{"usr/bin/ffmpeg"} }, "clean absolute path"},
		{"unclean program", func(s *Spec) { s.Programs = []string{"/usr/bin/../bin/ffmpeg"} }, "clean absolute path"},
		{"stub path", func(s *Spec) { s.Stubs = []string{"/usr/lib/libx.so"} }, "file name pattern"},
		{"stub syntax", func(s *Spec) { s.Stubs = []string{"lib[x.so"} }, "file name pattern"},
	} {
		s := good
		tc.mutate(&s)
		if err := s.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Check() = %v, want an error about %q", tc.name, err, tc.want)
		}
	}
}

func TestNormalise(t *testing.T) {
	for in, want := range map[string]string{
		"lib/aarch64-linux-gnu/libc.so.6": "/usr/lib/aarch64-linux-gnu/libc.so.6",
		"./bin/sh":                        "/usr/bin/sh",
		"usr/lib/x.so":                    "/usr/lib/x.so",
		"/lib":                            "/usr/lib",
		"library/x":                       "/library/x",
		"etc/../lib64/ld.so":              "/usr/lib64/ld.so",
	} {
		if got := normalise(in); got != want {
			t.Errorf("normalise(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseAptOutput(t *testing.T) {
	sim := []byte(`NOTE: This is only a simulation!
Inst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [arm64]) []
Inst ffmpeg (7:5.1.9-0+deb12u1 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [arm64])
Conf libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [arm64])
Inst zlib1g [1:1.2.12] (1:1.2.13.dfsg-1 Debian:12.15/oldstable [arm64])
`)
	pkgs, err := parseSimulation(sim)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pkgs {
		got = append(got, p.Name+"="+p.Version)
	}
	want := []string{"ffmpeg=7:5.1.9-0+deb12u1", "libc6=2.36-9+deb12u14", "zlib1g=1:1.2.13.dfsg-1"}
	if !slices.Equal(got, want) {
		t.Errorf("parseSimulation = %v, want %v", got, want)
	}
	uris := []byte(`'http://deb.debian.org/debian/pool/main/f/ffmpeg/ffmpeg_5.1.9-0%2bdeb12u1_arm64.deb' ffmpeg_7%3a5.1.9-0+deb12u1_arm64.deb 1807012 SHA256:7890aeb19a94d73e5d9281afa5ca07005804c1fca4f10791f4f2ce0df741b610
'http://deb.debian.org/debian/pool/main/g/glibc/libc6_2.36-9%2bdeb12u14_arm64.deb' libc6_2.36-9+deb12u14_arm64.deb 2324660 SHA256:01f4330719fd4f65580e16ea5a0527f372fca750e8f588d26deaf09f2d3b1cf4
`)
	if _, err := parseURIs(uris, pkgs); err == nil || !strings.Contains(err.Error(), "no file for zlib1g") {
		t.Errorf("parseURIs with a package missing = %v", err)
	}
	pkgs, err = parseURIs(uris, pkgs[:2])
	if err != nil {
		t.Fatal(err)
	}
	if pkgs[0].File != "ffmpeg_7%3a5.1.9-0+deb12u1_arm64.deb" || pkgs[0].Size != 1807012 || pkgs[1].SHA256[:8] != "01f43307" {
		t.Errorf("parseURIs = %+v", pkgs)
	}
	if _, err := parseSimulation([]byte("Inst broken\n")); err == nil {
		t.Error("a line without a version was accepted")
	}
	if _, err := parseSimulation([]byte("0 upgraded, 0 newly installed\n")); err == nil {
		t.Error("a simulation installing nothing was accepted")
	}
}

// crossCC returns the arm64 cross compiler the board's kernel is built
// with, or skips (fails in CI).
func crossCC(t *testing.T) string {
	t.Helper()
	cc, err := exec.LookPath("aarch64-linux-gnu-gcc")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("aarch64-linux-gnu-gcc missing; tools/deps.sh installs gcc-aarch64-linux-gnu")
		}
		t.Skip("aarch64-linux-gnu-gcc not installed (gcc-aarch64-linux-gnu)")
	}
	return cc
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// fakePackages builds, for arm64, what three Debian packages would hold:
// a program needing liba (under /lib, as Debian 12 still ships many
// libraries), which needs libb with versioned symbols and a data object,
// plus a loader and the copyright files (liba's doc folder is a link to
// libb's, as for packages of one source).
func fakePackages(t *testing.T) (string, []Package) {
	t.Helper()
	cc := crossCC(t)
	root, src := t.TempDir(), t.TempDir()
	pk := func(p string) string { return filepath.Join(root, p) }
	write(t, src+"/b.c", `int b_data[16];
int b_old(void) { return 1; }
int b_new(void) { return 2; }
int b_unused(void) { return 3; }
`)
	write(t, src+"/b.map", "B_1 { global: b_old; b_data; b_unused; };\nB_2 { global: b_new; } B_1;\n")
	libb := pk("libb/usr/lib/aarch64-linux-gnu/libb.so.1")
	os.MkdirAll(filepath.Dir(libb), 0o755)
	run(t, cc, "-shared", "-nostdlib", "-fPIC", "-o", libb, "-Wl,-soname,libb.so.1", "-Wl,--version-script,"+src+"/b.map", src+"/b.c")
	write(t, src+"/a.c", `extern int b_data[16]; int b_old(void); int b_new(void);
int a(void) { return b_old() + b_new() + b_data[3]; }
`)
	liba := pk("liba/lib/aarch64-linux-gnu/liba.so.1")
	os.MkdirAll(filepath.Dir(liba), 0o755)
	run(t, cc, "-shared", "-nostdlib", "-fPIC", "-o", liba, "-Wl,-soname,liba.so.1", src+"/a.c", libb)
	write(t, src+"/ld.c", "int ld_marker;\n")
	ld := pk("loader/lib/aarch64-linux-gnu/ld-test.so.1")
	os.MkdirAll(filepath.Dir(ld), 0o755)
	run(t, cc, "-shared", "-nostdlib", "-fPIC", "-o", ld, "-Wl,-soname,ld-test.so.1", src+"/ld.c")
	os.Symlink("aarch64-linux-gnu/ld-test.so.1", pk("loader/lib/ld-test.so.1"))
	write(t, src+"/prog.c", "int a(void); void _start(void) { a(); for (;;); }\n")
	prog := pk("prog/usr/bin/prog")
	os.MkdirAll(filepath.Dir(prog), 0o755)
	run(t, cc, "-nostdlib", "-fPIC", "-pie", "-o", prog, "-Wl,--dynamic-linker=/lib/ld-test.so.1", "-Wl,-rpath-link,"+filepath.Dir(libb), src+"/prog.c", liba)
	for _, p := range []string{"libb", "loader", "prog"} {
		write(t, pk(p+"/usr/share/doc/"+p+"/copyright"), "licence of "+p+"\n")
	}
	os.MkdirAll(pk("liba/usr/share/doc"), 0o755)
	os.Symlink("libb", pk("liba/usr/share/doc/liba"))
	write(t, pk("prog/usr/share/man/man1/prog.1"), "a manual page nobody on the box reads\n")
	return root, []Package{{Name: "liba"}, {Name: "libb"}, {Name: "loader"}, {Name: "prog"}}
}

// dynsyms lists the defined dynamic symbols of an ELF file as name@version
// (@@ for the default version) and its DT_NEEDED.
func dynsyms(t *testing.T, path string) (defined map[string]elf.Symbol, needed []string, soname string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	defined = map[string]elf.Symbol{}
	for _, s := range syms {
		if s.Section == elf.SHN_UNDEF || elf.ST_BIND(s.Info) == elf.STB_LOCAL {
			continue
		}
		at := "@@"
		if s.HasVersion && s.VersionIndex.IsHidden() {
			at = "@"
		}
		defined[s.Name+at+s.Version] = s
	}
	needed, _ = f.ImportedLibraries()
	if s, err := f.DynString(elf.DT_SONAME); err == nil && len(s) == 1 {
		soname = s[0]
	}
	return defined, needed, soname
}

func TestTreeKeepsTheClosure(t *testing.T) {
	root, pkgs := fakePackages(t)
	u, err := index(root, pkgs)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	tr, err := u.tree(t.Context(), "arm64", Spec{Packages: []string{"prog"}, Programs: []string{"/usr/bin/prog"}},
		filepath.Join(out, "staging"), filepath.Join(out, "tree"), "key")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"usr/bin/prog",
		"usr/lib/aarch64-linux-gnu/liba.so.1",
		"usr/lib/aarch64-linux-gnu/libb.so.1",
		"usr/lib/ld-test.so.1",
		"usr/share/doc/liba/copyright",
		"usr/share/doc/libb/copyright",
		"usr/share/doc/loader/copyright",
		"usr/share/doc/prog/copyright",
	}
	if !slices.Equal(tr.Files, want) {
		t.Errorf("tree files:\n%s\nwant:\n%s", strings.Join(tr.Files, "\n"), strings.Join(want, "\n"))
	}
	if l, err := os.Readlink(filepath.Join(tr.Dir, "lib")); err != nil || l != "usr/lib" {
		t.Errorf("lib link = %q, %v; the loader is found at /lib", l, err)
	}
	if st, err := os.Stat(filepath.Join(tr.Dir, "usr/bin/prog")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("program mode %v, %v", st.Mode(), err)
	}
	if b, _ := os.ReadFile(filepath.Join(tr.Dir, "usr/share/doc/liba/copyright")); string(b) != "licence of libb\n" {
		t.Errorf("liba's copyright through its doc link: %q", b)
	}
	again, err := loadTree(tr.Dir, "key")
	if err != nil || !slices.Equal(again.Files, tr.Files) {
		t.Errorf("the cached tree reads back as %v, %v", again, err)
	}
}

func TestTreeWithStub(t *testing.T) {
	root, pkgs := fakePackages(t)
	u, err := index(root, pkgs)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	tr, err := u.tree(t.Context(), "arm64", Spec{Packages: []string{"prog"}, Programs: []string{"/usr/bin/prog"}, Stubs: []string{"libb.so.*"}},
		filepath.Join(out, "staging"), filepath.Join(out, "tree"), "key")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tr.Stubbed, []string{"libb.so.1"}) {
		t.Errorf("stubbed %v", tr.Stubbed)
	}
	for _, p := range tr.Packages {
		if p.Name == "libb" && p.Kept {
			t.Error("libb counts as kept although only its stub is in the tree")
		}
	}
	if slices.Contains(tr.Files, "usr/share/doc/libb/copyright") {
		t.Error("the stubbed package's copyright file is in the tree; nothing of it is")
	}
	stub := filepath.Join(tr.Dir, "usr/lib/aarch64-linux-gnu/libb.so.1")
	defined, needed, soname := dynsyms(t, stub)
	if soname != "libb.so.1" || len(needed) != 0 {
		t.Errorf("stub soname %q, needs %v", soname, needed)
	}
	// Exactly what liba imports, with its versions; nothing else.
	for _, name := range []string{"b_old@@B_1", "b_new@@B_2", "b_data@@B_1"} {
		if _, ok := defined[name]; !ok {
			t.Errorf("stub does not define %s (defines %v)", name, keys(defined))
		}
	}
	if len(defined) != 3+2 { // the two version definitions appear as absolute symbols
		t.Errorf("stub defines %v", keys(defined))
	}
	if s := defined["b_data@@B_1"]; elf.ST_TYPE(s.Info) != elf.STT_OBJECT || s.Size != 64 {
		t.Errorf("b_data in the stub: type %v size %d, want an object of 64 bytes", elf.ST_TYPE(s.Info), s.Size)
	}
	if s := defined["b_old@@B_1"]; elf.ST_TYPE(s.Info) != elf.STT_FUNC {
		t.Errorf("b_old in the stub has type %v", elf.ST_TYPE(s.Info))
	}
	b, _ := os.ReadFile(stub)
	if !strings.Contains(string(b), "boxswarm stub: libb.so.1: b_new called\n") {
		t.Error("the stub does not carry the message it prints when called")
	}
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestBuildFromCache builds nothing and runs no apt-get when the cache
// holds the resolution and the tree: make image works offline once it has
// run.
func TestBuildFromCache(t *testing.T) {
	cache := t.TempDir()
	spec := Spec{Packages: []string{"prog"}, Programs: []string{"/usr/bin/prog"}}
	o := Options{Spec: spec, Arch: "arm64", Cache: cache}
	pkgs := []Package{{Name: "prog", Version: "1.0", File: "prog_1.0_arm64.deb", SHA256: strings.Repeat("ab", 32)}}
	a := newApt(filepath.Join(cache, "debian-arm64"), "arm64", nil)
	// The resolution record is where resolve keeps it.
	t.Setenv("PATH", t.TempDir()) // no apt-get, no dpkg-deb
	if _, err := a.resolve(t.Context(), spec.Packages, false); err == nil {
		t.Fatal("resolve without a cached resolution and without apt-get succeeded")
	}
	recs, _ := filepath.Glob(filepath.Join(a.dir, "resolved", "*"))
	if len(recs) != 0 {
		t.Fatalf("a failed resolution left %v", recs)
	}
	rec := resolvedPath(a, spec.Packages)
	os.MkdirAll(filepath.Dir(rec), 0o755)
	b, _ := json.Marshal(pkgs)
	write(t, rec, string(b))
	key := treeKey(o, pkgs)
	dir := filepath.Join(a.dir, "trees", key)
	write(t, filepath.Join(dir, treeRecord), `{"Files": ["usr/bin/prog"]}`)
	tr, err := Build(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Dir != dir || tr.Key != key || !slices.Equal(tr.Files, []string{"usr/bin/prog"}) {
		t.Errorf("Build = %+v, want the cached tree %s", tr, dir)
	}
	// Another spec is another tree.
	o.Spec.Stubs = []string{"libx.so.*"}
	if treeKey(o, pkgs) == key {
		t.Error("the stub list does not change the tree's key")
	}
	pkgs[0].SHA256 = strings.Repeat("cd", 32)
	if treeKey(Options{Spec: spec, Arch: "arm64"}, pkgs) == key {
		t.Error("another .deb does not change the tree's key")
	}
}
