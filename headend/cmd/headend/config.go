package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is the head-end's configuration: a JSON file (-config), with
// flags overriding it. Every field has a default, so `headend serve` alone
// runs the whole head-end from one data folder.
type Config struct {
	// Data is the data folder: keys, the CA, the embedded store, the
	// media server's store.
	Data string `json:"data"`
	// Services run in this process: scheduler (with the box gateway and
	// the admin API), turn, media. Default: all three.
	Services []string `json:"services"`
	// Store is "bolt" (DATA/scheduler.db, the default) or a PostgreSQL
	// URL (postgres://...).
	Store string `json:"store"`
	// Gateway is where boxes connect (TLS), default ":7443".
	Gateway string `json:"gateway"`
	// Names are the host names and IPs in the gateway's certificate, as
	// boxes dial it. localhost and 127.0.0.1 are always added.
	Names []string `json:"names"`
	// Admin is the operator API and /metrics, default "127.0.0.1:7480".
	// Keep it private: anyone with the token runs the head-end.
	Admin string `json:"admin"`
	// Policy is "prefer-peers" (default) or "prefer-servers".
	Policy string `json:"policy"`
	// ClustersNeeded is m: any m of the n media server clusters together
	// hold every title. 0 means n−1: losing one cluster loses no title.
	ClustersNeeded int `json:"clusters_needed"`
	// MediaKeys are the public keys title manifests are signed with,
	// PKIX PEM files. Default: DATA/media.pub.
	MediaKeys []string `json:"media_keys"`
	// SchedulerKey is the scheduler's token key; its .key half is made in
	// the data folder on first start. A media server run apart needs the
	// .pub half. Default: DATA/scheduler.pub.
	SchedulerKey string `json:"scheduler_key"`

	TURN    TURNConfig    `json:"turn"`
	Media   MediaConfig   `json:"media"`
	Viewers ViewersConfig `json:"viewers"`
	Timing  TimingConfig  `json:"timing"`
}

// ViewersConfig configures what viewers meet, which runs with the
// scheduler: customer management (in the scheduler's store kind: bolt in
// DATA/customers.db, or the same PostgreSQL database), the web pages,
// media passes and the key vault (DATA/vault.db).
type ViewersConfig struct {
	// Web is where the web pages listen, default ":8080"; "off" for none.
	// Serve them to the Internet through a TLS-terminating proxy, with
	// SecureCookies set.
	Web string `json:"web"`
	// SecureCookies marks session cookies Secure, as behind a TLS proxy.
	SecureCookies bool `json:"secure_cookies"`
	// Catalogs are created at start if missing; every viewer who signs
	// up on the web is subscribed to all of them. Default: one catalog
	// "films".
	Catalogs []CatalogConfig `json:"catalogs"`
	// MasterKey is the file holding the key vault's master key (32 random
	// bytes, 0600), made on first start. Default DATA/vault.master. Keep a
	// copy offline: without it the vault's keys are lost.
	MasterKey string `json:"master_key"`
	// PassWindow is how long a media pass for a title bought lets a box
	// play it (a rental's lasts until the rental ends); default 4h.
	PassWindow Duration `json:"pass_window"`
	// Payments is the payment provider. Only "test" exists: it takes no
	// real cards (tokens starting "tok_ok" pay, "tok_declined" is
	// declined).
	Payments string `json:"payments"`
}

// CatalogConfig names one vendor's catalog.
type CatalogConfig struct {
	ID     string `json:"id"`
	Vendor string `json:"vendor"`
	Name   string `json:"name"`
}

// TURNConfig configures STUN and TURN.
type TURNConfig struct {
	// Addr is the public ip:port STUN and TURN bind to and boxes are told
	// to use; never a wildcard. Default: port 3478 on the address of the
	// interface holding the default route.
	Addr string `json:"addr"`
	// Realm of the credentials, default "boxswarm".
	Realm string `json:"realm"`
	// RelayPorts is the relay port range "min-max", default "49152-65535".
	RelayPorts string `json:"relay_ports"`
	// CredentialTTL is how long minted credentials last, default 12h: it
	// must outlast the longest relayed transfer.
	CredentialTTL Duration `json:"credential_ttl"`
	// AllowPrivatePeers lets relays reach loopback and private addresses:
	// for tests on one machine and head-ends inside the ISP's network.
	AllowPrivatePeers bool `json:"allow_private_peers"`
}

