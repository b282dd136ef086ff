package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// packetConn is a raw packet socket on one interface, in the runtime's
// poller so that reads honour deadlines.
type packetConn struct {
	f       *os.File
	ifindex int
	mac     net.HardwareAddr
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// listenPacket opens a packet socket on ifc receiving IPv4 frames; all
// includes frames of every protocol, which is how a socket sees what
// arrives on a bridge port (the bridge takes frames before the protocol
// handlers run, but after the taps).
func listenPacket(ifc *net.Interface, all bool) (*packetConn, error) {
	proto := uint16(unix.ETH_P_IP)
	if all {
		proto = unix.ETH_P_ALL
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(proto)))
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifc.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind packet socket to %s: %w", ifc.Name, err)
	}
	return &packetConn{f: os.NewFile(uintptr(fd), "packet:"+ifc.Name), ifindex: ifc.Index, mac: ifc.HardwareAddr}, nil
}

func (c *packetConn) Close() error { return c.f.Close() }

func (c *packetConn) send(d datagram) error {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return err
	}
	frame := d.frame()
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		serr = unix.Send(int(fd), frame, 0)
		return !errors.Is(serr, unix.EAGAIN)
	})
	if err != nil {
		return err
	}
	return serr
}

// receive waits for a UDP datagram to port until ctx ends, skipping
// frames the interface sent itself and anything that is not IPv4 UDP.
func (c *packetConn) receive(ctx context.Context, port uint16, deadline time.Time) (datagram, error) {
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.f.SetReadDeadline(deadline); err != nil {
		return datagram{}, err
	}
	// Cancelling ctx wakes the read.
	stop := context.AfterFunc(ctx, func() { c.f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	rc, err := c.f.SyscallConn()
	if err != nil {
		return datagram{}, err
	}
	buf := make([]byte, 2048)
	for {
		var n int
		var from unix.Sockaddr
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if err != nil {
			if ctx.Err() != nil {
				return datagram{}, ctx.Err()
			}
			return datagram{}, err
		}
		if rerr != nil {
			return datagram{}, rerr
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		d, err := parseFrame(buf[:n])
		if err != nil || d.dstPort != port {
			continue
		}
		d.payload = append([]byte(nil), d.payload...)
		return d, nil
	}
}
