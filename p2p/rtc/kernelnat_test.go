package rtc_test

// The kernel NAT test: two boxes, each in its own home behind a Linux
// router doing real NAT (internal/netns), connect through the head-end's
// STUN/TURN server (headend/turnserver) in the "internet", with the
// signalling relayed by this test as the scheduler would, and move 8 MiB.
//
// Go switches network namespaces per thread and pion starts goroutines
// freely, so every party is a process of its own: this test binary run
// again through `ip netns exec`, with -test.run=^TestKernelNATHelper$ and
// the role in the environment. A child speaks to the parent in lines
// "knat <JSON>" on its standard output (signals out, results, the TURN
// server's counters), and reads relayed signals as the same lines on its
// standard input, whose end tells it to stop; everything else it prints,
// its logs included (standard error), is kept and shown if the test
// fails.
//
// Run with BOXSWARM_KNAT_DEBUG=1 for pion's debug logs in that output.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/turnserver"
	"github.com/boxswarm/boxswarm/internal/netns"
	"github.com/boxswarm/boxswarm/p2p/rtc"
)

// Environment of a helper process.
const (
	envRole      = "BOXSWARM_KNAT_ROLE" // "turn" or "box"
	envAddr      = "BOXSWARM_KNAT_ADDR" // turn: ip:port to serve on
	envSecret    = "BOXSWARM_KNAT_SECRET"
	envSelf      = "BOXSWARM_KNAT_SELF" // box: its ID, hex
	envPeer      = "BOXSWARM_KNAT_PEER"
	envTransfer  = "BOXSWARM_KNAT_TRANSFER" // decimal
	envInitiate  = "BOXSWARM_KNAT_INITIATE" // "true": this box offers and sends the payload
	envICE       = "BOXSWARM_KNAT_ICE"      // JSON api.ICECredentials
	envBytes     = "BOXSWARM_KNAT_BYTES"
	envDeadline  = "BOXSWARM_KNAT_DEADLINE" // RFC 3339: when the child gives up
	envDebug     = "BOXSWARM_KNAT_DEBUG"    // set (by whoever runs the test): debug logs from the helpers
	knatPrefix   = "knat "
	knatRealm    = "boxswarm-test"
	payloadBytes = 8 << 20
)

// knatMsg is one protocol line between the test and a helper.
type knatMsg struct {
	Ready  string            `json:"ready,omitempty"`  // turn: the address it serves on
	Signal *api.Signal       `json:"signal,omitempty"` // box <-> test
	Result *boxResult        `json:"result,omitempty"` // box: the outcome
	Stats  *turnserver.Stats `json:"stats,omitempty"`  // turn: counters, at exit
}

// boxResult is what a box reports once its side of the transfer is over.
type boxResult struct {
	Box          api.BoxID `json:"box"`
	Local        string    `json:"local"` // Conn.Path
	Remote       string    `json:"remote"`
	Relayed      bool      `json:"relayed"`
	Bytes        int64     `json:"bytes"`  // payload sent or received
	SHA256       string    `json:"sha256"` // of the payload
	ConnectMilli int64     `json:"connect_ms"`
	MoveMilli    int64     `json:"move_ms"` // payload and digest
	Err          string    `json:"err,omitempty"`
}

func TestKernelNAT(t *testing.T) {
	cases := []struct {
		nat     netns.NAT
		relayed bool
	}{
		// Linux keeps the source port a host chose when it is free, so
		// the STUN mapping is the one the peer sees: hole punching
		// works and the path is direct. (Only because the routers drop
		// unsolicited WAN packets, as home routers do: without that,
		// a check arriving before the other end has sent its own leaves
		// a conntrack entry that moves that end's mapping, and most runs
		// end relayed; see netns.HomeConfig.OpenWAN.)
		{netns.Masquerade, false},
		// A new random port per destination: the mapping STUN saw is
		// useless to the peer, only TURN connects.
		{netns.RandomFully, true},
	}
	for _, tc := range cases {
		t.Run(tc.nat.String(), func(t *testing.T) {
			start := time.Now()
			top := netns.Start(t, netns.Config{Homes: []netns.HomeConfig{{NAT: tc.nat}, {NAT: tc.nat}}})
			t.Logf("topology up in %v", time.Since(start).Round(time.Millisecond))
			kernelNATTransfer(t, top, tc.relayed)
		})
	}
}

