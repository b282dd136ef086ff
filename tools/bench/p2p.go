package main

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// p2pSection runs p2p/rtc's loopback benchmarks: one data channel against
// TLS 1.3 over TCP moving the same bytes in the same process, and one
// receiver fed by one to three senders.
func p2pSection(ctx context.Context, root string, runs int) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "^(BenchmarkLoopback|BenchmarkMultiDonor)$",
		"-benchtime", "256x", "-count", strconv.Itoa(runs), "-timeout", "1h", "./p2p/rtc/")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go test -bench: %w\n%s", err, out)
	}
	samples := map[string]map[string][]float64{} // benchmark → metric → runs
	for _, line := range strings.Split(string(out), "\n") {
		f := rtcBenchRE.FindStringSubmatch(line)
		if f == nil {
			continue
		}
		if samples[f[1]] == nil {
			samples[f[1]] = map[string][]float64{}
		}
		for _, m := range metricRE.FindAllStringSubmatch(f[2], -1) {
			v, _ := strconv.ParseFloat(m[1], 64)
			samples[f[1]][m[2]] = append(samples[f[1]][m[2]], v)
		}
	}
	med := func(name, metric string) float64 {
		if v := samples[name][metric]; len(v) > 0 {
			return median(v)
		}
		return 0
	}
	tls := "Loopback/tls13"
	tlsMBs, tlsCPU := med(tls, "MB/s"), med(tls, "cpu-s/GiB")
	if tlsMBs == 0 {
		return "", fmt.Errorf("no TLS reference in:\n%s", out)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Peer transfers\n\n%s %s.\n\n", measured(runs), modVersions(ctx, root,
		"github.com/pion/webrtc/v3", "github.com/pion/sctp", "github.com/pion/datachannel"))
	b.WriteString("One data channel over loopback, one way, 256 MiB per run, against TLS 1.3 over TCP in the same process:\n\n")
	b.WriteString("| configuration | MB/s | against TLS | CPU-s per GiB (both ends) | UDP receive drops | pion buffer drops |\n|---|---|---|---|---|---|\n")
	for _, name := range sortedNames(samples, "Loopback/rtc-") {
		fmt.Fprintf(&b, "| %s | %.0f | %.3f× | %.1f | %.0f | %.0f |\n", strings.TrimPrefix(name, "Loopback/rtc-"),
			med(name, "MB/s"), med(name, "MB/s")/tlsMBs, med(name, "cpu-s/GiB"), med(name, "udp-rcvbuf-drops"), med(name, "pion-drops"))
	}
	fmt.Fprintf(&b, "| TLS 1.3 over TCP (reference) | %.0f | 1× | %.1f | | |\n\n", tlsMBs, tlsCPU)
	b.WriteString("Several senders to one receiver (each its own connection, 256 MiB per sender per run):\n\n")
	b.WriteString("| configuration | senders | MB/s in total | against one sender |\n|---|---|---|---|\n")
	for _, name := range sortedNames(samples, "MultiDonor/") {
		conf, senders, _ := strings.Cut(strings.TrimPrefix(name, "MultiDonor/"), "/senders=")
		one := med("MultiDonor/"+conf+"/senders=1", "MB/s")
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.2f× |\n", conf, senders, med(name, "MB/s"), med(name, "MB/s")/max(one, 1))
	}
	b.WriteString("\ndefault is p2p/rtc's defaults (4 MiB UDP buffers, a 768 KiB SCTP window); default-gogc400 adds what transferd sets; sctp8MiB is the window it replaced. ")
	b.WriteString("Goals: at least 0.25× TLS and at most 10 CPU-seconds per GiB. Everything runs on the same 2 cores, both ends included, so several senders compete with the receiver for CPU. Run `make bench` to measure again.\n")
	return b.String(), nil
}

var rtcBenchRE = regexp.MustCompile(`^Benchmark(\S+?)-\d+\s+\d+\s+(.*)$`)

// sortedNames returns the benchmarks with the prefix, in name order.
func sortedNames(samples map[string]map[string][]float64, prefix string) []string {
	var names []string
	for n := range samples {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// modVersions names the versions of modules the build uses.
func modVersions(ctx context.Context, root string, mods ...string) string {
	var parts []string
	for _, m := range mods {
		cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Path}} {{.Version}}", m)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			continue
		}
		parts = append(parts, "`"+strings.TrimSpace(string(out))+"`")
	}
	return "Modules: " + strings.Join(parts, ", ")
}
