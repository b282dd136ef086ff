// Command bench measures the system against references taken in the same
// run, and records the medians as ratios in BENCHMARKS.md, one section per
// part (make bench runs them all; -only picks some):
//
//   - boot: QEMU start to "BOOT OK" with verification against the same chain
//     built with verification compiled out; the verifier's hashing against
//     sha256sum on the same bytes.
//   - media: frame decryption against raw AES-GCM on the same frames, and
//     allocations per frame; import against ffmpeg -c copy on the same
//     input; the player's peak memory while playing a 2 GB title.
//   - scheduler: the cost of a scheduling decision with 10k, 100k and 1M
//     registered boxes against the same at 10k, on bbolt and PostgreSQL,
//     and memory per box.
//   - p2p: WebRTC transfers between two processes against TLS over TCP.
//   - customers: media passes and key releases per second against their
//     raw cryptography; p99 render of catalog search and My List with
//     15,000 titles and 100,000 accounts.
//   - system: the whole demo (internal/demo) — from adding a title on the
//     web to playable on box 2, and power-on to the first TV screen.
//
// The machines are shared and noisy, so each figure is the median of
// several runs, and the two sides of a ratio are measured alternately.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

func main() {
	board := flag.String("board", "qemu-arm64", "board whose boot chain to measure")
	runs := flag.Int("runs", 5, "runs per measurement (the median is reported)")
	record := flag.String("record", "", "markdown file whose sections are replaced with the results")
	only := flag.String("only", "boot,media,scheduler,p2p,customers,system", "sections to measure: boot, media, scheduler, p2p, customers, system")
	systemRuns := flag.Int("system-runs", 3, "runs of the end-to-end section (each boots two boxes in QEMU)")
	schedRuns := flag.Int("scheduler-runs", 3, "runs of the scheduler section (each builds a million-box swarm twice)")
	p2pRuns := flag.Int("p2p-runs", 3, "runs of the peer transfer section (each moves about 6 GiB over loopback)")
	hashMiB := flag.Int("hash-mib", 192, "size of the hashing benchmark's component")
	titleMiB := flag.Int("title-mib", 2048, "size of the title played for the player's memory measurement")
	flag.Parse()
	if os.Getenv(childEnv) != "" {
		os.Exit(playChild())
	}
	ctx := context.Background()
	root, err := os.Getwd()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
	sections := []struct {
		name, heading string
		run           func() (string, error)
	}{
		{"boot", "## Boot chain", func() (string, error) { return bootSection(ctx, root, *board, *runs, *hashMiB) }},
		{"media", "## Media", func() (string, error) { return mediaSection(ctx, root, *runs, *titleMiB) }},
		{"scheduler", "## Scheduler", func() (string, error) { return schedulerSection(ctx, root, *schedRuns) }},
		{"p2p", "## Peer transfers", func() (string, error) { return p2pSection(ctx, root, *p2pRuns) }},
		{"customers", "## Customers, passes and keys", func() (string, error) { return customersSection(ctx, root, *runs) }},
		{"system", "## The system end to end", func() (string, error) { return systemSection(ctx, root, *board, *systemRuns) }},
	}
	for _, s := range sections {
		if !slices.Contains(strings.Split(*only, ","), s.name) {
			continue
		}
		report, err := s.run()
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", s.name, err)
			os.Exit(1)
		}
		fmt.Print(report)
		if *record != "" {
			if err := recordSection(*record, s.heading, report); err != nil {
				fmt.Fprintf(os.Stderr, "bench: %v\n", err)
				os.Exit(1)
			}
		}
	}
}

// measured says when, where and from what commit the figures come.
func measured(runs int) string {
	commit, _ := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	dirty := ""
	// BENCHMARKS.md itself changes as sections are recorded; it is not code.
	if out, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!BENCHMARKS.md").Output(); len(out) > 0 {
		dirty = " (with uncommitted changes)"
	}
	return fmt.Sprintf("Measured %s at commit `%s`%s on %s (%d cores), %s. Medians of %d runs.",
		time.Now().UTC().Format("2006-01-02"), strings.TrimSpace(string(commit)), dirty, cpuModel(), runtime.NumCPU(),
		runtime.Version(), runs)
}

func median[T time.Duration | float64](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// recordSection replaces the section starting with heading (up to the next
// "## ") in a markdown file, or appends it.
func recordSection(path, heading, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	text := string(old)
	if text == "" {
		text = "# Benchmarks\n\nEvery figure is a median measured against a reference in the same run; `make bench` measures again and rewrites its sections.\n\n"
	}
	start := strings.Index(text, heading)
	if start < 0 {
		text = strings.TrimRight(text, "\n") + "\n\n" + section
	} else {
		end := strings.Index(text[start+len(heading):], "\n## ")
		rest := ""
		if end >= 0 {
			rest = text[start+len(heading)+end+1:]
		}
		text = text[:start] + section + "\n" + rest
	}
	return os.WriteFile(path, []byte(strings.TrimRight(text, "\n")+"\n"), 0o644)
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
