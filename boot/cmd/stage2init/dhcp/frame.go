package dhcp

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
)

// Ethernet, IPv4 and UDP framing for the raw sockets: an interface without
// an address cannot send or receive DHCP through the kernel's UDP.

const (
	ethHeaderLen = 14
	ipHeaderLen  = 20
	udpHeaderLen = 8
	etherTypeIP  = 0x0800
)

// broadcastMAC is the Ethernet broadcast address.
var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// datagram is a UDP datagram inside an IPv4 packet inside an Ethernet
// frame.
type datagram struct {
	srcMAC, dstMAC   net.HardwareAddr
	srcIP, dstIP     netip.Addr
	srcPort, dstPort uint16
	payload          []byte
}

// frame encodes the datagram. The UDP checksum is left zero, which IPv4
// allows; the IP header checksum is computed.
func (d datagram) frame() []byte {
	b := make([]byte, ethHeaderLen+ipHeaderLen+udpHeaderLen, ethHeaderLen+ipHeaderLen+udpHeaderLen+len(d.payload))
	copy(b[0:6], d.dstMAC)
	copy(b[6:12], d.srcMAC)
	binary.BigEndian.PutUint16(b[12:], etherTypeIP)
	ip := b[ethHeaderLen:]
	ip[0] = 0x45 // version 4, five 32-bit words
	binary.BigEndian.PutUint16(ip[2:], uint16(ipHeaderLen+udpHeaderLen+len(d.payload)))
	ip[8] = 64 // TTL
	ip[9] = 17 // UDP
	src, dst := addr4(d.srcIP), addr4(d.dstIP)
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip[:ipHeaderLen]))
	udp := ip[ipHeaderLen:]
	binary.BigEndian.PutUint16(udp[0:], d.srcPort)
	binary.BigEndian.PutUint16(udp[2:], d.dstPort)
	binary.BigEndian.PutUint16(udp[4:], uint16(udpHeaderLen+len(d.payload)))
	return append(b, d.payload...)
}

// parseFrame decodes an Ethernet frame holding an IPv4 UDP datagram.
func parseFrame(b []byte) (datagram, error) {
	var d datagram
	if len(b) < ethHeaderLen+ipHeaderLen+udpHeaderLen {
		return d, fmt.Errorf("frame of %d bytes", len(b))
	}
	if binary.BigEndian.Uint16(b[12:]) != etherTypeIP {
		return d, fmt.Errorf("ethertype %#04x", binary.BigEndian.Uint16(b[12:]))
	}
	d.dstMAC, d.srcMAC = net.HardwareAddr(b[0:6]), net.HardwareAddr(b[6:12])
	ip := b[ethHeaderLen:]
	if ip[0]>>4 != 4 {
		return d, fmt.Errorf("IP version %d", ip[0]>>4)
	}
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if ihl < ipHeaderLen || total < ihl+udpHeaderLen || total > len(ip) {
		return d, fmt.Errorf("IPv4 header length %d, total %d in %d bytes", ihl, total, len(ip))
	}
	if ip[9] != 17 {
		return d, fmt.Errorf("IP protocol %d", ip[9])
	}
	if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
		return d, fmt.Errorf("fragment")
	}
	d.srcIP, d.dstIP = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
	udp := ip[ihl:total]
	ulen := int(binary.BigEndian.Uint16(udp[4:]))
	if ulen < udpHeaderLen || ulen > len(udp) {
		return d, fmt.Errorf("UDP length %d in %d bytes", ulen, len(udp))
	}
	d.srcPort, d.dstPort = binary.BigEndian.Uint16(udp[0:]), binary.BigEndian.Uint16(udp[2:])
	d.payload = udp[udpHeaderLen:ulen]
	return d, nil
}

// checksum is the Internet checksum (RFC 1071).
func checksum(b []byte) uint16 {
	var sum uint32
	for ; len(b) >= 2; b = b[2:] {
		sum += uint32(b[0])<<8 | uint32(b[1])
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