func kernelNATTransfer(t *testing.T, top *netns.Topology, wantRelayed bool) {
	// Both cases, their teardown included, within a minute at worst; a
	// passing case takes a few seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	deadline, _ := ctx.Deadline()
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}

	server := startHelper(ctx, t, "turn", top.Internet.NS, map[string]string{
		envRole:     "turn",
		envAddr:     top.Internet.Addr.String() + ":3478",
		envSecret:   hex.EncodeToString(secret),
		envDeadline: deadline.Format(time.RFC3339Nano),
	})
	var addr string
	select {
	case m, ok := <-server.msgs:
		if !ok || m.Ready == "" {
			t.Fatalf("TURN server did not start (exit: %v)", server.exitErr())
		}
		addr = m.Ready
	case <-ctx.Done():
		t.Fatalf("TURN server did not start in time")
	}

	boxes := [2]api.BoxID{{0: 0xa}, {0: 0xb}}
	names := [2]string{"box A", "box B"} // for people; the IDs are hex
	transfer := api.TransferID(time.Now().UnixNano())
	helpers := make([]*helper, 2)
	// B first: it answers, and A's offer may reach it before it has
	// called Connect anyway (the transport holds early signals).
	for _, i := range []int{1, 0} {
		ice, err := json.Marshal(turnserver.Mint(secret, boxes[i].String(), 10*time.Minute, time.Now(), addr))
		if err != nil {
			t.Fatal(err)
		}
		helpers[i] = startHelper(ctx, t, names[i], top.Homes[i].Host, map[string]string{
			envRole:     "box",
			envSelf:     boxes[i].String(),
			envPeer:     boxes[1-i].String(),
			envTransfer: strconv.FormatUint(uint64(transfer), 10),
			envInitiate: strconv.FormatBool(i == 0),
			envICE:      string(ice),
			envBytes:    strconv.Itoa(payloadBytes),
			envDeadline: deadline.Format(time.RFC3339Nano),
		})
	}

	// The scheduler's part: relay each signal to the other end, saying
	// who sent it.
	results := make([]*boxResult, 2)
	signals := 0
	msgs := [2]<-chan knatMsg{helpers[0].msgs, helpers[1].msgs}
	for results[0] == nil || results[1] == nil {
		var m knatMsg
		var from int
		var ok bool
		select {
		case m, ok = <-msgs[0]:
			from = 0
		case m, ok = <-msgs[1]:
			from = 1
		case <-ctx.Done():
			t.Fatalf("no result from both boxes in time: A %+v, B %+v", results[0], results[1])
		}
		if !ok {
			if results[from] == nil {
				t.Fatalf("%s ended without a result (exit: %v)", names[from], helpers[from].exitErr())
			}
			msgs[from] = nil
			continue
		}
		switch {
		case m.Signal != nil:
			s := *m.Signal
			if s.To != boxes[1-from] {
				t.Errorf("%s signalled %v, not its peer %v", names[from], s.To, boxes[1-from])
				continue
			}
			s.From = boxes[from]
			signals++
			if err := helpers[1-from].send(knatMsg{Signal: &s}); err != nil {
				t.Logf("relaying a %s signal to %s: %v", s.Kind, names[1-from], err)
			}
		case m.Result != nil:
			if m.Result.Err != "" {
				// Not waiting for the other end to time out too: the
				// cleanups show both ends' logs.
				t.Fatalf("%s failed: %s", names[from], m.Result.Err)
			}
			results[from] = m.Result
		}
	}

	// Both have reported: like the scheduler confirming the transfer,
	// let them go. Each box then closes its transport and exits; a
	// failure there fails its test, and so its exit.
	for _, h := range helpers {
		h.closeInput()
	}
	for i, h := range helpers {
		select {
		case <-h.done:
			if err := h.exitErr(); err != nil {
				t.Errorf("%s exited: %v", names[i], err)
			}
		case <-ctx.Done():
			t.Errorf("%s did not exit after its result", names[i])
		}
	}

	// Stop the server for its counters.
	server.closeInput()
	var stats *turnserver.Stats
	for m := range server.msgs {
		if m.Stats != nil {
			stats = m.Stats
		}
	}

	a, b := results[0], results[1]
	for i, r := range results {
		t.Logf("%s: path local %s, remote %s, relayed %v; connected in %d ms, payload and digest in %d ms", names[i], r.Local, r.Remote, r.Relayed, r.ConnectMilli, r.MoveMilli)
	}
	t.Logf("%d signals relayed; TURN: %+v", signals, stats)
	for i, r := range results {
		if r.Box != boxes[i] {
			t.Fatalf("%s reported as %v", names[i], r.Box)
		}
	}
	if a.Bytes != payloadBytes || b.Bytes != payloadBytes || a.SHA256 != b.SHA256 {
		t.Fatalf("payload: A sent %d bytes (SHA-256 %s), B received %d (SHA-256 %s)", a.Bytes, a.SHA256, b.Bytes, b.SHA256)
	}
	mbps := float64(payloadBytes) / 1e6 / (float64(max(a.MoveMilli, 1)) / 1e3)
	t.Logf("8 MiB moved at %.1f MB/s", mbps)

	for i, r := range results {
		if r.Relayed != wantRelayed {
			t.Errorf("%s: relayed %v, want %v (local %s, remote %s)", names[i], r.Relayed, wantRelayed, r.Local, r.Remote)
		}
		viaRelay := r.Local == "relay" || r.Remote == "relay"
		if viaRelay != r.Relayed {
			t.Errorf("%s: Path says relayed %v with local %s, remote %s", names[i], r.Relayed, r.Local, r.Remote)
		}
		// A peer's host address is in its own home: reaching it would
		// mean the homes are not separated by their NATs.
		if !r.Relayed && r.Remote != "srflx" && r.Remote != "prflx" {
			t.Errorf("%s: direct path to a remote %s candidate, want the peer's NAT mapping (srflx or prflx)", names[i], r.Remote)
		}
	}
	if stats == nil {
		t.Fatalf("TURN server reported no counters (exit: %v)", server.exitErr())
	}
	// The server's counters check Path's word: a relayed payload passes
	// it, a direct one does not.
	if relayedBytes := stats.BytesToPeers + stats.BytesFromPeers; wantRelayed && relayedBytes < payloadBytes {
		t.Errorf("relayed path, but the TURN server relayed only %d bytes", relayedBytes)
	} else if !wantRelayed && relayedBytes >= payloadBytes/2 {
		t.Errorf("direct path, but the TURN server relayed %d bytes", relayedBytes)
	}
}

