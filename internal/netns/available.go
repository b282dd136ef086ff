package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tools are the programs a topology is built with.
type tools struct {
	restore string // the iptables-restore that works here
}

// restoreCandidates are tried in order. Debian's iptables is the nf_tables
// one; the legacy one is the fallback for kernels without nf_tables.
// Which one runs does not matter inside a namespace of our own, whose
// tables start empty: mixing the two matters only where rules of the
// other kind already exist (a host with Docker's legacy rules), and no
// rule here ever goes into the host's namespace.
var restoreCandidates = []string{"iptables-restore", "iptables-nft-restore", "iptables-legacy-restore"}

// probeRules exercises every match and target a router uses.
const probeRules = `*nat
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o lo -j MASQUERADE
-A POSTROUTING -o lo -j MASQUERADE --random-fully
COMMIT
*filter
:INPUT ACCEPT [0:0]
-A INPUT -i lo -m conntrack --ctstate NEW,INVALID -j DROP
COMMIT
`

// Available says why topologies cannot be built here, or nil if they can:
// it needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), iproute2, namespaces,
// veth pairs, bridges and iptables with NAT and conntrack. It tries all of
// it in a scratch namespace, which it removes.
func Available() error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := probe(ctx)
	return err
}

// Require skips the test when topologies cannot be built here, saying
// why, or fails it when CI is "true", where the tests run with the
// privileges and tools/deps.sh has installed the tools.
func Require(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		skipOrFail(t, err)
	}
}

func skipOrFail(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("network namespaces are required in CI: %v", err)
	}
	t.Skipf("network namespaces unavailable: %v", err)
}

// probe checks the environment and picks the tools.
func probe(ctx context.Context) (tools, error) {
	if uid := os.Geteuid(); uid != 0 {
		return tools{}, fmt.Errorf("netns: not root (euid %d): network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN", uid)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return tools{}, fmt.Errorf("netns: iproute2 is not installed (apt-get install iproute2, or tools/deps.sh): %w", err)
	}
	if _, err := exec.LookPath("sysctl"); err != nil {
		return tools{}, fmt.Errorf("netns: sysctl is not installed (apt-get install procps): %w", err)
	}
	id, err := newID(time.Now())
	if err != nil {
		return tools{}, err
	}
	ns := NS{Name: id + "-probe"}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		return tools{}, fmt.Errorf("netns: ip netns add %s refused: %w: %s", ns.Name, err, bytes.TrimSpace(out))
	}
	defer func() {
		// Its own context, so that the scratch namespace goes even when
		// ctx has expired.
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = remove(rctx, []string{ns.Name})
	}()

	if err := ipBatch(ctx, ns.Name, "link set lo up\nlink add veth0 type veth peer name veth1\nlink add bridge0 type bridge\nlink set veth0 master bridge0\n"); err != nil {
		return tools{}, fmt.Errorf("netns: veth pairs or bridges unsupported: %w", err)
	}
	var tried []string
	for _, name := range restoreCandidates {
		if _, err := exec.LookPath(name); err != nil {
			tried = append(tried, name+": not installed")
			continue
		}
		cmd := ns.Command(ctx, name)
		cmd.Stdin = strings.NewReader(probeRules)
		out, err := cmd.CombinedOutput()
		if err == nil {
			return tools{restore: name}, nil
		}
		tried = append(tried, fmt.Sprintf("%s: %v: %s", name, err, bytes.TrimSpace(out)))
	}
	return tools{}, fmt.Errorf("netns: no iptables with NAT (MASQUERADE --random-fully) and conntrack works (apt-get install iptables, or tools/deps.sh): %s", strings.Join(tried, "; "))
}

// Stale namespaces: those of a process that is gone once StaleAfter has
// passed, and any of ours older than AbandonedAfter whatever its owner
// (pids are reused; no topology lives that long).
const (
	StaleAfter     = 2 * time.Minute
	AbandonedAfter = 30 * time.Minute
)

// sweep removes the namespaces earlier runs left behind: a test binary
// killed by a timeout or a signal runs no cleanups. Errors are ignored; a
// namespace that cannot be removed now is tried again next time.
func sweep(ctx context.Context, now time.Time) { sweepPrefix(ctx, now, namePrefix) }

// sweepPrefix is sweep for the names that start with prefix: tests sweep
// their own, which no concurrent sweep of another test binary touches.
func sweepPrefix(ctx context.Context, now time.Time, prefix string) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return
	}
	var stale []string
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if isStale(name, prefix, now, processRuns) {
			stale = append(stale, name)
		}
	}
	if len(stale) > 0 {
		_ = remove(ctx, stale)
	}
}

// isStale reports whether a namespace name is one of ours, left behind.
func isStale(name, prefix string, now time.Time, runs func(pid int) bool) bool {
	created, pid, ok := parseName(name, prefix)
	if !ok {
		return false
	}
	age := now.Sub(created)
	return age > AbandonedAfter || (age > StaleAfter && pid != os.Getpid() && !runs(pid))
}

// parseName reads back the creation time and owner newID put in a name.
func parseName(name, prefix string) (created time.Time, pid int, ok bool) {
	f := strings.Split(name, "-")
	if len(f) < 5 || f[0] != prefix {
		return time.Time{}, 0, false
	}
	secs, err1 := strconv.ParseInt(f[1], 16, 64)
	pid, err2 := strconv.Atoi(f[2])
	if err := errors.Join(err1, err2); err != nil || pid <= 0 {
		return time.Time{}, 0, false
	}
	return time.Unix(secs, 0), pid, true
}

// processRuns reports whether a process exists and has not ended (a
// zombie has ended).
func processRuns(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}