// MediaConfig configures the media server.
type MediaConfig struct {
	// Listen is where boxes fetch pieces, default ":7444".
	Listen string `json:"listen"`
	// Advertise is the piece address given to boxes, default the
	// listening address (with a wildcard host replaced by the gateway's
	// first name).
	Advertise string `json:"advertise"`
	Cluster   string `json:"cluster"` // default "cluster-1"
	// Ingest lists package folders imported at start (idempotent).
	Ingest []string `json:"ingest"`
	// HeadEnd, CA and Code are for a media server run apart from the
	// scheduler: the gateway's address, its CA certificate (DATA/ca/ca.crt
	// of the scheduler's data folder) and a server activation code
	// (`headend code -server`). Run with the scheduler, the server enrolls
	// itself.
	HeadEnd string `json:"headend"`
	CA      string `json:"ca"`
	Code    string `json:"code"`
	// Capacity bounds the bytes stored, default the file system's free space.
	Capacity int64 `json:"capacity"`
	// UpKbps caps what the server sends, in kbit/s; 0 is no cap (the
	// scheduler then plans with its default for servers).
	UpKbps int `json:"up_kbps"`
}

// TimingConfig shortens the scheduler's and gateway's clocks, for tests.
// Zero values keep the defaults of packages scheduler and gateway.
type TimingConfig struct {
	Tick            Duration `json:"tick"`
	OfflineAfter    Duration `json:"offline_after"`
	StartTimeout    Duration `json:"start_timeout"`
	ProgressTimeout Duration `json:"progress_timeout"`
	ShadowEvery     Duration `json:"shadow_every"`
	IdleTimeout     Duration `json:"idle_timeout"` // gateway: a silent connection is closed
	RetryBase       Duration `json:"retry_base"`   // gateway: first resend of an unacknowledged message
	Heartbeat       Duration `json:"heartbeat"`    // media server: keep-alive of its session
}

// Duration is a time.Duration written as "90s" in JSON.
type Duration time.Duration

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"90s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }
func (d Duration) String() string               { return time.Duration(d).String() }
func (d *Duration) Set(s string) error {
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

const (
	svcScheduler = "scheduler"
	svcTURN      = "turn"
	svcMedia     = "media"
)

var allServices = []string{svcScheduler, svcTURN, svcMedia}

// loadConfig reads the config file, if any, then applies the flags set on
// the command line, then the defaults.
func loadConfig(path string, overlay func(*Config)) (Config, error) {
	var c Config
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		d := json.NewDecoder(strings.NewReader(string(b)))
		d.DisallowUnknownFields()
		if err := d.Decode(&c); err != nil {
			return c, fmt.Errorf("config %s: %w", path, err)
		}
	}
	overlay(&c)
	return c, c.defaults()
}

func (c *Config) defaults() error {
	set := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	set(&c.Data, "/var/lib/boxswarm-headend")
	if len(c.Services) == 0 {
		c.Services = allServices
	}
	for _, s := range c.Services {
		if !slices.Contains(allServices, s) {
			return fmt.Errorf("config: unknown service %q (have %s)", s, strings.Join(allServices, ", "))
		}
	}
	set(&c.Store, "bolt")
	if c.Store != "bolt" && !strings.HasPrefix(c.Store, "postgres://") && !strings.HasPrefix(c.Store, "postgresql://") {
		return fmt.Errorf("config: store %q: want bolt or a postgres:// URL", c.Store)
	}
	set(&c.Gateway, ":7443")
	set(&c.Admin, "127.0.0.1:7480")
	set(&c.Policy, "prefer-peers")
	if c.ClustersNeeded < 0 {
		return fmt.Errorf("config: clusters_needed %d: want 1 or more (0: all clusters but one)", c.ClustersNeeded)
	}
	if c.Policy != "prefer-peers" && c.Policy != "prefer-servers" {
		return fmt.Errorf("config: policy %q: want prefer-peers or prefer-servers", c.Policy)
	}
	if len(c.MediaKeys) == 0 {
		c.MediaKeys = []string{filepath.Join(c.Data, "media.pub")}
	}
	set(&c.SchedulerKey, filepath.Join(c.Data, "scheduler.pub"))
	for _, n := range []string{"localhost", "127.0.0.1"} {
		if !slices.Contains(c.Names, n) {
			c.Names = append(c.Names, n)
		}
	}
	set(&c.TURN.Realm, "boxswarm")
	set(&c.TURN.RelayPorts, "49152-65535")
	if c.TURN.CredentialTTL == 0 {
		c.TURN.CredentialTTL = Duration(12 * time.Hour)
	}
	if _, _, err := c.relayPorts(); err != nil {
		return err
	}
	set(&c.Media.Listen, ":7444")
	set(&c.Media.Cluster, "cluster-1")
	set(&c.Viewers.Web, ":8080")
	set(&c.Viewers.MasterKey, filepath.Join(c.Data, "vault.master"))
	set(&c.Viewers.Payments, "test")
	if c.Viewers.Payments != "test" {
		return fmt.Errorf("config: viewers payments %q: only the test provider exists", c.Viewers.Payments)
	}
	if len(c.Viewers.Catalogs) == 0 {
		c.Viewers.Catalogs = []CatalogConfig{{ID: "films", Vendor: "Boxswarm", Name: "Films"}}
	}
	return nil
}

