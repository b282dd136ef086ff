package rtc

import (
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pion/transport/v2/stdnet"
)

// TestUDPBuffers checks that the sockets ICE opens on the real network get
// the buffers asked for, as far as the kernel allows.
func TestUDPBuffers(t *testing.T) {
	std, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	const want = 4 << 20
	n := bufNet{Net: std, size: want, log: testLog(t, "buf"), once: new(sync.Once)}
	capOf := func(name string) int {
		b, err := os.ReadFile("/proc/sys/net/core/" + name)
		if err != nil {
			t.Fatalf("reading the kernel's cap: %v", err)
		}
		v, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	wantRcv, wantSnd := min(want, capOf("rmem_max")), min(want, capOf("wmem_max"))

	u, err := n.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	p, err := n.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for name, c := range map[string]bufConn{"ListenUDP": u, "ListenPacket": p.(*net.UDPConn)} {
		rcv, snd, err := socketBuffers(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: rcv %d, snd %d (asked %d; kernel caps %d, %d)", name, rcv, snd, want, wantRcv, wantSnd)
		if rcv < wantRcv || snd < wantSnd {
			t.Errorf("%s: buffers %d/%d, want at least %d/%d", name, rcv, snd, wantRcv, wantSnd)
		}
	}
}
