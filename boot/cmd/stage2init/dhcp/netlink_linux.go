package dhcp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Interface configuration through rtnetlink: one request at a time, each
// acknowledged, so that a refusal comes back as an error.

// LinkUp sets an interface up (loopback included).
func LinkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s: SIOCGIFFLAGS: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s: SIOCSIFFLAGS: %w", name, err)
	}
	return nil
}

type attr struct {
	typ  uint16
	data []byte
}

func nlRequest(typ uint16, flags uint16, body []byte, attrs ...attr) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	msg := make([]byte, unix.SizeofNlMsghdr, 128)
	msg = append(msg, body...)
	for _, a := range attrs {
		l := unix.SizeofRtAttr + len(a.data)
		msg = binary.NativeEndian.AppendUint16(msg, uint16(l))
		msg = binary.NativeEndian.AppendUint16(msg, a.typ)
		msg = append(msg, a.data...)
		for len(msg)%4 != 0 {
			msg = append(msg, 0)
		}
	}
	const seq = 1
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], seq)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return err
		}
		for b := buf[:n]; len(b) >= unix.SizeofNlMsghdr; {
			l := int(binary.NativeEndian.Uint32(b[0:]))
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return fmt.Errorf("netlink message of %d bytes in %d", l, len(b))
			}
			typ, s, data := binary.NativeEndian.Uint16(b[4:]), binary.NativeEndian.Uint32(b[8:]), b[unix.SizeofNlMsghdr:l]
			b = b[min((l+3)&^3, len(b)):]
			if s != seq || typ != unix.NLMSG_ERROR {
				continue
			}
			if len(data) < 4 {
				return fmt.Errorf("short netlink error message")
			}
			if code := int32(binary.NativeEndian.Uint32(data)); code != 0 {
				return unix.Errno(-code)
			}
			return nil
		}
	}
}

func ifaddrmsg(p netip.Prefix, index int) []byte {
	b := make([]byte, unix.SizeofIfAddrmsg)
	m := (*unix.IfAddrmsg)(unsafe.Pointer(&b[0]))
	m.Family = unix.AF_INET
	m.Prefixlen = uint8(p.Bits())
	m.Scope = unix.RT_SCOPE_UNIVERSE
	m.Index = uint32(index)
	return b
}

func ipv4(a netip.Addr) []byte { v := a.As4(); return v[:] }

// broadcastOf is the subnet's broadcast address.
func broadcastOf(p netip.Prefix) netip.Addr {
	v := p.Addr().As4()
	host := ^uint32(0) >> p.Bits()
	if p.Bits() == 0 {
		host = ^uint32(0)
	}
	n := binary.BigEndian.Uint32(v[:]) | host
	return netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, n)))
}

// AddAddr puts an IPv4 address with its prefix on an interface, replacing
// the same address if it is there (a renewed lease).
func AddAddr(index int, p netip.Prefix) error {
	err := nlRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, ifaddrmsg(p, index),
		attr{unix.IFA_LOCAL, ipv4(p.Addr())},
		attr{unix.IFA_ADDRESS, ipv4(p.Addr())},
		attr{unix.IFA_BROADCAST, ipv4(broadcastOf(p))})
	if err != nil {
		return fmt.Errorf("add address %s to interface %d: %w", p, index, err)
	}
	return nil
}

// DelAddr takes an address off an interface.
func DelAddr(index int, p netip.Prefix) error {
	err := nlRequest(unix.RTM_DELADDR, 0, ifaddrmsg(p, index), attr{unix.IFA_LOCAL, ipv4(p.Addr())})
	if err != nil {
		return fmt.Errorf("remove address %s from interface %d: %w", p, index, err)
	}
	return nil
}

// AddDefaultRoute routes everything not on a local subnet through gw,
// replacing an earlier default route.
func AddDefaultRoute(index int, gw netip.Addr) error {
	b := make([]byte, unix.SizeofRtMsg)
	m := (*unix.RtMsg)(unsafe.Pointer(&b[0]))
	m.Family = unix.AF_INET
	m.Table = unix.RT_TABLE_MAIN
	m.Protocol = unix.RTPROT_DHCP
	m.Scope = unix.RT_SCOPE_UNIVERSE
	m.Type = unix.RTN_UNICAST
	oif := binary.NativeEndian.AppendUint32(nil, uint32(index))
	err := nlRequest(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, b,
		attr{unix.RTA_GATEWAY, ipv4(gw)}, attr{unix.RTA_OIF, oif})
	if err != nil {
		return fmt.Errorf("default route via %s on interface %d: %w", gw, index, err)
	}
	return nil
}
