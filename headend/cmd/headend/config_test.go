package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestConfig(t *testing.T) {
	dir := t.TempDir()
	file := func(body string) string {
		p := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".json")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name  string
		file  string // JSON, if any
		flags []string
		check func(t *testing.T, c Config)
		err   string
	}{
		{name: "defaults", check: func(t *testing.T, c Config) {
			if c.Data != "/var/lib/boxswarm-headend" || c.Store != "bolt" || c.Gateway != ":7443" || c.Admin != "127.0.0.1:7480" ||
				!slices.Equal(c.Services, allServices) || c.Policy != "prefer-peers" || c.Media.Cluster != "cluster-1" {
				t.Errorf("defaults: %+v", c)
			}
			if !slices.Contains(c.Names, "localhost") || c.MediaKeys[0] != "/var/lib/boxswarm-headend/media.pub" {
				t.Errorf("names %v, media keys %v", c.Names, c.MediaKeys)
			}
		}},
		{name: "the file, then flags over it", file: `{"gateway": "10.0.0.1:443", "policy": "prefer-servers", "timing": {"offline_after": "2m"}}`,
			flags: []string{"-gateway", "10.0.0.2:443", "-services", "scheduler,turn"}, check: func(t *testing.T, c Config) {
				if c.Gateway != "10.0.0.2:443" || c.Policy != "prefer-servers" || time.Duration(c.Timing.OfflineAfter) != 2*time.Minute ||
					!slices.Equal(c.Services, []string{"scheduler", "turn"}) {
					t.Errorf("%+v", c)
				}
			}},
		{name: "data folder moves the defaults in it", flags: []string{"-data", "/srv/he"}, check: func(t *testing.T, c Config) {
			if c.SchedulerKey != "/srv/he/scheduler.pub" || c.MediaKeys[0] != "/srv/he/media.pub" {
				t.Errorf("%+v", c)
			}
		}},
		{name: "a field the file should not have", file: `{"gatway": ":1"}`, err: "unknown field"},
		{name: "a duration that is not one", file: `{"timing": {"tick": 5}}`, err: "duration"},
		{name: "unknown service", flags: []string{"-services", "scheduler,dns"}, err: `unknown service "dns"`},
		{name: "unknown store", flags: []string{"-store", "mysql://x"}, err: "want bolt or a postgres"},
		{name: "unknown policy", flags: []string{"-policy", "cheapest"}, err: "policy"},
		{name: "relay ports backwards", flags: []string{"-turn-relay-ports", "5000-4000"}, err: "relay_ports"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("serve", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			configPath, overlay := serveFlags(fs)
			args := tc.flags
			if tc.file != "" {
				args = append([]string{"-config", file(tc.file)}, args...)
			}
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			c, err := loadConfig(*configPath, overlay)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		say  string
	}{
		{nil, 2, "usage: headend"},
		{[]string{"launch"}, 2, `unknown command "launch"`},
		{[]string{"code", "-data", t.TempDir()}, 2, "give -account or -server"},
		{[]string{"title"}, 2, "-package is required"},
		{[]string{"title", "-package", "x", "-publish", "soon"}, 2, "-publish"},
		{[]string{"list", "-box", "nope"}, 2, "-box"},
		{[]string{"status", "-data", "/nonexistent"}, 1, "admin token"},
		{[]string{"serve", "-store", "mysql://x"}, 2, "want bolt or a postgres"},
	} {
		var stderr strings.Builder
		if code := run(t.Context(), tc.args, io.Discard, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.say) {
			t.Errorf("headend %q: exit %d, %q; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.say)
		}
	}
}
