// Package netns builds small networks of Linux network namespaces for
// tests: an "internet" and homes behind real kernel NAT, so that peer
// traffic crosses the same conntrack and MASQUERADE code a Linux home router
// runs.
//
//	internet namespace: bridge "inet", 203.0.113.1/24 (servers bind here)
//	  |-- r0 ==veth== wan 203.0.113.11  router 0  lan 192.168.1.1 ==veth== eth0 192.168.1.2  host 0
//	  |-- r1 ==veth== wan 203.0.113.12  router 1  lan 192.168.2.1 ==veth== eth0 192.168.2.2  host 1
//	  ...
//
// The internet routes nothing: a home reaches another home only through
// the other's NAT. Each router masquerades what leaves its WAN (optionally
// with --random-fully, a symmetric NAT) and, like a home router's
// firewall, drops unsolicited packets arriving on the WAN.
//
// Names are unique per topology ("bswnet-<unix time, hex>-<pid>-<random>-<role>"),
// so parallel tests and test binaries never collide; [Topology.Close] (run
// by [Start] in t.Cleanup, so also after a failure or a panic in the test
// goroutine) kills what still runs inside and deletes every namespace, and
// [New] removes the namespaces of earlier runs whose process died (a
// timeout, SIGKILL) once they are [StaleAfter] old. Processes started with
// [NS.Command] die with the test process.
//
// Only processes see a namespace: run programs in one with [NS.Command]
// (ip netns exec), or create sockets in one with [NS.Do]. Go switches
// namespaces per OS thread, which is why a whole program that should live in
// a namespace is a separate process.
//
// # Setup pitfalls
//
// Each of these makes a NAT test fail, or pass for the wrong reason, with
// no error anywhere. The package's tests show the first three handled
// (TestKernelNATLoopback, TestKernelNATTranslation, TestKernelNATHolePunch).
//
//   - Loopback is down in a new namespace, and then datagrams to the
//     namespace's own address vanish: two TURN relays of one server, both
//     on the internet's address, could not reach each other. Every
//     namespace brings lo up.
//   - Forwarding and reverse-path filtering are per namespace, and a new
//     one takes them from the host's settings (or the kernel's defaults,
//     per net.core.devconf_inherit_init_net): routers set ip_forward=1 and
//     rp_filter=0 themselves.
//   - Conntrack confirms an entry for an unsolicited packet the router
//     delivers to itself. With plain MASQUERADE and an open WAN, the
//     first hole-punching packet from a peer, if it arrives before the
//     host has sent its own, leaves such an entry; the host's packet to
//     that peer then clashes with it, MASQUERADE moves it to another port,
//     and the hole never opens: WebRTC falls back to the relay. Dropping
//     NEW packets on the WAN in the filter table, as home routers do,
//     frees the entry before it is confirmed ([HomeConfig.OpenWAN] shows
//     the failure).
//   - NAT is decided when conntrack first sees a flow: the rules go in
//     before any traffic, or early flows are never translated.
//   - iptables comes in two flavours, nf_tables and legacy: the one whose
//     NAT, --random-fully and conntrack match work with this kernel is
//     probed and used, in namespaces whose tables start empty, so no rule
//     meets one of the other kind.
//   - TURN servers refuse private peer addresses by default: the internet
//     is TEST-NET-3 (203.0.113.0/24), which passes for public.
//   - IPv6 link-local addresses add host candidates and wait for duplicate
//     address detection: the links get none (addrgenmode none).
package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// NAT is how a home router translates what leaves its WAN.
type NAT int

const (
	// Masquerade is plain MASQUERADE: Linux keeps the source port when it
	// is free, so a host's mapping is the same towards every destination
	// (endpoint-independent mapping) and hole punching works.
	Masquerade NAT = iota
	// RandomFully is MASQUERADE --random-fully: a fresh random source port
	// for every new flow, so every destination sees another mapping (a
	// symmetric NAT). STUN's answer is useless to a peer; only a relay
	// connects.
	RandomFully
)