// helper is a child process of the test, in a namespace.
type helper struct {
	msgs chan knatMsg // closed when its standard output ends

	mu    sync.Mutex
	stdin io.WriteCloser
	out   *bytes.Buffer // its standard error and non-protocol output

	done chan struct{} // closed when it has exited
	err  error         // its exit, once done
}

// startHelper starts this test binary in ns with the environment env and
// returns at once. When the test ends, the helper's input is closed, it is
// given a moment to exit and then killed; its output is shown if the test
// failed.
func startHelper(ctx context.Context, t *testing.T, name string, ns netns.NS, env map[string]string) *helper {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command(ctx, exe, "-test.run=^TestKernelNATHelper$", "-test.count=1", "-test.timeout=60s")
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	h := &helper{msgs: make(chan knatMsg, 64), out: new(bytes.Buffer), done: make(chan struct{})}
	cmd.Stderr = lockedWriter{&h.mu, h.out}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s in %s: %v", name, ns.Name, err)
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(h.msgs)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, knatPrefix); ok {
				var m knatMsg
				if err := json.Unmarshal([]byte(rest), &m); err == nil {
					h.msgs <- m
					continue
				}
			}
			h.mu.Lock()
			fmt.Fprintln(h.out, line)
			h.mu.Unlock()
		}
	}()
	go func() {
		<-readDone // Wait closes stdout: read it all first
		err := cmd.Wait()
		h.mu.Lock()
		h.err = err
		h.mu.Unlock()
		close(h.done)
	}()
	t.Cleanup(func() {
		// Drain what nobody reads any more, so that the reader, and with
		// it Wait, is never stuck on a full channel.
		go func() {
			for range h.msgs {
			}
		}()
		h.closeInput()
		select {
		case <-h.done:
		case <-time.After(3 * time.Second):
			_ = cmd.Process.Kill()
			<-h.done
		}
		if t.Failed() {
			h.mu.Lock()
			t.Logf("%s (in %s) exit %v, output:\n%s", name, ns.Name, h.err, h.out)
			h.mu.Unlock()
		}
	})
	return h
}

