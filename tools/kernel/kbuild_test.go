package main

import (
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []option
		wantErr string
	}{
		{
			name: "all forms",
			in:   "# why\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"console=ttyAMA0\"\nCONFIG_D=0x10\n",
			want: []option{
				{Name: "CONFIG_A", Value: "y", Line: 3},
				{Name: "CONFIG_B", Value: "n", Line: 4},
				{Name: "CONFIG_C", Value: `"console=ttyAMA0"`, Line: 5},
				{Name: "CONFIG_D", Value: "0x10", Line: 6},
			},
		},
		{name: "missing prefix", in: "CONFIG_A=y\nDM_VERITY=y\n", wantErr: "line 2"},
		{name: "duplicate", in: "CONFIG_A=y\n# CONFIG_A is not set\n", wantErr: "already set on line 1"},
		{name: "empty", in: "", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseConfig(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseConfig() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseConfig() error = %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("parseConfig() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCheckConfig(t *testing.T) {
	final := "CONFIG_A=y\n# CONFIG_MODULES is not set\nCONFIG_HZ=250\nCONFIG_S=\"x\"\n"
	tests := []struct {
		name     string
		fragment string
		wantBad  []string // substrings, one per expected complaint
	}{
		{name: "all hold", fragment: "CONFIG_A=y\n# CONFIG_MODULES is not set\nCONFIG_HZ=250\nCONFIG_S=\"x\"\n"},
		{name: "absent means n", fragment: "# CONFIG_GONE is not set\n"},
		{name: "dropped by dependencies", fragment: "CONFIG_SQUASHFS=y\n", wantBad: []string{"CONFIG_SQUASHFS=y (fragment line 1): absent"}},
		{name: "y became n", fragment: "CONFIG_MODULES=y\n", wantBad: []string{".config has CONFIG_MODULES=n"}},
		{name: "n stayed y", fragment: "# CONFIG_A is not set\n", wantBad: []string{".config has CONFIG_A=y"}},
		{name: "value differs", fragment: "CONFIG_HZ=100\nCONFIG_S=\"y\"\n", wantBad: []string{"CONFIG_HZ=100", `CONFIG_S="y"`}},
	}
	fin, err := parseConfig(strings.NewReader(final))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := parseConfig(strings.NewReader(tt.fragment))
			if err != nil {
				t.Fatal(err)
			}
			bad := checkConfig(req, fin)
			if len(bad) != len(tt.wantBad) {
				t.Fatalf("checkConfig() = %q, want %d complaint(s)", bad, len(tt.wantBad))
			}
			for i, w := range tt.wantBad {
				if !strings.Contains(bad[i], w) {
					t.Errorf("complaint %d = %q, want it to contain %q", i, bad[i], w)
				}
			}
		})
	}
}