func (n NAT) String() string {
	switch n {
	case Masquerade:
		return "masquerade"
	case RandomFully:
		return "random-fully"
	}
	return "NAT(" + strconv.Itoa(int(n)) + ")"
}

// HomeConfig describes one home.
type HomeConfig struct {
	NAT NAT
	// OpenWAN leaves out the router's drop of unsolicited packets on its
	// WAN. Only to show why the drop is there: without it, a peer's first
	// hole-punching packet, arriving before the host has sent its own,
	// is delivered to the router itself and leaves a conntrack entry
	// (peer -> router:port) behind; the host's own packet to that peer
	// then clashes with it, MASQUERADE moves it to another port, and the
	// hole never opens. A home router's firewall drops such a packet
	// before conntrack confirms its entry, so nothing is left behind.
	OpenWAN bool
}

// Config describes a topology.
type Config struct {
	Homes []HomeConfig // at most MaxHomes
}

// MaxHomes bounds Config.Homes: each home takes a /24 LAN and a WAN
// address in the internet's /24.
const MaxHomes = 200

// Namespace name parts. Every name starts with namePrefix, so sweeps touch
// nothing else.
const (
	namePrefix = "bswnet"
	inetName   = "inet" // the internet's bridge, and its namespace's role
	wanName    = "wan"  // a router's WAN interface
	lanName    = "lan"  // a router's LAN interface
	hostIfName = "eth0" // a host's interface
	netnsDir   = "/run/netns"
)

// The internet's addresses.
var (
	internetPrefix = netip.MustParsePrefix("203.0.113.0/24")
	internetAddr   = netip.MustParseAddr("203.0.113.1")
)

// NS is a network namespace of a topology.
type NS struct {
	Name string
}

// Command returns a command that runs name with args inside the namespace
// (through ip netns exec, which execs it: the process's pid is the
// program's). It is killed when ctx is done and, through PR_SET_PDEATHSIG,
// when the test process dies; Topology.Close kills it too.
func (n NS) Command(ctx context.Context, name string, arg ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, arg...)...)
	// Pdeathsig fires when the thread that forked the child ends; Go ends
	// threads only for goroutines that exit locked to them, which this
	// package's callers do not start processes from.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs a command inside the namespace and returns its combined output;
