package demo

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// ReferenceFetch times a plain HTTP download of the title's package (the
// same files the media server serves: manifest and payload) from a server
// on the internet's address to the host behind home's router: the path a
// box's download takes through the namespaces and that home's NAT, without
// the head-end, WebRTC, or an emulated box at either end. It returns the
// time and the bytes moved; the benchmark sets it beside the time from
// adding a title on the web to playable.
func (s *System) ReferenceFetch(ctx context.Context, t Title, home int) (time.Duration, int64, error) {
	dir := filepath.Join(s.cfg.Dir, "packages", t.ID.String())
	files, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	var l net.Listener
	inet := s.top.Internet
	if err := inet.Do(func() (err error) {
		l, err = net.Listen("tcp", netip.AddrPortFrom(inet.Addr, 0).String())
		return err
	}); err != nil {
		return 0, 0, fmt.Errorf("demo: listen on the internet: %w", err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	defer srv.Close()
	host := s.top.Homes[home].Host
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = host.Do(func() error {
				var d net.Dialer
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
		DisableCompression: true,
	}}
	defer hc.CloseIdleConnections()
	start := time.Now()
	var n int64
	for _, f := range files {
		if f.IsDir() {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+l.Addr().String()+"/"+f.Name(), nil)
		if err != nil {
			return 0, 0, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, 0, fmt.Errorf("demo: fetch %s from home %d: %w", f.Name(), home, err)
		}
		m, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return 0, 0, fmt.Errorf("demo: fetch %s from home %d: %s, %v", f.Name(), home, resp.Status, err)
		}
		n += m
	}
	return time.Since(start), n, nil
}