func TestCheckConfigFileListsEveryFailure(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, ".config")
	if err := os.WriteFile(cfg, []byte("CONFIG_A=y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := checkConfigFile([]byte("CONFIG_A=y\nCONFIG_B=y\nCONFIG_C=y\n"), cfg)
	if err == nil {
		t.Fatal("checkConfigFile() = nil, want an error")
	}
	for _, w := range []string{"2 fragment option(s)", "CONFIG_B=y", "CONFIG_C=y"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if err := checkConfigFile([]byte("CONFIG_A=y\n"), cfg); err != nil {
		t.Errorf("checkConfigFile() = %v, want nil", err)
	}
}

func TestCacheKey(t *testing.T) {
	base := keyInputs{Fragment: []byte("CONFIG_A=y\n"), SourceVersion: "6.1.172-1", CompilerVersion: "gcc 12.2.0-14"}
	k := cacheKey(base)
	if len(k) != 64 {
		t.Fatalf("cacheKey() = %q, want 64 hex digits", k)
	}
	if cacheKey(base) != k {
		t.Error("cacheKey() is not stable")
	}
	tests := []struct {
		name string
		in   keyInputs
	}{
		{"fragment", keyInputs{[]byte("CONFIG_A=n\n"), base.SourceVersion, base.CompilerVersion}},
		{"source version", keyInputs{base.Fragment, "6.1.173-1", base.CompilerVersion}},
		{"compiler", keyInputs{base.Fragment, base.SourceVersion, "gcc 12.2.0-15"}},
		// Bytes moved across a field boundary must not collide.
		{"boundary", keyInputs{[]byte("CONFIG_A=y\n6"), ".1.172-1", base.CompilerVersion}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if cacheKey(tt.in) == k {
				t.Errorf("changing the %s did not change the key", tt.name)
			}
		})
	}
}

func TestObjectLines(t *testing.T) {
	log := strings.Join([]string{
		"  SYNC    include/config/auto.conf",
		"  CC      kernel/fork.o",
		"  AR      kernel/built-in.a",
		"  LD      vmlinux.o",
		"  CC [M]  drivers/foo.o",
		"  AS      arch/arm64/kernel/head.o",
		"  OBJCOPY arch/arm64/boot/Image",
		"kernel/fork.c:12: warning: CC is not a line kbuild prints",
		"CC",
	}, "\n")
	n, err := countObjects(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("countObjects() = %d, want 4", n)
	}
}

func TestProgressLine(t *testing.T) {
	tests := []struct {
		elapsed  time.Duration
		done     int
		expected int
		guessed  bool
		want     string
	}{
		{90*time.Second + 400*time.Millisecond, 10, 100, false, "kernel: compiling, 10/100 objects (10%), 1m30s"},
		{time.Second, 10, 100, true, "kernel: compiling, 10/~100 objects (10%), 1s"},
		{time.Second, 150, 100, false, "kernel: compiling, 150/100 objects (99%), 1s"},
		{time.Second, 7, 0, false, "kernel: compiling, 7 objects, 1s"},
	}
	for _, tt := range tests {
		if got := progressLine(tt.elapsed, tt.done, tt.expected, tt.guessed); got != tt.want {
			t.Errorf("progressLine(%v, %d, %d, %v) = %q, want %q", tt.elapsed, tt.done, tt.expected, tt.guessed, got, tt.want)
		}
	}
}

func TestLastLines(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want []string
	}{
		{"a\nb\nc\n", 2, []string{"b", "c"}},
		{"a\nb\n", 5, []string{"a", "b"}},
		{"a", 1, []string{"a"}},
	}
	for _, tt := range tests {
		if got := lastLines([]byte(tt.in), tt.n); !slices.Equal(got, tt.want) {
			t.Errorf("lastLines(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestPrintPathNeverBuilds(t *testing.T) {
	for _, tool := range []string{"dpkg-query", crossCompile + "gcc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: %v", tool, err)
		}
	}
	board := t.TempDir()
	if err := os.WriteFile(filepath.Join(board, "kernel.config"), []byte("CONFIG_A=y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	args := []string{"-board", board, "-cache", cache, "-print-path"}
	tests := []struct {
		name     string
		setup    func(img string)
		wantCode int
	}{
		{name: "empty cache", setup: func(string) {}, wantCode: 1},
		{name: "cached", wantCode: 0, setup: func(img string) {
			if err := os.MkdirAll(filepath.Dir(img), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(img, []byte("kernel"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	opts, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newBuilder(t.Context(), opts, slog.New(slog.DiscardHandler), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup(b.imagePath())
			stdout, err := os.CreateTemp(t.TempDir(), "stdout")
			if err != nil {
				t.Fatal(err)
			}
			defer stdout.Close()
			if code := run(t.Context(), args, stdout, os.Stderr); code != tt.wantCode {
				t.Fatalf("run(-print-path) = %d, want %d", code, tt.wantCode)
			}
			out, _ := os.ReadFile(stdout.Name())
			want := ""
			if tt.wantCode == 0 {
				want = b.imagePath() + "\n"
			}
			if string(out) != want {
				t.Errorf("stdout = %q, want %q", out, want)
			}
			if entries, _ := os.ReadDir(cache); tt.wantCode == 1 && len(entries) != 0 {
				t.Errorf("-print-path wrote into the cache: %v", entries)
			}
		})
	}
}