// the error names the namespace, the command and its output.
func (n NS) Run(ctx context.Context, name string, arg ...string) ([]byte, error) {
	out, err := n.Command(ctx, name, arg...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("netns %s: %s %s: %w: %s", n.Name, name, strings.Join(arg, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Do runs fn on an OS thread switched into the namespace. Sockets fn
// creates on its own goroutine belong to the namespace for their whole
// life, and may be used from any goroutine afterwards; goroutines fn
// starts run in the test's namespace. The thread is switched back, or
// thrown away if that fails.
func (n NS) Do(fn func() error) error {
	type outcome struct {
		err      error
		panicked bool
		panicVal any
	}
	done := make(chan outcome, 1)
	go func() {
		runtime.LockOSThread()
		// Not unlocked unless the thread is back in its namespace: a locked
		// goroutine that exits takes its thread with it.
		back, err := n.enter()
		if err != nil {
			runtime.UnlockOSThread()
			done <- outcome{err: err}
			return
		}
		res := outcome{panicked: true}
		defer func() {
			if back() == nil {
				runtime.UnlockOSThread()
			}
			if res.panicked {
				res.panicVal = recover()
			}
			done <- res
		}()
		res.err = fn()
		res.panicked = false
	}()
	res := <-done
	if res.panicked && res.panicVal == nil {
		// Nothing to recover (panic(nil) recovers as a
		// *runtime.PanicNilError): fn called runtime.Goexit, as
		// t.FailNow does, which belongs on the test's goroutine only.
		return fmt.Errorf("netns %s: the function given to Do exited its goroutine (t.FailNow inside Do?)", n.Name)
	}
	if res.panicked {
		// On the caller's goroutine, where the test framework sees it and
		// still runs the cleanups.
		panic(res.panicVal)
	}
	return res.err
}

// enter switches the calling thread into the namespace and returns how to
// switch it back.
func (n NS) enter() (back func() error, err error) {
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("netns: current namespace: %w", err)
	}
	target, err := os.Open(filepath.Join(netnsDir, n.Name))
	if err != nil {
		orig.Close()
		return nil, fmt.Errorf("netns %s: %w", n.Name, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		orig.Close()
		return nil, fmt.Errorf("netns %s: setns: %w", n.Name, err)
	}
	return func() error {
		defer orig.Close()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("netns %s: setns back: %w", n.Name, err)
		}
		return nil
	}, nil
}

// Internet is the namespace every router's WAN is bridged into; servers
// the homes reach (STUN, TURN) run here, bound to Addr.
type Internet struct {
	NS
	Addr   netip.Addr   // the internet namespace's own address, on the bridge
	Prefix netip.Prefix // the internet's subnet, routers' WANs included
}

// Home is a host behind its router.
type Home struct {
	Host     NS
	Router   NS
	NAT      NAT
	HostAddr netip.Addr // the host's LAN address
	LANAddr  netip.Addr // the router's LAN address, the host's gateway
	WANAddr  netip.Addr // the router's address on the internet: what the internet sees the host as
}

// Topology is a running set of namespaces.
type Topology struct {
	Internet Internet
	Homes    []Home

	names []string // every namespace, internet first

	mu     sync.Mutex
	closed bool
}

// Start builds the topology for a test and tears it down when the test
// ends. Without the privileges or tools it skips the test, saying why, or
// fails it when CI is "true".
func Start(t testing.TB, cfg Config) *Topology {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tools, err := probe(ctx)
	if err != nil {
		skipOrFail(t, err)
	}
	top, err := build(ctx, cfg, tools)
	if err != nil {
		t.Fatalf("netns: %v", err)
	}
	t.Cleanup(func() {
		if err := top.Close(); err != nil {
			t.Errorf("netns: %v", err)
		}
	})
	return top
}

// New builds the topology. The caller must Close it, also when the test
// fails; on error New removes what it made.
func New(ctx context.Context, cfg Config) (*Topology, error) {
	tools, err := probe(ctx)
	if err != nil {
		return nil, err
	}
	return build(ctx, cfg, tools)
}

// build is New with the tools probed.
func build(ctx context.Context, cfg Config, tools tools) (top *Topology, err error) {
	if len(cfg.Homes) > MaxHomes {
		return nil, fmt.Errorf("netns: %d homes, at most %d", len(cfg.Homes), MaxHomes)
	}
	sweep(ctx, time.Now())

	id, err := newID(time.Now())
	if err != nil {
		return nil, err
	}
	top = &Topology{
		Internet: Internet{
			NS:     NS{Name: id + "-" + inetName},
			Addr:   internetAddr,
			Prefix: internetPrefix,
		},
	}
	top.names = append(top.names, top.Internet.Name)
	for i, hc := range cfg.Homes {
		if hc.NAT != Masquerade && hc.NAT != RandomFully {
			return nil, fmt.Errorf("netns: home %d: unknown %v", i, hc.NAT)
		}
		lan := netip.AddrFrom4([4]byte{192, 168, byte(i + 1), 0})
		h := Home{
			Router:   NS{Name: fmt.Sprintf("%s-r%d", id, i)},
			Host:     NS{Name: fmt.Sprintf("%s-h%d", id, i)},
			NAT:      hc.NAT,
			WANAddr:  netip.AddrFrom4([4]byte{203, 0, 113, byte(11 + i)}),
			LANAddr:  lan.Next(),
			HostAddr: lan.Next().Next(),
		}
		top.Homes = append(top.Homes, h)
		top.names = append(top.names, h.Router.Name, h.Host.Name)
	}
	defer func() {
		if err != nil {
			_ = top.Close()
			top = nil
		}
	}()

	// The namespaces, and each veth pair made directly with its ends in
	// their namespaces, so that nothing touches the caller's namespace and
	// interface names need only be unique inside one namespace.
	var b strings.Builder
	for _, name := range top.names {
		fmt.Fprintf(&b, "netns add %s\n", name)
	}
	for i, h := range top.Homes {
		fmt.Fprintf(&b, "link add %s netns %s type veth peer name r%d netns %s\n", wanName, h.Router.Name, i, top.Internet.Name)
		fmt.Fprintf(&b, "link add %s netns %s type veth peer name %s netns %s\n", lanName, h.Router.Name, hostIfName, h.Host.Name)
	}
	if err := ipBatch(ctx, "", b.String()); err != nil {
		return top, err
	}

	// Every namespace brings its loopback up: a new namespace's is down,
	// and without it a process cannot reach its own addresses (two TURN
	// relays on the internet's address talk to each other through it).
	// IPv6 is kept off the links (addrgenmode none) so that hosts have
	// one address each and nothing waits for duplicate address detection.
	b.Reset()
	b.WriteString("link set lo up\n")
	fmt.Fprintf(&b, "link add %s type bridge\n", inetName)
	fmt.Fprintf(&b, "link set %s addrgenmode none\n", inetName)
	fmt.Fprintf(&b, "addr add %s dev %s\n", netip.PrefixFrom(internetAddr, internetPrefix.Bits()), inetName)
	fmt.Fprintf(&b, "link set %s up\n", inetName)
	for i := range top.Homes {
		fmt.Fprintf(&b, "link set r%d addrgenmode none\n", i)
		fmt.Fprintf(&b, "link set r%d master %s up\n", i, inetName)
	}
	if err := ipBatch(ctx, top.Internet.Name, b.String()); err != nil {
		return top, err
	}
	for _, h := range top.Homes {
		b.Reset()
		b.WriteString("link set lo up\n")
		for _, dev := range []string{wanName, lanName} {
			fmt.Fprintf(&b, "link set %s addrgenmode none\n", dev)
		}
		fmt.Fprintf(&b, "addr add %s dev %s\n", netip.PrefixFrom(h.WANAddr, internetPrefix.Bits()), wanName)
		fmt.Fprintf(&b, "addr add %s/24 dev %s\n", h.LANAddr, lanName)
		fmt.Fprintf(&b, "link set %s up\nlink set %s up\n", wanName, lanName)
		fmt.Fprintf(&b, "route add default via %s\n", internetAddr)
		if err := ipBatch(ctx, h.Router.Name, b.String()); err != nil {
			return top, err
		}
		b.Reset()
		b.WriteString("link set lo up\n")
		fmt.Fprintf(&b, "link set %s addrgenmode none\n", hostIfName)
		fmt.Fprintf(&b, "addr add %s/24 dev %s\n", h.HostAddr, hostIfName)
		fmt.Fprintf(&b, "link set %s up\n", hostIfName)
		fmt.Fprintf(&b, "route add default via %s\n", h.LANAddr)
		if err := ipBatch(ctx, h.Host.Name, b.String()); err != nil {
			return top, err
		}
	}

	// The routers' NAT and firewall go in before any traffic: NAT is
	// decided when conntrack first sees a flow, so a flow that starts
	// before the rule exists is never translated.
	for i, h := range top.Homes {
		if err := setupRouter(ctx, tools, h, cfg.Homes[i]); err != nil {
			return top, err
		}
	}
	return top, nil
}

// setupRouter turns forwarding on and installs the router's NAT and
// firewall rules.
func setupRouter(ctx context.Context, tools tools, h Home, hc HomeConfig) error {
	// Both are per namespace, and a new one's come from the host (or
	// the kernel's defaults): forwarding may be off, and reverse-path
	// filtering strict. The routes here are symmetric, but turning the
	// filter off keeps the host's policy out of the test.
	if _, err := h.Router.Run(ctx, "sysctl", "-q", "-w",
		"net.ipv4.ip_forward=1",
		"net.ipv4.conf.all.rp_filter=0",
		"net.ipv4.conf.default.rp_filter=0",
		"net.ipv4.conf."+wanName+".rp_filter=0",
		"net.ipv4.conf."+lanName+".rp_filter=0",
	); err != nil {
		return err
	}
	cmd := h.Router.Command(ctx, tools.restore)
	cmd.Stdin = strings.NewReader(routerRules(hc))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("netns %s: %s: %w: %s", h.Router.Name, tools.restore, err, bytes.TrimSpace(out))
	}
	return nil
}

// routerRules is the iptables-restore input of a home router.
func routerRules(hc HomeConfig) string {
	masq := "-A POSTROUTING -o " + wanName + " -j MASQUERADE"
	if hc.NAT == RandomFully {
		masq += " --random-fully"
	}
	var b strings.Builder
	b.WriteString("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n")
	b.WriteString(masq + "\nCOMMIT\n")
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	if !hc.OpenWAN {
		// Dropped in the filter hook, before conntrack's confirmation at
		// the end of INPUT, so an unsolicited packet leaves no entry.
		b.WriteString("-A INPUT -i " + wanName + " -m conntrack --ctstate NEW,INVALID -j DROP\n")
		b.WriteString("-A FORWARD -i " + wanName + " -m conntrack --ctstate NEW,INVALID -j DROP\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// Names lists the topology's namespaces, internet first.
func (t *Topology) Names() []string { return append([]string(nil), t.names...) }

// Close kills every process still inside the topology's namespaces and
// deletes them (with them go their interfaces, addresses, routes and
// rules). It may be called more than once.
func (t *Topology) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	// Its own context: Close runs in cleanups, after the test's context
	// may be gone.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return remove(ctx, t.names)
}

// remove kills the processes inside the named namespaces and deletes
// them. A namespace that does not exist is not an error.
func remove(ctx context.Context, names []string) error {
	var errs []error
	var b strings.Builder
	for _, name := range names {
		if _, err := os.Stat(filepath.Join(netnsDir, name)); errors.Is(err, os.ErrNotExist) {
			continue
		}
		// A namespace lives on while a process is inside it; these are
		// processes this package's caller started in a namespace made
		// for it alone.
		out, err := exec.CommandContext(ctx, "ip", "netns", "pids", name).Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("netns %s: listing its processes: %w", name, err))
		}
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		fmt.Fprintf(&b, "netns del %s\n", name)
	}
	if b.Len() > 0 {
		if err := ipBatch(ctx, "", b.String()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ipBatch runs ip commands, one a line, in namespace ns ("" for the
// caller's). -force goes on after a failed line, so that a teardown
// removes all it can; the error still reports the failure.
func ipBatch(ctx context.Context, ns, cmds string) error {
	args := []string{"-force", "-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdin = strings.NewReader(cmds)
	if out, err := cmd.CombinedOutput(); err != nil {
		where := "ip"
		if ns != "" {
			where = "netns " + ns + ": ip"
		}
		return fmt.Errorf("%s -batch: %w: %s (commands: %q)", where, err, bytes.TrimSpace(out), cmds)
	}
	return nil
}

// newID returns a topology's unique name stem: the prefix, the creation
// time and the owning process (which sweep reads back), and randomness
// for topologies of one process.
func newID(now time.Time) (string, error) {
	var r [3]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("netns: random name: %w", err)
	}
	return fmt.Sprintf("%s-%x-%d-%s", namePrefix, now.Unix(), os.Getpid(), hex.EncodeToString(r[:])), nil
}
