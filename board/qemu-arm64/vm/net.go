package vm

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/boxswarm/boxswarm/boot/cmd/stage2init/dhcp"
)

// Network is what the box's network card is plugged into: UserNet or
// TapNet. The box configures its card with DHCP either way.
type Network interface {
	// attach prepares the backend and returns the -netdev option and the
	// files QEMU inherits (as fd 3 on).
	attach(ctx context.Context, v *VM) (netdev string, files []*os.File, err error)
}

// UserNet is QEMU's user-mode network (slirp): the box sits alone behind
// its own NAT, as behind a home router, with nothing forwarded in. QEMU
// answers DHCP (the box gets 10.0.2.15), routes through 10.0.2.2 and
// resolves names at 10.0.2.3; connections to 10.0.2.2 reach the host's
// loopback, which is where a test's or the demo's head-end listens. Every
// connection the box makes leaves from the host's own sockets, so two
// boxes on user networks reach each other only through the host, each
// through its own NAT.
type UserNet struct{}

func (UserNet) attach(context.Context, *VM) (string, []*os.File, error) { return "user", nil, nil }

// UserNetHost is the address the box reaches the host's loopback at.
var UserNetHost = netip.MustParseAddr("10.0.2.2")

// TapNet is a tap device in a network namespace (internal/netns builds
// homes behind kernel NAT out of them): the namespace gets Addr on the
// tap, and a DHCP server on it hands the box the next address of the
// subnet, with Addr as its router. In a home router's namespace the box
// is a second LAN behind the router's NAT: its MASQUERADE rule covers
// whatever leaves the WAN. The tap disappears with the VM.
type TapNet struct {
	// Namespace is a name under /run/netns (ip netns); the caller's own
	// namespace if empty.
	Namespace string
	// Name is the tap device's name; "box0" if empty.
	Name string
	// Addr is the namespace's address on the tap, and the box's subnet.
	Addr netip.Prefix
	// DNS are the name servers the box is told about.
	DNS []netip.Addr
}

const tunDev = "/dev/net/tun"

func (t TapNet) attach(ctx context.Context, v *VM) (string, []*os.File, error) {
	if !t.Addr.Addr().Is4() || t.Addr.Bits() > 30 {
		return "", nil, fmt.Errorf("tap network: %s is not an IPv4 subnet with room for the box", t.Addr)
	}
	name := t.Name
	if name == "" {
		name = "box0"
	}
	var tap *os.File
	var srv *dhcp.Server
	err := inNamespace(t.Namespace, func() error {
		var err error
		if tap, err = openTap(name); err != nil {
			return err
		}
		if err := dhcp.LinkUp(name); err != nil {
			return err
		}
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		if err := dhcp.AddAddr(ifc.Index, t.Addr); err != nil {
			return err
		}
		srv, err = dhcp.ListenServer(dhcp.ServerConfig{
			Interface: name, Addr: t.Addr, First: t.Addr.Addr().Next(), Count: 1<<(32-t.Addr.Bits()) - 3,
			Router: t.Addr.Addr(), DNS: t.DNS, Log: slog.New(slog.DiscardHandler),
		})
		return err
	})
	if err != nil {
		if tap != nil {
			tap.Close()
		}
		return "", nil, fmt.Errorf("tap network %s in namespace %q: %w", name, t.Namespace, err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	go srv.Serve(sctx)
	v.onExit = append(v.onExit, func() { cancel(); srv.Close() })
	return "tap,fd=3,vhost=off", []*os.File{tap}, nil
}

// openTap creates a tap device in the calling thread's namespace.
func openTap(name string) (*os.File, error) {
	fd, err := unix.Open(tunDev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", tunDev, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), tunDev), nil
}

// inNamespace runs fn on an OS thread switched into the named network
// namespace; devices and sockets fn creates stay in it.
func inNamespace(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", name))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		err = unix.Setns(int(target.Fd()), unix.CLONE_NEWNET)
		target.Close()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		err = fn()
		// A thread that cannot go back dies with this goroutine (it stays
		// locked), never serving another one from the wrong namespace.
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
