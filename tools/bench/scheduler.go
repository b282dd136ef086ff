package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// schedulerSizes are the swarm sizes measured, as box counts.
var schedulerSizes = []int{10_000, 100_000, 1_000_000}

// schedulerSection runs the scheduler's BenchmarkScale on both backends:
// the cost of a decision at each size against the same at the smallest
// (the goal is a flat cost), and memory per box.
func schedulerSection(ctx context.Context, root string, runs int) (string, error) {
	var sizes []string
	for _, n := range schedulerSizes {
		sizes = append(sizes, strconv.Itoa(n))
	}
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "^BenchmarkScale$", "-benchtime", "1x",
		"-count", strconv.Itoa(runs), "-timeout", "3h", "./headend/scheduler/")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "BOXSWARM_SCALE_SIZES="+strings.Join(sizes, ","))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go test -bench: %w\n%s", err, out)
	}
	type key struct {
		backend string
		boxes   int
	}
	samples := map[key]map[string][]float64{}
	for _, line := range strings.Split(string(out), "\n") {
		f := scaleRE.FindStringSubmatch(line)
		if f == nil {
			continue
		}
		n, _ := strconv.Atoi(f[2])
		k := key{f[1], n}
		if samples[k] == nil {
			samples[k] = map[string][]float64{}
		}
		for _, m := range metricRE.FindAllStringSubmatch(f[3], -1) {
			v, _ := strconv.ParseFloat(m[1], 64)
			samples[k][m[2]] = append(samples[k][m[2]], v)
		}
	}
	med := func(k key, metric string) float64 {
		if v := samples[k][metric]; len(v) > 0 {
			return median(v)
		}
		return 0
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Scheduler\n\n%s\n\n", measured(runs))
	b.WriteString("| backend | registered boxes | per decision | against 10k | decisions/s | heap per box | anonymous RSS per box | start-up load | registrations |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, backend := range []string{"bolt", "postgres"} {
		base := med(key{backend, schedulerSizes[0]}, "ns/decision")
		for _, n := range schedulerSizes {
			k := key{backend, n}
			ns := med(k, "ns/decision")
			if ns == 0 || base == 0 {
				return "", fmt.Errorf("no result for %s with %d boxes in:\n%s", backend, n, out)
			}
			fmt.Fprintf(&b, "| %s | %d | %.0f µs | %.2f× | %.0f | %.0f B | %.0f B | %.2f s | %.0f msg/s |\n",
				backend, n, ns/1000, ns/base, 1e9/ns, med(k, "heap-B/box"), med(k, "rss-B/box"), med(k, "load-s"), med(k, "register-msg/s"))
		}
	}
	b.WriteString("\nGoals: a cost per decision that stays flat from 10k to 1M boxes (the ratio against 10k), and at most 2 KB of memory per box. ")
	b.WriteString("Every box is registered, holds two of 1,000 titles and lists five; a decision chooses the receiver (the high-priority queue), the title and its donors, and commits the transfer and both ends' messages; 5,000 are timed at each size with the default budget of 1,000 per loop pass. ")
	b.WriteString("Heap per box is the live heap after loading and registering the swarm, over the boxes; anonymous RSS leaves out the bbolt file's mapping. Start-up load reads every box, holding, list and sequence number from the store; registrations go through the loop as the gateway delivers them (connect and Register, 4,096 per pass). ")
	b.WriteString("PostgreSQL runs on the same machine, with fsync off (the test cluster). Run `make bench` to measure again.\n")
	return b.String(), nil
}

var scaleRE = regexp.MustCompile(`^BenchmarkScale/(\w+)/boxes=(\d+)-\d+\s+\d+\s+(.*)$`)
