package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// formatVersion is part of the cache key. Bump it whenever this tool changes
// how it turns a fragment into an Image (make targets, environment, layout of
// a cache entry), so old entries stop matching instead of being trusted.
const formatVersion = "boxswarm-kernel-1"

// keyInputs is everything that decides the bytes of the built Image.
type keyInputs struct {
	Fragment        []byte
	SourceVersion   string // Debian version of the linux-source package
	CompilerVersion string // first line of the cross compiler's --version
}

// cacheKey returns the hex SHA-256 naming the cache entry for in. Each field
// is length-prefixed so that moving bytes from one field to the next cannot
// produce the same key.
func cacheKey(in keyInputs) string {
	h := sha256.New()
	for _, f := range [][]byte{[]byte(formatVersion), in.Fragment, []byte(in.SourceVersion), []byte(in.CompilerVersion)} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write(f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// option is one CONFIG_ symbol and its value as it appears after "=";
// "n" stands for "# CONFIG_X is not set".
type option struct {
	Name  string
	Value string
	Line  int // line in the fragment, for error messages
}

var (
	setRE   = regexp.MustCompile(`^(CONFIG_[A-Za-z0-9_]+)=(.*)$`)
	unsetRE = regexp.MustCompile(`^# (CONFIG_[A-Za-z0-9_]+) is not set$`)
)

// parseConfig reads a Kconfig fragment or .config. Other comments and blank
// lines are skipped; any other line is an error, because a typo such as a
// missing CONFIG_ prefix would otherwise be ignored by Kconfig and by the
// check alike.
func parseConfig(r io.Reader) ([]option, error) {
	var opts []option
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		var o option
		if m := setRE.FindStringSubmatch(line); m != nil {
			o = option{Name: m[1], Value: m[2], Line: n}
		} else if m := unsetRE.FindStringSubmatch(line); m != nil {
			o = option{Name: m[1], Value: "n", Line: n}
		} else if line == "" || strings.HasPrefix(line, "#") {
			continue
		} else {
			return nil, fmt.Errorf("line %d: not a CONFIG_ assignment or comment: %q", n, line)
		}
		if prev, dup := seen[o.Name]; dup {
			return nil, fmt.Errorf("line %d: %s already set on line %d", n, o.Name, prev)
		}
		seen[o.Name] = n
		opts = append(opts, o)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return opts, nil
}

// checkConfig returns one message per requested option whose value does not
// hold in the final .config. A symbol missing from .config counts as "n":
// Kconfig omits symbols whose dependencies are unmet.
func checkConfig(requested, final []option) []string {
	got := make(map[string]string, len(final))
	for _, o := range final {
		got[o.Name] = o.Value
	}
	var bad []string
	for _, want := range requested {
		have, ok := got[want.Name]
		if !ok {
			have = "n"
		}
		if have == want.Value {
			continue
		}
		if !ok {
			bad = append(bad, fmt.Sprintf("%s=%s (fragment line %d): absent from .config, dependencies not met", want.Name, want.Value, want.Line))
			continue
		}
		bad = append(bad, fmt.Sprintf("%s=%s (fragment line %d): .config has %s=%s", want.Name, want.Value, want.Line, want.Name, have))
	}
	return bad
}

// checkConfigFile compares the fragment with the .config at path.
func checkConfigFile(fragment []byte, path string) error {
	req, err := parseConfig(bytes.NewReader(fragment))
	if err != nil {
		return fmt.Errorf("parsing fragment: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening final config: %w", err)
	}
	defer f.Close()
	final, err := parseConfig(f)
	if err != nil {
		return fmt.Errorf("parsing final config %s: %w", path, err)
	}
	if bad := checkConfig(req, final); len(bad) > 0 {
		return fmt.Errorf("%d fragment option(s) did not stick after olddefconfig:\n  %s", len(bad), strings.Join(bad, "\n  "))
	}
	return nil
}

// isObjectLine reports whether a line of kbuild's V=0 output stands for one
// compiled or linked object, the unit the progress display counts.
func isObjectLine(line string) bool {
	f := strings.Fields(line)
	return len(f) >= 2 && slices.Contains([]string{"CC", "AR", "LD"}, f[0])
}

// countObjects counts object lines in a build log.
func countObjects(r io.Reader) (int, error) {
	n := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		if isObjectLine(sc.Text()) {
			n++
		}
	}
	return n, sc.Err()
}

// progressLine renders the status of the compile step. expected is the count
// of the previous build, or an estimate when guessed is true.
func progressLine(elapsed time.Duration, done, expected int, guessed bool) string {
	el := elapsed.Truncate(time.Second)
	if expected <= 0 {
		return fmt.Sprintf("kernel: compiling, %d objects, %s", done, el)
	}
	approx := ""
	if guessed {
		approx = "~"
	}
	pct := min(100*done/expected, 99)
	return fmt.Sprintf("kernel: compiling, %d/%s%d objects (%d%%), %s", done, approx, expected, pct, el)
}

// lastLines returns up to n final lines of b.
func lastLines(b []byte, n int) []string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}
