package rtctest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/p2p/rtc"
)

func box(b byte) api.BoxID { return api.BoxID{0: b, 15: 0xa5} }

// TestRelay connects two boxes through the relay with either end
// initiating, and checks that From is stamped by the relay: a third box's
// offer for the same transfer is refused by the addressee as coming from
// the wrong peer, and shows up in Errors.
func TestRelay(t *testing.T) {
	for _, aInit := range []bool{true, false} {
		t.Run(map[bool]string{true: "a-offers", false: "b-offers"}[aInit], func(t *testing.T) {
			r := NewRelay(t)
			a := r.Add(box(1), rtc.Config{})
			b := r.Add(box(2), rtc.Config{})
			c := r.Add(box(3), rtc.Config{ConnectTimeout: 500 * time.Millisecond})
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()

			type res struct {
				c   *rtc.Conn
				err error
			}
			cb := make(chan res, 1)
			go func() {
				c, err := b.Connect(ctx, 7, box(1), !aInit)
				cb <- res{c, err}
			}()
			ca, err := a.Connect(ctx, 7, box(2), aInit)
			if err != nil {
				t.Fatal(err)
			}
			defer ca.Close()
			rb := <-cb
			if rb.err != nil {
				t.Fatal(rb.err)
			}
			defer rb.c.Close()
			if ca.Peer() != box(2) || rb.c.Peer() != box(1) || rb.c.Transfer() != 7 {
				t.Errorf("a's peer %s, b's peer %s, b's transfer %d", ca.Peer(), rb.c.Peer(), rb.c.Transfer())
			}
			// The remote end may be peer-reflexive: the answerer's checks
			// can reach the offerer before its answer does.
			if p := ca.Path(); p.Relayed || p.Local != "host" {
				t.Errorf("path %v, want direct from a host candidate", p)
			}

			msg := bytes.Repeat([]byte("boxswarm"), 20000)
			go func() {
				ca.Write(msg)
				ca.CloseWrite()
			}()
			got, err := io.ReadAll(rb.c)
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("b read %d of %d bytes: %v", len(got), len(msg), err)
			}

			if len(r.Errors()) != 0 {
				t.Fatalf("signals refused: %v", r.Errors())
			}
			// Box 3 offers for transfer 7 to box 2, whose connection for
			// it is with box 1: box 2 drops the offer, and box 3 gets no
			// connection.
			if _, err := c.Connect(ctx, 7, box(2), true); !errors.Is(err, rtc.ErrConnectTimeout) {
				t.Errorf("box 3's connect: %v, want a timeout", err)
			}
			errs := r.Errors()
			if len(errs) == 0 || !errors.Is(errs[0], rtc.ErrWrongPeer) {
				t.Errorf("refused signals %v, want box 3's offer refused as from the wrong peer", errs)
			}
		})
	}
}

func TestUnknownBox(t *testing.T) {
	r := NewRelay(t)
	a := r.Add(box(1), rtc.Config{ConnectTimeout: time.Second})
	_, err := a.Connect(t.Context(), 1, box(9), true)
	if err == nil || !strings.Contains(err.Error(), "unknown box") {
		t.Fatalf("connect to a box the relay does not know: %v", err)
	}
}