// send writes a protocol line to the helper's standard input.
func (h *helper) send(m knatMsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err = h.stdin.Write(append([]byte(knatPrefix+string(b)), '\n'))
	return err
}

func (h *helper) closeInput() {
	h.mu.Lock()
	defer h.mu.Unlock()
	_ = h.stdin.Close()
}

// exitErr waits briefly for the helper to exit and says how.
func (h *helper) exitErr() error {
	select {
	case <-h.done:
	case <-time.After(2 * time.Second):
		return errors.New("still running")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestKernelNATHelper is not a test: it is the body of TestKernelNAT's
// child processes, and skips when run any other way.
func TestKernelNATHelper(t *testing.T) {
	role := os.Getenv(envRole)
	if role == "" {
		t.Skip("the helper process of TestKernelNAT; it runs only as TestKernelNAT's child")
	}
	deadline, err := time.Parse(time.RFC3339Nano, os.Getenv(envDeadline))
	if err != nil {
		t.Fatalf("%s: %v", envDeadline, err)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	// Shown only if the test fails. pion's debug logs run to megabytes
	// per transfer: only on request.
	level := slog.LevelInfo
	if os.Getenv(envDebug) != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	out := &emitter{w: os.Stdout}
	switch role {
	case "turn":
		runTURN(ctx, t, log, out)
	case "box":
		runBox(ctx, t, log, out)
	default:
		t.Fatalf("%s %q", envRole, role)
	}
}

// emitter writes protocol lines to the parent.
type emitter struct {
	mu sync.Mutex
	w  io.Writer
}

func (e *emitter) emit(m knatMsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, err = fmt.Fprintf(e.w, "%s%s\n", knatPrefix, b)
	return err
}

// runTURN serves STUN and TURN until its input closes, then reports the
// server's counters.
func runTURN(ctx context.Context, t *testing.T, log *slog.Logger, out *emitter) {
	secret, err := hex.DecodeString(os.Getenv(envSecret))
	if err != nil {
		t.Fatalf("%s: %v", envSecret, err)
	}
	srv, err := turnserver.Listen(ctx, turnserver.Config{
		Addr:   os.Getenv(envAddr),
		Realm:  knatRealm,
		Secret: secret,
		Log:    log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := out.emit(knatMsg{Ready: srv.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	select {
	case <-stop:
	case <-ctx.Done():
	}
	stats := srv.Stats()
	if err := srv.Close(); err != nil {
		t.Error(err)
	}
	if err := out.emit(knatMsg{Stats: &stats}); err != nil {
		t.Error(err)
	}
}

// runBox connects to its peer and moves the payload: the initiator sends
// random bytes and expects their SHA-256 back; the other reads them and
// answers with the digest. Either reports what it saw.
func runBox(ctx context.Context, t *testing.T, log *slog.Logger, out *emitter) {
	var self, peer api.BoxID
	if err := errors.Join(self.UnmarshalText([]byte(os.Getenv(envSelf))), peer.UnmarshalText([]byte(os.Getenv(envPeer)))); err != nil {
		t.Fatalf("%s, %s: %v", envSelf, envPeer, err)
	}
	transfer, err := strconv.ParseUint(os.Getenv(envTransfer), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", envTransfer, err)
	}
	initiate := os.Getenv(envInitiate) == "true"
	size, err := strconv.ParseInt(os.Getenv(envBytes), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", envBytes, err)
	}
	var ice api.ICECredentials
	if err := json.Unmarshal([]byte(os.Getenv(envICE)), &ice); err != nil {
		t.Fatalf("%s: %v", envICE, err)
	}
	log = log.With("box", self)

	res := boxResult{Box: self}
	report := func(err error) {
		if err != nil {
			res.Err = err.Error()
			t.Error(err)
		}
		if eerr := out.emit(knatMsg{Result: &res}); eerr != nil {
			t.Error(eerr)
		}
	}

	tr, err := rtc.New(rtc.Config{
		Self:           self,
		Signal:         func(ctx context.Context, s api.Signal) error { return out.emit(knatMsg{Signal: &s}) },
		ICE:            func() api.ICECredentials { return ice },
		ConnectTimeout: time.Until(deadlineOf(ctx)) / 2,
		Log:            log,
	})
	if err != nil {
		report(fmt.Errorf("rtc.New: %w", err))
		return
	}
	// The test closes the input once both ends have reported, as the
	// scheduler confirms a transfer: only then does the transport go, so
	// that closing it cannot cut short what the peer still reads.
	inputDone := make(chan struct{})
	defer func() {
		select {
		case <-inputDone:
		case <-ctx.Done():
		}
		if err := tr.Close(); err != nil {
			t.Errorf("Transport.Close: %v", err)
		}
	}()
	go func() {
		defer close(inputDone)
		sc := bufio.NewScanner(os.Stdin)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			rest, ok := strings.CutPrefix(sc.Text(), knatPrefix)
			if !ok {
				continue
			}
			var m knatMsg
			if err := json.Unmarshal([]byte(rest), &m); err != nil || m.Signal == nil {
				log.Error("knat: bad line from the test", "line", sc.Text(), "err", err)
				continue
			}
			if err := tr.HandleSignal(ctx, *m.Signal); err != nil {
				log.Warn("knat: signal refused", "kind", m.Signal.Kind, "err", err)
			}
		}
	}()

	start := time.Now()
	conn, err := tr.Connect(ctx, api.TransferID(transfer), peer, initiate)
	if err != nil {
		report(fmt.Errorf("%s: connect to %s: %w", self, peer, err))
		return
	}
	res.ConnectMilli = time.Since(start).Milliseconds()
	p := conn.Path()
	res.Local, res.Remote, res.Relayed = p.Local, p.Remote, p.Relayed
	// Reads and writes do not take a context: closing the connection
	// is what ends them when time is up.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	start = time.Now()
	h := sha256.New()
	if initiate {
		err = sendPayload(conn, h, size)
	} else {
		err = receivePayload(conn, h, size)
	}
	if cerr := conn.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("Conn.Close: %w", cerr)
	}
	res.MoveMilli = time.Since(start).Milliseconds()
	res.Bytes = size
	res.SHA256 = hex.EncodeToString(h.Sum(nil))
	if err != nil {
		res.Bytes = 0
		report(fmt.Errorf("%s: %w", self, err))
		return
	}
	report(nil)
}

// sendPayload writes size random bytes, hashing them, and checks the
// digest the peer answers with.
func sendPayload(conn io.ReadWriter, h hash.Hash, size int64) error {
	buf := make([]byte, 64<<10)
	for sent := int64(0); sent < size; {
		n := int(min(int64(len(buf)), size-sent))
		if _, err := rand.Read(buf[:n]); err != nil {
			return err
		}
		h.Write(buf[:n])
		if _, err := conn.Write(buf[:n]); err != nil {
			return fmt.Errorf("write after %d bytes: %w", sent, err)
		}
		sent += int64(n)
	}
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(conn, got); err != nil {
		return fmt.Errorf("reading the receiver's digest: %w", err)
	}
	if want := h.Sum(nil); !bytes.Equal(got, want) {
		return fmt.Errorf("the receiver's digest is %x, sent %x", got, want)
	}
	return nil
}

// receivePayload reads size bytes, hashing them, answers with the digest
// and waits for the sender to close.
func receivePayload(conn io.ReadWriter, h hash.Hash, size int64) error {
	if n, err := io.CopyN(h, conn, size); err != nil {
		return fmt.Errorf("read %d of %d bytes: %w", n, size, err)
	}
	if _, err := conn.Write(h.Sum(nil)); err != nil {
		return fmt.Errorf("writing the digest: %w", err)
	}
	if n, err := io.Copy(io.Discard, conn); err != nil || n != 0 {
		return fmt.Errorf("after the payload: %d more bytes, then %v (want the sender's close)", n, err)
	}
	return nil
}

func deadlineOf(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(time.Minute)
	}
	return d
}