func (c *Config) runs(service string) bool { return slices.Contains(c.Services, service) }

func (c *Config) relayPorts() (lo, hi int, err error) {
	a, b, ok := strings.Cut(c.TURN.RelayPorts, "-")
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("config: turn relay_ports %q: want min-max within 1-65535", c.TURN.RelayPorts)
	}
	return lo, hi, nil
}

// turnAddr returns the public STUN/TURN address: the configured one, or
// port 3478 on the address the default route leaves from.
func (c *Config) turnAddr() (string, error) {
	if c.TURN.Addr != "" {
		return c.TURN.Addr, nil
	}
	ip, err := defaultRouteIP()
	if err != nil {
		return "", fmt.Errorf("turn: no address configured and %w; set turn.addr (-turn) to the public ip:port", err)
	}
	return net.JoinHostPort(ip.String(), "3478"), nil
}

// defaultRouteIP finds the local address of the default route. Connecting
// a UDP socket only consults the routing table; nothing is sent.
func defaultRouteIP() (net.IP, error) {
	conn, err := net.Dial("udp4", "192.0.2.1:9") // TEST-NET-1: never answered, never sent to
	if err != nil {
		return nil, errors.New("no default route")
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).IP, nil
}

// listFlag collects a repeatable or comma-separated flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// serveFlags binds the serve flags; the returned function applies those
// given on the command line over the config file.
func serveFlags(fs *flag.FlagSet) (configPath *string, overlay func(*Config)) {
	var f Config
	var services, names, mediaKeys, ingest listFlag
	configPath = fs.String("config", "", "JSON config file (see the Config type; flags override it)")
	fs.StringVar(&f.Data, "data", "", "data folder (default /var/lib/boxswarm-headend)")
	fs.Var(&services, "services", "services to run: scheduler, turn, media (default all)")
	fs.StringVar(&f.Store, "store", "", "bolt (default) or a postgres:// URL")
	fs.StringVar(&f.Gateway, "gateway", "", "box gateway listen address (default :7443)")
	fs.Var(&names, "name", "host name or IP boxes dial the gateway by (repeatable)")
	fs.StringVar(&f.Admin, "admin", "", "operator API and /metrics listen address (default 127.0.0.1:7480)")
	fs.StringVar(&f.Policy, "policy", "", "prefer-peers (default) or prefer-servers")
	fs.IntVar(&f.ClustersNeeded, "clusters-needed", 0, "any this many media server clusters hold every title (default: all but one)")
	fs.Var(&mediaKeys, "media-key", "media signing public key, PEM (repeatable; default DATA/media.pub)")
	fs.StringVar(&f.SchedulerKey, "scheduler-key", "", "scheduler token public key, PEM (default DATA/scheduler.pub)")
	fs.StringVar(&f.TURN.Addr, "turn", "", "public ip:port for STUN and TURN (default: the default route's address, port 3478)")
	fs.StringVar(&f.TURN.RelayPorts, "turn-relay-ports", "", "TURN relay port range (default 49152-65535)")
	fs.BoolVar(&f.TURN.AllowPrivatePeers, "turn-allow-private", false, "let TURN relays reach loopback and private addresses")
	fs.StringVar(&f.Media.Listen, "media-listen", "", "media server piece address (default :7444)")
	fs.StringVar(&f.Media.Advertise, "media-advertise", "", "piece address given to boxes")
	fs.StringVar(&f.Media.Cluster, "media-cluster", "", "media server cluster (default cluster-1)")
	fs.IntVar(&f.Media.UpKbps, "media-up-kbps", 0, "media server upload cap, kbit/s (default none)")
	fs.Var(&ingest, "ingest", "package folder for the media server to import (repeatable)")
	fs.StringVar(&f.Media.HeadEnd, "media-headend", "", "gateway address, for a media server run apart")
	fs.StringVar(&f.Media.CA, "media-ca", "", "head-end CA certificate, for a media server run apart")
	fs.StringVar(&f.Media.Code, "media-code", "", "server activation code, for a media server run apart")
	fs.StringVar(&f.Viewers.Web, "web", "", `web pages listen address (default :8080; "off" for none)`)
	fs.BoolVar(&f.Viewers.SecureCookies, "secure-cookies", false, "mark session cookies Secure (behind a TLS proxy)")
	fs.Var(&f.Timing.Tick, "tick", "scheduler loop period (default 100ms)")
	fs.Var(&f.Timing.OfflineAfter, "offline-after", "a box disconnected this long goes offline (default 90s)")
	fs.Var(&f.Timing.StartTimeout, "start-timeout", "transfer start timeout (default 30s)")
	fs.Var(&f.Timing.ProgressTimeout, "progress-timeout", "transfer progress timeout (default 30s)")
	fs.Var(&f.Timing.ShadowEvery, "shadow-every", "shadow list planning period (default 30s)")
	fs.Var(&f.Timing.IdleTimeout, "idle-timeout", "a box connection silent this long is closed (gateway default)")
	fs.Var(&f.Timing.RetryBase, "retry-base", "first resend of an unacknowledged message (gateway default)")
	fs.Var(&f.Timing.Heartbeat, "heartbeat", "media server's session keep-alive (default 15s)")
	return configPath, func(c *Config) {
		fs.Visit(func(fl *flag.Flag) {
			switch fl.Name {
			case "services":
				c.Services = services
			case "name":
				c.Names = append(c.Names, names...)
			case "media-key":
				c.MediaKeys = mediaKeys
			case "ingest":
				c.Media.Ingest = append(c.Media.Ingest, ingest...)
			}
		})
		str := func(dst *string, v string) {
			if v != "" {
				*dst = v
			}
		}
		str(&c.Data, f.Data)
		str(&c.Store, f.Store)
		str(&c.Gateway, f.Gateway)
		str(&c.Admin, f.Admin)
		str(&c.Policy, f.Policy)
		if f.ClustersNeeded != 0 {
			c.ClustersNeeded = f.ClustersNeeded
		}
		str(&c.SchedulerKey, f.SchedulerKey)
		str(&c.TURN.Addr, f.TURN.Addr)
		str(&c.TURN.RelayPorts, f.TURN.RelayPorts)
		c.TURN.AllowPrivatePeers = c.TURN.AllowPrivatePeers || f.TURN.AllowPrivatePeers
		str(&c.Media.Listen, f.Media.Listen)
		str(&c.Media.Advertise, f.Media.Advertise)
		str(&c.Media.Cluster, f.Media.Cluster)
		str(&c.Media.HeadEnd, f.Media.HeadEnd)
		str(&c.Media.CA, f.Media.CA)
		str(&c.Media.Code, f.Media.Code)
		str(&c.Viewers.Web, f.Viewers.Web)
		c.Viewers.SecureCookies = c.Viewers.SecureCookies || f.Viewers.SecureCookies
		if f.Media.UpKbps != 0 {
			c.Media.UpKbps = f.Media.UpKbps
		}
		dur := func(dst *Duration, v Duration) {
			if v != 0 {
				*dst = v
			}
		}
		dur(&c.Timing.Tick, f.Timing.Tick)
		dur(&c.Timing.OfflineAfter, f.Timing.OfflineAfter)
		dur(&c.Timing.StartTimeout, f.Timing.StartTimeout)
		dur(&c.Timing.ProgressTimeout, f.Timing.ProgressTimeout)
		dur(&c.Timing.ShadowEvery, f.Timing.ShadowEvery)
		dur(&c.Timing.IdleTimeout, f.Timing.IdleTimeout)
		dur(&c.Timing.RetryBase, f.Timing.RetryBase)
		dur(&c.Timing.Heartbeat, f.Timing.Heartbeat)
	}
}
