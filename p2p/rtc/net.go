package rtc

import (
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/pion/transport/v2"
)

// bufNet is the real network with larger kernel buffers on every UDP
// socket ICE opens: host and server-reflexive candidates (ListenUDP) and
// the TURN client's socket (ListenPacket). pion's SettingEngine takes a
// transport.Net, so this is where the sockets can be reached.
type bufNet struct {
	transport.Net
	size int
	log  *slog.Logger
	once *sync.Once
}

func (n bufNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	n.tune(c)
	return c, nil
}

func (n bufNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	if u, ok := c.(*net.UDPConn); ok {
		n.tune(u)
	}
	return c, nil
}

// bufConn is what tune needs of a UDP socket.
type bufConn interface {
	SetReadBuffer(int) error
	SetWriteBuffer(int) error
	LocalAddr() net.Addr
}

// tune asks for n.size bytes of buffer each way (best effort) and logs,
// for the first socket, what the kernel granted.
func (n bufNet) tune(c bufConn) {
	rerr := c.SetReadBuffer(n.size)
	werr := c.SetWriteBuffer(n.size)
	n.once.Do(func() {
		rcv, snd, gerr := socketBuffers(c)
		attrs := []any{"requested", n.size, "addr", c.LocalAddr()}
		if gerr != nil {
			attrs = append(attrs, "granted", fmt.Sprintf("unknown (%v)", gerr))
		} else {
			attrs = append(attrs, "granted_rcv", rcv, "granted_snd", snd)
		}
		if rerr != nil || werr != nil {
			attrs = append(attrs, "read_err", rerr, "write_err", werr)
		}
		if gerr == nil && (rcv < n.size || snd < n.size) {
			n.log.Warn("rtc: kernel capped the UDP socket buffers (raise net.core.rmem_max and wmem_max)", attrs...)
			return
		}
		n.log.Info("rtc: UDP socket buffers", attrs...)
	})
}
