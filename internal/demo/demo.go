// Package demo runs the whole system on one machine, as `make demo` shows
// it and its end-to-end test checks it: the head-end on its embedded
// default, on a stand-in internet made of network namespaces; titles
// imported into it; viewers signed up on its web pages; and set-top boxes
// booted in QEMU from the signed image, each behind its own home router's
// kernel NAT, driven with remote-control keys.
//
// A System is built step by step (Start, then Import, SignUp, Boot, ...)
// so that the demo can print each step as it happens and the test can
// check each one. Close stops everything it started.
//
// The head-end lives in the internet namespace, bound to its address
// (netns: 203.0.113.1), where the boxes' NATs lead. Its web pages and
// operator API are forwarded to loopback ports on the host, so a browser
// on the machine (or the test's viewer client) reaches them.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/boxswarm/boxswarm/headend/admin"
	"github.com/boxswarm/boxswarm/images/bake"
	"github.com/boxswarm/boxswarm/internal/netns"
)

// Config says where things are.
type Config struct {
	// Repo is the repository root: host programs are built from it.
	Repo string
	// Images is the folder `make image` baked into (out/qemu-arm64).
	Images string
	// Dir is the demo's working folder, emptied at Start.
	Dir string
	// Homes is how many homes (one box each) the network has; 2 if zero.
	Homes int
	// Log receives one line per step; io.Discard if nil.
	Log io.Writer
	// Console, if set, receives the boxes' serial consoles.
	Console io.Writer
	// DownKbps caps every box's downloads (transferd -down-kbps), so that
	// a download lasts long enough to be seen in progress on the TV and to
	// be cut by a power cut: DefaultDownKbps if zero, no cap if negative.
	// The image is shared, so the cap is the same on every box.
	DownKbps int
	// MainPathOnly plays the story with one title, without the My List
	// of mixed states and the power cut: what the benchmark times (with
	// no download cap), and nothing the test checks beyond the main path.
	MainPathOnly bool
}

// DefaultDownKbps is the download cap the demo's boxes get unless told
// otherwise: a 0.9 MB sample title takes about 6 s.
const DefaultDownKbps = 1200

// Head-end ports on the internet's address.
const (
	gatewayPort = 7443
	adminPort   = 7480
	webPort     = 8080
	turnPort    = 3478
	mediaPort   = 7444
)

// System is the running demo.
type System struct {
	cfg     Config
	art     bake.Artifacts
	top     *netns.Topology
	bin     string
	data    string // the head-end's data folder
	headend *exec.Cmd
	hedone  chan error
	stopFwd []func()

	// Admin is the operator API; Web the viewers' pages, both forwarded
	// to the host's loopback.
	Admin *admin.Client
	Web   string
	// Gateway is where boxes connect, on the internet.
	Gateway netip.AddrPort

	mu    sync.Mutex
	boxes []*Box
}

func (s *System) logf(format string, args ...any) {
	fmt.Fprintf(s.cfg.Log, format+"\n", args...)
}

// Start builds the network and starts the head-end in it.
func Start(ctx context.Context, cfg Config) (_ *System, err error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Homes == 0 {
		cfg.Homes = 2
	}
	if cfg.DownKbps == 0 {
		cfg.DownKbps = DefaultDownKbps
	}
	art, err := bake.LoadArtifacts(cfg.Images)
	if err != nil {
		return nil, fmt.Errorf("demo: the baked image (run make image): %w", err)
	}
	if err := os.RemoveAll(cfg.Dir); err != nil {
		return nil, err
	}
	s := &System{cfg: cfg, art: art, bin: filepath.Join(cfg.Dir, "bin"), data: filepath.Join(cfg.Dir, "headend")}
	for _, d := range []string{s.bin, s.data} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.logf("building the head-end's programs")
	for _, pkg := range []string{"./headend/cmd/headend", "./tools/mediaimport"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", s.bin+"/", pkg)
		cmd.Dir = cfg.Repo
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("demo: go build %s: %w\n%s", pkg, err, out)
		}
	}
	homes := make([]netns.HomeConfig, cfg.Homes)
	for i := range homes {
		homes[i] = netns.HomeConfig{NAT: netns.Masquerade}
	}
	if s.top, err = netns.New(ctx, netns.Config{Homes: homes}); err != nil {
		return nil, fmt.Errorf("demo: network: %w", err)
	}
	s.logf("network: an internet %s and %d homes, each behind its own router's NAT", s.top.Internet.Prefix, cfg.Homes)
	if err := s.startHeadEnd(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Close stops the boxes, the head-end and the network.
func (s *System) Close() error {
	s.mu.Lock()
	boxes := s.boxes
	s.boxes = nil
	s.mu.Unlock()
	for _, b := range boxes {
		b.vm.Close()
	}
	for _, stop := range s.stopFwd {
		stop()
	}
	var errs []error
	if s.headend != nil && s.headend.Process != nil {
		s.headend.Process.Signal(os.Interrupt)
		select {
		case <-s.hedone:
		case <-time.After(10 * time.Second):
			s.headend.Process.Kill()
			<-s.hedone
		}
	}
	if s.top != nil {
		errs = append(errs, s.top.Close())
	}
	return errors.Join(errs...)
}

// forward listens on the host's loopback and connects each connection to
// target inside ns: how the host reaches a server on the stand-in
// internet.
func forward(ns netns.NS, target string) (addr string, stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var up net.Conn
				if err := ns.Do(func() (err error) { up, err = net.DialTimeout("tcp", target, 5*time.Second); return err }); err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{}, 2)
				go func() { io.Copy(up, c); done <- struct{}{} }()
				go func() { io.Copy(c, up); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return l.Addr().String(), func() { l.Close() }, nil
}
